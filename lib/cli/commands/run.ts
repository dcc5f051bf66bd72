import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule('run', 'validate, compute and load the KPIs, then archive the loaded stream files', [
  ['$0 run --lake ./lake', 'the embedded PostgreSQL'],
  ['$0 run --lake s3://bucket/music --json', 'in a scheduler'],
]);

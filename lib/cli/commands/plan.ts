import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'plan',
  'warehouse engine: fix the pending stream files and their shards in staging, for normalize and run --engine warehouse',
  [
    ['$0 plan --lake s3://lake/music --warehouse redshift://… --run-id "$RUN_ID" --shards 16', 'one plan, 16 shards'],
    ['$0 plan --lake ./lake --run-id day-2024-06-01 --shards 3 --json', 'the plan, as JSON'],
  ],
);

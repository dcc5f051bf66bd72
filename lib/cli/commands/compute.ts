import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule('compute', 'validate, compute and load the KPIs (no archive)', [
  ['$0 compute --lake ./lake --kpis hourly', 'only hourly_kpis'],
  ['$0 compute --lake ./lake --dry-run', 'what would change'],
]);

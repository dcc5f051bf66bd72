import { computeOptions, lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'compute',
  'validate, compute and load the KPIs (no archive)',
  (y) => computeOptions(warehouseOptions(lakeOptions(outputOptions(y)))),
  [
    ['$0 compute --lake ./lake --kpis hourly', 'load only hourly_kpis'],
    ['$0 compute --lake ./lake --dry-run --json', 'what would be loaded, writing nothing'],
  ],
);

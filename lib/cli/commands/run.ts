import { computeOptions, lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineModule } from './pipeline-command.js';

export const command = pipelineModule(
  'run',
  'validate, compute and load the KPIs, then archive the loaded stream files',
  (y) => computeOptions(warehouseOptions(lakeOptions(outputOptions(y)))),
  [
    ['$0 run --lake ./lake', 'on the embedded PostgreSQL'],
    ['$0 run --lake s3://bucket/music --warehouse postgresql://etl@db/analytics --json', 'in a scheduler'],
  ],
);

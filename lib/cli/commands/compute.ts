import type { Argv, CommandModule } from 'yargs';
import { computeOptions, lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineCommand, type PipelineArgs } from './pipeline-command.js';
import { execute } from '../main.js';

export const command: CommandModule<object, PipelineArgs> = {
  command: 'compute',
  describe: 'validate, compute and load the KPIs (no archive)',
  builder: (y: Argv) => computeOptions(warehouseOptions(lakeOptions(outputOptions(y)))) as unknown as Argv<PipelineArgs>,
  handler: (args) => execute(args, 'compute', (rt) => pipelineCommand('compute', args, rt)),
};

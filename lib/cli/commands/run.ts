import type { Argv, CommandModule } from 'yargs';
import { computeOptions, lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineCommand, type PipelineArgs } from './pipeline-command.js';
import { execute } from '../main.js';

export const command: CommandModule<object, PipelineArgs> = {
  command: 'run',
  describe: 'validate, compute and load the KPIs, then archive the loaded stream files',
  builder: (y: Argv) => computeOptions(warehouseOptions(lakeOptions(outputOptions(y)))) as unknown as Argv<PipelineArgs>,
  handler: (args) => execute(args, 'run', (rt) => pipelineCommand('run', args, rt)),
};

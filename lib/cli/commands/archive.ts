import type { Argv, CommandModule } from 'yargs';
import { lakeOptions, outputOptions, warehouseOptions } from '../options.js';
import { pipelineCommand, type PipelineArgs } from './pipeline-command.js';
import { execute } from '../main.js';

export const command: CommandModule<object, PipelineArgs> = {
  command: 'archive',
  describe: 'move the stream files that committed loads read into the archive',
  builder: (y: Argv) => warehouseOptions(lakeOptions(outputOptions(y))) as unknown as Argv<PipelineArgs>,
  handler: (args) => execute(args, 'archive', (rt) => pipelineCommand('archive', args, rt)),
};

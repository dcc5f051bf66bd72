import type { Argv, CommandModule } from 'yargs';
import { lakeOptions, outputOptions } from '../options.js';
import { pipelineCommand, type PipelineArgs } from './pipeline-command.js';
import { execute } from '../main.js';

export const command: CommandModule<object, PipelineArgs> = {
  command: 'validate',
  describe: 'check schemas and scan every row; report counts and reject reasons; writes nothing',
  builder: (y: Argv) => lakeOptions(outputOptions(y)).option('max-bad-rows', { type: 'number', default: 0, describe: 'bad stream rows tolerated before exit 65' }).option('max-orphan-rows', { type: 'number', describe: 'orphan rows tolerated [default: no limit]' }) as unknown as Argv<PipelineArgs>,
  handler: (args) => execute(args, 'validate', (rt) => pipelineCommand('validate', args, rt)),
};

import type { Argv } from 'yargs';
import { pipelineCommand, failureReport } from './pipeline-command.js';
import { commandModule } from '../execute.js';

export const command = commandModule({
  command: 'retract',
  usage: 'retract <keys..>',
  describe: 'take loaded files back out: recompute their dates without them, mark them retracted, move them to streams/retracted/',
  positionals: (y: Argv) =>
    y.positional('keys', { type: 'string', array: true, describe: 'keys of loaded files (streams/… or their archived key)' }),
  positionalValues: (argv) => (Array.isArray(argv.keys) ? argv.keys.map(String) : []),
  examples: [
    ['$0 retract streams/2024-06-03.csv --dry-run', 'what would change'],
    ['$0 retract streams/archived/2024-06-03.csv', 'take it out'],
  ],
  run: (rt) => pipelineCommand('retract', rt),
  failureJson: failureReport('retract'),
});

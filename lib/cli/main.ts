// The CLI: yargs command modules over the library. main() is the only caller of process.exit
// paths' exit codes, through withRuntime and exit-codes.ts.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { MkpiError } from '../domain/errors.js';
import { EXIT } from './exit-codes.js';
import { printError } from './runtime.js';
import * as run from './commands/run.js';
import * as validate from './commands/validate.js';
import * as compute from './commands/compute.js';
import * as archive from './commands/archive.js';
import * as init from './commands/init.js';
import * as query from './commands/query.js';

export async function main(argv: string[]): Promise<void> {
  const parser = yargs(hideBin(['node', 'musickpi', ...argv]))
    .scriptName('musickpi')
    .usage('$0 <command> [options]\n\nDaily music-streaming KPIs: CSV lake -> validated -> hourly and genre KPIs -> PostgreSQL -> archive.')
    .env('MUSICKPI')
    .option('home', {
      type: 'string',
      global: true,
      default: '.musickpi',
      describe: "folder of the embedded PostgreSQL's data (used when no warehouse is configured)",
    })
    .command(run.command)
    .command(validate.command)
    .command(compute.command)
    .command(archive.command)
    .command(init.command)
    .command(query.command)
    .demandCommand(1, 'name a command')
    .strict()
    .recommendCommands()
    .epilog(
      [
        'Exit codes: 0 ok · 64 usage · 65 input invalid (schema, thresholds) · 66 no input',
        '  69 service unavailable · 70 internal · 74 loaded but archive failed',
        '  75 retry later (run lock held) · 78 config · 130/143 interrupted',
        'Every option can also be set as MUSICKPI_<OPTION> (e.g. MUSICKPI_MAX_BAD_ROWS); flags win.',
      ].join('\n'),
    )
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err, y) => {
      if (err) throw err;
      y.showHelp('error');
      process.stderr.write('\n');
      printError(new MkpiError('MKPI_USAGE', msg, { hint: 'see musickpi <command> --help' }), false, 'usage');
      process.exit(EXIT.USAGE);
    })
    .help()
    .alias('h', 'help')
    .version();
  try {
    await parser.parseAsync();
  } catch (err) {
    if (err instanceof MkpiError) {
      printError(err, argv.includes('--json'), 'usage');
      process.exitCode = EXIT.USAGE;
      return;
    }
    throw err;
  }
}

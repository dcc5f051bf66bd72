// The CLI: yargs command modules over the library. yargs parses flags only; configuration is
// resolved by config.ts, outcomes are printed and mapped to exit codes by execute.ts.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { MkpiError } from '../domain/errors.js';
import { exitCodeFor } from './exit-codes.js';
import { closestOption, type CommandName } from './config.js';
import { errorJson, errorShape, printFailure } from './execute.js';
import * as run from './commands/run.js';
import * as validate from './commands/validate.js';
import * as compute from './commands/compute.js';
import * as archive from './commands/archive.js';
import * as init from './commands/init.js';
import * as query from './commands/query.js';
import * as status from './commands/status.js';
import * as retract from './commands/retract.js';
import * as report from './commands/report.js';
import * as runs from './commands/runs.js';
import * as plan from './commands/plan.js';
import * as normalize from './commands/normalize.js';
import { COMPLETION_COMMAND, COMPLETION_DESCRIBE, completer } from './commands/completion.js';

const COMMANDS = [run, validate, compute, archive, status, retract, plan, normalize, init, query, report, runs];
const NAMES = [
  'run',
  'validate',
  'compute',
  'archive',
  'status',
  'retract',
  'plan',
  'normalize',
  'init',
  'query',
  'report',
] as const satisfies readonly CommandName[];

/** One line for a usage mistake: what was wrong, the offending token, a guess, where to look. */
function usageError(message: string, argv: string[]): MkpiError {
  const command = NAMES.find((n) => argv.includes(n));
  const unknown = /^Unknown arguments?: (.+)$/.exec(message)?.[1]?.split(', ')[0];
  let text = message.replace(/\s+/g, ' ').trim();
  if (unknown !== undefined) {
    // yargs names positionals and flags alike; only what was typed with dashes is an option.
    const typedAsFlag = argv.some((a) => a === `-${unknown}` || a.startsWith(`--${unknown}`) || a.startsWith(`-${unknown}=`));
    const flag = unknown.length === 1 ? `-${unknown}` : `--${unknown}`;
    const guess = command ? closestOption(command, unknown) : undefined;
    text = typedAsFlag ? `unknown option ${flag}${guess ? ` (did you mean --${guess}?)` : ''}` : `unexpected argument ${unknown}`;
    if (!command && argv[0] && !argv[0].startsWith('-')) text = `unknown command ${argv[0]}`;
  } else if (/^Not enough arguments following: (.+)$/.test(message)) {
    text = `--${/^Not enough arguments following: (.+)$/.exec(message)![1]} needs a value`;
  } else if (/^Did you mean (.+)\?$/.test(message)) {
    text = `unknown command ${argv.find((a) => !a.startsWith('-')) ?? ''} (did you mean ${/^Did you mean (.+)\?$/.exec(message)![1]}?)`;
  }
  return new MkpiError('MKPI_USAGE', text, { hint: `see musickpi ${command ?? '<command>'} --help` });
}

/** The part of yargs' internals that skipHelpCache touches (not in its public types). */
interface YargsInternals {
  getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } };
}

/**
 * yargs renders the whole help text of a command right after calling its handler (even a
 * no-op one), to have it at hand should the handler fail: ~50 ms of string widths and wrapping
 * on every run. Nothing here reads it: .fail() below throws instead of printing help, and
 * --help renders its own text before any handler runs.
 */
function skipHelpCache(parser: unknown): void {
  const usage = (parser as YargsInternals).getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined;
}

export async function main(argv: string[]): Promise<void> {
  const columns = process.stdout.columns || 100;
  let parser = yargs(hideBin(['node', 'musickpi', ...argv]))
    .scriptName('musickpi')
    .usage('$0 <command> [options]\n\nDaily music-streaming KPIs: CSV lake -> validated -> hourly and genre KPIs -> warehouse -> archive.')
    // A flag given twice takes its last value instead of becoming an array nobody expects.
    .parserConfiguration({ 'duplicate-arguments-array': false });
  for (const c of COMMANDS) parser = parser.command(c.command);
  parser = parser
    .completion(COMPLETION_COMMAND, COMPLETION_DESCRIBE, completer(argv))
    .demandCommand(1, 'name a command')
    .strict()
    .recommendCommands()
    .epilog(
      [
        'Exit codes: 0 ok · 64 usage · 65 input invalid (schema, thresholds) · 66 no input',
        '  69 service unavailable · 70 internal · 74 loaded but archive failed',
        '  75 retry later (run lock held) · 78 config · 130/143 interrupted',
        'Each option can also be set as MUSICKPI_<OPTION> (shown as [env: …]); flags win.',
        'Docs: README.md and docs/contract.md',
      ].join('\n'),
    )
    .wrap(Math.min(120, columns))
    .fail((msg, err) => {
      // yargs' own parse errors (YError); a command's errors are handled by execute.ts, never here.
      if (err && err.name !== 'YError') throw err;
      if (err) throw usageError(err.message, argv);
      throw usageError(msg ?? 'usage error', argv);
    })
    .help()
    .alias('h', 'help')
    .version();
  skipHelpCache(parser);
  try {
    await parser.parseAsync();
  } catch (err) {
    const e = err instanceof MkpiError ? err : new MkpiError('MKPI_INTERNAL', String(err), { cause: err });
    const command = NAMES.find((n) => argv.includes(n)) ?? '';
    const shape = errorShape(e, e.code === 'MKPI_USAGE' ? 'usage' : null);
    // The configuration was never resolved: --log-format is taken at its word.
    const at = argv.indexOf('--log-format');
    const format = argv.includes('--log-format=json') || (at >= 0 && argv[at + 1] === 'json') ? 'json' : 'text';
    printFailure(command, shape, argv.includes('--json') ? errorJson(command, shape) : undefined, e.cause, { format });
    process.exitCode = exitCodeFor(e.code);
  }
}

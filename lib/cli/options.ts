// yargs declarations of a command's options, generated from the catalogue in config.ts, so that
// --help shows exactly the options a command takes, each with its default and its variable.
// yargs only parses flags here: no defaults, no environment (config.ts resolves both).

import type { Argv } from 'yargs';
import { COMMAND_OPTIONS, OPTIONS, envName, type CommandName, type OptionName } from './config.js';

export function declareOptions(y: Argv, command: CommandName): Argv {
  let out = y;
  for (const name of COMMAND_OPTIONS[command] as readonly OptionName[]) {
    const spec: {
      kind: string;
      describe: string;
      group?: string;
      default?: string | number | boolean;
      defaultText?: string;
      alias?: string;
    } = OPTIONS[name];
    const shownDefault = spec.defaultText ?? (spec.default === undefined || spec.default === false ? undefined : String(spec.default));
    const notes = [shownDefault === undefined ? '' : `[default: ${shownDefault}]`, `[env: ${envName(name)}]`].filter(Boolean).join(' ');
    out = out.option(name, {
      // Numbers stay untyped so that "abc" reaches config.ts (and a clear message) instead of NaN.
      ...(spec.kind === 'boolean' ? { type: 'boolean' as const } : spec.kind === 'string' ? { type: 'string' as const } : {}),
      // A value-taking flag followed by nothing or by another flag is a usage error, never a silent 0.
      requiresArg: spec.kind !== 'boolean',
      describe: `${spec.describe} ${notes}`,
      ...(spec.group ? { group: spec.group } : {}),
      ...(spec.alias ? { alias: spec.alias } : {}),
    });
  }
  return out;
}

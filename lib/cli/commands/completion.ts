// `musickpi completion`: yargs prints the bash script (zsh's when $SHELL is zsh) and answers the
// script's `--get-yargs-completions` queries itself. Here: the command's description, and the
// values of the options that take one of a few words, which yargs cannot know.

import type { CompletionCallback } from 'yargs';
import { KPI_TABLES } from '../../domain/kpi.js';

export const COMPLETION_COMMAND = 'completion';

export const COMPLETION_DESCRIBE =
  'print a shell completion script (bash, or zsh when $SHELL is zsh): musickpi completion >> ~/.bashrc (or ~/.zshrc)';

/** Options whose value is one of a few words. */
const VALUES: Readonly<Record<string, readonly string[]>> = {
  '--log-format': ['text', 'json'],
  '--kpis': [...KPI_TABLES, KPI_TABLES.join(',')],
};

/**
 * yargs' completion function (its "fallback" form) for the words the shell sent (`argv`, the
 * process's arguments): after an option of VALUES, its values; otherwise yargs' own completions
 * (the commands, then the options of the command typed).
 */
export function completer(argv: readonly string[]) {
  return (
    current: string,
    _parsed: unknown,
    defaultCompletion: (onCompleted?: CompletionCallback) => unknown,
    done: (completions: string[]) => unknown,
  ): void => {
    const previous = argv.length >= 2 ? argv[argv.length - 2] : undefined;
    const values = previous === undefined ? undefined : VALUES[previous];
    if (values) done(values.filter((v) => v.startsWith(current)));
    else defaultCompletion();
  };
}

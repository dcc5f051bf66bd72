// Runs a command body inside the runtime and sets the process's exit code: the one place a
// command's outcome becomes an exit status.

import { printError, withRuntime, type Runtime } from './runtime.js';
import type { OutputArgs } from './options.js';

export async function execute(
  args: Partial<OutputArgs> & { home?: string },
  name: string,
  body: (rt: Runtime) => Promise<string | undefined>,
): Promise<void> {
  const json = Boolean(args.json);
  process.exitCode = await withRuntime({ json, quiet: Boolean(args.quiet), home: args.home }, body, (err) => printError(err, json, name));
}

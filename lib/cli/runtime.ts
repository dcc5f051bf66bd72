// What every command needs around the library: signals, the lake, the warehouse (with the
// embedded server's lifecycle), fault injection for tests, and turning outcomes into exit codes.

import { resolve } from 'node:path';
import type { Lake } from '../domain/lake.js';
import { openLake } from '../adapters/lake/open.js';
import { HookedLake } from '../testing/hooked-lake.js';
import { testHooks } from '../testing/hooks.js';
import { openWarehouse } from '../adapters/warehouse/open.js';
import type { Warehouse } from '../domain/warehouse.js';
import { MkpiError, redact, toMkpiError } from '../domain/errors.js';
import type { FaultPoint } from '../pipeline/pipeline.js';
import { exitCodeFor } from './exit-codes.js';
import { createProgress, type Progress } from './progress.js';
import { s3Options, type LakeArgs, type OutputArgs, type WarehouseArgs } from './options.js';

export interface Runtime {
  signal: AbortSignal;
  progress: Progress;
  /** The signal that interrupted the command, if any. */
  interruptedBy(): NodeJS.Signals | undefined;
  openLake(args: LakeArgs): Lake;
  openWarehouse(args: WarehouseArgs): Promise<Warehouse>;
  /** Test-only hooks (see testHooks); undefined in production. */
  fault: ((point: FaultPoint) => void | Promise<void>) | undefined;
}

/**
 * Runs one command body and returns its exit code. The body returns the error code of its
 * outcome (undefined for success); anything it throws is reported here.
 */
export async function withRuntime(
  args: OutputArgs & { home?: string },
  body: (rt: Runtime) => Promise<string | undefined>,
  onError: (err: MkpiError) => void,
): Promise<number> {
  const controller = new AbortController();
  const progress = createProgress({ quiet: args.quiet });
  const closers: (() => Promise<void>)[] = [];
  let interrupted: NodeJS.Signals | undefined;

  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) {
      // A second signal: the user insists; the server-side transaction rolls back on disconnect.
      process.exit(exitCodeFor('MKPI_INTERRUPTED', sig));
    }
    interrupted = sig;
    progress.warn(`${sig} received: stopping cleanly (send it again to force)`);
    controller.abort(new MkpiError('MKPI_INTERRUPTED', `interrupted by ${sig}`));
    // A stage that ignores the abort must not keep the process alive forever.
    setTimeout(() => {
      void Promise.allSettled(closers.map((c) => c())).then(() => process.exit(exitCodeFor('MKPI_INTERRUPTED', sig)));
    }, 15_000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const home = resolve(args.home ?? '.musickpi');
  const hooks = testHooks(process.env, controller.signal);
  const rt: Runtime = {
    signal: controller.signal,
    progress,
    interruptedBy: () => interrupted,
    openLake(a) {
      const lake = openLake(a.lake, s3Options(a));
      closers.push(() => lake.close());
      return hooks ? new HookedLake(lake, hooks.fault, hooks.wants) : lake;
    },
    async openWarehouse(a) {
      if (a.warehouse && /^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(a.warehouse)) {
        progress.warn('a password in --warehouse is visible in the process list; prefer PGPASSWORD or ~/.pgpass');
      }
      const opened = await openWarehouse({
        warehouse: a.warehouse,
        env: process.env,
        schema: a.schema,
        home,
        log: (l: string) => progress.log(l),
      });
      closers.push(() => opened.stop());
      if (opened.embedded) progress.log(`using the embedded PostgreSQL in ${home}`);
      return opened.warehouse;
    },
    fault: hooks?.fault,
  };

  let code: number;
  try {
    const errorCode = await body(rt);
    code = exitCodeFor(errorCode, interrupted);
  } catch (err) {
    const e = controller.signal.aborted
      ? new MkpiError('MKPI_INTERRUPTED', `interrupted by ${interrupted}`, { cause: err })
      : toMkpiError(err);
    progress.stop();
    onError(e);
    code = exitCodeFor(e.code, interrupted);
  } finally {
    progress.stop();
    for (const close of closers.reverse()) {
      await close().catch((err: unknown) => progress.warn(`cleanup: ${redact(err instanceof Error ? err.message : String(err))}`));
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;
}

export function printError(err: MkpiError, json: boolean, command: string): void {
  if (json) {
    process.stdout.write(
      JSON.stringify({ command, ok: false, error: { code: err.code, message: redact(err.message), hint: err.hint ?? null } }, null, 2) +
        '\n',
    );
  }
  process.stderr.write(`musickpi ${command}: ${err.code}: ${redact(err.message)}\n`);
  if (err.hint) process.stderr.write(`  hint: ${redact(err.hint)}\n`);
  if (err.code === 'MKPI_INTERNAL' && err.cause instanceof Error && err.cause.stack) {
    process.stderr.write(redact(err.cause.stack) + '\n');
  }
}

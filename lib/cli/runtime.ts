// What every command needs around the library: signals, the lake, the warehouse (with the
// embedded server's lifecycle), test hooks, and cleanup. Everything comes from the resolved
// configuration; nothing here reads the environment.

import type { Lake } from '../domain/lake.js';
import { openLake } from '../adapters/lake/open.js';
import { HookedLake } from '../testing/hooked-lake.js';
import { testHooks } from '../testing/hooks.js';
import { openWarehouse } from '../adapters/warehouse/open.js';
import type { Warehouse } from '../domain/warehouse.js';
import { MkpiError, redact } from '../domain/errors.js';
import type { FaultPoint } from '../pipeline/pipeline.js';
import { exitCodeFor } from './exit-codes.js';
import { createProgress, loadSpinner, type Progress } from './progress.js';
import { required, type Config } from './config.js';

export interface Runtime {
  config: Readonly<Config>;
  /** This run's id (reports, rejects folder, lineage, logs). */
  runId: string;
  signal: AbortSignal;
  progress: Progress;
  /** The signal that interrupted the command, if any. */
  interruptedBy(): NodeJS.Signals | undefined;
  /** The lake of the configuration (opened once, closed by the runtime). */
  lake(): Lake;
  /** The warehouse of the configuration (opened once, closed and stopped by the runtime). */
  warehouse(): Promise<Warehouse>;
  /** Runs `close` when the command ends, before the lake and warehouse close. */
  onClose(close: () => Promise<void>): void;
  /** Test-only hooks (see testHooks); undefined in production. */
  fault: ((point: FaultPoint) => void | Promise<void>) | undefined;
}

/**
 * Runs `body` with a runtime and always cleans up. Throws what the body throws, turned into
 * MKPI_INTERRUPTED when a signal stopped it.
 */
export async function withRuntime<T>(
  config: Readonly<Config>,
  runId: string,
  body: (rt: Runtime) => Promise<T>,
): Promise<{ value: T; interrupted: NodeJS.Signals | undefined }> {
  const controller = new AbortController();
  const progressOptions = {
    quiet: config.output.quiet,
    interactive: config.output.interactive,
    format: config.output.logFormat,
    level: config.output.level,
    color: config.output.color,
    runId,
    command: config.command,
  };
  await loadSpinner(progressOptions);
  const progress = createProgress(progressOptions);
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

  const hooks = testHooks(config.testEnv, controller.signal);
  let lake: Lake | undefined;
  let warehouse: Promise<Warehouse> | undefined;
  const rt: Runtime = {
    config,
    runId,
    signal: controller.signal,
    progress,
    interruptedBy: () => interrupted,
    lake() {
      if (lake) return lake;
      const c = required(config.lake, 'lake');
      const opened = openLake(c.uri, c.s3);
      closers.push(() => opened.close());
      lake = hooks ? new HookedLake(opened, hooks.fault, hooks.wants) : opened;
      return lake;
    },
    warehouse() {
      warehouse ??= (async () => {
        const c = required(config.warehouse, 'warehouse');
        if (c.url && /^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(c.url)) {
          progress.warn('a password in --warehouse is visible in the process list; prefer PGPASSWORD or ~/.pgpass');
        }
        const opened = await openWarehouse({
          warehouse: c.url,
          env: c.env,
          schema: c.schema,
          home: c.home,
          connectRetryMs: c.connectRetryMs,
          log: (l: string) => progress.log(l),
          warn: (l: string) => progress.warn(l),
          redshift: { ...c.redshift, s3: config.lake?.s3, runId },
        });
        closers.push(() => opened.stop());
        if (opened.embedded) {
          if (c.homeWarning) progress.warn(c.homeWarning);
          progress.log(`using the embedded PostgreSQL in ${c.home}`);
        }
        return opened.warehouse;
      })();
      return warehouse;
    },
    onClose(close) {
      closers.push(close);
    },
    fault: hooks?.fault,
  };

  try {
    const value = await body(rt);
    return { value, interrupted };
  } catch (err) {
    if (controller.signal.aborted) {
      throw new MkpiError('MKPI_INTERRUPTED', `interrupted by ${interrupted}`, { cause: err, details: { signal: interrupted } });
    }
    throw err;
  } finally {
    progress.stop();
    for (const close of closers.reverse()) {
      await close().catch((err: unknown) => progress.warn(`cleanup: ${redact(err instanceof Error ? err.message : String(err))}`));
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// What every command needs around the library: signals, the lake, the warehouse (with the
// embedded server's lifecycle), fault injection for tests, and turning outcomes into exit codes.

import { writeSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Lake } from '../lake/lake.js';
import { openLake } from '../lake/open.js';
import { HookedLake } from '../lake/hooked.js';
import { openWarehouse } from '../warehouse/open.js';
import type { Warehouse } from '../warehouse/warehouse.js';
import { MkpiError, redact, toMkpiError } from '../errors.js';
import type { FaultPoint } from '../pipeline.js';
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
 * Test-only hooks, active only when one of these variables is set (tests set them; nothing else
 * should):
 *
 * - MKPI_TEST_FAULT=<point>: the process SIGKILLs itself the first time it reaches <point>, as a
 *   crash or `kill -9` would: no cleanup, no exit handler, connections dropped by the kernel.
 * - MKPI_TEST_PAUSE=<point>[,<point>…]: the first time it reaches each <point>, the process
 *   writes "MKPI_TEST_PAUSED <point>" on stderr and waits until it gets SIGUSR2 (resume) or is
 *   interrupted (SIGINT/SIGTERM: the pause ends and the interruption takes its course). This
 *   makes "a signal during stage X" or "a file lands while archive runs" deterministic.
 *
 * Points: every FaultPoint of lib/pipeline.ts (in run order: after-lock, after-list, mid-parse,
 * after-scan, mid-copy, staged, mid-merge, merged, before-commit, after-commit,
 * after-archive-list, after-archive-copy, after-archive-mark, after-archive-delete), plus the lake
 * points of lib/lake/hooked.ts: "list:<prefix>" and "read:<key>" (mid-read of that object).
 * 'mid-parse' can only kill (the parser does not wait for it); pause a read:<key> instead.
 */
export interface TestHooks {
  fault: (point: string) => void | Promise<void>;
  wants: (point: string) => boolean;
}

let usr2Installed = false;

export function testHooks(env: NodeJS.ProcessEnv, signal: AbortSignal): TestHooks | undefined {
  const killAt = env.MKPI_TEST_FAULT?.trim() || undefined;
  const pauseAt = new Set((env.MKPI_TEST_PAUSE ?? '').split(',').map((p) => p.trim()).filter(Boolean));
  if (!killAt && pauseAt.size === 0) return undefined;
  const waiting = new Set<() => void>();
  if (pauseAt.size > 0 && !usr2Installed) {
    usr2Installed = true;
    // Kept for the life of the process: a resume that arrives after the pause ended (the run
    // failed meanwhile) must not kill the process with SIGUSR2's default action.
    process.on('SIGUSR2', () => {
      for (const resume of [...waiting]) resume();
    });
  }
  return {
    wants: (point) => point === killAt || pauseAt.has(point),
    fault(point) {
      if (point === killAt) process.kill(process.pid, 'SIGKILL');
      if (!pauseAt.delete(point)) return;
      // Synchronous, so the line is out before the test reacts to it.
      writeSync(2, `MKPI_TEST_PAUSED ${point}\n`);
      return new Promise<void>((resolvePause) => {
        // Signal handlers do not keep node alive: with every socket closed meanwhile (a test
        // terminating the sessions), the process would otherwise just end here.
        const keepAlive = setInterval(() => undefined, 60_000);
        const done = () => {
          clearInterval(keepAlive);
          waiting.delete(done);
          signal.removeEventListener('abort', done);
          resolvePause();
        };
        waiting.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    },
  };
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
    const e = controller.signal.aborted ? new MkpiError('MKPI_INTERRUPTED', `interrupted by ${interrupted}`, { cause: err }) : toMkpiError(err);
    progress.stop();
    onError(e);
    code = exitCodeFor(e.code, interrupted);
  } finally {
    progress.stop();
    for (const close of closers.reverse()) {
      await close().catch((err) => progress.warn(`cleanup: ${redact(String(err?.message ?? err))}`));
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;
}

export function printError(err: MkpiError, json: boolean, command: string): void {
  if (json) {
    process.stdout.write(
      JSON.stringify({ command, ok: false, error: { code: err.code, message: redact(err.message), hint: err.hint ?? null } }, null, 2) + '\n',
    );
  }
  process.stderr.write(`musickpi ${command}: ${err.code}: ${redact(err.message)}\n`);
  if (err.hint) process.stderr.write(`  hint: ${redact(err.hint)}\n`);
  if (err.code === 'MKPI_INTERNAL' && err.cause instanceof Error && err.cause.stack) {
    process.stderr.write(redact(err.cause.stack) + '\n');
  }
}

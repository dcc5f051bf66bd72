// Test-only hooks of the CLI. Nothing here runs unless a MKPI_TEST_* variable is set.

import { writeSync } from 'node:fs';

/** How long a test pause waits for its SIGUSR2 at most (MKPI_TEST_PAUSE_MAX_MS overrides). */
const DEFAULT_MAX_PAUSE_MS = 120_000;

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
  const pauseAt = new Set(
    (env.MKPI_TEST_PAUSE ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean),
  );
  if (!killAt && pauseAt.size === 0) return undefined;
  // A stray variable in a scheduler's environment must never go unnoticed.
  writeSync(
    2,
    `musickpi: WARNING: test hooks are active (${[killAt && `MKPI_TEST_FAULT=${killAt}`, pauseAt.size > 0 && `MKPI_TEST_PAUSE=${[...pauseAt].join(',')}`].filter(Boolean).join(' ')}); ` +
      'this run will kill or pause itself on purpose. Unset these variables outside tests.\n',
  );
  const maxPauseMs = Number(env.MKPI_TEST_PAUSE_MAX_MS) > 0 ? Number(env.MKPI_TEST_PAUSE_MAX_MS) : DEFAULT_MAX_PAUSE_MS;
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
        // Bounded: a pause nobody resumes ends by itself.
        const bound = setTimeout(() => {
          writeSync(2, `MKPI_TEST_PAUSE ${point}: nobody resumed within ${maxPauseMs} ms; going on\n`);
          done();
        }, maxPauseMs);
        const done = () => {
          clearTimeout(bound);
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

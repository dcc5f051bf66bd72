// Memory measured where nothing else runs: the work goes to a fresh node process started with
// --expose-gc (memory-child.ts), which forces a full GC before each reading. What is measured is
// then live memory (heap + external buffers), not the garbage that happens to be uncollected in
// a mocha process busy with other suites — the part that made peak-sampling tests flaky.

import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..', '..');
const CHILD = join(import.meta.dirname, 'memory-child.ts');

/** Handed to the work as its last argument. */
export interface MemoryProbe {
  /** Takes a reading now (a full GC, then heapUsed + external). */
  sample(): void;
}

export interface MeasuredRun<T> {
  /** What the work returned (through JSON). */
  result: T;
  /** Live bytes (heapUsed + external after a full GC) before the work started. */
  baseline: number;
  /** The most live bytes seen while the work ran, over the baseline. */
  peakGrowth: number;
  /** Live bytes once the work has finished, over the baseline. */
  retainedGrowth: number;
  /** Readings taken. */
  samples: number;
}

export interface ChildMessage {
  ok: boolean;
  error?: string;
  run?: MeasuredRun<unknown>;
}

/**
 * Calls `fn`, exported by the module at `modulePath`, as fn(...args, probe) in a fresh process,
 * reading live memory every `sampleMs` and whenever the work calls probe.sample().
 */
export function measureInChild<T>(
  modulePath: string,
  fn: string,
  args: unknown[],
  opts: { sampleMs?: number; timeoutMs?: number } = {},
): Promise<MeasuredRun<T>> {
  const spec = JSON.stringify({ modulePath, fn, args, sampleMs: opts.sampleMs ?? 20 });
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD, spec], {
    cwd: REPO,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise<MeasuredRun<T>>((resolvePromise, reject) => {
    let message: ChildMessage | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('message', (m: ChildMessage) => (message = m));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (message?.ok) resolvePromise(message.run as MeasuredRun<T>);
      else reject(new Error(`${fn} in a child process failed (${code ?? signal}): ${message?.error ?? 'no report'}`));
    });
  });
}

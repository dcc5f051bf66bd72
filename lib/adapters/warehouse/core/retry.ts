// Trying a connection again after a failure that may heal by itself (a server restarting, a
// proxy coming up): exponential backoff with jitter, within a bound on the total time, so that
// a run started during a short outage loads instead of exiting, and a long outage still ends.

/** Time as the retry loop sees it: the real one, or a fake one in tests. */
export interface RetryClock {
  now(): number;
  /** Resolves after `ms`, or early (without rejecting) once `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** In [0, 1). */
  random(): number;
}

export const REAL_CLOCK: RetryClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
  random: () => Math.random(),
};

/** Told before each wait. */
export interface RetryNotice {
  /** Attempts made so far (the failed one included). */
  attempt: number;
  /** How long until the next attempt. */
  delayMs: number;
  /** Since the first attempt started. */
  elapsedMs: number;
  error: unknown;
}

export interface RetryOptions {
  /** Time after the first attempt within which further attempts may start; 0 = a single attempt. */
  totalMs: number;
  /** Which failures are worth another attempt. */
  isTransient: (err: unknown) => boolean;
  /** Maps the failure that ends the loop (transient or not) to what is thrown. */
  giveUp: (err: unknown, attempts: number, elapsedMs: number) => unknown;
  onRetry?: (notice: RetryNotice) => void;
  /** Aborting stops the loop at its next wait (closing the warehouse, an interrupted run). */
  signal?: AbortSignal;
  clock?: RetryClock;
}

const FIRST_DELAY_MS = 200;
const MAX_DELAY_MS = 5_000;

/**
 * The wait after the n-th failed attempt: doubling from 200 ms up to 5 s, each drawn between
 * half and all of that so that clients failing together do not retry together.
 */
export function backoffDelay(failedAttempts: number, random: number): number {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, failedAttempts - 1));
  return Math.round(ceiling * (0.5 + 0.5 * random));
}

export async function withRetry<T>(attempt: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const clock = opts.clock ?? REAL_CLOCK;
  const start = clock.now();
  const deadline = start + Math.max(0, opts.totalMs);
  for (let attempts = 1; ; attempts++) {
    try {
      return await attempt();
    } catch (err) {
      const now = clock.now();
      if (!opts.isTransient(err) || now >= deadline || opts.signal?.aborted) throw opts.giveUp(err, attempts, now - start);
      // The last wait is cut short so that one attempt still happens at the deadline.
      const delayMs = Math.min(backoffDelay(attempts, clock.random()), deadline - now);
      opts.onRetry?.({ attempt: attempts, delayMs, elapsedMs: now - start, error: err });
      await clock.sleep(delayMs, opts.signal);
      if (opts.signal?.aborted) throw opts.giveUp(err, attempts, clock.now() - start);
    }
  }
}

// The process measureInChild (memory.ts) starts, with --expose-gc: runs one function and reports
// its result and live-memory readings on the IPC channel.

import { pathToFileURL } from 'node:url';

import type { ChildMessage, MemoryProbe } from './memory.js';

const spec = JSON.parse(process.argv[2]) as { modulePath: string; fn: string; args: unknown[]; sampleMs: number };
const gc = (globalThis as { gc?: () => void }).gc;

const report = (m: ChildMessage) => process.send!(m, undefined, {}, () => process.exit(m.ok ? 0 : 1));

try {
  if (!gc) throw new Error('started without --expose-gc');
  const live = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const mod = (await import(pathToFileURL(spec.modulePath).href)) as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const work = mod[spec.fn];
  if (typeof work !== 'function') throw new Error(`${spec.modulePath} exports no function ${spec.fn}`);
  const baseline = live();
  let peak = baseline;
  let samples = 0;
  const probe: MemoryProbe = {
    sample() {
      samples++;
      peak = Math.max(peak, live());
    },
  };
  const timer = setInterval(() => probe.sample(), spec.sampleMs);
  let result: unknown;
  try {
    result = await work(...spec.args, probe);
  } finally {
    clearInterval(timer);
  }
  const retained = live();
  peak = Math.max(peak, retained);
  report({ ok: true, run: { result, baseline, peakGrowth: peak - baseline, retainedGrowth: retained - baseline, samples } });
} catch (err) {
  report({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
}

// What the hostile suite's memory tests run in a process of their own (measureInChild): a
// validate of a local lake through the library, with a memory reading at every pipeline event
// (the last progress event comes while the per-hour state is still alive).

import { LocalLake } from '../../lib/adapters/lake/local.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { runPipeline } from '../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import type { MemoryProbe } from '../support/memory.js';

export function validateLake(dir: string, runId: string, rejectsKey: string | null, probe: MemoryProbe): Promise<RunReport> {
  return runPipeline({
    command: 'validate',
    lake: new LocalLake(dir),
    layout: DEFAULT_LAYOUT,
    runId,
    rejectsKey,
    maxBadRows: Infinity,
    onEvent: () => probe.sample(),
  });
}

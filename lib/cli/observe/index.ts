// The observers a configuration asks for. Only the pipeline commands are observed: a DAG-wide
// OPENLINEAGE_URL or GITHUB_STEP_SUMMARY must not turn `query` or `status` into lineage runs.

import { createRequire } from 'node:module';
import type { Config } from '../config.js';
import type { RunObserver } from './observer.js';
import type * as OpenLineage from './openlineage.js';
import type * as Metrics from './metrics.js';
import type * as StepSummary from './step-summary.js';
import { isPipelineCommand } from './report-view.js';

// Each observer's module is loaded only when the configuration asks for it: a run observed by
// nobody does not load the lineage, metrics and summary code (and node:http/https) at start-up.
// require() rather than import(), as for the lazily loaded adapters: the same module cache.
const load = createRequire(import.meta.url);

export function runObservers(config: Readonly<Config>, warn: (message: string) => void): RunObserver[] {
  if (!isPipelineCommand(config.command)) return [];
  const o = config.observe;
  const observers: RunObserver[] = [];
  if (o.openlineage.url || o.openlineage.file)
    observers.push((load('./openlineage.js') as typeof OpenLineage).openLineageObserver(config, warn));
  if (o.metricsFile || o.pushgateway) observers.push((load('./metrics.js') as typeof Metrics).metricsObserver(config, warn));
  if (o.githubStepSummary) observers.push((load('./step-summary.js') as typeof StepSummary).stepSummaryObserver(config, warn));
  return observers;
}

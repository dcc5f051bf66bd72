// The observers a configuration asks for. Only the pipeline commands are observed: a DAG-wide
// OPENLINEAGE_URL or GITHUB_STEP_SUMMARY must not turn `query` or `status` into lineage runs.

import type { Config } from '../config.js';
import type { RunObserver } from './observer.js';
import { openLineageObserver } from './openlineage.js';
import { metricsObserver } from './metrics.js';
import { stepSummaryObserver } from './step-summary.js';
import { isPipelineCommand } from './report-view.js';

export function runObservers(config: Readonly<Config>, warn: (message: string) => void): RunObserver[] {
  if (!isPipelineCommand(config.command)) return [];
  const o = config.observe;
  const observers: RunObserver[] = [];
  if (o.openlineage.url || o.openlineage.file) observers.push(openLineageObserver(config, warn));
  if (o.metricsFile || o.pushgateway) observers.push(metricsObserver(config, warn));
  if (o.githubStepSummary) observers.push(stepSummaryObserver(config, warn));
  return observers;
}

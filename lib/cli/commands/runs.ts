// `musickpi runs`: the run history of the warehouse (musickpi_runs), newest first, as an aligned
// table or, with --json, one array on one line.

import type { RunRecord, RunStatus } from '../../domain/warehouse.js';
import { commandModule } from '../execute.js';
import { table } from '../output.js';

export const DEFAULT_RUNS_LIMIT = 20;

/** --limit and --status from the configuration's `runs` section; without it, the defaults. */
export function runsOptions(config: object): { limit: number; status: RunStatus | undefined } {
  const section: unknown = 'runs' in config ? config.runs : undefined;
  if (typeof section !== 'object' || section === null) return { limit: DEFAULT_RUNS_LIMIT, status: undefined };
  const limit = 'limit' in section && typeof section.limit === 'number' ? section.limit : DEFAULT_RUNS_LIMIT;
  const status = 'status' in section && (section.status === 'ok' || section.status === 'failed') ? section.status : undefined;
  return { limit, status };
}

/** 2024-06-01T10:05:00.123Z → 2024-06-01 10:05:00 (UTC, as every time musickpi prints). */
function when(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}

function took(r: RunRecord): string {
  const ms = Date.parse(r.finishedAt) - Date.parse(r.startedAt);
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : '';
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);

export const RUNS_COLUMNS = [
  'run id',
  'command',
  'started (UTC)',
  'took',
  'status',
  'exit',
  'error',
  'rows read',
  'complete',
  'rejected',
  'hourly',
  'genre',
  'files',
  'archived',
];

export function runsText(runs: RunRecord[], warehouse: string): string {
  const rows = runs.map((r) => [
    r.runId,
    r.dryRun ? `${r.command} --dry-run` : r.command,
    when(r.startedAt),
    took(r),
    r.status,
    r.exitCode,
    r.errorCode ?? '',
    r.rowsRead,
    r.completeRows,
    sum(r.rejects),
    r.hourlyRowsWritten,
    r.genreRowsWritten,
    r.filesLoaded,
    r.filesArchived,
  ]);
  return `musickpi runs   warehouse ${warehouse}\n` + table(RUNS_COLUMNS, rows);
}

export const command = commandModule({
  command: 'runs',
  describe: 'list the run history kept in the warehouse (musickpi_runs), newest first',
  examples: [
    ['$0 runs', 'the last 20 runs'],
    ['$0 runs --status failed --limit 5 --json', 'the last 5 failed runs, as one JSON array'],
  ],
  async run(rt) {
    const warehouse = await rt.warehouse();
    const runs = await warehouse.listRuns(runsOptions(rt.config));
    return { json: runs, text: runsText(runs, warehouse.description) };
  },
});

// One run-history row, for tests of recordRun / listRuns and what shows them.

import type { RunRecord } from '../../../lib/domain/warehouse.js';

export function sampleRun(over: Partial<RunRecord> = {}): RunRecord {
  return {
    runId: '20240601T100000Z-abcdef',
    command: 'run',
    startedAt: '2024-06-01T10:00:00.000Z',
    finishedAt: '2024-06-01T10:00:02.500Z',
    status: 'ok',
    exitCode: 0,
    errorCode: null,
    errorMessage: null,
    errorStage: null,
    dryRun: false,
    lake: '/data/lake',
    rowsRead: 12,
    completeRows: 10,
    rejects: { malformed: 1, unknown_user: 1 },
    hourlyRowsWritten: 3,
    genreRowsWritten: 4,
    datesRecomputed: { hourly: ['2024-06-01'], genre: ['2024-06-01'] },
    filesLoaded: 2,
    filesArchived: 2,
    timings: { list: 3, total: 2500 },
    version: '0.1.0',
    airflowDagId: null,
    airflowTaskId: null,
    airflowRunId: null,
    airflowTryNumber: null,
    ...over,
  };
}

// The run history without a server: the row mapping both dialects share (core/runs.ts), the
// memory warehouse's listRuns, and the CLI recording a run after the pipeline (pipeline-command.ts)
// — a history that cannot be written is a warning, never a changed load or exit status.
import assert from 'node:assert/strict';
import { LocalLake } from '../../../lib/adapters/lake/local.js';
import {
  insertRunSql,
  listRunsQuery,
  runFromRow,
  runValues,
  RUN_COLUMNS,
  truncateBytes,
} from '../../../lib/adapters/warehouse/core/runs.js';
import { resolveConfig } from '../../../lib/cli/config.js';
import { pipelineCommand, runRecordOf } from '../../../lib/cli/commands/pipeline-command.js';
import { runsOptions, runsText } from '../../../lib/cli/commands/runs.js';
import type { Progress } from '../../../lib/cli/progress.js';
import type { Runtime } from '../../../lib/cli/runtime.js';
import { MkpiError } from '../../../lib/domain/errors.js';
import type { Warehouse } from '../../../lib/domain/warehouse.js';
import { newReport, type RunReport } from '../../../lib/pipeline/report.js';
import { copyLake } from '../../support/cli.js';
import { MemoryWarehouse } from '../../support/fakes/memory-warehouse.js';
import { sampleRun } from '../../support/fakes/sample-run.js';

describe('run history: rows (core/runs.ts)', () => {
  it('a record survives the trip to a row and back, JSON columns parsed', () => {
    const r = sampleRun({ airflowDagId: 'kpis', airflowTaskId: 'load', airflowRunId: 'manual__1', airflowTryNumber: 2 });
    const values = runValues(r);
    assert.equal(values.length, RUN_COLUMNS.length);
    const row = Object.fromEntries(RUN_COLUMNS.map(([name], i) => [name, values[i]]));
    // The server hands timestamps back as Dates.
    row.started_at = new Date(String(row.started_at));
    row.finished_at = new Date(String(row.finished_at));
    assert.deepEqual(runFromRow(row), r);
  });

  it('long strings are cut to their width in bytes, between characters; huge date lists stay JSON', () => {
    assert.equal(truncateBytes('abc', 3), 'abc');
    const cut = truncateBytes('é'.repeat(3000), 4096);
    assert.ok(Buffer.byteLength(cut) <= 4096);
    assert.ok(cut.endsWith('…'));
    assert.ok(!cut.includes('\ufffd'));
    const many = Array.from({ length: 9000 }, (_, i) => new Date(Date.UTC(2000, 0, 1) + i * 86_400_000).toISOString().slice(0, 10));
    const values = runValues(sampleRun({ errorMessage: '😀'.repeat(2000), datesRecomputed: { hourly: many, genre: many } }));
    const at = (name: string) => values[RUN_COLUMNS.findIndex(([n]) => n === name)] as string;
    assert.ok(Buffer.byteLength(at('error_message')) <= 4096);
    assert.ok(Buffer.byteLength(at('dates_recomputed')) <= 65535);
    const dates = JSON.parse(at('dates_recomputed')) as { hourly: string[]; truncated: boolean };
    assert.equal(dates.truncated, true);
    assert.deepEqual(dates.hourly.slice(0, 2), many.slice(0, 2));
  });

  it('the SQL is plain: no PostgreSQL-only construct, the limit a checked integer', () => {
    const q = listRunsQuery('"s"', { limit: 5, status: 'failed' });
    assert.match(q.text, /WHERE status = \$1 ORDER BY started_at DESC, run_id DESC LIMIT 5$/);
    assert.deepEqual(q.values, ['failed']);
    for (const sql of [q.text, insertRunSql('"s"')]) {
      assert.doesNotMatch(sql, /ON CONFLICT|RETURNING|unnest|::|now\(\)|CURRENT_TIMESTAMP|format\(/i);
    }
    assert.throws(
      () => listRunsQuery('"s"', { limit: 0 }),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_USAGE',
    );
    assert.throws(
      () => listRunsQuery('"s"', { limit: 1.5 }),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_USAGE',
    );
  });
});

describe('run history: the memory warehouse', () => {
  it('lists newest first, filtered by status, limited; before init records nothing (MKPI_CONFIG) and lists nothing', async () => {
    const wh = new MemoryWarehouse();
    assert.deepEqual(await wh.listRuns({ limit: 10 }), []);
    await assert.rejects(wh.recordRun(sampleRun()), (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG');
    await wh.init();
    await wh.recordRun(sampleRun({ runId: 'b', startedAt: '2024-06-02T00:00:00.000Z' }));
    await wh.recordRun(sampleRun({ runId: 'a', startedAt: '2024-06-01T00:00:00.000Z', status: 'failed', exitCode: 65 }));
    await wh.recordRun(sampleRun({ runId: 'c', startedAt: '2024-06-03T00:00:00.000Z' }));
    await wh.recordRun(sampleRun({ runId: 'd', startedAt: '2024-06-03T00:00:00.000Z', status: 'failed', exitCode: 75 }));
    const ids = async (o: Parameters<Warehouse['listRuns']>[0]) => (await wh.listRuns(o)).map((r) => r.runId);
    assert.deepEqual(await ids({ limit: 10 }), ['d', 'c', 'b', 'a']);
    assert.deepEqual(await ids({ limit: 2 }), ['d', 'c']);
    assert.deepEqual(await ids({ limit: 10, status: 'failed' }), ['d', 'a']);
    assert.deepEqual(await ids({ limit: 10, status: 'ok' }), ['c', 'b']);
  });
});

describe('musickpi runs: options and table', () => {
  it('takes limit and status from the runs section, 20 and every status without it', () => {
    assert.deepEqual(runsOptions({}), { limit: 20, status: undefined });
    assert.deepEqual(runsOptions({ runs: undefined }), { limit: 20, status: undefined });
    assert.deepEqual(runsOptions({ runs: { limit: 3, status: 'failed' } }), { limit: 3, status: 'failed' });
  });

  it('prints one aligned line per run, the dry and failed ones marked', () => {
    const text = runsText(
      [
        sampleRun({ runId: 'r2', dryRun: true, startedAt: '2024-06-02T08:00:00.000Z', finishedAt: '2024-06-02T08:00:01.000Z' }),
        sampleRun({ runId: 'r1', status: 'failed', exitCode: 65, errorCode: 'MKPI_SCHEMA' }),
      ],
      'memory://warehouse',
    );
    const lines = text.split('\n');
    assert.equal(lines[0], 'musickpi runs   warehouse memory://warehouse');
    assert.match(lines[1], /^run id\s+command\s+started \(UTC\)\s+took\s+status\s+exit\s+error\s+rows read/);
    assert.match(lines[3], /^r2\s+run --dry-run\s+2024-06-02 08:00:00\s+1\.0 s\s+ok\s+0\s+12\s+10\s+2\s+3\s+4\s+2\s+2$/);
    assert.match(lines[4], /^r1\s+run\s+2024-06-01 10:00:00\s+2\.5 s\s+failed\s+65\s+MKPI_SCHEMA\s+12/);
    assert.equal(lines[5], '(2 rows)');
  });
});

describe('run history: recorded by the CLI after the pipeline', function () {
  this.timeout(30_000);
  const silent: Progress = { event() {}, log() {}, warn() {}, debug() {}, stop() {} };

  function runtime(lake: string, wh: Warehouse | (() => Promise<Warehouse>), extra: Record<string, unknown> = {}, env = {}) {
    const warnings: string[] = [];
    const config = resolveConfig('run', { lake, workers: 0, ...extra }, { env: { HOME: '/nonexistent', ...env } });
    const local = new LocalLake(lake);
    const rt: Runtime = {
      config,
      runId: '20240601T000000Z-test01',
      signal: new AbortController().signal,
      progress: { ...silent, warn: (m) => warnings.push(m) },
      interruptedBy: () => undefined,
      lake: () => local,
      warehouse: typeof wh === 'function' ? wh : async () => wh,
      onClose: () => undefined,
      fault: undefined,
    };
    return { rt, warnings };
  }

  it('a run is recorded with its counts, version and Airflow context', async () => {
    const wh = new MemoryWarehouse();
    const env = {
      AIRFLOW_CTX_DAG_ID: 'kpis',
      AIRFLOW_CTX_TASK_ID: 'load',
      AIRFLOW_CTX_DAG_RUN_ID: 'scheduled__x',
      AIRFLOW_CTX_TRY_NUMBER: '3',
    };
    const { rt, warnings } = runtime(copyLake('tiny'), wh, {}, env);
    const out = await pipelineCommand('run', rt);
    const report = out.json as RunReport;
    assert.equal(out.error, undefined, JSON.stringify(report.error));
    assert.equal(report.history, 'recorded');
    assert.deepEqual(warnings, []);
    const [r] = wh.runs;
    assert.equal(r.runId, rt.runId);
    assert.equal(r.status, 'ok');
    assert.equal(r.exitCode, 0);
    assert.equal(r.rowsRead, report.totals.rowsRead);
    assert.equal(r.filesLoaded, 2);
    assert.equal(r.filesArchived, 2);
    assert.equal(r.hourlyRowsWritten, report.rowsWritten.hourly_kpis);
    assert.deepEqual(r.datesRecomputed, report.datesRecomputed);
    assert.match(r.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual([r.airflowDagId, r.airflowTaskId, r.airflowRunId, r.airflowTryNumber], ['kpis', 'load', 'scheduled__x', 3]);
    assert.ok(Date.parse(r.finishedAt) >= Date.parse(r.startedAt));
  });

  it('a fault while recording leaves the load committed and the outcome unchanged, with a warning', async () => {
    const wh = new MemoryWarehouse().failAt('recordRun', { error: new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', 'connection reset') });
    const { rt, warnings } = runtime(copyLake('tiny'), wh);
    const out = await pipelineCommand('run', rt);
    const report = out.json as RunReport;
    assert.equal(out.error, undefined);
    assert.equal(report.ok, true);
    assert.equal(report.loaded, true);
    assert.equal(wh.committedBatches.length, 1);
    assert.ok(wh.snapshot().hourly.length > 0);
    assert.equal(report.history, 'not recorded: connection reset');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /not in the run history: connection reset/);
    assert.ok(report.warnings.includes(warnings[0]));
    assert.deepEqual(wh.runs, []);
  });

  it('a failed run is recorded with its exit code and error; a dry run on a fresh warehouse records nothing', async () => {
    const wh = new MemoryWarehouse();
    await wh.init();
    const { rt } = runtime(copyLake('tiny'), wh, { 'max-bad-rows': 0, songs: 'missing.csv' });
    const out = await pipelineCommand('run', rt);
    const [r] = wh.runs;
    assert.equal(r.status, 'failed');
    assert.equal(r.errorCode, out.error?.code);
    assert.equal(r.exitCode, 66);
    const fresh = new MemoryWarehouse();
    const dry = runtime(copyLake('tiny'), fresh, { 'dry-run': true });
    const report = (await pipelineCommand('run', dry.rt)).json as RunReport;
    assert.match(report.history ?? '', /^not recorded: .*dry run creates nothing/);
    assert.deepEqual(dry.warnings, []);
  });

  it('a warehouse that cannot be opened records nothing and says so', async () => {
    const { rt } = runtime(copyLake('tiny'), () => Promise.reject(new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', 'refused')));
    const report = (await pipelineCommand('run', rt)).json as RunReport;
    assert.equal(report.history, 'not recorded: the warehouse could not be opened (MKPI_WAREHOUSE_UNAVAILABLE)');
  });

  it('runRecordOf counts no file as loaded when nothing committed', () => {
    const report = newReport('run', 'x', '/l', ['hourly', 'genre'], false);
    report.files.push({ name: 'a.csv', bytes: 1, rows: 1, complete: 1, rejected: report.totals.rejected, dates: [], status: 'read' });
    const at = { startedAt: new Date(0), finishedAt: new Date(1000), exitCode: 69, version: '1.0.0', airflow: undefined };
    assert.equal(runRecordOf(report, at).filesLoaded, 0);
    assert.equal(runRecordOf(report, at).status, 'failed');
    report.loaded = true;
    assert.equal(runRecordOf(report, at).filesLoaded, 1);
  });
});

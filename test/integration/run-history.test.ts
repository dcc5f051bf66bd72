// The run history (musickpi_runs) on a real PostgreSQL and through the strict Redshift stand-in:
// created by init(), added in place to a schema from before it, written and read back exactly,
// newest first, filtered; nothing created by recording or listing.
import assert from 'node:assert/strict';
import pg from 'pg';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { RedshiftWarehouse } from '../../lib/adapters/warehouse/redshift/redshift-warehouse.js';
import { MkpiError } from '../../lib/domain/errors.js';
import type { RunRecord, Warehouse } from '../../lib/domain/warehouse.js';
import { freshDatabase, testDatabaseUrl } from '../support/pg.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';
import { sampleRun as baseRun } from '../support/fakes/sample-run.js';

const sampleRun = (over: Partial<RunRecord> = {}): RunRecord => baseRun({ runId: 'r', ...over });

async function exec(config: string | pg.ClientConfig, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** What both dialects must do with the history, on a fresh database. */
async function historyContract(wh: Warehouse): Promise<void> {
  assert.deepEqual(await wh.listRuns({ limit: 5 }), [], 'no schema: no runs, nothing created');
  await assert.rejects(wh.recordRun(sampleRun()), (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG');
  assert.equal(await wh.isInitialised(), false, 'recording created nothing');
  await wh.init();
  const ok = sampleRun({
    runId: 'r-ok',
    startedAt: '2024-06-02T10:00:00.123Z',
    finishedAt: '2024-06-02T10:00:03.456Z',
    lake: 's3://bucket/ünïcode/lake',
    airflowDagId: 'kpis',
    airflowTaskId: 'load',
    airflowRunId: 'scheduled__2024-06-02',
    airflowTryNumber: 2,
  });
  const failed = sampleRun({
    runId: 'r-failed',
    startedAt: '2024-06-01T10:00:00.000Z',
    finishedAt: '2024-06-01T10:00:01.000Z',
    status: 'failed',
    exitCode: 65,
    errorCode: 'MKPI_SCHEMA',
    errorMessage: `streams/z.csv: missing column listen_time ${'é'.repeat(3000)}`,
    errorStage: 'streams',
    filesLoaded: 0,
  });
  const dry = sampleRun({ runId: 'r-dry', startedAt: '2024-06-03T10:00:00.000Z', finishedAt: '2024-06-03T10:00:00.500Z', dryRun: true });
  for (const r of [ok, failed, dry]) await wh.recordRun(r);
  const all = await wh.listRuns({ limit: 10 });
  assert.deepEqual(
    all.map((r) => r.runId),
    ['r-dry', 'r-ok', 'r-failed'],
  );
  assert.deepEqual(all[1], ok);
  const back = all[2];
  assert.ok(Buffer.byteLength(back.errorMessage ?? '') <= 4096);
  assert.ok(back.errorMessage?.startsWith('streams/z.csv: missing column listen_time é'));
  assert.ok(back.errorMessage?.endsWith('…'));
  assert.deepEqual({ ...back, errorMessage: null }, { ...failed, errorMessage: null });
  assert.deepEqual(
    (await wh.listRuns({ limit: 10, status: 'failed' })).map((r) => r.runId),
    ['r-failed'],
  );
  assert.deepEqual(
    (await wh.listRuns({ limit: 1, status: 'ok' })).map((r) => r.runId),
    ['r-dry'],
  );
  await wh.init();
  assert.equal((await wh.listRuns({ limit: 10 })).length, 3, 'init again keeps the history');
}

describe('run history on PostgreSQL', function () {
  this.timeout(60_000);
  const open: Warehouse[] = [];
  afterEach(async () => {
    for (const w of open.splice(0)) await w.close();
  });

  it('init creates it; runs are recorded, read back exactly, newest first and filtered', async () => {
    const wh = new PostgresWarehouse(await freshDatabase('runs_pg'), { schema: 'reporting_schema' });
    open.push(wh);
    await historyContract(wh);
  });

  it('a schema from before the history gets the table from init, with its ledger untouched', async () => {
    const url = await freshDatabase('runs_upgrade');
    const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    open.push(wh);
    await wh.init();
    await exec(
      url,
      `INSERT INTO reporting_schema.musickpi_ledger (file_key, fingerprint, size, rows, run_id, loaded_at)
                     VALUES ('streams/a.csv', 'f', 1, 1, 'old', now())`,
    );
    await exec(url, 'DROP TABLE reporting_schema.musickpi_runs');
    assert.equal(await wh.isInitialised(), true, 'an older schema still counts as initialised');
    await assert.rejects(wh.recordRun(sampleRun()), (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG');
    await wh.init();
    await wh.recordRun(sampleRun());
    assert.equal((await wh.listRuns({ limit: 5 })).length, 1);
    assert.equal((await wh.readLedger()).length, 1);
  });

  it('a table of that name with other columns is refused by init (MKPI_CONFIG)', async () => {
    const url = await freshDatabase('runs_foreign');
    await exec(url, 'CREATE SCHEMA reporting_schema; CREATE TABLE reporting_schema.musickpi_runs (id INT)');
    const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    open.push(wh);
    await assert.rejects(wh.init(), (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG' && /musickpi_runs/.test(e.message));
  });
});

describe('run history through the Redshift stand-in', function () {
  this.timeout(120_000);
  let s3: TestS3;
  let rs: RedshiftStandIn;
  before(async () => {
    s3 = await startS3();
    await s3.bucket('runs-stage');
    rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
  });
  after(async () => {
    await rs?.stop();
    await s3?.stop();
  });

  it('the same contract, with no statement refused, and the table as Redshift would have it', async () => {
    const url = await freshDatabase('runs_rs');
    const db = new URL(url).pathname.slice(1);
    const refused = rs.refused.length;
    const wh = new RedshiftWarehouse(rs.url(db), {
      schema: 'reporting_schema',
      staging: { uri: 's3://runs-stage/st/', s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } },
      iamRole: 'arn:aws:iam::123456789012:role/musickpi-copy',
      env: { PGPASSWORD: rs.password },
      runId: 'r-rs',
    });
    try {
      await historyContract(wh);
    } finally {
      await wh.close();
    }
    assert.deepEqual(rs.refused.slice(refused), [], 'statements the stand-in refused');
    const cols = await exec(
      url,
      `SELECT column_name, data_type, character_maximum_length FROM information_schema.columns
        WHERE table_schema = 'reporting_schema' AND table_name = 'musickpi_runs' AND data_type = 'text'`,
    );
    assert.deepEqual(cols.rows, [], 'no TEXT column (Redshift would make it VARCHAR(256))');
  });
});

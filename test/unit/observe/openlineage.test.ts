// The OpenLineage client: events START then COMPLETE / FAIL / ABORT over HTTP and to a file,
// every one checked against the spec's required fields and types; dataset names; parent runs;
// and a lineage failure is one warning, never a thrown error.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runObservers } from '../../../lib/cli/observe/index.js';
import {
  endEvent,
  httpTransport,
  lineageContext,
  openLineageObserver,
  startEvent,
  type RunEvent,
} from '../../../lib/cli/observe/openlineage.js';
import { lakeNamer, warehouseNamespace } from '../../../lib/cli/observe/dataset-names.js';
import { airflowTaskRunId, lineageRunId, logicalDateOfDagRunId, pythonUtcInstant } from '../../../lib/cli/observe/uuid.js';
import { musickpiVersion } from '../../../lib/cli/observe/producer.js';
import { BAD_ROWS, config, end, failed, report, RUN_ID, start } from './fixtures.js';
import { allFacets, captureServer, closedPort, expectValidEvent, type Capture } from './helpers.js';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mkpi-ol-'));
  temps.push(d);
  return d;
}

function warnings() {
  const said: string[] = [];
  return { said, warn: (m: string) => void said.push(m) };
}

const byName = <T extends { name: string }>(datasets: T[], suffix: string) => datasets.find((d) => d.name.endsWith(suffix));

describe('observe: OpenLineage events', () => {
  let cap: Capture;
  beforeEach(async () => {
    cap = await captureServer();
  });
  afterEach(() => cap.close());

  it('a successful run: START then COMPLETE to /api/v1/lineage, one run id, with the bearer key', async () => {
    const c = config('run', { OPENLINEAGE_URL: cap.url + '/', OPENLINEAGE_API_KEY: 'k-123' });
    const { said, warn } = warnings();
    const observers = runObservers(c, warn);
    expect(observers.map((o) => o.name)).to.deep.equal(['openlineage']);
    const s = start(c);
    await observers[0].start(s);
    await observers[0].finish(end(s, 0, report()));
    expect(said).to.deep.equal([]);
    expect(cap.requests.map((r) => [r.method, r.url])).to.deep.equal([
      ['POST', '/api/v1/lineage'],
      ['POST', '/api/v1/lineage'],
    ]);
    for (const r of cap.requests) {
      expect(r.headers.authorization).to.equal('Bearer k-123');
      expect(r.headers['content-type']).to.equal('application/json');
    }
    const [st, done] = cap.events() as RunEvent[];
    for (const e of [st, done]) {
      expectValidEvent(e);
      for (const f of allFacets(e)) expect(f._producer).to.equal(`https://github.com/musickpi/musickpi/tree/v${musickpiVersion()}`);
    }
    expect([st.eventType, done.eventType]).to.deep.equal(['START', 'COMPLETE']);
    expect(st.run.runId).to.equal(done.run.runId).and.to.equal(lineageRunId(RUN_ID, s.startedAt));
    expect(st.eventTime).to.equal('2024-06-02T03:00:00.000Z');
    expect(done.eventTime).to.equal('2024-06-02T03:00:12.500Z');
    expect(st.job).to.deep.include({ namespace: 'musickpi', name: 'musickpi.run' });
    expect(st.job.facets.jobType).to.include({ processingType: 'BATCH', integration: 'MUSICKPI' });
    expect(done.run.facets.musickpi_run).to.include({ runId: RUN_ID, command: 'run', exitCode: 0, ok: true });
    expect(done.run.facets).not.to.have.property('errorMessage');

    // START knows the dimensions; COMPLETE also each stream file read and the tables written.
    expect(st.inputs.map((d) => d.name)).to.deep.equal(['/data/lake/songs.csv', '/data/lake/users.csv']);
    expect(st.outputs).to.deep.equal([]);
    expect(done.inputs.map((d) => [d.namespace, d.name])).to.deep.equal([
      ['file', '/data/lake/songs.csv'],
      ['file', '/data/lake/users.csv'],
      ['file', '/data/lake/streams/a.csv'],
      ['file', '/data/lake/streams/b.csv'],
      ['file', '/data/lake/streams/archived/late.csv'],
    ]);
    const b = byName(done.inputs, 'streams/b.csv')!;
    expect((b.facets!.schema.fields as { name: string }[]).map((f) => f.name)).to.deep.equal(['user_id', 'track_id', 'listen_time']);
    expect(b.inputFacets!.dataQualityMetrics).to.include({ rowCount: 6, bytes: 113, fileCount: 1 });
    expect(b.inputFacets!.inputStatistics).to.include({ rowCount: 6, size: 113, fileCount: 1 });
    expect(b.inputFacets!.musickpi_rejects).to.deep.include({ rowsRead: 6, completeRows: 3 });
    expect(b.inputFacets!.musickpi_rejects.rejected).to.deep.equal({
      malformed: 2,
      missing_user_id: 0,
      missing_track_id: 0,
      bad_listen_time: 0,
      unknown_track: 1,
      unknown_user: 0,
    });
    const songs = byName(done.inputs, 'songs.csv')!;
    expect(songs.inputFacets!.musickpi_rejects).to.deep.include({ rowsRead: 5, validRows: 4, duplicateRows: 1 });
    // A file re-read for a late date was read, but not counted as new input.
    const late = byName(done.inputs, 'late.csv')!;
    expect(late.inputFacets!.inputStatistics).to.include({ rowCount: 2 });
    expect(late.inputFacets).not.to.have.property('musickpi_rejects');

    expect(done.outputs.map((d) => [d.namespace, d.name, d.outputFacets!.outputStatistics.rowCount])).to.deep.equal([
      ['postgres://db.example.com:5433', 'analytics.reporting_schema.hourly_kpis', 5],
      ['postgres://db.example.com:5433', 'analytics.reporting_schema.genre_level_kpis', 3],
    ]);
    const hourly = done.outputs[0].facets!.schema.fields as { name: string; type: string; ordinal_position: number }[];
    expect(hourly.map((f) => f.name)).to.deep.equal([
      'listen_date',
      'listen_hour',
      'unique_listeners',
      'listen_counts',
      'top_artist',
      'avg_sessions_per_user',
      'diversity_index',
      'most_engaged_age_group',
    ]);
    expect(hourly[0]).to.include({ type: 'DATE', ordinal_position: 1 });
    // The warehouse password never reaches an event.
    expect(cap.requests.map((r) => r.body).join('')).not.to.contain('s3cret');
  });

  it('a failed run: FAIL with the errorMessage facet and the MKPI code', async () => {
    const c = config('run', { OPENLINEAGE_URL: cap.url });
    const o = runObservers(c, () => undefined)[0];
    const s = start(c);
    await o.start(s);
    await o.finish(end(s, 65, failed(report(), BAD_ROWS), BAD_ROWS));
    const [, fail] = cap.events() as RunEvent[];
    expectValidEvent(fail);
    expect(fail.eventType).to.equal('FAIL');
    expect(fail.run.facets.errorMessage).to.include({
      message: 'MKPI_BAD_ROWS: 2 bad stream rows, more than --max-bad-rows 0',
      programmingLanguage: 'JavaScript',
    });
    expect(fail.run.facets.musickpi_run).to.deep.include({ exitCode: 65, ok: false });
    expect(fail.run.facets.musickpi_run.error).to.deep.equal({ code: 'MKPI_BAD_ROWS', stage: 'streams', hint: 'see the rejects file' });
    // Nothing was written: the tables are there, with 0 rows.
    expect(fail.outputs.map((d) => d.outputFacets!.outputStatistics.rowCount)).to.deep.equal([0, 0]);
  });

  it('an interrupted run (exit 130 or 143): ABORT', async () => {
    for (const code of [130, 143]) {
      const c = config('compute', { OPENLINEAGE_URL: cap.url });
      const o = runObservers(c, () => undefined)[0];
      const s = start(c);
      await o.start(s);
      const error = { code: 'MKPI_INTERRUPTED', message: 'stopped by a signal', hint: null, stage: 'streams' };
      await o.finish(end(s, code, failed(report('compute'), error), error));
    }
    const events = cap.events() as RunEvent[];
    events.forEach(expectValidEvent);
    expect(events.map((e) => e.eventType)).to.deep.equal(['START', 'ABORT', 'START', 'ABORT']);
    expect(events[1].run.facets.errorMessage.message).to.contain('MKPI_INTERRUPTED');
    expect(events[1].job.name).to.equal('musickpi.compute');
  });

  it('a failure before the report existed (no result) still ends the run', async () => {
    const c = config('run', { OPENLINEAGE_URL: cap.url });
    const o = runObservers(c, () => undefined)[0];
    const s = start(c);
    await o.start(s);
    const error = { code: 'MKPI_WAREHOUSE_UNAVAILABLE', message: 'no server', hint: null, stage: 'connect' };
    await o.finish(end(s, 69, { command: 'run', ok: false, error }, error));
    const [, fail] = cap.events() as RunEvent[];
    expectValidEvent(fail);
    expect(fail.eventType).to.equal('FAIL');
    expect(fail.outputs).to.deep.equal([]);
    expect(fail.inputs.map((d) => d.name)).to.deep.equal(['/data/lake/songs.csv', '/data/lake/users.csv']);
  });

  it('validate and dry runs write no table; archive reads and writes lake files', () => {
    const v = config('validate', { OPENLINEAGE_URL: cap.url });
    const rv = report('validate', { warehouse: null, rowsWritten: { hourly_kpis: 0, genre_level_kpis: 0 } });
    expect(
      endEvent(
        lineageContext(v, () => undefined),
        end(start(v), 0, rv),
      ).outputs,
    ).to.deep.equal([]);
    const d = config('run', { OPENLINEAGE_URL: cap.url });
    expect(
      endEvent(
        lineageContext(d, () => undefined),
        end(start(d), 0, report('run', { dryRun: true })),
      ).outputs,
    ).to.deep.equal([]);
    const a = config('archive', { OPENLINEAGE_URL: cap.url });
    const ra = report('archive', { archived: [{ from: 'streams/a.csv', to: 'streams/archived/a.csv', renamed: false }] });
    const ev = endEvent(
      lineageContext(a, () => undefined),
      end(start(a), 0, ra),
    );
    expectValidEvent(ev);
    expect(ev.inputs).to.deep.equal([{ namespace: 'file', name: '/data/lake/streams/a.csv' }]);
    expect(ev.outputs).to.deep.equal([{ namespace: 'file', name: '/data/lake/streams/archived/a.csv' }]);
    expect(
      startEvent(
        lineageContext(a, () => undefined),
        start(a),
      ).inputs,
    ).to.deep.equal([]);
  });

  it('the file transport appends one event per line; HTTP and file together both get every event', async () => {
    const dir = tmp();
    const file = join(dir, 'lineage.jsonl');
    writeFileSync(file, '{"earlier":"line"}\n');
    const c = config('run', { OPENLINEAGE_URL: cap.url }, { lake: '/data/lake', 'openlineage-file': file });
    const o = runObservers(c, () => undefined)[0];
    const s = start(c);
    await o.start(s);
    await o.finish(end(s, 0, report()));
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.pop()).to.equal('');
    expect(lines).to.have.length(3);
    const events = lines.slice(1).map((l) => JSON.parse(l) as RunEvent);
    events.forEach(expectValidEvent);
    expect(events.map((e) => e.eventType)).to.deep.equal(['START', 'COMPLETE']);
    expect(cap.events()).to.deep.equal(events);
  });

  it('nominal time from the date window; the embedded warehouse named without its random port', () => {
    const c = config('compute', { OPENLINEAGE_URL: cap.url }, { lake: '/data/lake', start: '2024-06-01', end: '2024-06-03' });
    const ctx = lineageContext(c, () => undefined);
    expect(ctx.embeddedWarehouse).to.equal(true);
    const ev = endEvent(ctx, end(start(c), 0, report('compute', { warehouse: 'postgresql://postgres@127.0.0.1:40123/musickpi' })));
    expectValidEvent(ev);
    expect(ev.run.facets.nominalTime).to.include({ nominalStartTime: '2024-06-01T00:00:00Z', nominalEndTime: '2024-06-03T00:00:00Z' });
    expect(ev.outputs[0]).to.include({ namespace: 'postgres://127.0.0.1', name: 'musickpi.reporting_schema.hourly_kpis' });
  });
});

describe('observe: dataset names (OpenLineage naming conventions)', () => {
  it('S3 lakes: s3://bucket and the object key; local lakes: file and the absolute path', () => {
    expect(lakeNamer('s3://my-bucket/raw/music/')('streams/a.csv')).to.deep.equal({
      namespace: 's3://my-bucket',
      name: 'raw/music/streams/a.csv',
    });
    expect(lakeNamer('s3a://my-bucket')('songs.csv')).to.deep.equal({ namespace: 's3://my-bucket', name: 'songs.csv' });
    expect(lakeNamer('lake', '/work')('songs.csv')).to.deep.equal({ namespace: 'file', name: '/work/lake/songs.csv' });
    expect(lakeNamer('file:///srv/lake/')('users.csv')).to.deep.equal({ namespace: 'file', name: '/srv/lake/users.csv' });
  });

  it('PostgreSQL: postgres://host:port and database; Redshift: redshift://cluster.region:port', () => {
    expect(warehouseNamespace('postgresql://etl@DB.example.com/analytics', false)).to.deep.equal({
      namespace: 'postgres://db.example.com:5432',
      database: 'analytics',
    });
    expect(warehouseNamespace('postgres://etl@db:6432/', false)).to.deep.equal({ namespace: 'postgres://db:6432', database: 'etl' });
    expect(
      warehouseNamespace('postgresql://awsuser@examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com:5439/dev', false),
    ).to.deep.equal({
      namespace: 'redshift://examplecluster.us-west-2:5439',
      database: 'dev',
    });
    expect(warehouseNamespace('redshift://u@examplecluster.abc123xyz789.eu-west-1.redshift.amazonaws.com/dev', false)!.namespace).to.equal(
      'redshift://examplecluster.eu-west-1:5439',
    );
    expect(warehouseNamespace('not a url', false)).to.equal(undefined);
  });

  it('an S3 lake in the events', () => {
    const c = config(
      'run',
      { OPENLINEAGE_URL: 'http://127.0.0.1:1' },
      { lake: 's3://music-lake/prod', warehouse: 'postgresql://u@h:5432/d' },
    );
    const ev = endEvent(
      lineageContext(c, () => undefined),
      end(start(c), 0, report()),
    );
    expectValidEvent(ev);
    expect(ev.inputs.map((d) => `${d.namespace} ${d.name}`)).to.include.members([
      's3://music-lake prod/songs.csv',
      's3://music-lake prod/streams/a.csv',
    ]);
  });
});

describe('observe: the parent run', () => {
  it('OPENLINEAGE_PARENT_ID (the Airflow macro lineage_parent_id) becomes the parent run facet', () => {
    const parentRun = '01902e5b-7c3a-7d0e-9f00-0123456789ab';
    const c = config('run', {
      OPENLINEAGE_URL: 'http://127.0.0.1:1',
      OPENLINEAGE_PARENT_ID: `airflow-prod/musickpi_daily.run/${parentRun}`,
    });
    const ev = startEvent(
      lineageContext(c, () => undefined),
      start(c),
    );
    expectValidEvent(ev);
    expect(ev.run.facets.parent).to.deep.include({
      run: { runId: parentRun },
      job: { namespace: 'airflow-prod', name: 'musickpi_daily.run' },
    });
  });

  it('a parent id without a UUID: one warning, no parent facet', () => {
    const c = config('run', { OPENLINEAGE_URL: 'http://127.0.0.1:1', OPENLINEAGE_PARENT_ID: 'ns/job/not-a-uuid' });
    const { said, warn } = warnings();
    const ev = startEvent(lineageContext(c, warn), start(c));
    expect(ev.run.facets).not.to.have.property('parent');
    expect(said).to.have.length(1);
    expect(said[0]).to.contain('OPENLINEAGE_PARENT_ID');
  });

  it("under Airflow (AIRFLOW_CTX_*), the task's run id as the OpenLineage provider derives it", () => {
    const env = {
      OPENLINEAGE_URL: 'http://127.0.0.1:1',
      AIRFLOW_CTX_DAG_ID: 'musickpi_daily',
      AIRFLOW_CTX_TASK_ID: 'run',
      AIRFLOW_CTX_DAG_RUN_ID: 'scheduled__2024-06-01T00:00:00+00:00',
      AIRFLOW_CTX_TRY_NUMBER: '1',
    };
    const ev = startEvent(
      lineageContext(config('run', env), () => undefined),
      start(config('run', env)),
    );
    expectValidEvent(ev);
    // Worked out with the provider's formula (static UUIDv7: SHA-1 of the date's isoformat and
    // "default.musickpi_daily.run.1.-1") in Python.
    expect(ev.run.facets.parent).to.deep.include({
      run: { runId: '018fd118-9400-79ec-98a4-90fe478b4f32' },
      job: { namespace: 'default', name: 'musickpi_daily.run' },
    });
    // A custom DAG run id carries no logical date: no parent, and no warning either.
    const { said, warn } = warnings();
    const custom = config('run', { ...env, AIRFLOW_CTX_DAG_RUN_ID: 'my-own-run' });
    expect(startEvent(lineageContext(custom, warn), start(custom)).run.facets).not.to.have.property('parent');
    expect(said).to.deep.equal([]);
  });
});

describe('observe: run ids', () => {
  it('the lineage run id is a UUIDv7, stable for a musickpi run, ordered by start time', () => {
    const a = lineageRunId(RUN_ID, new Date('2024-06-02T03:00:00Z'));
    expect(a).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(lineageRunId(RUN_ID, new Date('2024-06-02T03:00:00Z'))).to.equal(a);
    expect(lineageRunId('other', new Date('2024-06-02T03:00:00Z'))).not.to.equal(a);
    expect(lineageRunId(RUN_ID, new Date('2024-06-02T03:00:01Z')) > a).to.equal(true);
  });

  it("the static UUIDv7 matches the OpenLineage Python client's (its own test vectors and worked examples)", () => {
    // The client's tests: an instant of 2025-05-20T10:52:33.881863Z gives the prefix 0196ed52-e0d9-7.
    const id = airflowTaskRunId({
      namespace: 'x',
      dagId: 'd',
      taskId: 't',
      tryNumber: 1,
      logicalDate: '2025-05-20T10:52:33.881863+00:00',
      mapIndex: -1,
    });
    expect(id!.startsWith('0196ed52-e0d9-7')).to.equal(true);
    expect(
      airflowTaskRunId({
        namespace: 'ns',
        dagId: 'd',
        taskId: 't',
        tryNumber: 3,
        logicalDate: '2024-06-01T02:30:00.5+02:00',
        mapIndex: -1,
      }),
    ).to.equal('018fd134-0d34-7e50-92f9-6e2769efedec');
    expect(pythonUtcInstant('2024-06-01T02:30:00.5+02:00')).to.deep.equal({
      ms: 1717201800500,
      isoformat: '2024-06-01T00:30:00.500000+00:00',
    });
    expect(pythonUtcInstant('2024-06-01T00:00:00Z')!.isoformat).to.equal('2024-06-01T00:00:00+00:00');
    expect(pythonUtcInstant('yesterday')).to.equal(undefined);
  });

  it('the logical date of Airflow DAG run ids', () => {
    expect(logicalDateOfDagRunId('scheduled__2024-06-01T00:00:00+00:00')).to.equal('2024-06-01T00:00:00+00:00');
    expect(logicalDateOfDagRunId('manual__2024-06-01T10:11:12.345678+00:00')).to.equal('2024-06-01T10:11:12.345678+00:00');
    expect(logicalDateOfDagRunId('backfill__2024-06-01T00:00:00+00:00')).to.equal('2024-06-01T00:00:00+00:00');
    expect(logicalDateOfDagRunId('my-run')).to.equal(undefined);
  });
});

describe('observe: a lineage failure never fails the run', () => {
  it('a server answering 500: the event is retried once, then one warning for the whole run', async () => {
    const cap = await captureServer();
    try {
      cap.respond(500);
      const c = config('run', { OPENLINEAGE_URL: cap.url, OPENLINEAGE_API_KEY: 'k-secret' });
      const { said, warn } = warnings();
      const o = runObservers(c, warn)[0];
      const s = start(c);
      await o.start(s);
      await o.finish(end(s, 0, report()));
      // START: two attempts; COMPLETE after a failure: one.
      expect(cap.requests).to.have.length(3);
      expect(said).to.have.length(1);
      expect(said[0]).to.contain('OpenLineage').and.to.contain('HTTP 500').and.to.contain('START');
      expect(said[0]).not.to.contain('k-secret');
    } finally {
      await cap.close();
    }
  });

  it('a client error (400) is not retried', async () => {
    const cap = await captureServer();
    try {
      cap.respond(400);
      const c = config('run', { OPENLINEAGE_URL: cap.url });
      const { said, warn } = warnings();
      const o = runObservers(c, warn)[0];
      await o.start(start(c));
      expect(cap.requests).to.have.length(1);
      expect(said).to.have.length(1);
    } finally {
      await cap.close();
    }
  });

  it('a server that never answers: the request times out, one warning', async () => {
    const cap = await captureServer();
    try {
      cap.respond('hang');
      const c = config('run', { OPENLINEAGE_URL: cap.url });
      const { said, warn } = warnings();
      const o = openLineageObserver(c, warn, [httpTransport(cap.url, undefined, 150)]);
      const t0 = Date.now();
      const s = start(c);
      await o.start(s);
      await o.finish(end(s, 0, report()));
      expect(Date.now() - t0).to.be.below(3000);
      expect(said).to.have.length(1);
      expect(said[0]).to.contain('no answer within 0.15 s');
    } finally {
      await cap.close();
    }
  });

  it('nothing listening, or a file that cannot be written: one warning each, and the other transport still works', async () => {
    const port = await closedPort();
    const dir = tmp();
    const c = config(
      'run',
      { OPENLINEAGE_URL: `http://127.0.0.1:${port}` },
      { lake: '/data/lake', 'openlineage-file': join(dir, 'no', 'such', 'dir.jsonl') },
    );
    const { said, warn } = warnings();
    const o = runObservers(c, warn)[0];
    const s = start(c);
    await o.start(s);
    await o.finish(end(s, 0, report()));
    expect(said).to.have.length(2);
    expect(said.some((m) => m.includes(`127.0.0.1:${port}`))).to.equal(true);
    expect(said.some((m) => m.includes('dir.jsonl'))).to.equal(true);

    const good = join(dir, 'ok.jsonl');
    const both = config('run', { OPENLINEAGE_URL: `http://127.0.0.1:${port}` }, { lake: '/data/lake', 'openlineage-file': good });
    const w2 = warnings();
    const o2 = runObservers(both, w2.warn)[0];
    await o2.start(start(both));
    expect(w2.said).to.have.length(1);
    expect(readFileSync(good, 'utf8').trim().split('\n')).to.have.length(1);
  });

  it('a result of an unexpected shape is a warning, not a throw', async () => {
    const cap = await captureServer();
    try {
      const c = config('run', { OPENLINEAGE_URL: cap.url });
      const { said, warn } = warnings();
      const o = runObservers(c, warn)[0];
      const s = start(c);
      const weird = { ...report(), files: [null] };
      await o.finish(end(s, 0, weird));
      expect(said).to.have.length(1);
      expect(said[0]).to.contain('cannot build the event');
    } finally {
      await cap.close();
    }
  });
});

describe('observe: which observers a configuration asks for', () => {
  it('only the pipeline commands are observed, and only what is configured', () => {
    const env = { OPENLINEAGE_URL: 'http://127.0.0.1:1', GITHUB_STEP_SUMMARY: '/tmp/summary.md' };
    expect(runObservers(config('run', {}), () => undefined)).to.deep.equal([]);
    expect(runObservers(config('run', env), () => undefined).map((o) => o.name)).to.deep.equal(['openlineage', 'step-summary']);
    const all = config('validate', env, { lake: '/l', 'metrics-file': '/tmp/m.prom', pushgateway: 'http://127.0.0.1:1' });
    expect(runObservers(all, () => undefined).map((o) => o.name)).to.deep.equal(['openlineage', 'metrics', 'step-summary']);
    for (const command of ['status', 'query', 'init'] as const) {
      const argv = command === 'status' ? { lake: '/l' } : {};
      expect(
        runObservers(config(command, env, argv), () => undefined),
        command,
      ).to.deep.equal([]);
    }
  });
});

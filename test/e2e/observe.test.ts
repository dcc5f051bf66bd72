// The observers through the built CLI, as a scheduler runs it: lineage events to a local
// OpenLineage endpoint, the metrics file, the GitHub step summary, for a successful run of the
// tiny lake and a run the bad-row gate stops (exit 65); and a lineage server that is down.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyLake, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { captureServer, closedPort, expectValidEvent, parseProm, promValue, type Capture } from '../unit/observe/helpers.js';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mkpi-observe-'));
  temps.push(d);
  return d;
}

const lastLine = (s: string) => JSON.parse(s.trim().split('\n').pop()!);

describe('e2e: lineage, metrics and the step summary of real runs', function () {
  this.timeout(180_000);
  let cap: Capture;
  beforeEach(async () => {
    cap = await captureServer();
  });
  afterEach(() => cap.close());

  it('a success, then a run stopped by the bad-row gate (65): events, metrics and summaries of both', async () => {
    const url = await freshDatabase();
    const out = tmp();
    const metrics = join(out, 'musickpi.prom');
    const summary = join(out, 'summary.md');
    const env = { OPENLINEAGE_URL: cap.url, OPENLINEAGE_API_KEY: 'e2e-key', OPENLINEAGE_NAMESPACE: 'etl', GITHUB_STEP_SUMMARY: summary };
    const lake = copyLake('tiny');
    const ok = await runCli(['run', '--lake', lake, '--warehouse', url, '--json', '--metrics-file', metrics], { env });
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stderr).not.to.contain('warning: OpenLineage');
    const report = lastLine(ok.stdout);
    expect(report.ok).to.equal(true);

    const [st, done] = cap.events();
    expect(cap.events()).to.have.length(2);
    expectValidEvent(st);
    expectValidEvent(done);
    expect(cap.requests.every((r) => r.url === '/api/v1/lineage' && r.headers.authorization === 'Bearer e2e-key')).to.equal(true);
    expect([st.eventType, done.eventType]).to.deep.equal(['START', 'COMPLETE']);
    expect(st.run.runId).to.equal(done.run.runId);
    expect(done.run.facets.musickpi_run.runId).to.equal(report.runId);
    expect(done.job).to.deep.include({ namespace: 'etl', name: 'musickpi.run' });
    expect(done.inputs.map((d: any) => [d.namespace, d.name])).to.deep.equal([
      ['file', join(lake, 'songs.csv')],
      ['file', join(lake, 'users.csv')],
      ['file', join(lake, 'streams', 'a.csv')],
      ['file', join(lake, 'streams', 'b.csv')],
    ]);
    const b = done.inputs[3];
    expect(b.inputFacets.dataQualityMetrics.rowCount).to.equal(3);
    expect(b.inputFacets.musickpi_rejects.rejected.unknown_track).to.equal(1);
    const db = new URL(url);
    expect(done.outputs.map((d: any) => [d.namespace, d.name, d.outputFacets.outputStatistics.rowCount])).to.deep.equal([
      [`postgres://${db.hostname}:${db.port}`, `${db.pathname.slice(1)}.reporting_schema.hourly_kpis`, report.rowsWritten.hourly_kpis],
      [
        `postgres://${db.hostname}:${db.port}`,
        `${db.pathname.slice(1)}.reporting_schema.genre_level_kpis`,
        report.rowsWritten.genre_level_kpis,
      ],
    ]);
    expect(report.rowsWritten.hourly_kpis).to.be.above(0);

    let m = parseProm(readFileSync(metrics, 'utf8'));
    const run = { command: 'run' };
    expect(promValue(m, 'musickpi_last_run_status', run)).to.equal(1);
    expect(promValue(m, 'musickpi_rows_read', run)).to.equal(report.totals.rowsRead);
    expect(promValue(m, 'musickpi_complete_rows', run)).to.equal(report.totals.completeRows);
    expect(promValue(m, 'musickpi_rejected_rows', { ...run, reason: 'unknown_track' })).to.equal(1);
    expect(promValue(m, 'musickpi_rows_written', { ...run, table: 'hourly_kpis' })).to.equal(report.rowsWritten.hourly_kpis);
    const success = promValue(m, 'musickpi_last_success_timestamp_seconds', run)!;
    expect(success * 1000).to.be.closeTo(Date.now(), 120_000);

    // The messy lake has bad rows: the gate stops the run before anything is loaded.
    cap.requests.length = 0;
    const messy = copyLake('messy');
    const bad = await runCli(['run', '--lake', messy, '--warehouse', url, '--schema', 'messy', '--json', '--metrics-file', metrics], {
      env,
    });
    expect(bad.code, bad.stderr).to.equal(65);
    const failure = lastLine(bad.stdout);
    expect(failure.ok).to.equal(false);
    expect(failure.error.code).to.equal('MKPI_BAD_ROWS');
    const [st2, fail] = cap.events();
    expectValidEvent(st2);
    expectValidEvent(fail);
    expect([st2.eventType, fail.eventType]).to.deep.equal(['START', 'FAIL']);
    expect(fail.run.facets.errorMessage.message).to.match(/^MKPI_BAD_ROWS: /);
    expect(fail.run.facets.errorMessage.programmingLanguage).to.equal('JavaScript');
    expect(fail.run.facets.musickpi_run).to.deep.include({ exitCode: 65, ok: false });
    expect(fail.outputs.every((d: any) => d.outputFacets.outputStatistics.rowCount === 0)).to.equal(true);
    const rejectedInLineage = fail.inputs
      .filter((d: any) => d.name.includes('/streams/'))
      .reduce(
        (n: number, d: any) =>
          n + Object.values(d.inputFacets.musickpi_rejects.rejected as Record<string, number>).reduce((a, c) => a + c, 0),
        0,
      );
    expect(rejectedInLineage).to.equal(failure.totals.rowsRead - failure.totals.completeRows);

    m = parseProm(readFileSync(metrics, 'utf8'));
    expect(promValue(m, 'musickpi_last_run_status', run)).to.equal(0);
    expect(promValue(m, 'musickpi_last_run_exit_code', run)).to.equal(65);
    expect(promValue(m, 'musickpi_last_success_timestamp_seconds', run)).to.equal(success);
    expect(promValue(m, 'musickpi_rows_read', run)).to.equal(failure.totals.rowsRead);

    const text = readFileSync(summary, 'utf8');
    expect(text).to.contain('### ✅ musickpi run succeeded');
    expect(text).to.contain('### ❌ musickpi run failed: MKPI\\_BAD\\_ROWS (exit 65)');
    expect(text.indexOf('succeeded')).to.be.below(text.indexOf('failed'));
    expect(text).to.contain('| malformed |');
  });

  it('a lineage endpoint that is down: the run succeeds, with one warning, and --json stays the last line', async () => {
    const url = await freshDatabase();
    const port = await closedPort();
    const lineage = join(tmp(), 'lineage.jsonl');
    const r = await runCli(['run', '--lake', copyLake('tiny'), '--warehouse', url, '--json', '--openlineage-file', lineage], {
      env: { OPENLINEAGE_URL: `http://127.0.0.1:${port}` },
    });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr.match(/warning: OpenLineage/g)).to.have.length(1);
    expect(lastLine(r.stdout).ok).to.equal(true);
    // The file transport still has both events.
    const events = readFileSync(lineage, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    events.forEach(expectValidEvent);
    expect(events.map((e) => e.eventType)).to.deep.equal(['START', 'COMPLETE']);
  });

  it('query and status are not observed, even with OPENLINEAGE_URL set for the whole DAG', async () => {
    const url = await freshDatabase();
    const q = await runCli(['query', 'select 1 as one', '--warehouse', url, '--json'], { env: { OPENLINEAGE_URL: cap.url } });
    expect(q.code, q.stderr).to.equal(0);
    expect(cap.requests).to.have.length(0);
  });
});

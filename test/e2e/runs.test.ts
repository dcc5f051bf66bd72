// The run history from the built CLI: every run, dry run, failed run and archive leaves a row in
// musickpi_runs; `musickpi runs` lists them newest first (a table, or one JSON array); a history
// that cannot be written is a warning that changes neither the load nor the exit status.
import { expect } from 'chai';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyLake, queryRows, REPO, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

describe('e2e: run history and musickpi runs', function () {
  this.timeout(180_000);

  it('a run, a dry run, a failed run (65) and an archive are listed newest first, with exit and error codes', async () => {
    const url = await freshDatabase('runs_e2e');
    const lake = copyLake('tiny');
    const wh = ['--warehouse', url];
    const env = {
      AIRFLOW_CTX_DAG_ID: 'kpis',
      AIRFLOW_CTX_TASK_ID: 'load',
      AIRFLOW_CTX_DAG_RUN_ID: 'manual__1',
      AIRFLOW_CTX_TRY_NUMBER: '1',
    };

    const dryFresh = await runCli(['run', '--lake', lake, ...wh, '--dry-run', '--json']);
    expect(dryFresh.code, dryFresh.stderr).to.equal(0);
    expect(dryFresh.json.history).to.match(/^not recorded: .*a dry run creates nothing/);

    const ok = await runCli(['compute', '--lake', lake, ...wh, '--json'], { env });
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.json.history).to.equal('recorded');

    const dry = await runCli(['run', '--lake', lake, ...wh, '--dry-run', '--json']);
    expect(dry.code, dry.stderr).to.equal(0);
    expect(dry.json.history).to.equal('recorded');

    copyFileSync(join(REPO, 'fixtures', 'messy', 'bad-schema.csv'), join(lake, 'streams', 'z.csv'));
    const failed = await runCli(['run', '--lake', lake, ...wh, '--json']);
    expect(failed.code).to.equal(65);
    expect(failed.json.history).to.equal('recorded');

    const archive = await runCli(['archive', '--lake', lake, ...wh, '--json']);
    expect(archive.code, archive.stderr).to.equal(0);

    const validate = await runCli(['validate', '--lake', lake, '--json']);
    expect(validate.json.history).to.equal('not recorded: validate opens no warehouse');

    const listed = await runCli(['runs', ...wh, '--json']);
    expect(listed.code, listed.stderr).to.equal(0);
    expect(listed.stdout.trim().split('\n')).to.have.length(1);
    const runs = listed.json as Record<string, unknown>[];
    expect(runs.map((r) => [r.runId, r.command, r.dryRun, r.status, r.exitCode, r.errorCode])).to.deep.equal([
      [archive.json.runId, 'archive', false, 'ok', 0, null],
      [failed.json.runId, 'run', false, 'failed', 65, 'MKPI_SCHEMA'],
      [dry.json.runId, 'run', true, 'ok', 0, null],
      [ok.json.runId, 'compute', false, 'ok', 0, null],
    ]);
    const [a, f, , c] = runs;
    expect(a.filesArchived).to.equal(2);
    expect(f.errorStage).to.be.a('string');
    expect(f.filesLoaded).to.equal(0);
    expect(c).to.include({
      rowsRead: ok.json.totals.rowsRead,
      completeRows: ok.json.totals.completeRows,
      hourlyRowsWritten: ok.json.rowsWritten.hourly_kpis,
      genreRowsWritten: ok.json.rowsWritten.genre_level_kpis,
      filesLoaded: 2,
      airflowDagId: 'kpis',
      airflowTaskId: 'load',
      airflowRunId: 'manual__1',
      airflowTryNumber: 1,
    });
    expect(c.rejects).to.deep.equal(ok.json.totals.rejected);
    expect(c.datesRecomputed).to.deep.equal(ok.json.datesRecomputed);

    const failedOnly = await runCli(['runs', ...wh, '--status', 'failed', '--json']);
    expect((failedOnly.json as { runId: string }[]).map((r) => r.runId)).to.deep.equal([failed.json.runId]);
    const two = await runCli(['runs', ...wh, '--limit', '2', '--json']);
    expect((two.json as unknown[]).length).to.equal(2);

    const text = await runCli(['runs', ...wh]);
    expect(text.code, text.stderr).to.equal(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[1]).to.match(/^run id\s+command\s+started \(UTC\)\s+took\s+status\s+exit\s+error/);
    expect(lines[3]).to.match(
      new RegExp(`^${archive.json.runId}\\s+archive\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+\\d+\\.\\d s\\s+ok\\s+0\\s`),
    );
    expect(lines[4]).to.match(new RegExp(`^${failed.json.runId}\\s+run\\s+.*\\s+failed\\s+65\\s+MKPI_SCHEMA\\s`));
    expect(lines[5]).to.match(new RegExp(`^${dry.json.runId}\\s+run --dry-run\\s`));
    expect(lines.at(-1)).to.equal('(4 rows)');

    const bad = await runCli(['runs', ...wh, '--status', 'maybe']);
    expect(bad.code).to.equal(64);
  });

  it('a history that cannot be written leaves the load committed and the exit status 0, with a warning', async () => {
    const url = await freshDatabase('runs_fault');
    const lake = copyLake('tiny');
    const init = await runCli(['init', '--warehouse', url]);
    expect(init.code, init.stderr).to.equal(0);
    // The fault is the warehouse's: every insert into the history fails.
    await queryRows(
      url,
      `CREATE FUNCTION reporting_schema.no_history() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'history is read-only today'; END $$;
       CREATE TRIGGER no_history BEFORE INSERT ON reporting_schema.musickpi_runs FOR EACH ROW EXECUTE FUNCTION reporting_schema.no_history()`,
    );
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.ok).to.equal(true);
    expect(r.json.loaded).to.equal(true);
    expect(r.json.history).to.match(/^not recorded: .*history is read-only today/);
    expect(r.stderr).to.match(/not in the run history: .*history is read-only today/);
    expect(r.json.warnings.some((w: string) => /not in the run history/.test(w))).to.equal(true);
    expect((await tableRows(url, 'hourly_kpis')).length).to.be.greaterThan(0);
    expect((await queryRows(url, 'select count(*)::int as n from reporting_schema.musickpi_ledger'))[0].n).to.equal(2);
    expect((await queryRows(url, 'select count(*)::int as n from reporting_schema.musickpi_runs'))[0].n).to.equal(0);
  });
});

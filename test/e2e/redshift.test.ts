// The CLI against Redshift, proven on the strict stand-in (test/support/redshift): an S3 lake, an
// S3 staging prefix, every KPI row arriving by COPY from a manifest, tables created beforehand
// with the original DAG's DDL — and the same tables, ledger guarantees and exit codes as
// PostgreSQL. What only a real cluster can prove is listed in docs/redshift.md.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { copyLake, queryRows, runCli, spawnCli, tableRows } from '../support/cli.js';
import { uploadDir } from '../support/harness.js';
import { freshDatabase } from '../support/pg.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';

const ORIGINAL_DDL = `
CREATE SCHEMA IF NOT EXISTS reporting_schema;
CREATE TABLE reporting_schema.hourly_kpis (listen_date DATE, listen_hour INT, unique_listeners INT,
  listen_counts INT, top_artist VARCHAR(255), avg_sessions_per_user FLOAT, diversity_index FLOAT,
  most_engaged_age_group VARCHAR(255), PRIMARY KEY (listen_date, listen_hour));
CREATE TABLE reporting_schema.genre_level_kpis (listen_date DATE, track_genre VARCHAR(255), listen_count INT,
  popularity_index FLOAT, average_duration FLOAT, most_popular_track_id VARCHAR(255),
  PRIMARY KEY (listen_date, track_genre));`;

const LATE = 'user_id,track_id,listen_time\n';

describe('e2e: Redshift through the strict stand-in', function () {
  this.timeout(240_000);
  let s3: TestS3;
  let rs: RedshiftStandIn;
  before(async () => {
    s3 = await startS3();
    const { testDatabaseUrl } = await import('../support/pg.js');
    rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
  });
  after(async () => {
    await rs?.stop();
    await s3?.stop();
  });

  async function rsExec(db: string, sql: string): Promise<void> {
    const c = new pg.Client(rs.config(db));
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  /** The tiny lake in a new bucket, a fresh database behind the stand-in, and the CLI's arguments and env for them. */
  async function tinyOnS3(bucket: string, dbName: string) {
    await s3.bucket(bucket);
    await uploadDir(s3.client, copyLake('tiny'), bucket, 'music');
    const dbUrl = await freshDatabase(dbName);
    const db = new URL(dbUrl).pathname.slice(1);
    const lakeArgs = [
      '--lake',
      `s3://${bucket}/music`,
      '--s3-endpoint',
      s3.endpoint,
      '--s3-force-path-style',
      '--warehouse',
      rs.url(db),
      '--json',
    ];
    return { dbUrl, db, lakeArgs, env: { ...s3.env, PGPASSWORD: rs.password } };
  }

  /** The tables and exit code PostgreSQL gives for the same lake: the reference. */
  async function reference(fixture: string, extra: Record<string, string> = {}) {
    const url = await freshDatabase('rs_ref');
    const lake = copyLake(fixture);
    for (const [k, v] of Object.entries(extra)) writeFileSync(join(lake, 'streams', k), v);
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--max-bad-rows', '1000000', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    return { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis'), report: r.json };
  }

  it('run on a messy S3 lake fills tables made with the original DDL exactly as PostgreSQL does; a re-run changes nothing; every row comes by COPY; nothing refused', async () => {
    const bucket = 'rs-messy';
    await s3.bucket(bucket);
    await uploadDir(s3.client, copyLake('messy'), bucket, 'music');
    const dbUrl = await freshDatabase('rs_e2e');
    const db = new URL(dbUrl).pathname.slice(1);
    await rsExec(dbUrl, ORIGINAL_DDL);
    const copiesBefore = rs.copies.length;
    const refusedBefore = rs.refused.length;
    const args = [
      'run',
      '--lake',
      `s3://${bucket}/music`,
      '--s3-endpoint',
      s3.endpoint,
      '--s3-force-path-style',
      '--warehouse',
      rs.url(db),
      '--staging',
      `s3://${bucket}/staging/`,
      '--iam-role',
      'arn:aws:iam::123456789012:role/musickpi-copy',
      '--max-bad-rows',
      '1000000',
      '--json',
    ];
    const env = { ...s3.env, PGPASSWORD: rs.password };
    const r = await runCli(args, { env });
    expect(r.code, r.stderr).to.equal(0);
    expect(rs.refused.slice(refusedBefore), 'statements the stand-in refused').to.deep.equal([]);
    const ref = await reference('messy');
    expect(await tableRows(dbUrl, 'hourly_kpis')).to.deep.equal(ref.hourly);
    expect(await tableRows(dbUrl, 'genre_level_kpis')).to.deep.equal(ref.genre);
    expect(r.json.totals).to.deep.equal(ref.report.totals);
    expect(r.json.rowsWritten).to.deep.equal(ref.report.rowsWritten);
    // Every KPI row arrived by COPY from S3, through a manifest.
    const copies = rs.copies.slice(copiesBefore);
    expect(copies.every((c) => c.manifest)).to.equal(true);
    const copied = copies.filter((c) => /hourly|genre/.test(c.table)).reduce((a, c) => a + c.rows, 0);
    expect(copied).to.be.at.least(r.json.rowsWritten.hourly_kpis + r.json.rowsWritten.genre_level_kpis);
    // Stage files are removed after the load.
    const staged = await s3.client.send(
      new (await import('@aws-sdk/client-s3')).ListObjectsV2Command({ Bucket: bucket, Prefix: 'staging/' }),
    );
    expect((staged.Contents ?? []).map((o) => o.Key)).to.deep.equal([]);
    // The run history and the report page work on Redshift as on PostgreSQL.
    const whArgs = ['--warehouse', rs.url(db), '--staging', `s3://${bucket}/staging/`];
    const runs = await runCli(['runs', ...whArgs, '--json'], { env });
    expect(runs.code, runs.stderr).to.equal(0);
    expect(runs.json.map((x: { runId: string }) => x.runId)).to.deep.equal([r.json.runId]);
    const page = join(copyLake('tiny'), 'report.html');
    const report = await runCli(['report', ...whArgs, '--html', page, '--json'], { env });
    expect(report.code, report.stderr).to.equal(0);
    expect(report.json.hourly.length).to.be.greaterThan(0);
    expect(rs.refused.slice(refusedBefore), 'statements the stand-in refused').to.deep.equal([]);
    // A re-run changes nothing.
    const again = await runCli(args, { env });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json.loaded).to.equal(false);
    expect(await tableRows(dbUrl, 'hourly_kpis')).to.deep.equal(ref.hourly);
    expect(rs.refused.slice(refusedBefore)).to.deep.equal([]);
  });

  it('a 255-character multibyte artist name and a NULL top artist survive COPY into adopted VARCHAR(255) tables exactly; a genre too long for its key column is refused (78)', async () => {
    const bucket = 'rs-edge';
    await s3.bucket(bucket);
    const long = 'é'.repeat(254) + '😀'; // 255 characters, 512 bytes: more than VARCHAR(255) holds in bytes
    const files: Record<string, string> = {
      'songs.csv': `track_id,artists,album_name,track_genre,duration_ms\nt1,${long},A,${'γ'.repeat(127)},200000\nt2,,B,pop,100000\n`,
      'users.csv': 'user_id,user_age,user_country\nu1,22,US\nu2,,DE\n',
      'streams/a.csv': 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:05:00\nu2,t2,2024-06-01 11:00:00\n',
    };
    for (const [k, v] of Object.entries(files)) await s3.putObject(bucket, `music/${k}`, v);
    const dbUrl = await freshDatabase('rs_edge');
    const db = new URL(dbUrl).pathname.slice(1);
    await rsExec(dbUrl, ORIGINAL_DDL);
    const refusedBefore = rs.refused.length;
    const env = { ...s3.env, PGPASSWORD: rs.password };
    const r = await runCli(
      ['run', '--lake', `s3://${bucket}/music`, '--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--warehouse', rs.url(db), '--json'],
      { env },
    );
    expect(r.code, r.stderr).to.equal(0);
    expect(rs.refused.slice(refusedBefore)).to.deep.equal([]);
    const hourly = await queryRows(
      dbUrl,
      'select listen_hour, top_artist, most_engaged_age_group from reporting_schema.hourly_kpis order by 1',
    );
    expect(hourly).to.deep.equal([
      { listen_hour: 10, top_artist: long, most_engaged_age_group: '18-25' },
      { listen_hour: 11, top_artist: null, most_engaged_age_group: null },
    ]);
    const genre = await queryRows(dbUrl, 'select track_genre from reporting_schema.genre_level_kpis order by 1');
    expect(genre.map((g) => g.track_genre)).to.deep.equal(['pop', 'γ'.repeat(127)]);
    // track_genre is in the original DDL's primary key, which Redshift cannot ALTER: a genre over 255
    // bytes is refused before the transaction, naming the value, and nothing is loaded.
    await s3.putObject(bucket, 'music/songs.csv', files['songs.csv'].replace('pop', 'δ'.repeat(200)));
    await s3.putObject(bucket, 'music/streams/b.csv', 'user_id,track_id,listen_time\nu2,t2,2024-06-02 11:00:00\n');
    const tooLong = await runCli(
      ['run', '--lake', `s3://${bucket}/music`, '--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--warehouse', rs.url(db), '--json'],
      { env },
    );
    expect(tooLong.code, tooLong.stderr).to.equal(78);
    expect(tooLong.json.error.message).to.contain('track_genre');
    expect(tooLong.json.loaded).to.equal(false);
  });

  for (const point of ['mid-copy', 'staged', 'mid-merge', 'before-commit', 'after-commit', 'after-archive-copy', 'after-archive-mark']) {
    it(`a run killed at ${point}, then a normal run, ends exactly like one clean run`, async () => {
      const bucket = `rs-kill-${point}`;
      const { dbUrl, lakeArgs, env } = await tinyOnS3(bucket, 'rs_kill');
      const args = ['run', ...lakeArgs];
      const killed = await runCli(args, { env: { ...env, MKPI_TEST_FAULT: point } });
      expect(killed.signal, killed.stderr).to.equal('SIGKILL');
      const rerun = await runCli(args, { env });
      expect(rerun.code, rerun.stderr).to.equal(0);
      const ref = await reference('tiny');
      expect(await tableRows(dbUrl, 'hourly_kpis')).to.deep.equal(ref.hourly);
      expect(await tableRows(dbUrl, 'genre_level_kpis')).to.deep.equal(ref.genre);
      const ledger = await queryRows(dbUrl, 'select count(*)::int as n from reporting_schema.musickpi_ledger');
      expect(ledger[0].n).to.equal(2);
      const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
      const keys = async (prefix: string) =>
        ((await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key).sort();
      expect(await keys('music/streams/')).to.deep.equal(['music/streams/archived/a.csv', 'music/streams/archived/b.csv']);
    });
  }

  it('a late file recomputes its dates over the archived files; a second run while the lease is held exits 75', async () => {
    const bucket = 'rs-late';
    const { dbUrl, db, lakeArgs: args, env } = await tinyOnS3(bucket, 'rs_late');
    // Without --staging, an S3 lake stages under _musickpi/staging/.
    const first = await runCli(['run', ...args], { env });
    expect(first.code, first.stderr).to.equal(0);
    const late = `${LATE}u2,t2,2024-06-01 11:30:00\nu1,t3,2024-06-03 08:00:00\n`;
    await s3.putObject(bucket, 'music/streams/late.csv', late);
    const second = await runCli(['run', ...args], { env });
    expect(second.code, second.stderr).to.equal(0);
    // 2024-06-01's counts, saved on S3 by the first run (_musickpi/state/), stand in for a.csv.
    expect(second.json.dateState.restored).to.deep.equal(['2024-06-01']);
    expect(second.json.reread).to.deep.equal([]);
    const ref = await reference('tiny', { 'late.csv': late });
    expect(await tableRows(dbUrl, 'hourly_kpis')).to.deep.equal(ref.hourly);
    expect(await tableRows(dbUrl, 'genre_level_kpis')).to.deep.equal(ref.genre);
    // A second run while the first holds the lease: 75, naming the holder; the first then completes.
    await s3.putObject(bucket, 'music/streams/later.csv', `${LATE}u3,t1,2024-06-04 09:00:00\n`);
    const holder = spawnCli(['run', ...args], { env: { ...env, MKPI_TEST_PAUSE: 'after-lock' } });
    await holder.paused('after-lock');
    const loser = await runCli(['run', ...args], { env });
    expect(loser.code, loser.stderr).to.equal(75);
    expect(loser.json.error.code).to.equal('MKPI_LOCKED');
    holder.resume();
    const done = await holder.done;
    expect(done.code, done.stderr).to.equal(0);
    // A local lake with a Redshift warehouse needs --staging: 78 saying so.
    const local = await runCli(['run', '--lake', copyLake('tiny'), '--warehouse', rs.url(db), '--json'], { env });
    expect(local.code, local.stderr).to.equal(78);
    expect(local.stderr).to.contain('--staging');
  });
});

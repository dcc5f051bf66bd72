// The Redshift checks against a real cluster, for people who have one:
//   REDSHIFT_TEST_URL=redshift://user@host:5439/db (password in PGPASSWORD)
//   REDSHIFT_TEST_STAGING=s3://bucket/prefix/  (a test lake is uploaded under it too)
//   REDSHIFT_TEST_IAM_ROLE=arn:aws:iam::…:role/…
// and AWS credentials in the default chain. Without them every case is reported as skipped.
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { copyLake, queryRows, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const URL_ = process.env.REDSHIFT_TEST_URL;
const STAGING = process.env.REDSHIFT_TEST_STAGING;
const ROLE = process.env.REDSHIFT_TEST_IAM_ROLE;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
}

describe('e2e: Redshift, live (REDSHIFT_TEST_URL, REDSHIFT_TEST_STAGING, REDSHIFT_TEST_IAM_ROLE)', function () {
  this.timeout(600_000);
  before(function () {
    if (!URL_ || !STAGING || !ROLE) this.skip();
  });

  it('a messy lake on S3 loads exactly as on PostgreSQL, and a re-run changes nothing', async () => {
    const [, bucket, prefix = ''] = /^s3:\/\/([^/]+)\/?(.*)$/.exec(STAGING!)!;
    const lakePrefix = `${prefix.replace(/\/?$/, '/')}musickpi-live-${Date.now()}/lake`;
    const local = copyLake('messy');
    const s3 = new S3Client({});
    for (const f of files(local)) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${lakePrefix}/${relative(local, f)}`, Body: readFileSync(f) }));
    }
    const schema = `musickpi_live_${Date.now()}`;
    const args = ['run', '--lake', `s3://${bucket}/${lakePrefix}`, '--warehouse', URL_!, '--schema', schema, '--staging', STAGING!];
    const r = await runCli([...args, '--iam-role', ROLE!, '--max-bad-rows', '1000000', '--json'], {
      env: { MUSICKPI_CONNECT_TIMEOUT: '30' },
    });
    expect(r.code, r.stderr).to.equal(0);
    const ref = await freshDatabase('rs_live_ref');
    const pgRun = await runCli(['run', '--lake', copyLake('messy'), '--warehouse', ref, '--max-bad-rows', '1000000', '--json']);
    expect(r.json.rowsWritten).to.deep.equal(pgRun.json.rowsWritten);
    expect(r.json.totals).to.deep.equal(pgRun.json.totals);
    // The tables themselves, read back through musickpi's own query (the cluster's rounding of floats aside).
    const sql = 'select listen_date::varchar as d, listen_hour, listen_counts, unique_listeners, top_artist from hourly_kpis order by 1, 2';
    const live = await runCli(['query', '--warehouse', URL_!, '--schema', schema, '--staging', STAGING!, '--json', sql]);
    expect(live.code, live.stderr).to.equal(0);
    const want = await queryRows(ref, sql.replace('from hourly_kpis', 'from reporting_schema.hourly_kpis'));
    expect(live.json).to.deep.equal(want);
    const again = await runCli([...args, '--iam-role', ROLE!, '--json']);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json.loaded).to.equal(false);
  });
});

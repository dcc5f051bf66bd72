import { expect } from 'chai';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { startS3, type TestS3 } from '../support/s3.js';
import { freshDatabase } from '../support/pg.js';
import { copyLake, REPO, runCli, tableRows } from '../support/cli.js';
import { runPipeline } from '../../lib/pipeline/pipeline.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';

const STREAM_FILES = 1_050;

/** One listen per file, spread over two dates, plus an orphan every 100 files. */
function streamFile(i: number): string {
  const users = ['u1', 'u2', 'u3', 'u4'];
  const tracks = ['t1', 't2', 't3', 't4'];
  const hour = String(i % 24).padStart(2, '0');
  const day = i % 2 === 0 ? '01' : '02';
  const extra = i % 100 === 0 ? `u1,t_unknown,2024-06-${day} ${hour}:30:00\n` : '';
  return `user_id,track_id,listen_time\n${users[i % 4]},${tracks[(i >> 2) % 4]},2024-06-${day} ${hour}:0${i % 10}:00\n${extra}`;
}

async function listKeys(s3: TestS3, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

describe('integration: the pipeline on an S3 lake (s3rver)', function () {
  this.timeout(300_000);
  let s3: TestS3;

  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3?.stop();
  });

  it('loads more than 1,000 stream objects exactly as from a local folder, archives them all, never reads the archive', async () => {
    const bucket = 'lake-many';
    await s3.bucket(bucket);
    const local = copyLake('tiny');
    for (const f of ['a.csv', 'b.csv']) writeFileSync(join(local, 'streams', f), 'user_id,track_id,listen_time\n');
    const uploads: Promise<void>[] = [];
    uploads.push(s3.putObject(bucket, 'data/songs.csv', readFileSync(join(REPO, 'fixtures/tiny/songs.csv'))));
    uploads.push(s3.putObject(bucket, 'data/users.csv', readFileSync(join(REPO, 'fixtures/tiny/users.csv'))));
    // An archived file that is not in the ledger: it must never be read as new input.
    uploads.push(s3.putObject(bucket, 'data/streams/archived/old.csv', 'user_id,track_id,listen_time\nu1,t1,2024-06-01 00:00:00\n'));
    for (let i = 0; i < STREAM_FILES; i++) {
      const name = `part-${String(i).padStart(5, '0')}.csv`;
      uploads.push(s3.putObject(bucket, `data/streams/${name}`, streamFile(i)));
      writeFileSync(join(local, 'streams', name), streamFile(i));
      if (uploads.length >= 64) await Promise.all(uploads.splice(0));
    }
    await Promise.all(uploads);

    const url = await freshDatabase();
    const r = await runCli(
      ['run', '--lake', `s3://${bucket}/data`, '--s3-endpoint', s3.endpoint, '--s3-force-path-style', '--warehouse', url, '--json'],
      { env: s3.env },
    );
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.totals.files).to.equal(STREAM_FILES);
    expect(r.json.totals.rowsRead).to.equal(STREAM_FILES + Math.ceil(STREAM_FILES / 100));
    expect(r.json.totals.rejected.unknown_track).to.equal(Math.ceil(STREAM_FILES / 100));
    expect(r.json.archived).to.have.length(STREAM_FILES);

    const keys = await listKeys(s3, bucket, 'data/streams/');
    expect(keys.filter((k) => !k.startsWith('data/streams/archived/'))).to.deep.equal([]);
    expect(keys.filter((k) => k.startsWith('data/streams/archived/'))).to.have.length(STREAM_FILES + 1);
    const rejects = await listKeys(s3, bucket, `data/rejects/${r.json.runId}/`);
    expect(rejects).to.deep.equal([`data/rejects/${r.json.runId}/rejects.csv`]);

    const ref = await freshDatabase();
    const l = await runCli(['run', '--lake', local, '--warehouse', ref, '--quiet']);
    expect(l.code, l.stderr).to.equal(0);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(await tableRows(ref, 'hourly_kpis'));
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(await tableRows(ref, 'genre_level_kpis'));

    const again = await runCli(['run', '--lake', `s3://${bucket}/data`, '--s3-endpoint', s3.endpoint, '--warehouse', url, '--json'], {
      env: s3.env,
    });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json).to.include({ loaded: false });
    expect(again.json.archived).to.deep.equal([]);
  });

  it('the same bytes re-uploaded as multipart are already_loaded, and the copy is removed', async () => {
    const bucket = 'lake-redeliver';
    await s3.bucket(bucket);
    for (const f of ['songs.csv', 'users.csv', 'streams/a.csv', 'streams/b.csv']) {
      await s3.putObject(bucket, `l/${f}`, readFileSync(join(REPO, 'fixtures/tiny', f)));
    }
    const url = await freshDatabase();
    const args = ['run', '--lake', `s3://${bucket}/l`, '--s3-endpoint', s3.endpoint, '--warehouse', url, '--json'];
    const first = await runCli(args, { env: s3.env });
    expect(first.code, first.stderr).to.equal(0);

    const body = readFileSync(join(REPO, 'fixtures/tiny/streams/a.csv'));
    const key = 'l/streams/a.csv';
    const mpu = await s3.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const cut = Math.floor(body.length / 2);
    const parts = [];
    for (const [i, chunk] of [body.subarray(0, cut), body.subarray(cut)].entries()) {
      const p = await s3.client.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: mpu.UploadId, PartNumber: i + 1, Body: chunk }),
      );
      parts.push({ ETag: p.ETag, PartNumber: i + 1 });
    }
    await s3.client.send(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: mpu.UploadId, MultipartUpload: { Parts: parts } }),
    );
    // s3rver gives a multipart object the MD5 of its bytes (AWS gives "<md5 of parts>-N"), so here
    // the ETag matches; the other-ETag path is proven on a fake lake (test/unit/archive-etag.test.ts).
    const etag = async (k: string) => (await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: k }))).ETag;
    expect(await etag(key)).to.be.a('string');

    const again = await runCli(args, { env: s3.env });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json.loaded).to.equal(false);
    expect(again.json.files.map((f: any) => [f.name, f.status])).to.deep.equal([['streams/a.csv', 'already_loaded']]);
    expect(await listKeys(s3, bucket, 'l/streams/')).to.deep.equal(['l/streams/archived/a.csv', 'l/streams/archived/b.csv']);
    const ref = await freshDatabase();
    const local = await runCli(['run', '--lake', copyLake('tiny'), '--warehouse', ref, '--quiet']);
    expect(local.code, local.stderr).to.equal(0);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(await tableRows(ref, 'hourly_kpis'));
    expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(await tableRows(ref, 'genre_level_kpis'));
  });

  it('a file that lands after the load started is not archived', async () => {
    const bucket = 'lake-race';
    await s3.bucket(bucket);
    for (const f of ['songs.csv', 'users.csv', 'streams/a.csv', 'streams/b.csv']) {
      await s3.putObject(bucket, `l/${f}`, readFileSync(join(REPO, 'fixtures/tiny', f)));
    }
    const url = await freshDatabase();
    const warehouse = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    const lake = s3.lake(bucket, 'l');
    try {
      const report = await runPipeline({
        command: 'run',
        lake,
        layout: DEFAULT_LAYOUT,
        warehouse,
        runId: 'race',
        rejectsKey: null,
        fault: async (point) => {
          if (point === 'after-scan')
            await s3.putObject(bucket, 'l/streams/late.csv', 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n');
        },
      });
      expect(report.ok, JSON.stringify(report.error)).to.equal(true);
      expect(report.archived.map((a) => a.from)).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
      expect(await listKeys(s3, bucket, 'l/streams/')).to.include('l/streams/late.csv');
      const hourly = await tableRows(url, 'hourly_kpis');
      expect(hourly.find((h) => h.listen_date === '2024-06-01' && h.listen_hour === 10)).to.include({ listen_counts: 5 });
    } finally {
      await lake.close();
      await warehouse.close();
    }
  });
});

// Keep the local-folder twin of the race above, so both adapters are held to it.
describe('integration: the pipeline on a local lake', function () {
  this.timeout(120_000);
  it('a file that lands after the load started is not archived', async () => {
    const { LocalLake } = await import('../../lib/adapters/lake/local.js');
    const dir = copyLake('tiny');
    const url = await freshDatabase();
    const warehouse = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    try {
      const report = await runPipeline({
        command: 'run',
        lake: new LocalLake(dir),
        layout: DEFAULT_LAYOUT,
        warehouse,
        runId: 'race',
        rejectsKey: null,
        fault: (point) => {
          if (point === 'staged') {
            mkdirSync(join(dir, 'streams'), { recursive: true });
            writeFileSync(join(dir, 'streams', 'late.csv'), 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n');
          }
        },
      });
      expect(report.ok, JSON.stringify(report.error)).to.equal(true);
      expect(report.archived.map((a) => a.from)).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
      expect(readFileSync(join(dir, 'streams', 'late.csv'), 'utf8')).to.contain('u1,t1');
    } finally {
      await warehouse.close();
    }
  });
});

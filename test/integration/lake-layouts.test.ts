// A partitioned lake of plain and gzipped stream files (contract §1.2, §1.3), run through the
// whole pipeline on a local folder and on S3 (s3rver) alike: nested files are loaded when the
// layout is recursive, hidden, archived and retracted ones never; archive keeps each file's
// folder (renaming on conflict without losing .csv.gz); a late file re-reads the archived .gz; the
// tables equal those of the same rows in a flat lake of plain files.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { LocalLake } from '../../lib/adapters/lake/local.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import type { Lake } from '../../lib/domain/lake.js';
import { DEFAULT_LAYOUT, type LakeLayout } from '../../lib/domain/layout.js';
import { runPipeline, type PipelineOptions } from '../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import { copyLake, queryRows, REPO, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { startS3, type TestS3 } from '../support/s3.js';

const TINY = join(REPO, 'fixtures', 'tiny');
const HEADER = 'user_id,track_id,listen_time\n';
const A = readFileSync(join(TINY, 'streams', 'a.csv'));
const B = readFileSync(join(TINY, 'streams', 'b.csv'));
const C = Buffer.from(`${HEADER}u2,t2,2024-06-03 08:00:00\nu1,t3,2024-06-03 08:30:00\n`);
/** Arrives after the others were loaded and archived: 2024-06-02 is recomputed, with B re-read. */
const LATE = Buffer.from(`${HEADER}u3,t1,2024-06-02 00:50:00\n`);
/** What must never be read: each would change the KPIs of the dates it names. */
const NOISE = (hour: string) => Buffer.from(`${HEADER}u1,t1,2024-06-01 ${hour}:00:00\nu2,t2,2024-06-02 ${hour}:00:00\n`);

const RECURSIVE: LakeLayout = { ...DEFAULT_LAYOUT, recursive: true };
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface TestLake {
  lake: Lake;
  put(key: string, body: Buffer): Promise<void>;
  /** Every key in the lake, sorted. */
  keys(): Promise<string[]>;
}

async function run(lake: Lake, url: string, layout: LakeLayout, runId: string, command: PipelineOptions['command'] = 'run') {
  const warehouse = new PostgresWarehouse(url, { schema: 'reporting_schema' });
  try {
    const report = await runPipeline({ command, lake, layout, warehouse, runId, rejectsKey: null });
    expect(report.error, JSON.stringify(report.error)).to.equal(null);
    return report;
  } finally {
    await warehouse.close();
  }
}

async function tables(url: string) {
  return { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis') };
}

/** The tables of the same rows in a flat lake of plain files, before and after the late file. */
async function reference(): Promise<{ before: unknown; after: unknown }> {
  const dir = copyLake('tiny');
  writeFileSync(join(dir, 'streams', 'c.csv'), C);
  const url = await freshDatabase('layouts_ref');
  const lake = new LocalLake(dir);
  await run(lake, url, DEFAULT_LAYOUT, 'ref-1', 'compute');
  const before = await tables(url);
  writeFileSync(join(dir, 'streams', 'late.csv'), LATE);
  await run(lake, url, DEFAULT_LAYOUT, 'ref-2', 'compute');
  return { before, after: await tables(url) };
}

const names = (r: RunReport) => r.files.map((f) => [f.name, f.status]);

async function partitionedLake(t: TestLake, ref: { before: unknown; after: unknown }): Promise<void> {
  const B_GZ = gzipSync(B);
  const files: Record<string, Buffer> = {
    'songs.csv': readFileSync(join(TINY, 'songs.csv')),
    'users.csv': readFileSync(join(TINY, 'users.csv')),
    'streams/dt=2024-06-01/part-0.csv': A,
    'streams/dt=2024-06-02/part-0.csv.gz': B_GZ,
    'streams/dt=2024-06-03/part-0.csv': C,
    'streams/readme.txt': Buffer.from('not data'),
    'streams/_temporary/0/part-9.csv': NOISE('01'),
    // Other files already archived under the names the new ones would take.
    'streams/archived/dt=2024-06-02/part-0.csv.gz': gzipSync(NOISE('02')),
    'streams/archived/dt=2024-06-03/part-0.csv': NOISE('03'),
    'streams/retracted/dt=2024-06-01/part-0.csv': NOISE('04'),
  };
  for (const [key, body] of Object.entries(files)) await t.put(key, body);
  const url = await freshDatabase('layouts');

  // Flat, the default: the nested files are only reported.
  const flat = await run(t.lake, url, DEFAULT_LAYOUT, 'flat', 'compute');
  expect(flat.files).to.deep.equal([]);
  expect(flat.ignored).to.deep.equal([
    'streams/_temporary/0/part-9.csv',
    'streams/dt=2024-06-01/part-0.csv',
    'streams/dt=2024-06-02/part-0.csv.gz',
    'streams/dt=2024-06-03/part-0.csv',
    'streams/readme.txt',
  ]);

  const first = await run(t.lake, url, RECURSIVE, 'run-1');
  expect(names(first)).to.deep.equal([
    ['streams/dt=2024-06-01/part-0.csv', 'read'],
    ['streams/dt=2024-06-02/part-0.csv.gz', 'read'],
    ['streams/dt=2024-06-03/part-0.csv', 'read'],
  ]);
  expect(first.files[1]).to.include({ bytes: B_GZ.length, rows: 3, complete: 2 });
  expect(first.ignored).to.deep.equal(['streams/_temporary/0/part-9.csv', 'streams/readme.txt']);
  expect(await tables(url)).to.deep.equal(ref.before);
  expect(first.archived.map((a) => [a.from, a.to.replace(/~[0-9a-f]{10}\./, '~TAG.'), a.renamed])).to.deep.equal([
    ['streams/dt=2024-06-01/part-0.csv', 'streams/archived/dt=2024-06-01/part-0.csv', false],
    ['streams/dt=2024-06-02/part-0.csv.gz', 'streams/archived/dt=2024-06-02/part-0~TAG.csv.gz', true],
    ['streams/dt=2024-06-03/part-0.csv', 'streams/archived/dt=2024-06-03/part-0~TAG.csv', true],
  ]);
  const ledger = await queryRows(
    url,
    'select file_key, size::int, content_hash, archived_key from reporting_schema.musickpi_ledger order by file_key',
  );
  expect(ledger.map((r) => r.file_key)).to.deep.equal(first.archived.map((a) => a.from));
  expect(ledger[1]).to.include({ size: B_GZ.length, content_hash: sha256(B_GZ), archived_key: first.archived[1].to });
  expect(ledger[0]).to.include({ content_hash: sha256(A) });
  const left = (await t.keys()).filter((k) => k.startsWith('streams/') && !k.startsWith('streams/archived/'));
  expect(left).to.deep.equal(['streams/_temporary/0/part-9.csv', 'streams/readme.txt', 'streams/retracted/dt=2024-06-01/part-0.csv']);

  // The archive (and the retracted files) are never listed again.
  const again = await run(t.lake, url, RECURSIVE, 'run-2');
  expect(again.files).to.deep.equal([]);
  expect(again.loaded).to.equal(false);
  expect(again.archived).to.deep.equal([]);

  // A late file for 2024-06-02: the gzipped file, archived under its other name, is read again.
  await t.put('streams/dt=2024-06-02/part-1.csv', LATE);
  const late = await run(t.lake, url, RECURSIVE, 'run-3');
  expect(names(late)).to.deep.equal([['streams/dt=2024-06-02/part-1.csv', 'read']]);
  expect(late.reread).to.deep.equal([{ name: first.archived[1].to, bytes: B_GZ.length, rows: 3, rowsUsed: 2 }]);
  expect(late.datesRecomputed.hourly).to.deep.equal(['2024-06-02']);
  expect(await tables(url)).to.deep.equal(ref.after);
  expect(late.archived.map((a) => a.to)).to.deep.equal(['streams/archived/dt=2024-06-02/part-1.csv']);
}

describe('integration: partitioned lakes of .csv and .csv.gz files', function () {
  this.timeout(180_000);
  let ref: { before: unknown; after: unknown };

  before(async () => {
    ref = await reference();
  });

  it('on a local lake', async () => {
    const dir = copyLake('tiny');
    const lake = new LocalLake(join(dir, 'partitioned'));
    await partitionedLake(
      {
        lake,
        async put(key, body) {
          const file = join(lake.root, ...key.split('/'));
          mkdirSync(dirname(file), { recursive: true });
          writeFileSync(file, body);
        },
        keys: async () => (await lake.list('')).map((o) => o.key),
      },
      ref,
    );
  });

  describe('on S3', () => {
    let s3: TestS3;
    before(async () => {
      s3 = await startS3();
      await s3.bucket('partitioned');
    });
    after(async () => {
      await s3?.stop();
    });

    it('with the results of the local lake', async () => {
      await partitionedLake(
        {
          lake: s3.lake('partitioned', 'lake'),
          put: (key, body) => s3.putObject('partitioned', `lake/${key}`, body),
          async keys() {
            const out: string[] = [];
            let token: string | undefined;
            do {
              const page = await s3.client.send(
                new ListObjectsV2Command({ Bucket: 'partitioned', Prefix: 'lake/', ContinuationToken: token }),
              );
              for (const o of page.Contents ?? []) out.push(o.Key!.slice('lake/'.length));
              token = page.NextContinuationToken;
            } while (token);
            return out.sort();
          },
        },
        ref,
      );
    });
  });
});

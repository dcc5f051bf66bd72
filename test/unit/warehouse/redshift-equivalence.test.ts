// The Redshift dialect's statements executed by the test PostgreSQL (GETDATE() defined, COPY
// from S3 emulated from the mocked S3 objects, reading them the way COPY … CSV NULL AS '\000'
// does) give exactly the tables and ledger the PostgreSQL dialect gives for the same batches:
// the merge rules of the ledger, the covered dates, NULL and '' kept apart, a 255-character
// four-byte artist. It proves the semantics, not Redshift's acceptance of the SQL (the
// dialect's unit tests scan the SQL; the stand-in and a real cluster run it).
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import pg from 'pg';
import { PostgresWarehouse } from '../../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { RedshiftWarehouse } from '../../../lib/adapters/warehouse/redshift/redshift-warehouse.js';
import type { LoadBatch, Warehouse } from '../../../lib/domain/warehouse.js';
import { freshDatabase } from '../../support/pg.js';
import { genreRows, hourlyRows } from './redshift-support.js';

function readCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let value = '';
    let quoted = false;
    if (text[i] === '"') {
      quoted = true;
      i++;
      for (;;) {
        if (text[i] === '"' && text[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else value += text[i++];
      }
    } else while (i < text.length && text[i] !== ',' && text[i] !== '\n') value += text[i++];
    row.push(!quoted && value === '\u0000' ? null : value);
    if (text[i] === ',') i++;
    else {
      rows.push(row);
      row = [];
      i++;
    }
  }
  return rows;
}

async function snapshot(url: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const h = await c.query('SELECT * FROM reporting_schema.hourly_kpis ORDER BY listen_date, listen_hour');
    const g = await c.query('SELECT * FROM reporting_schema.genre_level_kpis ORDER BY listen_date, track_genre');
    const l = await c.query(
      'SELECT file_key, fingerprint, size, rows, run_id, archived_key, archived_fingerprint, content_hash, retracted_at IS NOT NULL AS retracted, hourly_loaded, genre_loaded FROM reporting_schema.musickpi_ledger ORDER BY 1, 2',
    );
    const d = await c.query('SELECT file_key, fingerprint, listen_date::text FROM reporting_schema.musickpi_ledger_dates ORDER BY 1, 2, 3');
    return { h: h.rows, g: g.rows, l: l.rows, d: d.rows };
  } finally {
    await c.end();
  }
}

describe('warehouse/redshift: the same results as the PostgreSQL dialect (SQL run on PostgreSQL)', () => {
  const store = new Map<string, Buffer>();
  let s3: ReturnType<typeof mockClient>;
  before(() => {
    s3 = mockClient(S3Client);
    s3.on(PutObjectCommand).callsFake((i: { Key: string; Body: Buffer | string }) => {
      store.set(i.Key, Buffer.from(i.Body));
      return {};
    });
    s3.on(DeleteObjectCommand).callsFake((i: { Key: string }) => {
      store.delete(i.Key);
      return {};
    });
    s3.on(ListObjectsV2Command).callsFake(() => ({ Contents: [...store.keys()].map((Key) => ({ Key, LastModified: new Date() })) }));
  });
  after(() => s3.restore());

  it('gives the same tables and ledger as the PostgreSQL dialect', async () => {
    const rsUrl = await freshDatabase('rs');
    const pgUrl = await freshDatabase('pg');
    const admin = new pg.Client({ connectionString: rsUrl });
    await admin.connect();
    await admin.query(`CREATE FUNCTION getdate() RETURNS timestamp LANGUAGE sql AS 'SELECT clock_timestamp()::timestamp'`);
    await admin.end();
    const u = new URL(rsUrl);
    const newClient = (config: pg.ClientConfig) => {
      const client = new pg.Client({ ...config, ssl: false });
      const query = client.query.bind(client) as (...a: unknown[]) => Promise<pg.QueryResult>;
      (client as unknown as { query: unknown }).query = async (...args: unknown[]) => {
        // Redshift's table attributes (distribution, sort key) mean nothing to PostgreSQL.
        if (typeof args[0] === 'string') args[0] = args[0].replace(/\)\s*DISTSTYLE \w+(?:\s+SORTKEY \([^)]*\))?$/, ')');
        const text = typeof args[0] === 'string' ? args[0] : '';
        const m = /^COPY (\w+) \(([^)]*)\)\nFROM 's3:\/\/stage-bucket\/([^']+)'/.exec(text);
        if (!m) return query(...args);
        assert.match(text, /NULL AS '\\000'/);
        const manifest = JSON.parse(store.get(m[3])!.toString()) as { entries: { url: string }[] };
        const cols = m[2].split(', ');
        let n = 0;
        for (const e of manifest.entries) {
          const key = e.url.replace('s3://stage-bucket/', '');
          for (const row of readCsv(gunzipSync(store.get(key)!).toString('utf8'))) {
            await query(`INSERT INTO ${m[1]} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, row);
            n++;
          }
        }
        return { rowCount: n, rows: [], command: 'COPY', fields: [] };
      };
      return client;
    };
    const rs = new RedshiftWarehouse(`redshift://${u.username}@${u.hostname}:${u.port}${u.pathname}?sslmode=disable`, {
      schema: 'reporting_schema',
      staging: { uri: 's3://stage-bucket/st/' },
      env: { PGPASSWORD: decodeURIComponent(u.password) },
      testing: { newClient },
    });
    const pgw = new PostgresWarehouse(pgUrl, { schema: 'reporting_schema' });
    const hourly = hourlyRows('2024-06-01', 4);
    hourly[3].top_artist = '𝄞'.repeat(255);
    const e = (key: string, fp: string, over: object = {}) => ({
      fileKey: key,
      fingerprint: fp,
      size: 10,
      rows: 3,
      dates: ['2024-06-01'],
      tables: ['hourly' as const],
      runId: 'r',
      archivedKey: null,
      contentHash: null,
      ...over,
    });
    const batches: LoadBatch[] = [
      {
        runId: 'r1',
        hourly: { dates: ['2024-06-01', '2024-06-02'], rows: hourly },
        genre: { dates: ['2024-06-01'], rows: genreRows('2024-06-01', 3) },
        ledger: [
          e('streams/a.csv', 'f1', { contentHash: 'h1', archivedKey: 'archive/a.csv' }),
          e('streams/b.csv', 'f2'),
          e('streams/b.csv', 'f2', { dates: ['2024-06-02'], tables: ['genre'] }),
        ],
      },
      {
        runId: 'r2',
        hourly: { dates: ['2024-06-01'], rows: hourly.slice(0, 2) },
        ledger: [e('streams/a.csv', 'f1', { tables: ['genre'], dates: ['2024-06-03'] }), e('streams/twin.csv', 'tw')],
      },
      {
        runId: 'r3',
        genre: { dates: ['2024-06-01'], rows: [] },
        ledger: [],
        retire: [{ fileKey: 'streams/twin.csv', fingerprint: 'tw' }],
        retract: [{ fileKey: 'streams/b.csv', fingerprint: 'f2' }],
      },
    ];
    for (const w of [rs, pgw] as Warehouse[]) {
      await w.init();
      await w.init();
      const lock = await w.acquireRunLock();
      await w.claimLake('s3://lake/x');
      for (const b of batches) await w.load(b);
      await w.markArchived('streams/b.csv', 'f2', 'archive/b.csv', 'f2b');
      await w.load(batches[1]);
      await lock.release();
    }
    const a = await snapshot(rsUrl);
    const b = await snapshot(pgUrl);
    assert.deepEqual(a, b);
    assert.equal(a.h.find((r) => r.listen_hour === 3)?.top_artist, undefined, 'r2 replaced the date');
    assert.ok(a.l.length >= 2);
    assert.deepEqual(
      await rs.readLedger().then((l) => l.map((x) => ({ ...x, retractedAt: x.retractedAt ? 'set' : undefined }))),
      await pgw.readLedger().then((l) => l.map((x) => ({ ...x, retractedAt: x.retractedAt ? 'set' : undefined }))),
    );
    // First load's tables, exactly, with the NULL and '' artists and the 1020-byte one.
    await rs.load(batches[0]);
    await pgw.load(batches[0]);
    const c = await snapshot(rsUrl);
    assert.deepEqual(c.h, (await snapshot(pgUrl)).h);
    assert.deepEqual(
      c.h.map((r) => r.top_artist),
      hourly.map((r) => r.top_artist),
    );
    assert.deepEqual(
      hourly.slice(0, 2).map((r) => r.top_artist),
      [null, ''],
    );
    assert.equal(store.size, 0, 'stage objects removed');
    assert.deepEqual(await rs.query('SELECT count(*) AS n FROM hourly_kpis'), {
      columns: ['n'],
      rows: [[4]],
      command: 'SELECT',
      rowCount: 1,
    });
    await rs.close();
    await pgw.close();
  });
});

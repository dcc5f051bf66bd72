// A slow consumer and a destroyed-midway test for every stream stage (issue 4, "Flaky
// services"): the local lake's read and write, the CSV parser, the archive's byte comparison, and
// the warehouse's COPY. (S3 reads and writes have theirs in s3-lake.test.ts: "a slow consumer
// still gets every byte", "destroying the stream midway neither hangs nor leaks the connection",
// "leaves nothing behind when the body fails", "an abort mid-upload ... leaves no object".)

import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';

import { expect } from 'chai';

import { sameContent } from '../../lib/stages/archive.js';
import { MkpiError } from '../../lib/domain/errors.js';
import { LocalLake } from '../../lib/adapters/lake/local.js';
import { isCorruptGzip, parseCsv } from '../../lib/stages/parse.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import type { HourlyRow } from '../../lib/domain/kpi.js';
import { freshDatabase } from '../support/pg.js';
import { snapshotWarehouse } from '../support/harness.js';

const MiB = 1024 * 1024;

function slowSink(delayMs: number, onChunk: (b: Buffer) => void): Writable {
  return new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      onChunk(chunk);
      setTimeout(cb, delayMs);
    },
  });
}

/** Chunks of `body`, each after `delayMs`, optionally failing after `failAfter` chunks. */
function slowSource(body: Buffer, chunk: number, delayMs: number, failAfter?: number): Readable {
  let i = 0;
  let sent = 0;
  return new Readable({
    read() {
      const later = (fn: () => void) => (delayMs > 0 ? setTimeout(fn, delayMs) : setImmediate(fn));
      later(() => {
        if (failAfter !== undefined && sent === failAfter) {
          this.destroy(new Error('source broke midway'));
          return;
        }
        if (i >= body.length) {
          this.push(null);
          return;
        }
        this.push(body.subarray(i, i + chunk));
        i += chunk;
        sent++;
      });
    },
  });
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('stream stages: slow consumers and streams destroyed midway', function () {
  this.timeout(60_000);
  let dir: string;
  let lake: LocalLake;
  const big = randomBytes(3 * MiB);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mkpi-streams-'));
    mkdirSync(join(dir, 'streams'));
    writeFileSync(join(dir, 'streams', 'big.bin'), big);
    lake = new LocalLake(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('local lake read', () => {
    it('a slow consumer gets every byte', async () => {
      const hash = createHash('sha256');
      await pipeline(
        await lake.read('streams/big.bin'),
        slowSink(1, (b) => hash.update(b)),
      );
      expect(hash.digest('hex')).to.equal(createHash('sha256').update(big).digest('hex'));
    });

    it('destroyed midway: no error, no hang, the file handle closed', async () => {
      const before = openFds();
      const stream = await lake.read('streams/big.bin');
      await new Promise<void>((resolve) => stream.once('data', () => resolve()));
      stream.destroy();
      await new Promise<void>((resolve) => stream.once('close', () => resolve()));
      expect(openFds()).to.equal(before);
    });

    it('an abort midway ends the read with MKPI_INTERRUPTED', async () => {
      const ac = new AbortController();
      const stream = await lake.read('streams/big.bin', ac.signal);
      let n = 0;
      const err = await pipeline(
        stream,
        slowSink(1, () => (++n === 2 ? ac.abort() : undefined)),
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as MkpiError).code).to.equal('MKPI_INTERRUPTED');
    });
  });

  describe('local lake write (the rejects output)', () => {
    it('a slow body is written whole', async () => {
      await lake.write('rejects/slow.bin', slowSource(big.subarray(0, 256 * 1024), 10_000, 1));
      expect(readFileSync(join(dir, 'rejects', 'slow.bin')).equals(big.subarray(0, 256 * 1024))).to.equal(true);
    });

    it('a body destroyed midway leaves nothing behind, not even a temp file', async () => {
      const err = await lake.write('rejects/broken.bin', slowSource(big, 64 * 1024, 0, 3)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).message).to.match(/source broke midway/);
      expect(readdirSync(join(dir, 'rejects')).filter((n) => n.includes('broken'))).to.deep.equal([]);
    });

    it('an abort midway leaves nothing behind', async () => {
      const ac = new AbortController();
      const body = slowSource(big, 64 * 1024, 1);
      setTimeout(() => ac.abort(), 5);
      const err = await lake.write('rejects/aborted.bin', body, ac.signal).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as MkpiError).code).to.equal('MKPI_INTERRUPTED');
      expect(readdirSync(join(dir, 'rejects')).filter((n) => n.includes('aborted'))).to.deep.equal([]);
    });
  });

  describe('CSV parser', () => {
    const csv = Buffer.from('a,b\n' + Array.from({ length: 5000 }, (_, i) => `"x${i}\n",${i}\n`).join(''));

    it('a slow, finely chunked source gives the same records as one read', async () => {
      const fast: string[] = [];
      await parseCsv(Readable.from([csv]), (f) => fast.push(f.join('|')));
      const slow: string[] = [];
      await parseCsv(slowSource(csv, 7, 0), (f) => slow.push(f.join('|')));
      expect(slow).to.deep.equal(fast);
      expect(slow).to.have.length(5001);
    });

    it('a source that breaks midway rejects with its error, without hanging', async () => {
      let records = 0;
      const err = await parseCsv(slowSource(csv, 1000, 0, 5), () => records++).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).message).to.match(/source broke midway/);
      expect(records).to.be.greaterThan(0);
    });
  });

  describe('CSV parser on gzip input', () => {
    const csv = Buffer.from('a,b\n' + Array.from({ length: 200_000 }, (_, i) => `"x${i}\n",${randomBytes(8).toString('hex')}\n`).join(''));
    const gz = gzipSync(csv);

    it('a slow, finely chunked gzip source gives the records of the plain text', async () => {
      const plain: string[] = [];
      await parseCsv(Readable.from([csv.subarray(0, 20_000)]), (f) => plain.push(f.join('|')));
      const head = gzipSync(csv.subarray(0, 20_000));
      const slow: string[] = [];
      await parseCsv(slowSource(head, 3, 0), (f) => slow.push(f.join('|')), { gunzip: true });
      expect(slow).to.deep.equal(plain);
    });

    it('an abort midway ends the read (an AbortError, as for plain text) and closes the file', async () => {
      writeFileSync(join(dir, 'streams', 'big.csv.gz'), gz);
      const before = openFds();
      const ac = new AbortController();
      let records = 0;
      const err = await parseCsv(
        await lake.read('streams/big.csv.gz', ac.signal),
        () => {
          if (++records === 1000) ac.abort();
        },
        { gunzip: true, signal: ac.signal },
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).name, String(err)).to.equal('AbortError');
      expect(isCorruptGzip(err)).to.equal(false);
      expect(records).to.be.lessThan(200_000);
      await new Promise((r) => setTimeout(r, 50));
      expect(openFds()).to.equal(before);
    });

    it('a source that breaks midway rejects with its own error, not as corrupt gzip', async () => {
      const err = await parseCsv(slowSource(gz, 4096, 0, 5), () => undefined, { gunzip: true }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).message).to.match(/source broke midway/);
      expect(isCorruptGzip(err)).to.equal(false);
    });
  });

  describe("archive's byte comparison", () => {
    it('destroys both reads when it stops early, and when one side fails', async () => {
      writeFileSync(join(dir, 'streams', 'big2.bin'), Buffer.concat([Buffer.from('X'), big.subarray(1)]));
      const before = openFds();
      expect(await sameContent(lake, 'streams/big.bin', 'streams/big2.bin')).to.equal(false);
      await new Promise((r) => setTimeout(r, 50));
      expect(openFds()).to.equal(before);
      const err = await sameContent(lake, 'streams/big.bin', 'streams/none.bin').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as MkpiError).code).to.equal('MKPI_NO_INPUT');
      await new Promise((r) => setTimeout(r, 50));
      expect(openFds(), 'the read that did open was closed').to.equal(before);
    });
  });

  describe('warehouse COPY', () => {
    const rows = (n: number): HourlyRow[] =>
      Array.from({ length: n }, (_, i) => ({
        listen_date: `2024-01-${String((i % 28) + 1).padStart(2, '0')}`,
        listen_hour: Math.floor(i / 28) % 24,
        unique_listeners: i,
        listen_counts: i,
        top_artist: `artist ${i}`,
        avg_sessions_per_user: 1.5,
        diversity_index: 0.25,
        most_engaged_age_group: '18-25',
      }));

    it('a slow step inside the COPY (the server waiting on us) still loads every row', async () => {
      const url = await freshDatabase('copy_slow');
      const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
      try {
        await wh.init();
        const all = rows(28 * 24);
        const dates = [...new Set(all.map((r) => r.listen_date))];
        await wh.load({
          runId: 'r',
          hourly: { dates, rows: all },
          ledger: [],
          onStep: (s) => (s === 'mid-copy' ? new Promise((r) => setTimeout(r, 300)) : undefined),
        });
        expect((await snapshotWarehouse(url)).hourly).to.have.length(all.length);
      } finally {
        await wh.close();
      }
    });

    it('a COPY abandoned midway (the step throws) rolls back, and the connection is usable again', async () => {
      const url = await freshDatabase('copy_abandon');
      const wh = new PostgresWarehouse(url, { schema: 'reporting_schema' });
      try {
        await wh.init();
        const all = rows(28 * 24);
        const dates = [...new Set(all.map((r) => r.listen_date))];
        const err = await wh
          .load({
            runId: 'r',
            hourly: { dates, rows: all },
            ledger: [],
            onStep: (s) => {
              if (s === 'mid-copy') throw new MkpiError('MKPI_INTERRUPTED', 'stop');
            },
          })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect((err as MkpiError).code).to.equal('MKPI_INTERRUPTED');
        expect((await snapshotWarehouse(url)).hourly).to.deep.equal([]);
        // The same warehouse loads fine afterwards.
        await wh.load({ runId: 'r2', hourly: { dates, rows: all }, ledger: [] });
        expect((await snapshotWarehouse(url)).hourly).to.have.length(all.length);
      } finally {
        await wh.close();
      }
    });
  });
});

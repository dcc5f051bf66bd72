// One stream file split into byte ranges (parallel-scan.ts) against one reader: the boundaries
// RecordBoundaryScanner finds are ones the parser agrees with, whatever the quoting, the line
// endings and the chunking; and scanFilesParallel on a split file gives the scan, the KPIs and
// the rejects output (line numbers included) of scanStreamFile, byte for byte.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { REOPEN_MODULE } from '../../lib/adapters/lake/reopen.js';
import { openLake } from '../../lib/adapters/lake/open.js';
import { CsvParser, RecordBoundaryScanner } from '../../lib/stages/parse.js';
import { create, result } from '../../lib/stages/reduce.js';
import { RejectSink } from '../../lib/stages/rejects.js';
import { loadDimensions, scanStreamFile } from '../../lib/stages/scan.js';
import { liveWorkers, plannedWorkers, rangeTargets, scanFilesParallel, splittable } from '../../lib/pipeline/parallel-scan.js';
import type { Lake } from '../../lib/domain/lake.js';
import { generateLake, rng } from '../../bench/generate-lake.js';

type Rec = [string[], number, number];

function parseAll(bytes: Uint8Array, chunk: number, bom = true): { records: Rec[]; atBoundary: boolean; lineEndings: number } {
  const records: Rec[] = [];
  const p = new CsvParser((f, line, flag) => records.push([f, line, flag]), { bom, maxRecordChars: 200 });
  for (let i = 0; i < bytes.length; i += chunk) p.write(bytes.subarray(i, Math.min(bytes.length, i + chunk)));
  const atBoundary = p.atRecordBoundary;
  p.end();
  return { records, atBoundary, lineEndings: p.lineEndings };
}

const ATOMS = ['a', 'bc', ',', ',', '"', '""', '"x,y"', '"l1\nl2"', '\n', '\n', '\r\n', '\r', 'é', '😀', '\ufeff', ' ', 'Z"q'];

/** Text that exercises every corner of the grammar: quotes opening and literal, quoted LFs, CRLF, lone CR, BOM. */
function hostileCsv(r: () => number, n: number): Uint8Array {
  let s = r() < 0.3 ? '\ufeff' : '';
  for (let i = 0; i < n; i++) s += ATOMS[Math.floor(r() * ATOMS.length)];
  const bytes = Buffer.from(s, 'utf8');
  // An invalid byte now and then: the decoder's U+FFFD must not move a boundary.
  if (r() < 0.3 && bytes.length > 4) bytes[Math.floor(r() * bytes.length)] = 0xff;
  return bytes;
}

describe('RecordBoundaryScanner', () => {
  it('finds only boundaries the parser agrees with: the two halves parse as the whole does (fuzz)', () => {
    for (let seed = 1; seed <= 3000; seed++) {
      const r = rng(seed);
      const bytes = hostileCsv(r, 20 + Math.floor(r() * 200));
      const targets: number[] = [];
      for (let t = 1 + Math.floor(r() * 20); t < bytes.length; t += 1 + Math.floor(r() * 30)) targets.push(t);
      const found: number[] = [];
      const scanner = new RecordBoundaryScanner(targets, (b) => found.push(b));
      const chunk = 1 + Math.floor(r() * 17);
      for (let i = 0; i < bytes.length; i += chunk) scanner.write(bytes.subarray(i, Math.min(bytes.length, i + chunk)));
      expect(scanner.bytes).to.equal(bytes.length);
      const whole = parseAll(bytes, 64);
      let prev = 0;
      for (const b of found) {
        expect(b, `seed ${seed}`).to.be.greaterThan(prev);
        expect(bytes[b - 1], `seed ${seed}: a boundary follows an LF`).to.equal(10);
        prev = b;
      }
      // Split at every boundary found: the ranges, parsed apart, give the whole's records and lines.
      const cuts = [0, ...found.filter((b) => b < bytes.length), bytes.length];
      const records: Rec[] = [];
      let offset = 0;
      for (let i = 0; i + 1 < cuts.length; i++) {
        const part = parseAll(bytes.subarray(cuts[i], cuts[i + 1]), 1 + Math.floor(r() * 9), i === 0);
        if (i + 2 < cuts.length) expect(part.atBoundary, `seed ${seed}: range ${i} ends at a record boundary`).to.equal(true);
        for (const [f, line, flag] of part.records) records.push([f, line + offset, flag]);
        offset += part.lineEndings;
      }
      expect(records, `seed ${seed}`).to.deep.equal(whole.records);
    }
  });

  it('finds the first boundary at or after each target, skipping LFs inside quotes', () => {
    const text = Buffer.from('h1,h2\n"a\nb",c\nd,e\n"x""\n",y\r\nz,w\n', 'utf8');
    const found: number[] = [];
    const targets = [1, 8, 12, 16, 20];
    const scanner = new RecordBoundaryScanner(targets, (b) => found.push(b));
    scanner.write(text);
    // Record starts: 6 ("a\nb"), 14 (d,e), 18 ("x""\n"), 28 (z,w).
    expect(found).to.deep.equal([6, 14, 18, 28]);
  });
});

describe('one file split into byte ranges', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function lakeWith(streams: string | Uint8Array, seed: number): string {
    const d = mkdtempSync(join(tmpdir(), 'mkpi-split-'));
    dirs.push(d);
    generateLake({ out: d, songs: 300, users: 100, streams: 10, files: 1, days: 1, seed, messy: false, startDate: '2024-06-01' });
    for (const f of readdirSync(join(d, 'streams'))) rmSync(join(d, 'streams', f));
    mkdirSync(join(d, 'streams'), { recursive: true });
    writeFileSync(join(d, 'streams', 'big.csv'), streams);
    return d;
  }

  /** A stream file with every kind of row: good ones, orphans, bad times, quoted IDs holding newlines, CRLF, blank lines. */
  function streamFile(dir: string, r: () => number, rows: number): string {
    const tracks = readFileSync(join(dir, 'songs.csv'), 'utf8')
      .split('\n')
      .slice(1, -1)
      .map((l) => l.split(',')[1]);
    const users = readFileSync(join(dir, 'users.csv'), 'utf8')
      .split('\n')
      .slice(1, -1)
      .map((l) => l.split(',')[0]);
    const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)];
    let s = (r() < 0.5 ? '\ufeff' : '') + 'user_id,track_id,listen_time\n';
    for (let i = 0; i < rows; i++) {
      const hour = String(Math.floor(r() * 24)).padStart(2, '0');
      const time = `2024-06-0${1 + Math.floor(r() * 3)} ${hour}:${String(Math.floor(r() * 60)).padStart(2, '0')}:00`;
      const nl = r() < 0.2 ? '\r\n' : '\n';
      const m = r();
      if (m < 0.55) s += `${pick(users)},${pick(tracks)},${time}${nl}`;
      else if (m < 0.62) s += `"${pick(users)}","${pick(tracks)}","${time}"${nl}`;
      else if (m < 0.7)
        s += `"${pick(users)}\n${pick(users)}",${pick(tracks)},${time}${nl}`; // a quoted newline: an orphan spanning lines
      else if (m < 0.75) s += `${pick(users)},"${pick(tracks)}\r\n,""x""",${time}${nl}`;
      else if (m < 0.8) s += `${pick(users)},${pick(tracks)}${nl}`;
      else if (m < 0.85) s += `${pick(users)},${pick(tracks)},2024-13-01 00:00:00${nl}`;
      else if (m < 0.88) s += nl;
      else if (m < 0.91) s += `ghost,${pick(tracks)},${time}${nl}`;
      else if (m < 0.94) s += `${pick(users)},${pick(tracks)},${time},extra${nl}`;
      else if (m < 0.97)
        s += `a"b,${pick(tracks)},${time}${nl}`; // a literal quote
      else s += `\ufeff${pick(users)},${pick(tracks)},${time}${nl}`; // U+FEFF mid-file is data
    }
    if (r() < 0.3) s += `"unterminated,${pick(tracks)},x\nmore`;
    return s;
  }

  async function both(dir: string, workers: number, rangeBytes: number, local: Lake): Promise<void> {
    const { dims } = await loadDimensions(local, { songs: 'songs.csv', users: 'users.csv' }, {});
    const files = (await local.list('streams/')).filter((f) => f.key.endsWith('.csv'));
    const one = create(dims.trackCount, dims.userCount);
    const oneSink = new RejectSink();
    const oneScan = await scanStreamFile(local, files[0], dims, one, { rejects: oneSink });
    const two = create(dims.trackCount, dims.userCount);
    const twoSink = new RejectSink();
    let rows = 0;
    const twoScans = await scanFilesParallel(files, dims, two, {
      lake: { module: REOPEN_MODULE, uri: dir },
      workers,
      local,
      rejects: twoSink,
      splitMinBytes: 0,
      rangeBytes,
      onRows: (n) => (rows += n),
    });
    expect(twoScans).to.deep.equal([oneScan]);
    expect(rows).to.equal(oneScan.rows);
    expect(result(two, dims)).to.deep.equal(result(one, dims));
    const read = async (sink: RejectSink, name: string) => {
      const wrote = await sink.publish(local, `out/${name}.csv`);
      sink.dispose();
      return wrote ? readFileSync(join(dir, 'out', `${name}.csv`)) : Buffer.alloc(0);
    };
    const a = await read(oneSink, 'one');
    const b = await read(twoSink, 'two');
    expect(b.toString('latin1')).to.equal(a.toString('latin1'));
    expect(liveWorkers()).to.equal(0);
  }

  it('gives the scan, KPIs and rejects (exact line numbers) of one reader, on hostile files with quoted newlines and CRLF (fuzz)', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const r = rng(seed * 7919);
      const dir = lakeWith('', seed);
      writeFileSync(join(dir, 'streams', 'big.csv'), streamFile(dir, r, 1500 + Math.floor(r() * 3000)));
      const lake = openLake(dir);
      try {
        // Tiny ranges: dozens of them, most boundaries next to a quoted newline.
        for (const [workers, rangeBytes] of [
          [2, 500 + Math.floor(r() * 3000)],
          [1, 7000],
        ])
          await both(dir, workers, rangeBytes, lake);
      } finally {
        await lake.close();
      }
    }
  });

  it('gives the results of one reader on a generated lake file (clean and messy)', async () => {
    for (const messy of [false, true]) {
      const d = mkdtempSync(join(tmpdir(), 'mkpi-split-gen-'));
      dirs.push(d);
      generateLake({ out: d, songs: 2000, users: 500, streams: 60_000, files: 1, days: 3, seed: 5, messy, startDate: '2024-06-01' });
      const lake = openLake(d);
      try {
        await both(d, 2, 256 * 1024, lake);
      } finally {
        await lake.close();
      }
    }
  });

  it('reads a file whose header is bad whole, with the schema error of one reader', async () => {
    const dir = lakeWith('user_id,track\n' + 'a,b\n'.repeat(5000), 3);
    const lake = openLake(dir);
    try {
      await both(dir, 2, 1000, lake);
    } finally {
      await lake.close();
    }
  });

  it('cuts full ranges while much is left, then shrinking shares of the rest, so that the readers end together', () => {
    const MB = 1 << 20;
    for (const [size, step, readers] of [
      [293 * MB, 24 * MB, 3],
      [40 * MB, 24 * MB, 3],
      [10 * MB, 24 * MB, 2],
      [1000, 7, 1],
      [5, 100, 3],
    ]) {
      const t = rangeTargets(size, step, readers);
      const sizes = [...t, size].map((end, i) => end - (i === 0 ? 0 : t[i - 1]));
      expect(sizes.reduce((a, b) => a + b, 0)).to.equal(size);
      sizes.forEach((n, i) => {
        expect(n).to.be.greaterThan(0);
        expect(n).to.be.at.most(step);
        // Never growing, and never under step / 8 but for the last piece.
        if (i > 0) expect(n).to.be.at.most(sizes[i - 1]);
        if (i < sizes.length - 1) expect(n).to.be.at.least(Math.max(1, Math.floor(step / 8)));
      });
    }
    const big = rangeTargets(293 * MB, 24 * MB, 3);
    expect(big[0]).to.equal(24 * MB);
    // The last ranges are smaller than a full one: the tail is shared.
    expect(293 * MB - big[big.length - 1]).to.be.below(4 * MB);
  });

  it('plans workers for one large plain file only', () => {
    const f = (size: number, ext = 'csv') => ({ key: `streams/x.${ext}`, size, fingerprint: 'x' });
    const spec = { lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 };
    expect(splittable(f(64 << 20))).to.equal(true);
    expect(splittable(f(64 << 20, 'csv.gz'))).to.equal(false);
    expect(splittable(f(1 << 20))).to.equal(false);
    expect(plannedWorkers(spec, [f(64 << 20)])).to.equal(2);
    expect(plannedWorkers(spec, [f(64 << 20, 'csv.gz')])).to.equal(0);
    expect(plannedWorkers(spec, [f(20 << 20)])).to.equal(0);
    // By default a split file has one reader a core, this thread being one of them when it reads.
    const cores = Math.min(2, availableParallelism());
    const auto = { lake: spec.lake };
    expect(plannedWorkers(auto, [f(64 << 20)])).to.equal(Math.max(1, cores - 1));
    expect(plannedWorkers({ ...auto, mainReads: false }, [f(64 << 20)])).to.equal(cores);
    expect(plannedWorkers(auto, [f(20 << 20), f(20 << 20)])).to.equal(cores);
  });
});

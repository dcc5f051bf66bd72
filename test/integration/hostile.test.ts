// The hostile-input corpus (fixtures/hostile): every file, alone in a lake with the shared
// songs.csv / users.csv, goes through the library's validate, and the outcome must be exactly
// what fixtures/hostile/expected.json says, worked out from the spec by hand: per-file counts,
// each reject's line and reason as the rejects output records them, or a schema failure
// naming the file and the column. Then the whole corpus is loaded once into a real
// PostgreSQL and the tables must satisfy the spec §6 invariants.
//
// The two 100 MiB files are generated at test time (not committed), and their runs must stay
// within a bounded amount of memory: measured in a process of its own, after forced GCs
// (test/support/memory.ts), so that only live memory counts.

import { expect } from 'chai';
import {
  closeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runPipeline } from '../../lib/pipeline/pipeline.js';
import { LocalLake } from '../../lib/adapters/lake/local.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { REJECT_REASONS, type RejectReason } from '../../lib/domain/reject-reasons.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import { REPO, runCli } from '../support/cli.js';
import { measureInChild } from '../support/memory.js';
import { freshDatabase } from '../support/pg.js';

const HOSTILE = join(REPO, 'fixtures', 'hostile');
const MiB = 1024 * 1024;

interface SchemaExpectation {
  schema: { column: string };
}
interface RowsExpectation {
  rows: number;
  complete: number;
  /** line -> reason */
  rejects: Record<string, RejectReason>;
  /** UTC date -> complete rows of that date */
  dates: Record<string, number>;
  /** A songs file to use instead of the shared one, and what its rejected rows must count. */
  songs?: string;
  songsRejected?: Record<string, number>;
  /** Generated at test time rather than committed. */
  generated?: string;
  /** A repeated header name the run must warn about. */
  warning?: string;
}
type Expectation = SchemaExpectation | RowsExpectation;

const expected: Record<string, Expectation> = JSON.parse(readFileSync(join(HOSTILE, 'expected.json'), 'utf8'));
const isSchema = (e: Expectation): e is SchemaExpectation => 'schema' in e;
const names = Object.keys(expected);
const rowFiles = names.filter((n) => !isSchema(expected[n]));

// ---------------------------------------------------------------------------------------------
// Helpers

/** RFC 4180, written independently of lib/parse.ts so the rejects output is not read by the code under test. */
function parseCsvText(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let any = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    any = true;
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      any = false;
    } else field += c;
  }
  if (any) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** The rejects output of a run as file -> line -> reason (a line appearing twice fails). */
function readRejects(lakeDir: string, key: string | null): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  if (key === null) return out;
  const [head, ...rows] = parseCsvText(readFileSync(join(lakeDir, key), 'utf8'));
  expect(head).to.deep.equal(['file', 'line', 'reason', 'detail', 'raw']);
  for (const r of rows) {
    expect(r, JSON.stringify(r)).to.have.length(5);
    const [file, line, reason, detail] = r;
    expect(detail, `${file}:${line} detail`).to.not.equal('');
    let m = out.get(file);
    if (!m) out.set(file, (m = new Map()));
    expect(m.has(line), `${file}:${line} rejected twice`).to.equal(false);
    m.set(line, reason);
  }
  return out;
}

function reasonCounts(rejects: Record<string, string>): Record<RejectReason, number> {
  const counts = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
  for (const reason of Object.values(rejects)) counts[reason as RejectReason]++;
  return counts;
}

/** Generated files: a 1 MiB block written 100 times, so generating them takes little memory too. */
function generate(dir: string, name: string): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n');
    if (name === 'huge-line.csv') {
      // 100 MiB, commas every 100 characters, no quote and no line ending at all.
      const block = Buffer.from(('x'.repeat(99) + ',').repeat(MiB / 100) + 'x'.repeat(MiB % 100));
      for (let i = 0; i < 100; i++) writeSync(fd, block);
    } else if (name === 'huge-quoted-line.csv') {
      // A quoted third field of 100 MiB holding 1000 line endings; the row after it is on line 1004.
      writeSync(fd, 'u1,t1,"');
      const block = Buffer.alloc(MiB, 'y');
      for (let k = 1; k <= 10; k++) block[Math.floor((k * MiB) / 11)] = 0x0a;
      for (let i = 0; i < 100; i++) writeSync(fd, block);
      writeSync(fd, '"\nu2,tX,2024-06-01 10:00:00\n');
    } else {
      throw new Error(`no generator for ${name}`);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

function place(src: string, dest: string): void {
  try {
    linkSync(src, dest);
  } catch {
    copyFileSync(src, dest);
  }
}

/** A lake holding the shared dimensions (or a songs variant) and the given stream files. */
function makeLake(streams: { name: string; path: string }[], songs = 'songs.csv'): string {
  const dir = mkdtempSync(join(tmpdir(), 'musickpi-hostile-'));
  copyFileSync(join(HOSTILE, songs), join(dir, 'songs.csv'));
  copyFileSync(join(HOSTILE, 'users.csv'), join(dir, 'users.csv'));
  mkdirSync(join(dir, 'streams'));
  for (const s of streams) place(s.path, join(dir, 'streams', s.name));
  return dir;
}

const WORK = join(import.meta.dirname, 'hostile-work.ts');

const REJECTS_KEY = 'rejects/hostile.csv';

/** validate in a fresh process; growth = the most live memory (heap + external) over the start. */
async function validateMeasured(lakeDir: string, runId = 'hostile', rejectsKey: string | null = REJECTS_KEY) {
  const run = await measureInChild<RunReport>(WORK, 'validateLake', [lakeDir, runId, rejectsKey]);
  return { report: run.result, growth: run.peakGrowth };
}

async function validate(lakeDir: string): Promise<RunReport> {
  return runPipeline({
    command: 'validate',
    lake: new LocalLake(lakeDir),
    layout: DEFAULT_LAYOUT,
    runId: 'hostile',
    rejectsKey: REJECTS_KEY,
    maxBadRows: Infinity,
  });
}

// ---------------------------------------------------------------------------------------------

describe('hostile input corpus (fixtures/hostile)', function () {
  this.timeout(180_000);
  let generatedDir: string;
  const lakes: string[] = [];
  const source = (name: string) =>
    (expected[name] as RowsExpectation).generated ? join(generatedDir, name) : join(HOSTILE, 'streams', name);

  before(() => {
    generatedDir = mkdtempSync(join(tmpdir(), 'musickpi-hostile-gen-'));
    for (const name of names) if ((expected[name] as RowsExpectation).generated) generate(generatedDir, name);
  });

  after(() => {
    rmSync(generatedDir, { recursive: true, force: true });
    for (const dir of lakes) rmSync(dir, { recursive: true, force: true });
  });

  it('has at least 30 files, each committed or generated, and an expectation for every committed one', () => {
    const committed = readdirSync(join(HOSTILE, 'streams')).sort();
    const listed = names.filter((n) => !(expected[n] as RowsExpectation).generated).sort();
    expect(committed).to.deep.equal(listed);
    expect(names.length).to.be.at.least(30);
    for (const n of rowFiles) {
      const e = expected[n] as RowsExpectation;
      // Every row is either complete or rejected, in the expectations themselves too.
      expect(e.complete + Object.keys(e.rejects).length, n).to.equal(e.rows);
      expect(
        Object.values(e.dates).reduce((a, b) => a + b, 0),
        `${n} dates`,
      ).to.equal(e.complete);
      for (const r of Object.values(e.rejects)) expect(REJECT_REASONS, `${n} reason`).to.include(r);
    }
  });

  for (const name of names) {
    const e = expected[name];
    if (isSchema(e)) {
      it(`${name}: schema failure naming the file and column ${e.schema.column}`, async () => {
        const lake = makeLake([{ name, path: source(name) }]);
        lakes.push(lake);
        const report = await validate(lake);
        expect(report.ok).to.equal(false);
        expect(report.error?.code).to.equal('MKPI_SCHEMA');
        expect(report.error?.message).to.contain(`streams/${name}`).and.to.contain(e.schema.column);
        expect(report.files).to.have.length(1);
        expect(report.files[0]).to.include({ name: `streams/${name}`, status: 'schema_error', complete: 0 });
      });
      continue;
    }

    const title = e.generated
      ? `${name} (generated: ${e.generated}): rejected as malformed in bounded memory`
      : `${name}: ${e.rows} row(s), ${e.complete} complete, ${Object.keys(e.rejects).length} rejected at the expected lines`;
    it(title, async () => {
      const lake = makeLake([{ name, path: source(name) }], e.songs);
      lakes.push(lake);
      // Only the generated 100 MiB files need a process of their own to be measured.
      const { report, growth } = e.generated ? await validateMeasured(lake) : { report: await validate(lake), growth: 0 };
      expect(report.error, JSON.stringify(report.error)).to.equal(null);
      expect(report.ok).to.equal(true);
      expect(report.files).to.have.length(1);
      const f = report.files[0];
      expect(f).to.include({ name: `streams/${name}`, status: 'read', rows: e.rows, complete: e.complete });
      expect(f.rejected).to.deep.equal(reasonCounts(e.rejects));
      // The dates a file reports are those of its valid listen_times: complete rows' dates among them.
      expect(f.dates).to.include.members(Object.keys(e.dates));
      const rejects = readRejects(lake, report.rejectsOutput);
      expect(Object.fromEntries(rejects.get(`streams/${name}`) ?? new Map())).to.deep.equal(e.rejects);
      if (e.songsRejected) expect(report.dimensions.songs?.rejected).to.include(e.songsRejected);
      else
        expect(
          [...rejects.keys()].filter((k) => !k.startsWith('streams/')),
          'dimension rejects',
        ).to.deep.equal([]);
      if (e.generated) {
        // A 100 MiB record held in memory would be >= 100 MiB of live heap (or external buffers).
        expect(growth, `live heap + external growth ${(growth / MiB).toFixed(1)} MiB`).to.be.below(48 * MiB);
      }
    });
  }

  it('a repeated header name in a stream file is reported as a warning (the first column is used)', async () => {
    for (const name of rowFiles) {
      const e = expected[name] as RowsExpectation;
      if (!e.warning) continue;
      const lake = makeLake([{ name, path: source(name) }]);
      lakes.push(lake);
      const report = await validate(lake);
      expect(
        report.warnings.some((w) => w.includes(`streams/${name}`) && w.includes(e.warning!)),
        JSON.stringify(report.warnings),
      ).to.equal(true);
    }
  });

  // Per-hour state starts sparse (lib/reduce.ts): memory follows rows, not hours x catalogue.
  it('a small file whose rows fall in many distinct hours stays within bounded memory', async () => {
    // 2,000 rows, each in an hour of its own, over a 20,000-track catalogue: per-hour state that
    // is dense in the catalogue (lib/reduce.ts) takes 2,000 x 80 KB = 160 MB. A year of hourly
    // data over the real ~114,000-track catalogue takes ~3 GB that way.
    const dir = mkdtempSync(join(tmpdir(), 'musickpi-hostile-hours-'));
    lakes.push(dir);
    const tracks = 20_000;
    writeFileSync(
      join(dir, 'songs.csv'),
      'track_id,artists,track_genre,duration_ms\n' +
        Array.from({ length: tracks }, (_, i) => `t${i},A${i % 100},g${i % 10},1000\n`).join(''),
    );
    writeFileSync(join(dir, 'users.csv'), 'user_id,user_age,user_country\nu1,30,XX\n');
    mkdirSync(join(dir, 'streams'));
    const start = Date.UTC(2024, 0, 1);
    const rows = Array.from(
      { length: 2000 },
      (_, h) => `u1,t${(h * 7919) % tracks},${new Date(start + h * 3_600_000).toISOString().slice(0, 19)}Z\n`,
    );
    writeFileSync(join(dir, 'streams', 'hours.csv'), 'user_id,track_id,listen_time\n' + rows.join(''));
    // Every event, the last progress one included, comes while the per-hour state is alive.
    const { report, growth } = await validateMeasured(dir, 'hours', null);
    expect(report.totals.completeRows).to.equal(2000);
    expect(growth, `peak live growth ${(growth / MiB).toFixed(1)} MiB`).to.be.below(64 * MiB);
  });

  it('the whole corpus through the CLI (which reads large inputs in worker threads): the same counts and rejects', async () => {
    const lake = makeLake(rowFiles.map((name) => ({ name, path: source(name) })));
    lakes.push(lake);
    const r = await runCli(['validate', '--lake', lake, '--json', '--quiet', '--max-bad-rows', '1000000000', '--rejects', 'rejects/cli']);
    expect(r.code, r.stderr).to.equal(0);
    const rejects = readRejects(lake, r.json.rejectsOutput);
    for (const name of rowFiles) {
      const e = expected[name] as RowsExpectation;
      const f = r.json.files.find((x: { name: string }) => x.name === `streams/${name}`);
      expect(f, name).to.deep.include({ rows: e.rows, complete: e.complete, rejected: reasonCounts(e.rejects) });
      expect(Object.fromEntries(rejects.get(`streams/${name}`) ?? new Map()), name).to.deep.equal(e.rejects);
    }
  });

  it('the whole corpus (schema failures aside) loads into PostgreSQL and the tables satisfy the §6 invariants', async () => {
    const url = await freshDatabase('hostile');
    const lake = makeLake(rowFiles.map((name) => ({ name, path: source(name) })));
    lakes.push(lake);
    const warehouse = new PostgresWarehouse(url, { schema: 'reporting_schema' });
    let report: RunReport;
    try {
      report = await runPipeline({
        command: 'run',
        lake: new LocalLake(lake),
        layout: DEFAULT_LAYOUT,
        warehouse,
        runId: 'hostile-run',
        rejectsKey: 'rejects/run.csv',
        maxBadRows: Infinity,
      });
    } finally {
      await warehouse.close();
    }
    expect(report.error, JSON.stringify(report.error)).to.equal(null);
    expect(report).to.include({ ok: true, loaded: true });

    // Counts: per file and in total, as expected.json has them (with the shared songs.csv).
    const want = { rows: 0, complete: 0, rejected: reasonCounts({}), byDate: new Map<string, number>() };
    for (const name of rowFiles) {
      const e = expected[name] as RowsExpectation;
      want.rows += e.rows;
      want.complete += e.complete;
      for (const [r, n] of Object.entries(reasonCounts(e.rejects))) want.rejected[r as RejectReason] += n;
      for (const [d, n] of Object.entries(e.dates)) want.byDate.set(d, (want.byDate.get(d) ?? 0) + n);
      const f = report.files.find((x) => x.name === `streams/${name}`);
      expect(f, name).to.include({ rows: e.rows, complete: e.complete });
    }
    expect(report.totals).to.include({ files: rowFiles.length, rowsRead: want.rows, completeRows: want.complete });
    expect(report.totals.rejected).to.deep.equal(want.rejected);
    const rejects = readRejects(lake, report.rejectsOutput);
    expect([...rejects.values()].reduce((a, m) => a + m.size, 0)).to.equal(want.rows - want.complete);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      client.setTypeParser(1082, (v: string) => v);
      const hourly = (await client.query('SELECT * FROM reporting_schema.hourly_kpis')).rows;
      const genre = (await client.query('SELECT * FROM reporting_schema.genre_level_kpis')).rows;

      // Σ listen_count over genres = Σ listen_counts over hours = complete rows, for every date.
      const sum = (rows: Record<string, any>[], col: string) => {
        const m = new Map<string, number>();
        for (const r of rows) m.set(r.listen_date, (m.get(r.listen_date) ?? 0) + r[col]);
        return m;
      };
      const sorted = (m: Map<string, number>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      expect(sorted(sum(hourly, 'listen_counts'))).to.deep.equal(sorted(want.byDate));
      expect(sorted(sum(genre, 'listen_count'))).to.deep.equal(sorted(want.byDate));
      for (const [date, total] of sum(genre, 'popularity_index')) expect(Math.abs(total - 1), date).to.be.at.most(1e-9);
      for (const h of hourly) {
        const where = `${h.listen_date} ${h.listen_hour}`;
        expect(h.listen_hour, where).to.be.within(0, 23);
        expect(h.unique_listeners, where).to.be.within(1, h.listen_counts);
        expect(h.diversity_index, where).to.be.above(0).and.at.most(1);
        expect(Math.abs(h.avg_sessions_per_user - h.listen_counts / h.unique_listeners), where).to.be.at.most(
          1e-9 * h.avg_sessions_per_user,
        );
      }

      // Hostile but valid values are stored verbatim, and the SQL in them never ran.
      const byGenre = (g: string) => genre.filter((r) => r.track_genre === g).map((r) => r.most_popular_track_id);
      expect(byGenre('sql')).to.deep.equal(["'; DROP TABLE songs; --"]);
      expect(byGenre('\\.')).to.deep.equal(['\\N']);
      expect(byGenre('\u03b3'.repeat(255))).to.deep.equal(['t255']);
      const tables = await client.query(
        `SELECT table_schema, table_name FROM information_schema.tables
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`,
      );
      expect(tables.rows.map((r) => `${r.table_schema}.${r.table_name}`)).to.deep.equal([
        'reporting_schema.genre_level_kpis',
        'reporting_schema.hourly_kpis',
        'reporting_schema.musickpi_lake',
        'reporting_schema.musickpi_ledger',
        'reporting_schema.musickpi_ledger_dates',
        'reporting_schema.musickpi_listen_files',
        'reporting_schema.musickpi_listens',
        'reporting_schema.musickpi_runs',
      ]);
      const ledger = await client.query('SELECT file_key FROM reporting_schema.musickpi_ledger');
      expect(ledger.rows.map((r) => r.file_key).sort()).to.deep.equal(rowFiles.map((n) => `streams/${n}`).sort());
    } finally {
      await client.end();
    }
    expect(readdirSync(join(lake, 'streams'))).to.deep.equal(['archived']);
  });
});

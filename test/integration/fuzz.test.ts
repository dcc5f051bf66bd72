// Seeded, time-bounded fuzzing of the whole input path. Each iteration generates a small valid
// lake, mutates its files at random (bytes, quotes, line endings, BOMs, truncation, lines,
// fields, timestamps, IDs, headers), then:
//   - validates it through the library, and again through a lake that hands the parser random
//     tiny chunks: the two reports and rejects outputs must be identical;
//   - checks the report against an independent reference (a plain reading of the spec, written
//     apart from lib/): rows, complete rows, every reject's line and reason, schema failures;
//   - loads it into a fresh schema of a real PostgreSQL (compute), and checks the tables against
//     the reference: every hourly and genre KPI, and the spec §6 invariants;
//   - every few iterations, validates it in worker threads too (the CLI's path for large
//     inputs): same report, same rejects output;
//   - every few iterations, runs the CLI too: never exit 70, never a crash.
// Nothing may end in MKPI_INTERNAL or an uncaught exception.
//
// By default the seed is fixed and the number of iterations too, so that every CI run checks the
// same inputs and a busy machine cannot make it check fewer:
//   MKPI_FUZZ_ITERATIONS=200 npx mocha test/integration/fuzz.test.ts   more iterations (default 40)
//   MKPI_FUZZ_SECONDS=600 ...                                          as many as fit in that time
//   MKPI_FUZZ_SEED=random ...  (or a number)                           other inputs
//   MKPI_FUZZ_SEED=123 MKPI_FUZZ_ITERATION=45 ...                      replay one iteration
// A failure prints the seed and iteration that reproduce it, and keeps the lake.

import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { REOPEN_MODULE } from '../../lib/adapters/lake/reopen.js';
import { runPipeline } from '../../lib/pipeline/pipeline.js';
import { LocalLake } from '../../lib/adapters/lake/local.js';
import type { Lake } from '../../lib/domain/lake.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import { REPO, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const SECONDS = process.env.MKPI_FUZZ_SECONDS ? Number(process.env.MKPI_FUZZ_SECONDS) : undefined;
const COUNT = Number(process.env.MKPI_FUZZ_ITERATIONS ?? 40);
const DEFAULT_SEED = 20_261_201;
const SEED =
  process.env.MKPI_FUZZ_SEED === 'random'
    ? Math.floor(Math.random() * 2 ** 31)
    : process.env.MKPI_FUZZ_SEED
      ? Number(process.env.MKPI_FUZZ_SEED)
      : DEFAULT_SEED;
const ONLY = process.env.MKPI_FUZZ_ITERATION === undefined ? undefined : Number(process.env.MKPI_FUZZ_ITERATION);
/** Iterations per fresh database (each iteration loads into its own schema of it). */
const PER_DATABASE = 25;
/** Every CLI_EVERY-th iteration also goes through bin/musickpi. */
const CLI_EVERY = 8;
/** Every WORKERS_EVERY-th iteration is also validated by worker threads (as the CLI reads large inputs). */
const WORKERS_EVERY = 4;
/** Every ENGINE_EVERY-th iteration is also computed by the warehouse engine (docs/scale.md): same tables, same rejects. */
const ENGINE_EVERY = 3;

// ---------------------------------------------------------------------------------------------
// Randomness: sfc32, seeded from (seed, iteration), so an iteration replays on its own.

type Rng = {
  (): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
};

function rng(seed: number, iteration: number): Rng {
  let a = seed >>> 0;
  let b = (iteration * 0x9e3779b9) >>> 0;
  let c = 0x243f6a88;
  let d = 1;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 20; i++) next();
  const r = next as Rng;
  r.int = (n) => Math.floor(next() * n);
  r.pick = (xs) => xs[Math.floor(next() * xs.length)];
  r.chance = (p) => next() < p;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Valid base lakes

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

function csvQuote(s: string): string {
  return /[",\r\n]/.test(s) || s !== s.trim() ? '"' + s.replace(/"/g, '""') + '"' : s;
}

const ARTISTS = ['Alice', 'Bob', 'Carol', 'Dave', 'Émile', '😀 Smiley', 'Zoë', 'a', 'B'];
const GENRES = ['pop', 'rock', 'jazz', 'hip hop', 'k-pop', 'rock "n" roll', 'γ', '\\.'];
/** Rarely used values at or past the limits of what the tables can store (255 characters, no NUL). */
const HOSTILE_VALUES = [
  'po\u0000p',
  'x'.repeat(256),
  '\u0001ctl',
  '\\N',
  'γ'.repeat(255),
  '😀'.repeat(255),
  '😀'.repeat(256),
  "'; DROP TABLE songs; --",
  ' ',
];
const AGES = ['17', '22', '25', '26', '30', '41', '50', '60', '66', '70', '120', '', 'abc', '33.0', '0', '121'];

function validTime(r: Rng): string {
  if (r.chance(0.03)) return randomTime(r);
  const day = 1 + r.int(3);
  const hour = r.int(24);
  const base = `2024-06-${pad(day)}${r.pick([' ', 'T'])}${pad(hour)}:${pad(r.int(60))}:${pad(r.int(60))}`;
  const frac = r.chance(0.2) ? '.' + String(r.int(1_000_000)) : '';
  const zone = r.pick(['', '', '', 'Z', '+00:00', '+02:00', '-0130', '+05:30', '-23:59', '+0000']);
  return base + frac + zone;
}

interface Base {
  songs: string;
  users: string;
  streams: Record<string, string>;
}

function baseLake(r: Rng): Base {
  const hostile = (pool: readonly string[]) => (r.chance(0.03) ? r.pick(HOSTILE_VALUES) : r.pick(pool));
  const trackIds = Array.from({ length: 4 + r.int(10) }, (_, i) =>
    r.chance(0.03) ? r.pick(HOSTILE_VALUES) : r.pick(['t', 'T', 'track-', '1e']) + i,
  );
  const songsRows = ['track_id,artists,album_name,track_genre,duration_ms'];
  for (const id of trackIds) {
    const artists = Array.from({ length: r.int(4) }, () => hostile(ARTISTS)).join(r.pick([';', ' ; ', ';;']));
    const dur = r.pick(['200000', '180000.5', '1', '0', '3600000', '215.25']);
    songsRows.push([id, artists, 'album', hostile(GENRES), dur].map(csvQuote).join(','));
    if (r.chance(0.1)) songsRows.push([id, 'Dup', 'dup', r.pick(GENRES), '1'].map(csvQuote).join(','));
  }
  const userIds = Array.from({ length: 3 + r.int(8) }, (_, i) => r.pick(['u', 'U', 'user ']) + i);
  const usersRows = ['user_id,user_age,user_country', ...userIds.map((u) => [u, r.pick(AGES), 'XX'].map(csvQuote).join(','))];

  const streams: Record<string, string> = {};
  for (let f = 0, files = 1 + r.int(3); f < files; f++) {
    const extra = r.chance(0.4);
    const cols = ['user_id', 'track_id', 'listen_time', ...(extra ? ['device'] : [])];
    if (r.chance(0.3)) cols.sort(() => r() - 0.5);
    const lines = [cols.join(',')];
    for (let i = 0, n = 5 + r.int(40); i < n; i++) {
      const v: Record<string, string> = {
        user_id: r.chance(0.05) ? 'nobody' : r.pick(userIds),
        track_id: r.chance(0.05) ? 'no-track' : r.pick(trackIds),
        listen_time: validTime(r),
        device: r.pick(['web', 'mobile, app', 'tv "living"']),
      };
      lines.push(cols.map((c) => csvQuote(v[c])).join(','));
    }
    const eol = r.chance(0.2) ? '\r\n' : '\n';
    streams[`s${f}.csv`] = lines.join(eol) + (r.chance(0.9) ? eol : '');
  }
  return { songs: songsRows.join('\n') + '\n', users: usersRows.join('\n') + '\n', streams };
}

// ---------------------------------------------------------------------------------------------
// Mutations, on bytes

const TOKENS: (string | number[])[] = [
  '"',
  ',',
  '\n',
  '\r',
  '\r\n',
  '""',
  '\u0000',
  '\uFEFF',
  ' ',
  '\t',
  '😀',
  ',"',
  '",',
  'T',
  'Z',
  '+',
  '-',
  ':',
  '.',
  [0xff],
  [0xc3],
  [0xed, 0xa0, 0x80],
  [0xf0, 0x9f],
  [0xc0, 0xaf],
  [0xe2, 0x82],
];
const SPECIAL_BYTES = [
  0x00, 0x0a, 0x0d, 0x22, 0x2c, 0x20, 0x09, 0xff, 0xfe, 0xef, 0xbb, 0xbf, 0xc3, 0x80, 0x54, 0x5a, 0x2b, 0x2d, 0x3a, 0x2e, 0x30, 0x39,
];

const toBytes = (t: string | number[]) => (typeof t === 'string' ? Buffer.from(t, 'utf8') : Buffer.from(t));

function randomTime(r: Rng): string {
  if (r.chance(0.25)) {
    // The edges of the calendar, where an offset moves the UTC date out of years 0001-9999.
    const [date, hour] = r.pick([
      ['0001-01-01', '00'],
      ['9999-12-31', '23'],
      ['1969-12-31', '23'],
      ['2024-02-29', '00'],
      ['2023-12-31', '23'],
    ]);
    const zone = r.pick(['+00:01', '+01:00', '-01:00', '-00:01', '+23:59', '-23:59', 'Z', '']);
    return `${date}${r.pick([' ', 'T'])}${hour}:${pad(r.int(60))}:${pad(r.int(60))}${zone}`;
  }
  const year = r.pick(['0000', '0001', '0999', '1969', '1970', '2024', '2024', '2023', '2100', '9999', '24', '20245']);
  const month = r.pick(['01', '02', '06', '12', '13', '00', '6']);
  const day = r.pick(['01', '28', '29', '30', '31', '32', '00']);
  const hour = r.pick(['00', '10', '23', '24', '25', '1']);
  const min = r.pick(['00', '30', '59', '60']);
  const sec = r.pick(['00', '59', '60', '5']);
  const sep = r.pick([' ', 'T', 't', '  ', '_']);
  const frac = r.pick(['', '', '.5', '.', '.123456789', ',5']);
  const zone = r.pick(['', 'Z', 'z', '+01:00', '-01:00', '+23:59', '-23:59', '+24:00', '+0100', '+01', '+1:00', ' Z', '+00:60']);
  return `${year}-${month}-${day}${sep}${hour}:${min}:${sec}${frac}${zone}`;
}

function randomId(r: Rng): string {
  return r.pick([
    '',
    ' ',
    '\t',
    '"',
    "'; DROP TABLE x; --",
    'x'.repeat(300),
    '\u0000',
    '\u00a0',
    'ü',
    'nobody',
    '1e3',
    '\\N',
    '\\.',
    'u1',
    't1',
    'U0',
    't0',
    'T1',
  ]);
}

type Mutation = (b: Buffer, r: Rng) => Buffer;

const splitLines = (b: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = b.indexOf(0x0a); i !== -1; i = b.indexOf(0x0a, at)) {
    out.push(b.subarray(at, i));
    at = i + 1;
  }
  out.push(b.subarray(at));
  return out;
};
const joinLines = (lines: Buffer[]) => Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from('\n'), l])));

/** Rewrites the comma-separated fields of the header or of a random data line (quotes are not honoured here). */
function withField(b: Buffer, r: Rng, fn: (fields: string[], i: number) => void, header = false): Buffer {
  const lines = splitLines(b);
  if (lines.length < (header ? 1 : 2)) return b;
  const li = header ? 0 : 1 + r.int(lines.length - 1);
  const fields = lines[li].toString('latin1').split(',');
  fn(fields, r.int(fields.length));
  lines[li] = Buffer.from(fields.join(','), 'latin1');
  return joinLines(lines);
}

const MUTATIONS: [name: string, fn: Mutation][] = [
  [
    'set byte',
    (b, r) => {
      if (b.length === 0) return b;
      const c = Buffer.from(b);
      c[r.int(c.length)] = r.chance(0.6) ? r.pick(SPECIAL_BYTES) : r.int(256);
      return c;
    },
  ],
  [
    'flip bit',
    (b, r) => {
      if (b.length === 0) return b;
      const c = Buffer.from(b);
      c[r.int(c.length)] ^= 1 << r.int(8);
      return c;
    },
  ],
  [
    'insert token',
    (b, r) => {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), toBytes(r.pick(TOKENS)), b.subarray(at)]);
    },
  ],
  [
    'delete bytes',
    (b, r) => {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(8))]);
    },
  ],
  ['truncate', (b, r) => b.subarray(0, r.int(b.length + 1))],
  [
    'duplicate line',
    (b, r) => {
      const lines = splitLines(b);
      const i = r.int(lines.length);
      lines.splice(i, 0, lines[i]);
      return joinLines(lines);
    },
  ],
  [
    'swap lines',
    (b, r) => {
      const lines = splitLines(b);
      const i = r.int(lines.length);
      const j = r.int(lines.length);
      [lines[i], lines[j]] = [lines[j], lines[i]];
      return joinLines(lines);
    },
  ],
  [
    'delete line',
    (b, r) => {
      const lines = splitLines(b);
      lines.splice(r.int(lines.length), 1);
      return joinLines(lines);
    },
  ],
  [
    'swap fields',
    (b, r) =>
      withField(b, r, (f, i) => {
        const j = r.int(f.length);
        [f[i], f[j]] = [f[j], f[i]];
      }),
  ],
  [
    'random timestamp',
    (b, r) => {
      const text = b.toString('latin1');
      const re = /\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?/g;
      const hits = [...text.matchAll(re)];
      if (hits.length === 0) return b;
      const h = r.pick(hits);
      return Buffer.concat([b.subarray(0, h.index), Buffer.from(randomTime(r)), b.subarray(h.index + h[0].length)]);
    },
  ],
  ['random id', (b, r) => withField(b, r, (f, i) => (f[i] = Buffer.from(randomId(r)).toString('latin1')))],
  [
    'BOM mid-file',
    (b, r) => {
      const lines = splitLines(b);
      const i = r.int(lines.length);
      lines[i] = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), lines[i]]);
      return joinLines(lines);
    },
  ],
  [
    'header',
    (b, r) =>
      withField(
        b,
        r,
        (f, i) => {
          const op = r.int(5);
          if (op === 0) f[i] = f[i].toUpperCase();
          else if (op === 1) f[i] = ` ${f[i]}\t`;
          else if (op === 2) f.push(f[i]);
          else if (op === 3) f.splice(i, 1);
          else f[i] = `"${f[i]}"`;
        },
        true,
      ),
  ],
  [
    'blank lines',
    (b, r) => {
      const lines = splitLines(b);
      lines.splice(r.int(lines.length + 1), 0, ...Array.from({ length: 1 + r.int(3) }, () => Buffer.from(r.pick(['', '\r', ' ']))));
      return joinLines(lines);
    },
  ],
  [
    'line endings',
    (b, r) => {
      const text = b.toString('latin1');
      const out = r.chance(0.5) ? text.replace(/\r?\n/g, () => (r.chance(0.5) ? '\r\n' : '\n')) : text.replace(/\r\n/g, '\n');
      return Buffer.from(out, 'latin1');
    },
  ],
  [
    'final newline',
    (b) => (b.length > 0 && b[b.length - 1] === 0x0a ? b.subarray(0, b.length - 1) : Buffer.concat([b, Buffer.from('\n')])),
  ],
  [
    'long field',
    (b, r) => {
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.alloc(100 + r.int(5000), r.pick(['x', ' ', '"', ','])), b.subarray(at)]);
    },
  ],
  ['quote a field', (b, r) => withField(b, r, (f, i) => (f[i] = r.chance(0.7) ? `"${f[i]}"` : `"${f[i]}`))],
];

function mutate(b: Buffer, r: Rng, log: string[], max: number): Buffer {
  let out = b;
  for (let i = 0, n = 1 + r.int(max); i < n; i++) {
    const [name, fn] = r.pick(MUTATIONS);
    log.push(name);
    out = fn(out, r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The reference: a plain, slow reading of spec §1-§5, independent of lib/.

interface RefRecord {
  fields: string[];
  line: number;
  unterminated: boolean;
}

/** RFC 4180 with the corpus README's decisions: empty lines skipped, bare CR is data, lenient quotes. */
function refRecords(bytes: Buffer): RefRecord[] {
  const text = new TextDecoder('utf-8').decode(bytes); // drops one leading BOM; invalid bytes -> U+FFFD
  const out: RefRecord[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    if (text[i] === '\n') {
      i++;
      line++;
      continue;
    }
    if (text[i] === '\r' && (i + 1 === n || text[i + 1] === '\n')) {
      i += i + 1 === n ? 1 : 2;
      line++;
      continue;
    }
    const rec: RefRecord = { fields: [], line, unterminated: false };
    let field = '';
    let state: 'start' | 'plain' | 'quoted' | 'quote' = 'start';
    for (;;) {
      if (i === n) {
        rec.unterminated = state === 'quoted';
        rec.fields.push(field);
        break;
      }
      const c = text[i];
      if (state === 'start') {
        if (c === '"') {
          state = 'quoted';
          i++;
        } else state = 'plain';
        continue;
      }
      if (state === 'quoted') {
        if (c === '"') state = 'quote';
        else {
          if (c === '\n') line++;
          field += c;
        }
        i++;
        continue;
      }
      if (state === 'quote') {
        if (c === '"') {
          field += '"';
          state = 'quoted';
          i++;
        } else state = 'plain';
        continue;
      }
      // plain
      if (c === ',') {
        rec.fields.push(field);
        field = '';
        state = 'start';
        i++;
      } else if (c === '\n' || (c === '\r' && (i + 1 === n || text[i + 1] === '\n'))) {
        // LF or CRLF ends the record; so does a CR that is the last character of the file.
        rec.fields.push(field);
        i += c === '\r' && i + 1 < n ? 2 : 1;
        line++;
        break;
      } else {
        field += c;
        i++;
      }
    }
    out.push(rec);
  }
  return out;
}

class RefSchemaError extends Error {}

function refTable(bytes: Buffer, required: string[]): { index: number[]; width: number; rows: RefRecord[] } {
  const [head, ...rows] = refRecords(bytes);
  const names = head && !head.unterminated ? head.fields.map((f) => f.trim()) : [];
  const index = required.map((c) => names.indexOf(c));
  if (index.some((i) => i < 0)) throw new RefSchemaError(required[index.findIndex((i) => i < 0)]);
  return { index, width: names.length, rows };
}

const codePoints = (s: string) => Array.from(s);
function ordinal(a: string, b: string): number {
  const x = codePoints(a).map((c) => c.codePointAt(0)!);
  const y = codePoints(b).map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

const TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}|[+-]\d{4})?$/;
const MIN_MS = (() => {
  const d = new Date(0);
  d.setUTCFullYear(1, 0, 1);
  return d.getTime();
})();
const MAX_MS = (() => {
  const d = new Date(0);
  d.setUTCFullYear(9999, 11, 31);
  d.setUTCHours(23, 59, 59, 999);
  return d.getTime();
})();

/** UTC [date, hour] of a listen_time, or undefined when invalid. */
function refTime(raw: string): [string, number] | undefined {
  const m = TIME.exec(raw);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59) return undefined;
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d) return undefined;
  t.setUTCHours(h, mi, 0, 0);
  let offset = 0;
  const z = m[8];
  if (z && z !== 'Z') {
    const oh = Number(z.slice(1, 3));
    const om = Number(z.slice(-2));
    if (oh > 23 || om > 59) return undefined;
    offset = (z[0] === '+' ? 1 : -1) * (oh * 60 + om);
  }
  const ms = t.getTime() - offset * 60_000;
  if (ms < MIN_MS || ms > MAX_MS) return undefined;
  const u = new Date(ms);
  const date = `${pad(u.getUTCFullYear(), 4)}-${pad(u.getUTCMonth() + 1)}-${pad(u.getUTCDate())}`;
  return [date, u.getUTCHours()];
}

interface RefSong {
  genre: string;
  durationMs: number;
  artists: string[];
}

function refDims(songsBytes: Buffer, usersBytes: Buffer) {
  const songs = new Map<string, RefSong>();
  const st = refTable(songsBytes, ['track_id', 'artists', 'track_genre', 'duration_ms']);
  const storable = (v: string) => codePoints(v).length <= 255 && !v.includes('\u0000');
  for (const rec of st.rows) {
    if (rec.unterminated || rec.fields.length !== st.width) continue;
    const [id, artistsRaw, genre, dur] = st.index.map((i) => rec.fields[i]);
    const trackId = id.trim();
    const g = genre.trim();
    const artists = [
      ...new Set(
        artistsRaw
          .split(';')
          .map((a) => a.trim())
          .filter((a) => a !== ''),
      ),
    ];
    if (trackId === '' || g === '' || !/^[0-9]+(\.[0-9]+)?$/.test(dur.trim())) continue;
    if (!storable(trackId) || !storable(g) || !artists.every(storable)) continue;
    if (!songs.has(trackId)) songs.set(trackId, { genre: g, durationMs: Number(dur.trim()), artists });
  }
  const users = new Map<string, number>(); // id -> age group index, -1 unknown
  const ut = refTable(usersBytes, ['user_id', 'user_age', 'user_country']);
  for (const rec of ut.rows) {
    if (rec.unterminated || rec.fields.length !== ut.width) continue;
    const id = rec.fields[ut.index[0]].trim();
    if (id === '' || users.has(id)) continue;
    const ageRaw = rec.fields[ut.index[1]].trim();
    const age = /^[0-9]+$/.test(ageRaw) ? Number(ageRaw) : NaN;
    const group = !(age >= 1 && age <= 120) ? -1 : age <= 25 ? 0 : age >= 66 ? 5 : Math.floor((age - 26) / 10) + 1;
    users.set(id, group);
  }
  return { songs, users };
}

const AGE_GROUPS = ['18-25', '26-35', '36-45', '46-55', '56-65', '66+'];

interface RefFile {
  rows: number;
  complete: number;
  rejects: Record<string, string>;
  schema?: string;
}

interface RefResult {
  dimsSchema?: string;
  files: Record<string, RefFile>;
  hourly: Map<string, { count: number; users: Set<string>; tracks: Map<string, number>; artists: Map<string, number>; ages: number[] }>;
  genre: Map<string, { count: number; tracks: Map<string, number>; seconds: number }>;
  perDate: Map<string, number>;
}

function reference(lake: { songs: Buffer; users: Buffer; streams: Record<string, Buffer> }): RefResult {
  const res: RefResult = { files: {}, hourly: new Map(), genre: new Map(), perDate: new Map() };
  let dims: ReturnType<typeof refDims>;
  try {
    dims = refDims(lake.songs, lake.users);
  } catch (err) {
    if (err instanceof RefSchemaError) {
      res.dimsSchema = err.message;
      return res;
    }
    throw err;
  }
  for (const [name, bytes] of Object.entries(lake.streams)) {
    const f: RefFile = { rows: 0, complete: 0, rejects: {} };
    res.files[name] = f;
    let t: ReturnType<typeof refTable>;
    try {
      t = refTable(bytes, ['user_id', 'track_id', 'listen_time']);
    } catch (err) {
      if (!(err instanceof RefSchemaError)) throw err;
      f.schema = err.message;
      continue;
    }
    for (const rec of t.rows) {
      f.rows++;
      const reject = (reason: string) => (f.rejects[String(rec.line)] = reason);
      if (rec.unterminated || rec.fields.length !== t.width) {
        reject('malformed');
        continue;
      }
      const [u, tr, lt] = t.index.map((i) => rec.fields[i].trim());
      if (u === '') reject('missing_user_id');
      else if (tr === '') reject('missing_track_id');
      else {
        const when = refTime(lt);
        const song = dims.songs.get(tr);
        if (!when) reject('bad_listen_time');
        else if (!song) reject('unknown_track');
        else if (!dims.users.has(u)) reject('unknown_user');
        else {
          f.complete++;
          const [date, hour] = when;
          res.perDate.set(date, (res.perDate.get(date) ?? 0) + 1);
          const hk = `${date} ${hour}`;
          let h = res.hourly.get(hk);
          if (!h) res.hourly.set(hk, (h = { count: 0, users: new Set(), tracks: new Map(), artists: new Map(), ages: [0, 0, 0, 0, 0, 0] }));
          h.count++;
          h.users.add(u);
          h.tracks.set(tr, (h.tracks.get(tr) ?? 0) + 1);
          for (const a of song.artists) h.artists.set(a, (h.artists.get(a) ?? 0) + 1);
          const g = dims.users.get(u)!;
          if (g >= 0) h.ages[g]++;
          const gk = `${date}\u0000${song.genre}`;
          let ge = res.genre.get(gk);
          if (!ge) res.genre.set(gk, (ge = { count: 0, tracks: new Map(), seconds: 0 }));
          ge.count++;
          ge.tracks.set(tr, (ge.tracks.get(tr) ?? 0) + 1);
          ge.seconds += song.durationMs / 1000;
        }
      }
    }
  }
  return res;
}

/** The key with the highest count; ties: the smallest in code point order. */
function top(counts: Map<string, number>): string | null {
  let best: string | null = null;
  let n = 0;
  for (const [k, c] of counts) if (c > n || (c === n && best !== null && ordinal(k, best) < 0)) [best, n] = [k, c];
  return best;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

// ---------------------------------------------------------------------------------------------
// Running

/** The same lake, but every object is read in random tiny chunks (1 to 64 bytes). */
function chunkingLake(inner: Lake, r: Rng): Lake {
  const read = async (key: string, signal?: AbortSignal): Promise<Readable> => {
    const src = await inner.read(key, signal);
    return Readable.from(
      (async function* () {
        for await (const chunk of src as AsyncIterable<Buffer>) {
          for (let at = 0; at < chunk.length;) {
            const n = 1 + r.int(r.chance(0.5) ? 4 : 64);
            yield chunk.subarray(at, at + n);
            at += n;
          }
        }
      })(),
    );
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'read') return read;
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

function validate(lake: Lake, rejectsKey: string, workersFor?: string): Promise<RunReport> {
  const opts: Parameters<typeof runPipeline>[0] = {
    command: 'validate',
    lake,
    layout: DEFAULT_LAYOUT,
    runId: 'fuzz',
    rejectsKey,
    maxBadRows: Infinity,
  };
  // Worker threads reopen the lake from its URI; minBytes 0 makes even tiny lakes use them.
  if (workersFor !== undefined)
    Object.assign(opts, { parallel: { lake: { module: REOPEN_MODULE, uri: workersFor }, workers: 2, minBytes: 0 } });
  return runPipeline(opts);
}

/** RFC 4180, independent of lib/parse.ts, for reading the rejects output. */
function parseCsvText(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
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
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

/** The rejects output as file -> line -> reason. */
function rejectLines(dir: string, key: string | null): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  if (key === null) return out;
  const [head, ...rows] = parseCsvText(readFileSync(join(dir, key), 'utf8'));
  expect(head).to.deep.equal(['file', 'line', 'reason', 'detail', 'raw']);
  for (const [file, line, reason, detail, ...rest] of rows) {
    expect(rest, `rejects row ${file}:${line}`).to.have.length(1);
    expect(detail, `rejects row ${file}:${line}: detail`).to.not.equal('');
    const m = (out[file] ??= {});
    expect(m[line], `${file}:${line} rejected twice`).to.equal(undefined);
    m[line] = reason;
  }
  return out;
}

async function tables(url: string, schema: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    c.setTypeParser(1082, (v: string) => v);
    const hourly = (await c.query(`SELECT * FROM "${schema}".hourly_kpis`)).rows;
    const genre = (await c.query(`SELECT * FROM "${schema}".genre_level_kpis`)).rows;
    return { hourly, genre };
  } finally {
    await c.end();
  }
}

interface Stats {
  iterations: number;
  loads: number;
  schemaFailures: number;
  rows: number;
  complete: number;
  rejected: Record<string, number>;
  cli: number;
  workers: number;
  engine: number;
}

async function iteration(i: number, url: string, stats: Stats): Promise<void> {
  const r = rng(SEED, i);
  const base = baseLake(r);
  const log: string[] = [];
  const lakeFiles = {
    songs: r.chance(0.15) ? mutate(Buffer.from(base.songs), r, log, 2) : Buffer.from(base.songs),
    users: r.chance(0.15) ? mutate(Buffer.from(base.users), r, log, 2) : Buffer.from(base.users),
    streams: Object.fromEntries(
      Object.entries(base.streams).map(([n, s]) => [n, r.chance(0.9) ? mutate(Buffer.from(s), r, log, 4) : Buffer.from(s)]),
    ),
  };
  const dir = mkdtempSync(join(tmpdir(), `musickpi-fuzz-${SEED}-${i}-`));
  writeFileSync(join(dir, 'songs.csv'), lakeFiles.songs);
  writeFileSync(join(dir, 'users.csv'), lakeFiles.users);
  mkdirSync(join(dir, 'streams'));
  for (const [n, b] of Object.entries(lakeFiles.streams)) writeFileSync(join(dir, 'streams', n), b);

  try {
    const ref = reference(lakeFiles);
    const lake = new LocalLake(dir);
    const a = await validate(lake, 'rejects/a.csv');
    const b = await validate(chunkingLake(lake, r), 'rejects/b.csv');
    expect(a.error?.code, JSON.stringify(a.error)).to.not.equal('MKPI_INTERNAL');

    // Chunking never changes the outcome.
    const strip = (x: RunReport) => ({ ...x, timings: {}, rejectsOutput: null });
    expect(strip(b)).to.deep.equal(strip(a));
    expect(rejectLines(dir, b.rejectsOutput)).to.deep.equal(rejectLines(dir, a.rejectsOutput));
    // Nor does reading the streams in worker threads: same report, same rejects output byte for byte.
    if (i % WORKERS_EVERY === 1 || ONLY !== undefined) {
      const w = await validate(lake, 'rejects/w.csv', dir);
      expect(strip(w), 'worker threads').to.deep.equal(strip(a));
      const bytes = (x: RunReport) => (x.rejectsOutput ? readFileSync(join(dir, x.rejectsOutput), 'utf8') : null);
      expect(bytes(w), 'worker threads: rejects output').to.equal(bytes(a));
      stats.workers++;
    }

    if (ref.dimsSchema !== undefined) {
      expect(a.error?.code).to.equal('MKPI_SCHEMA');
      expect(a.error?.message).to.contain(ref.dimsSchema);
      stats.schemaFailures++;
      return;
    }
    const schemaFiles = Object.entries(ref.files).filter(([, f]) => f.schema !== undefined);
    const rejects = rejectLines(dir, a.rejectsOutput);
    for (const [name, want] of Object.entries(ref.files)) {
      const got = a.files.find((f) => f.name === `streams/${name}`);
      expect(got, name).to.not.equal(undefined);
      if (want.schema !== undefined) {
        expect(got!.status, name).to.equal('schema_error');
        continue;
      }
      const rejected = Object.values(got!.rejected).reduce((x, y) => x + y, 0);
      // Every row is either complete or rejected, with its line and reason in the rejects output.
      expect(got!.complete + rejected, `${name}: complete + rejected = rows`).to.equal(got!.rows);
      expect({ rows: got!.rows, complete: got!.complete }, name).to.deep.equal({ rows: want.rows, complete: want.complete });
      expect(rejects[`streams/${name}`] ?? {}, `${name} rejects`).to.deep.equal(want.rejects);
      stats.rows += got!.rows;
      stats.complete += got!.complete;
      for (const reason of Object.values(want.rejects)) stats.rejected[reason] = (stats.rejected[reason] ?? 0) + 1;
    }
    if (schemaFiles.length > 0) {
      expect(a.error?.code).to.equal('MKPI_SCHEMA');
      expect(a.error?.message).to.contain(`streams/${schemaFiles[0][0]}`).and.to.contain(schemaFiles[0][1].schema);
      stats.schemaFailures++;
    } else {
      expect(a.error, JSON.stringify(a.error)).to.equal(null);
    }

    if (ONLY !== undefined || i % CLI_EVERY === 0) {
      stats.cli++;
      const cli = await runCli([
        'validate',
        '--lake',
        dir,
        '--json',
        '--quiet',
        '--max-bad-rows',
        '1000000000',
        '--rejects',
        'rejects/cli',
      ]);
      expect(cli.code, cli.stderr).to.equal(a.error ? 65 : 0);
      expect(cli.stderr).to.not.match(/Unhandled|at .*\.js:\d+/);
      expect(JSON.parse(cli.stdout).totals).to.deep.equal(a.totals);
    }

    // A real load, into a schema of its own.
    const schema = `fuzz_${i}`;
    const warehouse = new PostgresWarehouse(url, { schema });
    let load: RunReport;
    try {
      load = await runPipeline({
        command: 'compute',
        lake,
        layout: DEFAULT_LAYOUT,
        warehouse,
        runId: `fuzz-${i}`,
        rejectsKey: null,
        maxBadRows: Infinity,
      });
    } finally {
      await warehouse.close();
    }
    expect(load.error?.code, JSON.stringify(load.error)).to.not.equal('MKPI_INTERNAL');
    if (schemaFiles.length > 0) {
      expect(load.error?.code).to.equal('MKPI_SCHEMA');
      expect(load.loaded).to.equal(false);
      return;
    }
    expect(load.error, JSON.stringify(load.error)).to.equal(null);
    expect(load.loaded).to.equal(true);
    stats.loads++;
    const t = await tables(url, schema);

    // The warehouse engine on the same lake, in two shards: the same tables and the same rejects.
    if (ONLY !== undefined || i % ENGINE_EVERY === 2) {
      const whSchema = `fuzz_${i}_wh`;
      const whWarehouse = new PostgresWarehouse(url, { schema: whSchema });
      const staging = join(dir, '_musickpi', 'staging');
      let wh: RunReport;
      try {
        wh = await runPipeline({
          command: 'compute',
          lake,
          layout: DEFAULT_LAYOUT,
          warehouse: whWarehouse,
          runId: `fuzz-${i}-wh`,
          rejectsKey: 'rejects/wh.csv',
          maxBadRows: Infinity,
          parallel: { lake: { module: REOPEN_MODULE, uri: dir } },
          engine: { staging: new LocalLake(staging), stagingSpec: { module: REOPEN_MODULE, uri: staging }, shards: 2 },
        });
      } finally {
        await whWarehouse.close();
      }
      expect(wh.error, JSON.stringify(wh.error)).to.equal(null);
      expect(wh.totals, 'warehouse engine: totals').to.deep.equal(load.totals);
      expect(rejectLines(dir, wh.rejectsOutput), 'warehouse engine: rejects').to.deep.equal(rejects);
      const w = await tables(url, whSchema);
      const order = (rows: Record<string, unknown>[]) =>
        rows
          .map((row) =>
            JSON.stringify(row, (k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(12)) : v)),
          )
          .sort();
      expect(order(w.hourly), 'warehouse engine: hourly_kpis').to.deep.equal(order(t.hourly));
      expect(order(w.genre), 'warehouse engine: genre_level_kpis').to.deep.equal(order(t.genre));
      stats.engine++;
    }

    // §6: per date, Σ genre listen_count = Σ hourly listen_counts = complete rows of the date.
    const byDate = (rows: Record<string, any>[], col: string) => {
      const m: Record<string, number> = {};
      for (const row of rows) m[row.listen_date] = (m[row.listen_date] ?? 0) + row[col];
      return m;
    };
    const want = Object.fromEntries(ref.perDate);
    expect(byDate(t.hourly, 'listen_counts'), 'Σ listen_counts per date').to.deep.equal(want);
    expect(byDate(t.genre, 'listen_count'), 'Σ listen_count per date').to.deep.equal(want);
    for (const [date, s] of Object.entries(byDate(t.genre, 'popularity_index')))
      expect(Math.abs(s - 1), `Σ popularity ${date}`).to.be.at.most(1e-9);

    // Every KPI of every row, against the reference.
    expect(t.hourly.length, 'hourly rows').to.equal(ref.hourly.size);
    for (const row of t.hourly) {
      const where = `hourly ${row.listen_date} ${row.listen_hour}`;
      const h = ref.hourly.get(`${row.listen_date} ${row.listen_hour}`);
      expect(h, where).to.not.equal(undefined);
      expect(row.unique_listeners, where).to.be.at.most(row.listen_counts);
      expect(row.diversity_index, where).to.be.above(0).and.at.most(1);
      expect({ listen_counts: row.listen_counts, unique_listeners: row.unique_listeners, top_artist: row.top_artist }, where).to.deep.equal(
        {
          listen_counts: h!.count,
          unique_listeners: h!.users.size,
          top_artist: top(h!.artists),
        },
      );
      const maxAge = Math.max(...h!.ages);
      expect(row.most_engaged_age_group, where).to.equal(maxAge > 0 ? AGE_GROUPS[h!.ages.indexOf(maxAge)] : null);
      expect(close(row.avg_sessions_per_user, h!.count / h!.users.size), `${where} avg_sessions`).to.equal(true);
      expect(close(row.diversity_index, h!.tracks.size / h!.count), `${where} diversity`).to.equal(true);
    }
    expect(t.genre.length, 'genre rows').to.equal(ref.genre.size);
    for (const row of t.genre) {
      const where = `genre ${row.listen_date} ${JSON.stringify(row.track_genre)}`;
      const g = ref.genre.get(`${row.listen_date}\u0000${row.track_genre}`);
      expect(g, where).to.not.equal(undefined);
      expect(row.listen_count, where).to.equal(g!.count);
      expect(row.most_popular_track_id, where).to.equal(top(g!.tracks));
      expect(close(row.popularity_index, g!.count / ref.perDate.get(row.listen_date)!), `${where} popularity`).to.equal(true);
      expect(close(row.average_duration, g!.seconds / g!.count), `${where} average_duration`).to.equal(true);
    }
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    const e = err as Error;
    e.message =
      `fuzz iteration failed; reproduce with MKPI_FUZZ_SEED=${SEED} MKPI_FUZZ_ITERATION=${i}\n` +
      `  mutations: ${log.join(', ') || '(none)'}\n  lake kept in ${dir}\n  ${e.message}`;
    throw e;
  }
}

describe('fuzz: mutated lakes through validate and a real load', function () {
  // The budget is enforced by the loop; mocha's timeout is only a backstop.
  // A backstop only: the loop ends by its count (or budget).
  this.timeout((SECONDS ?? 0) * 1000 + COUNT * 10_000 + 120_000);

  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  before(() => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
  });
  after(() => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  it(`never ends in MKPI_INTERNAL or a crash, and agrees with the reference (seed ${SEED}, ${SECONDS !== undefined ? `${SECONDS} s` : `${COUNT} iterations`})`, async () => {
    if (!existsSync(join(REPO, 'dist', 'lib', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
    const stats: Stats = { iterations: 0, loads: 0, schemaFailures: 0, rows: 0, complete: 0, rejected: {}, cli: 0, workers: 0, engine: 0 };
    const deadline = SECONDS !== undefined ? Date.now() + SECONDS * 1000 : Infinity;
    let url = '';
    const iterations = ONLY !== undefined ? [ONLY] : null;
    const more = (i: number) => (iterations ? i < iterations.length : SECONDS !== undefined ? Date.now() < deadline : i < COUNT);
    for (let i = 0; more(i); i++) {
      const n = iterations ? iterations[i] : i;
      if (!url || (!iterations && n % PER_DATABASE === 0)) url = await freshDatabase('fuzz');
      await iteration(n, url, stats);
      stats.iterations++;
      if (uncaught.length > 0) {
        throw new Error(
          `uncaught exception during iteration; reproduce with MKPI_FUZZ_SEED=${SEED} MKPI_FUZZ_ITERATION=${n}: ${String(uncaught[0])}`,
        );
      }
    }
    console.log(`      fuzz seed ${SEED}: ${JSON.stringify(stats)}`);
    expect(stats.iterations).to.be.greaterThan(0);
    if (ONLY === undefined && stats.iterations >= 20) {
      // The generator must keep producing loadable lakes with complete rows and every kind of reject.
      expect(stats.loads, 'iterations that loaded').to.be.greaterThan(stats.iterations / 4);
      expect(stats.complete).to.be.greaterThan(0);
    }
  });
});

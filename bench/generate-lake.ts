// Deterministic lake generator: Spotify-like songs (the Kaggle tracks columns, ';'-joined
// artists, quoted fields with commas), users, and Zipf-skewed listens spread over days and
// files. `--messy` sprinkles every kind of bad row, orphans, a BOM and CRLF endings.

import { mkdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

export interface LakeSpec {
  out: string;
  songs: number;
  users: number;
  streams: number;
  files: number;
  days: number;
  seed: number;
  messy: boolean;
  startDate: string;
  /**
   * 'time' (default): each file covers its own slice of the span, rows in time order, like hourly
   * batches. 'random': every row at a uniformly random time of the whole span (late and re-sent
   * data, merged exports): each row's hour is a cache miss for the reducers.
   */
  order?: 'time' | 'random';
  /** 'string' (default): `user_<n>` IDs. 'numeric': `1`, `2`, … as in real exports (issue 12). */
  userIds?: 'string' | 'numeric';
  /**
   * The late-tail sequence (issue 12): one file per day (files = days), file k in time order over
   * day k, followed by `fraction` × its listens for each of the `prevDays` days before it (mobile
   * clients that were offline), each tail in time order over its own day.
   */
  lateTail?: { prevDays: number; fraction: number };
}

/** Mulberry32: small, fast, and the same sequence on every machine (tests use it too, so a failure names its seed). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s);
    cdf[i] = sum;
  }
  for (let i = 0; i < n; i++) cdf[i] /= sum;
  return cdf;
}

function sample(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const GENRES = [
  'acoustic',
  'afrobeat',
  'alt-rock',
  'alternative',
  'ambient',
  'anime',
  'black-metal',
  'bluegrass',
  'blues',
  'brazil',
  'breakbeat',
  'british',
  'cantopop',
  'chicago-house',
  'children',
  'chill',
  'classical',
  'club',
  'comedy',
  'country',
  'dance',
  'dancehall',
  'death-metal',
  'deep-house',
  'detroit-techno',
  'disco',
  'disney',
  'drum-and-bass',
  'dub',
  'dubstep',
  'edm',
  'electro',
  'electronic',
  'emo',
  'folk',
  'forro',
  'french',
  'funk',
  'garage',
  'german',
  'gospel',
  'goth',
  'grindcore',
  'groove',
  'grunge',
  'guitar',
  'happy',
  'hard-rock',
  'hardcore',
  'hardstyle',
  'heavy-metal',
  'hip-hop',
  'honky-tonk',
  'house',
  'idm',
  'indian',
  'indie-pop',
  'indie',
  'industrial',
  'iranian',
  'j-dance',
  'j-idol',
  'j-pop',
  'j-rock',
  'jazz',
  'k-pop',
  'kids',
  'latin',
  'latino',
  'malay',
  'mandopop',
  'metal',
  'metalcore',
  'minimal-techno',
  'mpb',
  'new-age',
  'opera',
  'pagode',
  'party',
  'piano',
  'pop-film',
  'pop',
  'power-pop',
  'progressive-house',
  'psych-rock',
  'punk-rock',
  'punk',
  'r-n-b',
  'reggae',
  'reggaeton',
  'rock-n-roll',
  'rock',
  'rockabilly',
  'romance',
  'sad',
  'salsa',
  'samba',
  'sertanejo',
  'show-tunes',
  'singer-songwriter',
  'ska',
  'sleep',
  'songwriter',
  'soul',
  'spanish',
  'study',
  'swedish',
  'synth-pop',
  'tango',
  'techno',
  'trance',
  'trip-hop',
  'turkish',
  'world-music',
];
const COUNTRIES = ['US', 'GB', 'DE', 'FR', 'BR', 'IN', 'JP', 'MX', 'ES', 'SE', 'NG', 'KR', 'CA', 'AU'];
const SYLLABLES = ['la', 'mo', 'ri', 'ka', 'zen', 'tor', 'vi', 'shi', 'an', 'bel', 'cro', 'dus', 'el', 'fa', 'go', 'hu'];
const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

class Out {
  private buf: string[] = [];
  private len = 0;
  constructor(private readonly fd: number) {}
  write(s: string): void {
    this.buf.push(s);
    this.len += s.length;
    if (this.len > 1 << 20) this.flush();
  }
  flush(): void {
    writeSync(this.fd, this.buf.join(''));
    this.buf = [];
    this.len = 0;
  }
  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export function generateLake(spec: LakeSpec): { trackIds: string[]; userIds: string[] } {
  const r = rng(spec.seed);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const word = () => {
    let w = '';
    const n = 1 + Math.floor(r() * 3);
    for (let i = 0; i < n; i++) w += pick(SYLLABLES);
    return w[0].toUpperCase() + w.slice(1);
  };
  mkdirSync(join(spec.out, 'streams'), { recursive: true });

  const artistPool = Array.from(
    { length: Math.max(1, Math.floor(spec.songs / 4)) },
    (_, i) => `${word()} ${word()}${i % 7 === 0 ? ', Jr.' : ''}`,
  );
  const trackIds: string[] = [];
  const songs = new Out(openSync(join(spec.out, 'songs.csv'), 'w'));
  songs.write(
    ',track_id,artists,album_name,track_name,popularity,duration_ms,explicit,danceability,energy,key,loudness,mode,' +
      'speechiness,acousticness,instrumentalness,liveness,valence,tempo,time_signature,track_genre\n',
  );
  const genreCdf = zipfCdf(GENRES.length, 0.3);
  for (let i = 0; i < spec.songs; i++) {
    let id = '';
    for (let k = 0; k < 22; k++) id += B62[Math.floor(r() * 62)];
    trackIds.push(id);
    const nArtists = r() < 0.75 ? 1 : r() < 0.8 ? 2 : 3;
    const artists = Array.from({ length: nArtists }, () => pick(artistPool)).join(';');
    const album = r() < 0.1 ? `${word()}, ${word()} (Deluxe)` : word();
    const name = r() < 0.05 ? `${word()} "${word()}"` : `${word()} ${word()}`;
    const duration = 30000 + Math.floor(r() * 570000);
    let genre = GENRES[sample(genreCdf, r())];
    if (spec.messy && r() < 0.002) genre = '';
    songs.write(
      `${i},${id},${q(artists)},${q(album)},${q(name)},${Math.floor(r() * 100)},${duration},${r() < 0.1 ? 'True' : 'False'},` +
        `${r().toFixed(3)},${r().toFixed(3)},${Math.floor(r() * 12)},${(-r() * 30).toFixed(3)},${r() < 0.5 ? 1 : 0},` +
        `${r().toFixed(4)},${r().toFixed(4)},${r().toFixed(4)},${r().toFixed(4)},${r().toFixed(3)},${(60 + r() * 140).toFixed(3)},4,${genre}\n`,
    );
  }
  if (spec.messy) songs.write(`${spec.songs},${trackIds[0]},Duplicate Row,x,y,1,1000,False,0,0,0,0,0,0,0,0,0,0,0,4,dup\n`);
  songs.close();

  const userIds: string[] = [];
  const users = new Out(openSync(join(spec.out, 'users.csv'), 'w'));
  users.write('user_id,user_age,user_country\n');
  for (let i = 0; i < spec.users; i++) {
    const id = spec.userIds === 'numeric' ? String(i + 1) : `user_${(i * 2654435761) % 4294967296}`;
    userIds.push(id);
    const age = r() < 0.03 ? '' : String(13 + Math.floor(r() * 70));
    users.write(`${id},${age},${pick(COUNTRIES)}\n`);
  }
  if (spec.messy) users.write(`${userIds[0]},40,US\n,33,US\n`);
  users.close();

  const trackCdf = zipfCdf(spec.songs, 0.9);
  const userCdf = zipfCdf(spec.users, 0.6);
  const start = Date.parse(spec.startDate + 'T00:00:00Z');
  const span = spec.days * 86400_000;
  const perFile = Math.ceil(spec.streams / spec.files);
  let written = 0;
  const late = spec.lateTail;
  if (late && spec.files !== spec.days) throw new Error('generate-lake: a late-tail lake has one file per day (files = days)');
  for (let f = 0; f < spec.files; f++) {
    const crlf = spec.messy && f % 2 === 1;
    const nl = crlf ? '\r\n' : '\n';
    const out = new Out(openSync(join(spec.out, 'streams', `streams_${String(f + 1).padStart(4, '0')}.csv`), 'w'));
    out.write(`${spec.messy && f === 0 ? '\ufeff' : ''}user_id,track_id,listen_time${nl}`);
    const n = Math.min(perFile, spec.streams - written);
    // Each file covers its own slice of the time span, in time order, like hourly batches.
    const t0 = start + (span * f) / spec.files;
    const step = span / spec.files / Math.max(1, n);
    const random = spec.order === 'random';
    for (let i = 0; i < n; i++) {
      const t = new Date(random ? start + Math.floor(r() * span) : t0 + i * step + r() * step).toISOString();
      const ts = `${t.slice(0, 10)} ${t.slice(11, 19)}`;
      let user = userIds[sample(userCdf, r())];
      let track = trackIds[sample(trackCdf, r())];
      let time = ts;
      if (spec.messy) {
        const m = r();
        if (m < 0.001) user = '';
        else if (m < 0.002) track = '';
        else if (m < 0.003) time = ts.replace(/-\d\d /, '-31 ');
        else if (m < 0.004) track = 'missing_' + track;
        else if (m < 0.005) user = 'ghost_' + user;
        else if (m < 0.006) {
          out.write(`${user},${track}${nl}`);
          continue;
        } else if (m < 0.008) time = `${t.slice(0, 19)}.${Math.floor(r() * 1e6)}Z`;
      }
      out.write(`${user},${track},${time}${nl}`);
    }
    if (late) {
      const tail = Math.round(n * late.fraction);
      for (let d = Math.max(0, f - late.prevDays); d < f; d++) {
        const day0 = start + d * 86400_000;
        for (let i = 0; i < tail; i++) {
          const t = new Date(day0 + (i + r()) * (86400_000 / tail)).toISOString();
          out.write(`${userIds[sample(userCdf, r())]},${trackIds[sample(trackCdf, r())]},${t.slice(0, 10)} ${t.slice(11, 19)}${nl}`);
        }
      }
    }
    written += n;
    out.close();
  }
  return { trackIds, userIds };
}

const USAGE = `usage: generate-lake --out DIR [--songs N] [--users N] [--streams N] [--files N] [--days N] [--seed N] [--messy] [--start-date D] [--order time|random]
  writes a synthetic lake (songs.csv, users.csv, streams/*.csv) for the benchmark and for trying musickpi
  defaults: 114000 songs, 50000 users, 5000000 streams in 5 files over 3 days from 2024-06-01, seed 42
`;

function main(): void {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        out: { type: 'string' },
        songs: { type: 'string', default: '114000' },
        users: { type: 'string', default: '50000' },
        streams: { type: 'string', default: '5000000' },
        files: { type: 'string', default: '5' },
        days: { type: 'string', default: '3' },
        seed: { type: 'string', default: '42' },
        messy: { type: 'boolean', default: false },
        'start-date': { type: 'string', default: '2024-06-01' },
        order: { type: 'string', default: 'time' },
        'user-ids': { type: 'string', default: 'string' },
      },
    });
  } catch (err) {
    process.stderr.write(`generate-lake: ${(err as Error).message}\n${USAGE}`);
    process.exit(64);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values.out) {
    process.stderr.write(USAGE);
    process.exit(64);
  }
  const t0 = performance.now();
  generateLake({
    out: values.out,
    songs: Number(values.songs),
    users: Number(values.users),
    streams: Number(values.streams),
    files: Number(values.files),
    days: Number(values.days),
    seed: Number(values.seed),
    messy: values.messy ?? false,
    startDate: values['start-date'],
    order: values.order === 'random' ? 'random' : 'time',
    userIds: values['user-ids'] === 'numeric' ? 'numeric' : 'string',
  });
  process.stderr.write(`lake written to ${values.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();

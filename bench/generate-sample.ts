// Regenerates the streams of the bundled sample lake (fixtures/sample/streams/) from its songs
// and users: two days of listens shaped like real listening, small enough to ship. Each hour's
// volume follows a daily curve (quiet at 4 am, a morning bump, an evening peak); songs are drawn
// by a Zipf law over their popularity, so a few songs, and so a few artists and genres, dominate;
// night hours draw younger listeners and office hours older ones. Deterministic: the same files
// on every machine.  Usage: npx tsx bench/generate-sample.ts [lake folder, default fixtures/sample]

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from './generate-lake.js';

/** Listens per hour at the top of the curve (about 4,000 listens over the two days). */
const PEAK = 170;
const DAYS = ['2024-06-01', '2024-06-02'];

/** Relative volume of an hour of the day: a trough at 04:00, a bump at 08:00, a peak at 20:00. */
export function hourWeight(h: number): number {
  const bump = (centre: number, width: number) => Math.exp(-((((h - centre + 36) % 24) - 12) ** 2 / (2 * width * width)));
  return 0.06 + 0.45 * bump(8, 1.6) + 0.55 * bump(13, 2.5) + 1.0 * bump(20, 2.4);
}

/** One CSV record's fields (quoted fields may hold commas and doubled quotes; no newline in the sample). */
function fields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') ((cur += '"'), i++);
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') (out.push(cur), (cur = ''));
    else cur += c;
  }
  out.push(cur);
  return out;
}

export function generateSample(lake: string): { files: string[]; listens: number } {
  const songLines = readFileSync(join(lake, 'songs.csv'), 'utf8').trim().split('\n');
  const cols = fields(songLines[0]);
  const id = cols.indexOf('track_id');
  const pop = cols.indexOf('popularity');
  const songs = songLines
    .slice(1)
    .map(fields)
    .map((f) => ({ id: f[id], popularity: Number(f[pop]) }))
    .filter((s) => s.id && Number.isFinite(s.popularity))
    .sort((a, b) => b.popularity - a.popularity || (a.id < b.id ? -1 : 1));
  const users = readFileSync(join(lake, 'users.csv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(','))
    .map((f) => ({ id: f[0], age: Number(f[1]) }))
    .filter((u) => u.id)
    .sort((a, b) => a.age - b.age || (a.id < b.id ? -1 : 1));

  // Zipf over the songs ranked by popularity.
  const cdf: number[] = [];
  let sum = 0;
  for (let i = 0; i < songs.length; i++) cdf.push((sum += 1 / Math.pow(i + 1, 1.05)));
  const pickSong = (u: number) =>
    songs[
      Math.min(
        songs.length - 1,
        cdf.findIndex((c) => c >= u * sum),
      )
    ];

  const random = rng(20240601);
  const byFile = new Map<string, string[]>();
  let listens = 0;
  DAYS.forEach((day, d) => {
    for (let h = 0; h < 24; h++) {
      const n = Math.round(PEAK * hourWeight(h) * (d === 1 ? 1.08 : 1));
      // Young at night, older in office hours: the exponent skews the draw over users sorted by age.
      const night = h >= 21 || h < 5;
      const office = h >= 9 && h < 17;
      const skew = night ? 2.2 : office ? 0.45 : 1;
      const times = Array.from({ length: n }, () => Math.floor(random() * 3600)).sort((a, b) => a - b);
      const file = `streams_${String(d * 2 + (h < 12 ? 1 : 2)).padStart(4, '0')}.csv`;
      const rows = byFile.get(file) ?? [];
      for (const t of times) {
        const user = users[Math.min(users.length - 1, Math.floor(Math.pow(random(), skew) * users.length))];
        const song = pickSong(random());
        const hh = String(h).padStart(2, '0');
        const mm = String(Math.floor(t / 60)).padStart(2, '0');
        const ss = String(t % 60).padStart(2, '0');
        rows.push(`${user.id},${song.id},${day} ${hh}:${mm}:${ss}`);
      }
      byFile.set(file, rows);
      listens += n;
    }
  });
  mkdirSync(join(lake, 'streams'), { recursive: true });
  const files = [...byFile.keys()].sort();
  for (const f of files) writeFileSync(join(lake, 'streams', f), ['user_id,track_id,listen_time', ...byFile.get(f)!].join('\n') + '\n');
  return { files, listens };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const lake = process.argv[2] ?? join(import.meta.dirname, '..', 'fixtures', 'sample');
  const { files, listens } = generateSample(lake);
  process.stdout.write(`${listens} listens in ${files.join(', ')}\n`);
}

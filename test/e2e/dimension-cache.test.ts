// The dimension cache from the command line: a second run reads songs and users from the cache
// and reports, warns and rejects exactly as the first, a changed songs.csv is a new entry, and
// --no-dimension-cache leaves the folder alone.

import { expect } from 'chai';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyLake, runCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const temps: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.bin')) : []);

/** The report without what differs from run to run. */
function comparable(json: any): any {
  const { runId: _runId, timings: _timings, rejectsOutput: _out, history: _history, ...rest } = json;
  return rest;
}

describe('e2e: the dimension cache', function () {
  this.timeout(180_000);
  after(() => {
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  });

  it('a second run from the cache gives the same report and rejects CSV; a changed songs.csv is read again', async () => {
    const url = await freshDatabase();
    const lake = copyLake('messy');
    const cacheDir = tempDir('musickpi-dimcache-e2e-');
    const out = tempDir('musickpi-dimcache-rejects-');
    const compute = async (name: string, extra: string[] = []) => {
      const rejects = join(out, name);
      const r = await runCli([
        'compute',
        '--lake',
        lake,
        '--warehouse',
        url,
        '--dry-run',
        '--max-bad-rows',
        '1000000',
        '--rejects',
        rejects,
        '--cache-dir',
        cacheDir,
        '--json',
        ...extra,
      ]);
      expect(r.code, r.stderr).to.equal(0);
      return { json: r.json, rejects: readFileSync(join(rejects, 'rejects.csv'), 'utf8') };
    };

    const first = await compute('first');
    expect(entries(cacheDir)).to.have.length(1);
    expect(first.json.dimensions.songs.duplicates + first.json.dimensions.users.duplicates).to.be.greaterThan(0);
    expect(first.rejects).to.match(/\nsongs\.csv,\d+,/);
    const second = await compute('second');
    expect(comparable(second.json)).to.deep.equal(comparable(first.json));
    expect(second.rejects).to.equal(first.rejects);
    expect(entries(cacheDir)).to.have.length(1);

    // Proof that the second run read the cache: bytes changed behind an unchanged key (same size,
    // same modification time) are not seen. Real deliveries change the fingerprint.
    const songs = join(lake, 'songs.csv');
    const { atime, mtime } = statSync(songs);
    const before = readFileSync(songs, 'utf8');
    writeFileSync(songs, before.replace(/pop/, 'pOp'));
    utimesSync(songs, atime, mtime);
    expect((await compute('hidden')).rejects).to.equal(first.rejects);
    writeFileSync(songs, before);
    utimesSync(songs, atime, mtime);

    // A fresh parse agrees, and touches no cache.
    const off = await compute('off', ['--no-dimension-cache']);
    expect(comparable(off.json)).to.deep.equal(comparable(first.json));
    expect(off.rejects).to.equal(first.rejects);

    // A new row in songs.csv: a new entry, read from the file.
    appendFileSync(songs, 'zz9,Someone,pop,1000,False\n');
    const changed = await compute('changed');
    expect(changed.json.dimensions.songs.rows).to.equal(first.json.dimensions.songs.rows + 1);
    expect(changed.json.dimensions.songs.valid).to.equal(first.json.dimensions.songs.valid + 1);
    expect(entries(cacheDir)).to.have.length(2);
    const again = await compute('again');
    expect(comparable(again.json)).to.deep.equal(comparable(changed.json));
    expect(again.rejects).to.equal(changed.rejects);
  });

  it('a damaged cache entry is only a normal load', async () => {
    const lake = copyLake('tiny');
    const cacheDir = tempDir('musickpi-dimcache-e2e-');
    const validate = () => runCli(['validate', '--lake', lake, '--cache-dir', cacheDir, '--json']);
    const first = await validate();
    expect(first.code, first.stderr).to.equal(0);
    const [entry] = entries(cacheDir);
    writeFileSync(join(cacheDir, entry), 'garbage');
    const second = await validate();
    expect(second.code, second.stderr).to.equal(0);
    expect(comparable(second.json)).to.deep.equal(comparable(first.json));
    expect(readFileSync(join(cacheDir, entry)).length).to.be.greaterThan(100);
  });
});

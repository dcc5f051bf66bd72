import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync, writeFileSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { copyLake, expectTable, queryRows, REPO, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

const fixture = (p: string) => readFileSync(join(REPO, 'fixtures', p), 'utf8');
const ls = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

describe('e2e: musickpi CLI', function () {
  this.timeout(180_000);

  it('run loads the tiny lake exactly, archives what it loaded, and a second run changes nothing', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json).to.include({ command: 'run', ok: true, loaded: true });
    expect(r.json.totals).to.include({ rowsRead: 9, completeRows: 8, duplicateSongs: 1, duplicateUsers: 0 });
    expect(r.json.totals.rejected).to.deep.equal({
      malformed: 0,
      missing_user_id: 0,
      missing_track_id: 0,
      bad_listen_time: 0,
      unknown_track: 1,
      unknown_user: 0,
    });
    expect(r.json.rowsWritten).to.deep.equal({ hourly_kpis: 3, genre_level_kpis: 5 });
    expect(r.json.archived.map((a: any) => a.to)).to.deep.equal(['streams/archived/a.csv', 'streams/archived/b.csv']);
    expect(r.json.runId).to.be.a('string');
    expect(r.json.timings.total).to.be.a('number');
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));
    expectTable(await tableRows(url, 'genre_level_kpis'), fixture('tiny/expected/genre_level_kpis.csv'));
    expect(ls(join(lake, 'streams'))).to.deep.equal(['archived']);
    const rejects = readFileSync(join(lake, 'rejects', r.json.runId, 'rejects.csv'), 'utf8');
    expect(rejects).to.contain('streams/b.csv,4,unknown_track,');

    const again = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.json).to.include({ loaded: false });
    expect(again.json.archived).to.deep.equal([]);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));
  });

  for (const saved of [false, true]) {
    it(`a late file for a loaded date gives the tables a single run over all files gives (${saved ? "the date's saved state read back" : 'archived files re-read: --no-date-state'})`, async () => {
      const late = 'user_id,track_id,listen_time\nu2,t2,2024-06-01 11:30:00\nu1,t3,2024-06-03 08:00:00\n';
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      const flags = saved ? [] : ['--no-date-state'];
      expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet', ...flags])).code).to.equal(0);
      expect(existsSync(join(lake, '_musickpi', 'state', '2024-06-01.state'))).to.equal(saved);
      writeFileSync(join(lake, 'streams', 'c.csv'), late);
      const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json', ...flags]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.datesRecomputed.hourly).to.deep.equal(['2024-06-01', '2024-06-03']);
      if (saved) {
        expect(r.json.reread).to.deep.equal([]);
        expect(r.json.dateState).to.deep.equal({ restored: ['2024-06-01'], saved: ['2024-06-01', '2024-06-03'] });
      } else {
        // b.csv carries only 2024-06-02, which the late file does not touch.
        expect(r.json.reread.map((f: any) => f.name)).to.deep.equal(['streams/archived/a.csv']);
        expect(r.json.dateState).to.equal(null);
      }

      const once = await freshDatabase();
      const whole = copyLake('tiny');
      writeFileSync(join(whole, 'streams', 'c.csv'), late);
      expect((await runCli(['run', '--lake', whole, '--warehouse', once, '--quiet'])).code).to.equal(0);
      expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(await tableRows(once, 'hourly_kpis'));
      expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(await tableRows(once, 'genre_level_kpis'));
      expect(ls(join(lake, 'streams', 'archived'))).to.deep.equal(['a.csv', 'b.csv', 'c.csv']);
    });
  }

  it('the messy lake: exact reject counts per reason and file, rejects output, exact tables', async () => {
    const url = await freshDatabase();
    const lake = copyLake('messy');
    const want = JSON.parse(fixture('messy/expected/report.json'));
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--max-bad-rows', '1000000', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.totals).to.deep.include(want.totals);
    for (const [name, f] of Object.entries<any>(want.files)) {
      const got = r.json.files.find((x: any) => x.name === name);
      expect(got, name).to.deep.include(f);
    }
    for (const k of ['songs', 'users'] as const) expect(r.json.dimensions[k]).to.deep.include(want.dimensions[k]);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('messy/expected/hourly_kpis.csv'));
    expectTable(await tableRows(url, 'genre_level_kpis'), fixture('messy/expected/genre_level_kpis.csv'));
    const rejectLines = readFileSync(join(lake, r.json.rejectsOutput), 'utf8').split(/\n(?=streams\/|songs|users)/);
    for (const [file, lines] of Object.entries<Record<string, string>>(want.rejectLines)) {
      for (const [line, reason] of Object.entries(lines)) {
        expect(
          rejectLines.some((l) => l.startsWith(`${file},${line},${reason},`)),
          `${file}:${line} ${reason}`,
        ).to.equal(true);
      }
    }
  });

  it('bad rows over the threshold fail with 65, write no KPI row and move no file', async () => {
    const url = await freshDatabase();
    const lake = copyLake('messy');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code).to.equal(65);
    expect(r.json.error.code).to.equal('MKPI_BAD_ROWS');
    expect(r.json.totals.badRows).to.equal(12);
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal([]);
    expect(ls(join(lake, 'streams'))).to.deep.equal(['m1.csv', 'm2.csv']);
  });

  it('a file missing a required column fails with 65 before anything is written or moved', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    copyFileSync(join(REPO, 'fixtures', 'messy', 'bad-schema.csv'), join(lake, 'streams', 'z.csv'));
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code).to.equal(65);
    expect(r.json.error.code).to.equal('MKPI_SCHEMA');
    expect(r.json.error.message).to.contain('track_id');
    expect(await tableRows(url, 'hourly_kpis')).to.deep.equal([]);
    expect(await queryRows(url, 'select * from reporting_schema.musickpi_ledger')).to.deep.equal([]);
    expect(ls(join(lake, 'streams'))).to.deep.equal(['a.csv', 'b.csv', 'z.csv']);
  });

  it('validate reports per-file counts and writes nothing', async () => {
    const lake = copyLake('messy');
    const r = await runCli(['validate', '--lake', lake, '--json', '--max-bad-rows', '100']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.totals.rejected.bad_listen_time).to.equal(7);
    expect(r.json.files.map((f: any) => f.name)).to.deep.equal(['streams/m1.csv', 'streams/m2.csv']);
    expect(ls(lake)).to.deep.equal(['README.md', 'bad-schema.csv', 'expected', 'songs.csv', 'streams', 'users.csv']);
    const strict = await runCli(['validate', '--lake', lake]);
    expect(strict.code).to.equal(65);
    expect(strict.stdout).to.contain('MKPI_BAD_ROWS');
  });

  it('compute --kpis hourly then --kpis genre ends exactly like one compute, and archive moves only fully loaded files', async () => {
    const split = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['compute', '--lake', lake, '--warehouse', split, '--kpis', 'hourly', '--quiet'])).code).to.equal(0);
    expect(await tableRows(split, 'genre_level_kpis')).to.deep.equal([]);
    const early = await runCli(['archive', '--lake', lake, '--warehouse', split, '--json']);
    expect(early.code, early.stderr).to.equal(0);
    expect(early.json.archived).to.deep.equal([]);
    expect((await runCli(['compute', '--lake', lake, '--warehouse', split, '--kpis', 'genre', '--quiet'])).code).to.equal(0);
    const one = await freshDatabase();
    expect((await runCli(['compute', '--lake', copyLake('tiny'), '--warehouse', one, '--quiet'])).code).to.equal(0);
    expect(await tableRows(split, 'hourly_kpis')).to.deep.equal(await tableRows(one, 'hourly_kpis'));
    expect(await tableRows(split, 'genre_level_kpis')).to.deep.equal(await tableRows(one, 'genre_level_kpis'));
    const arch = await runCli(['archive', '--lake', lake, '--warehouse', split, '--json']);
    expect(arch.code, arch.stderr).to.equal(0);
    expect(arch.json.archived).to.have.length(2);
    expect(ls(join(lake, 'streams'))).to.deep.equal(['archived']);
  });

  it('--dry-run on an empty database computes and writes nothing, not even the schema', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--dry-run', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json).to.include({ loaded: false, dryRun: true });
    expect(r.json.rowsWritten).to.deep.equal({ hourly_kpis: 3, genre_level_kpis: 5 });
    expect(await queryRows(url, "select 1 from information_schema.schemata where schema_name = 'reporting_schema'")).to.deep.equal([]);
    expect(ls(join(lake, 'streams'))).to.deep.equal(['a.csv', 'b.csv']);
    expect(existsSync(join(lake, 'rejects'))).to.equal(false);
  });

  it('a run of a local lake into PostgreSQL never loads the AWS SDK; a dry run not pg-copy-streams either', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const main = pathToFileURL(join(REPO, 'dist', 'lib', 'cli', 'main.js')).href;
    // The packages in the CommonJS module cache once the command is done (both load through it).
    const loaded = (args: string[]) => {
      const script = `const { main } = await import(${JSON.stringify(main)});
        await main(${JSON.stringify([...args, '--lake', lake, '--warehouse', url, '--quiet', '--json', '--no-dimension-cache'])});
        const { createRequire } = await import('node:module');
        const names = Object.keys(createRequire(import.meta.url).cache).map((k) => new RegExp('node_modules/((?:@[^/]+/)?[^/]+)/').exec(k)?.[1]);
        process.stdout.write('\\n' + JSON.stringify({ code: process.exitCode ?? 0, names: [...new Set(names.filter(Boolean))].sort() }));`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      // The command's own --json line, then this script's.
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { code: number; names: string[] };
      expect(out.code, r.stderr).to.equal(0);
      return out.names;
    };
    const dry = loaded(['compute', '--dry-run']);
    expect(dry).to.include('pg');
    expect(dry.filter((n) => n.startsWith('@aws-sdk/') || n.startsWith('@smithy/') || n === 'pg-copy-streams')).to.deep.equal([]);
    const run = loaded(['run']);
    expect(run).to.include('pg-copy-streams');
    expect(run.filter((n) => n.startsWith('@aws-sdk/') || n.startsWith('@smithy/'))).to.deep.equal([]);
  });

  it('init is idempotent and query prints rows as JSON and CSV', async () => {
    const url = await freshDatabase();
    expect((await runCli(['init', '--warehouse', url])).code).to.equal(0);
    expect((await runCli(['init', '--warehouse', url])).code).to.equal(0);
    const q = await runCli(['query', "select 1 as a, 'x,y' as b", '--warehouse', url, '--json']);
    expect(q.code, q.stderr).to.equal(0);
    expect(q.json).to.deep.equal([{ a: 1, b: 'x,y' }]);
    const c = await runCli(['query', "select 1 as a, 'x,y' as b", '--warehouse', url, '--csv']);
    expect(c.stdout).to.equal('a,b\n1,"x,y"\n');
  });

  it('maps failures to sysexits codes', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['frobnicate'])).code).to.equal(64);
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--kpis', 'weekly'])).code).to.equal(64);
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--schema', 'x; drop table y'])).code).to.equal(78);
    const noSongs = copyLake('tiny');
    rmSync(join(noSongs, 'songs.csv'));
    const r66 = await runCli(['run', '--lake', noSongs, '--warehouse', url, '--json']);
    expect(r66.code).to.equal(66);
    expect(r66.json.error.code).to.equal('MKPI_NO_INPUT');
    const down = await runCli([
      'run',
      '--lake',
      lake,
      '--warehouse',
      'postgresql://nobody:s3cret-pw@127.0.0.1:1/db',
      '--json',
      '--connect-timeout',
      '0',
    ]);
    expect(down.code).to.equal(69);
    expect(down.stdout + down.stderr).not.to.contain('s3cret-pw');
  });

  it('a run killed between load and archive is finished by the next run without loading twice', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    const killed = await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'], { env: { MKPI_TEST_FAULT: 'after-commit' } });
    expect(killed.signal).to.equal('SIGKILL');
    expect(ls(join(lake, 'streams'))).to.deep.equal(['a.csv', 'b.csv']);
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.loaded).to.equal(false);
    expect(r.json.archived).to.have.length(2);
    expectTable(await tableRows(url, 'hourly_kpis'), fixture('tiny/expected/hourly_kpis.csv'));
    expectTable(await tableRows(url, 'genre_level_kpis'), fixture('tiny/expected/genre_level_kpis.csv'));
  });

  it('an archived file is never overwritten by a different one of the same name', async () => {
    const url = await freshDatabase();
    const lake = copyLake('tiny');
    expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
    mkdirSync(join(lake, 'streams'), { recursive: true });
    writeFileSync(join(lake, 'streams', 'a.csv'), 'user_id,track_id,listen_time\nu1,t1,2024-06-05 01:00:00\n');
    const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.archived).to.have.length(1);
    expect(r.json.archived[0].renamed).to.equal(true);
    expect(readFileSync(join(lake, 'streams', 'archived', 'a.csv'), 'utf8')).to.equal(fixture('tiny/streams/a.csv'));
    expect(ls(join(lake, 'streams', 'archived'))).to.have.length(3);
  });
});

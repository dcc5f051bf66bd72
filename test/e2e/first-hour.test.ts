// What a new user meets in their first hour (issue "nothing doubled, for real", items 3–12):
// shared environments, repeated and valueless flags, exit codes, lake identity, status,
// retract, quiet cron mode, honest help. Each case is a real CLI run.
import { expect } from 'chai';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyLake, queryRows, runCli, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { NO_WAREHOUSE_ENV } from '../support/harness.js';

const ls = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);
const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** Tables after one run over a copy of the tiny lake without the given stream files. */
async function runWithout(...files: string[]) {
  const url = await freshDatabase();
  const lake = copyLake('tiny');
  for (const f of files) rmSync(join(lake, 'streams', f));
  const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet']);
  expect(r.code, r.stderr).to.equal(0);
  return { hourly: await tableRows(url, 'hourly_kpis'), genre: await tableRows(url, 'genre_level_kpis') };
}

describe('e2e: a new user’s first hour', function () {
  this.timeout(180_000);

  describe('forgiving configuration', () => {
    it('a command ignores MUSICKPI_* variables it does not take (one environment for a whole DAG)', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      const plain = await runCli(['validate', '--lake', lake, '--json']);
      const shared = {
        MUSICKPI_WAREHOUSE: url,
        MUSICKPI_KPIS: 'hourly',
        MUSICKPI_MAX_BAD_ROWS: '5',
        MUSICKPI_ADOPT_LAKE: 'true',
      };
      const withEnv = await runCli(['validate', '--lake', lake, '--json'], { env: shared });
      expect(withEnv.code, withEnv.stderr).to.equal(plain.code);
      expect(withEnv.json.totals).to.deep.equal(plain.json.totals);
      const init = await runCli(['init', '--json'], { env: { ...shared, MUSICKPI_LAKE: lake } });
      expect(init.code, init.stderr).to.equal(0);
      const query = await runCli(['query', 'select 1 as one', '--json'], { env: { ...shared, MUSICKPI_LAKE: lake } });
      expect(query.code, query.stderr).to.equal(0);
      expect(query.json).to.deep.equal([{ one: 1 }]);
      const archive = await runCli(['archive', '--lake', lake, '--json'], { env: shared });
      expect(archive.code, archive.stderr).to.equal(0);
    });

    it('a repeated flag takes its last value; never exit 70', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      const r = await runCli([
        'compute',
        '--lake',
        '/nonexistent',
        '--lake',
        lake,
        '--warehouse',
        url,
        '--kpis',
        'hourly',
        '--kpis',
        'genre',
        '--json',
      ]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.kpis).to.deep.equal(['genre']);
      expect(r.json.lake).to.equal(lake);
    });

    it('a flag without its value, a bad value, a mistyped flag: exit 64, one line naming it, no help dump', async () => {
      const lake = copyLake('tiny');
      const cases: [string[], RegExp][] = [
        [['validate', '--lake', lake, '--max-bad-rows'], /--max-bad-rows needs a value/],
        [['validate', '--lake', lake, '--max-bad-rows', '--json'], /--max-bad-rows needs a value/],
        [['validate', '--lake', lake, '--max-bad-rows', 'ten'], /--max-bad-rows must be a whole number/],
        [['validate', '--lak', lake], /unknown option --lak \(did you mean --lake\?\)/],
        [['validate'], /needs --lake/],
        [['rn'], /unknown command rn \(did you mean run\?\)/],
        [['validate', '--lake', lake, 'extra'], /unexpected argument extra/],
      ];
      for (const [args, message] of cases) {
        const r = await runCli(args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(64);
        expect(r.stderr).to.match(message);
        expect(r.stderr).to.contain('--help');
        expect(r.stderr, 'no help dump').not.to.contain('Options:');
        expect(r.stderr.trim().split('\n').length, r.stderr).to.be.at.most(2);
      }
      const bad = await runCli(['validate', '--lake', lake], { env: { MUSICKPI_MAX_BAD_ROWS: 'lots' } });
      expect(bad.code).to.equal(64);
      expect(bad.stderr).to.contain('MUSICKPI_MAX_BAD_ROWS');
    });

    it('a missing or wrong password exits 78 with a hint on PGPASSWORD / ~/.pgpass', async () => {
      const url = new URL(await freshDatabase());
      const lake = copyLake('tiny');
      url.password = '';
      const missing = await runCli(['run', '--lake', lake, '--warehouse', url.toString()], {
        env: { PGPASSWORD: undefined, PGPASSFILE: '/nonexistent' },
      });
      expect(missing.code, missing.stderr).to.equal(78);
      expect(missing.stderr, missing.stderr).to.match(/PGPASSWORD|pgpass/);
      url.password = 'wrong-pw';
      const wrong = await runCli(['run', '--lake', lake, '--warehouse', url.toString(), '--json']);
      expect(wrong.code, wrong.stderr).to.equal(78);
      expect(wrong.stdout + wrong.stderr).not.to.contain('wrong-pw');
    });
  });

  describe('identity of the lake and of the embedded warehouse', () => {
    it('the ledger belongs to its lake: another lake on the same schema is refused (78) unless adopted; another schema is fine', async () => {
      const url = await freshDatabase();
      const first = copyLake('tiny');
      const second = copyLake('tiny');
      expect((await runCli(['run', '--lake', first, '--warehouse', url, '--quiet'])).code).to.equal(0);
      const refused = await runCli(['run', '--lake', second, '--warehouse', url, '--json']);
      expect(refused.code, refused.stderr).to.equal(78);
      expect(refused.json.error.code).to.equal('MKPI_CONFIG');
      expect(refused.json.error.hint).to.contain('--schema');
      expect(ls(join(second, 'streams'))).to.deep.equal(['a.csv', 'b.csv']);
      const dry = await runCli(['compute', '--lake', second, '--warehouse', url, '--dry-run', '--json']);
      expect(dry.code).to.equal(78);
      const other = await runCli(['run', '--lake', second, '--warehouse', url, '--schema', 'second_lake', '--json']);
      expect(other.code, other.stderr).to.equal(0);
      // A lake that moved: its ledger comes along with --adopt-lake.
      const moved = join(tmp('mkpi-moved-'), 'lake');
      renameSync(first, moved);
      const adopted = await runCli(['run', '--lake', moved, '--warehouse', url, '--adopt-lake', '--json']);
      expect(adopted.code, adopted.stderr).to.equal(0);
      expect(adopted.json.loaded).to.equal(false);
    });

    it('the embedded warehouse lives in $XDG_DATA_HOME/musickpi or ~/.local/share/musickpi, never in the current folder', async () => {
      const home = tmp('mkpi-user-home-');
      const cwd = tmp('mkpi-cwd-');
      const lake = copyLake('tiny');
      const env = {
        ...NO_WAREHOUSE_ENV,
        HOME: home,
        XDG_DATA_HOME: undefined,
        MUSICKPI_HOME: undefined,
      };
      const r = await runCli(['run', '--lake', lake, '--json'], { env, cwd });
      expect(r.code, r.stderr).to.equal(0);
      expect(ls(cwd)).to.deep.equal([]);
      expect(existsSync(join(home, '.local', 'share', 'musickpi'))).to.equal(true);
      expect(r.stderr).to.contain(join(home, '.local', 'share', 'musickpi'));
    });
  });

  describe('status and retract', () => {
    it('status lists pending, loaded and archived files and the dates held; retract takes a file back out', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      rmSync(join(lake, 'streams', 'b.csv'));
      expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
      cpSync(join(copyLake('tiny'), 'streams', 'b.csv'), join(lake, 'streams', 'b.csv'));
      const status = await runCli(['status', '--lake', lake, '--warehouse', url, '--json']);
      expect(status.code, status.stderr).to.equal(0);
      expect(status.json.pending.map((p: { file: string }) => p.file)).to.deep.equal(['streams/b.csv']);
      expect(status.json.loaded).to.have.length(1);
      expect(status.json.loaded[0]).to.include({ file: 'streams/a.csv', where: 'archived', archivedKey: 'streams/archived/a.csv' });
      expect(status.json.dates.hourly).to.deep.equal(['2024-06-01']);
      const human = await runCli(['status', '--lake', lake, '--warehouse', url]);
      expect(human.stdout).to.contain('pending     1 file(s)').and.to.contain('streams/b.csv');
      expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);

      // retract a.csv: first a dry run changes nothing, then the real one.
      const before = await tableRows(url, 'hourly_kpis');
      const dry = await runCli(['retract', 'streams/archived/a.csv', '--lake', lake, '--warehouse', url, '--dry-run', '--json']);
      expect(dry.code, dry.stderr).to.equal(0);
      expect(dry.json.retracted).to.deep.equal([{ file: 'streams/a.csv', from: 'streams/archived/a.csv', to: 'streams/retracted/a.csv' }]);
      expect(dry.json.datesRecomputed.hourly).to.deep.equal(['2024-06-01']);
      expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(before);
      const done = await runCli(['retract', 'streams/a.csv', '--lake', lake, '--warehouse', url, '--json']);
      expect(done.code, done.stderr).to.equal(0);
      expect(done.json.loaded).to.equal(true);
      const expected = await runWithout('a.csv');
      expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(expected.hourly);
      expect(await tableRows(url, 'genre_level_kpis')).to.deep.equal(expected.genre);
      expect(ls(join(lake, 'streams', 'retracted'))).to.deep.equal(['a.csv']);
      expect(ls(join(lake, 'streams', 'archived'))).to.deep.equal(['b.csv']);
      const ledger = await queryRows(
        url,
        'select file_key, retracted_at is not null as retracted from reporting_schema.musickpi_ledger order by 1',
      );
      expect(ledger).to.deep.equal([
        { file_key: 'streams/a.csv', retracted: true },
        { file_key: 'streams/b.csv', retracted: false },
      ]);
      // The same bytes delivered again stay out.
      cpSync(join(lake, 'streams', 'retracted', 'a.csv'), join(lake, 'streams', 'a.csv'));
      const again = await runCli(['run', '--lake', lake, '--warehouse', url, '--json']);
      expect(again.code, again.stderr).to.equal(0);
      expect(again.json.skippedRetracted).to.deep.equal(['streams/a.csv']);
      expect(await tableRows(url, 'hourly_kpis')).to.deep.equal(expected.hourly);
      const st = await runCli(['status', '--lake', lake, '--warehouse', url, '--json']);
      expect(st.json.retracted.map((x: { file: string }) => x.file)).to.deep.equal(['streams/a.csv']);
      expect(st.json.pending).to.deep.equal([]);
      const unknown = await runCli(['retract', 'streams/nope.csv', '--lake', lake, '--warehouse', url]);
      expect(unknown.code).to.equal(66);
    });
  });

  describe('lake layouts', () => {
    it('nested stream files are named as ignored, and read with --recursive; archive keeps their folders', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      mkdirSync(join(lake, 'streams', '2024-06-01'));
      renameSync(join(lake, 'streams', 'b.csv'), join(lake, 'streams', '2024-06-01', 'b.csv'));
      const flat = await runCli(['run', '--lake', lake, '--warehouse', url]);
      expect(flat.code, flat.stderr).to.equal(0);
      expect(flat.stdout + flat.stderr).to.contain('streams/2024-06-01/b.csv');
      const deep = await runCli(['run', '--lake', lake, '--warehouse', url, '--recursive', '--json']);
      expect(deep.code, deep.stderr).to.equal(0);
      expect(deep.json.archived.map((a: { to: string }) => a.to)).to.deep.equal(['streams/archived/2024-06-01/b.csv']);
      expect(await tableRows(url, 'hourly_kpis')).to.deep.equal((await runWithout()).hourly);
    });
  });

  describe('output', () => {
    it('--json is one line, the last of stdout; --silent prints nothing on success and still reports failures', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      const reportFile = join(tmp('mkpi-report-'), 'report.json');
      const r = await runCli(['run', '--lake', lake, '--warehouse', url, '--json', '--report-file', reportFile]);
      expect(r.stdout.trimEnd().split('\n')).to.have.length(1);
      // The XCom recipe: the last line of stdout and stderr together is the report.
      const lines = (r.stderr + r.stdout).trimEnd().split('\n');
      expect(JSON.parse(lines[lines.length - 1])).to.deep.equal(r.json);
      // Failures too: a missing lake (66) still ends with the one-line report, `ok: false`.
      // The schema already belongs to `lake`: a mistyped lake path is still 66 (no input), not 78.
      const missing = await runCli(['run', '--lake', join(lake, 'nope'), '--warehouse', url, '--json']);
      expect(missing.code).to.equal(66);
      const last = (missing.stderr + missing.stdout).trimEnd().split('\n').pop()!;
      expect(JSON.parse(last)).to.include({ ok: false, command: 'run' });
      const pretty = readFileSync(reportFile, 'utf8');
      expect(pretty.split('\n').length).to.be.greaterThan(10);
      expect(JSON.parse(pretty)).to.deep.equal(r.json);
      const silent = await runCli(['run', '--lake', copyLake('tiny'), '--warehouse', url, '--schema', 'silent_ok', '--silent']);
      expect(silent.code, silent.stderr).to.equal(0);
      expect(silent.stdout + silent.stderr).to.equal('');
      const failing = await runCli(['run', '--lake', join(lake, 'missing'), '--warehouse', url, '--schema', 'silent_bad', '-s']);
      expect(failing.code).to.not.equal(0);
      expect(failing.stderr).to.contain('MKPI_');
    });

    it('generate-lake --help prints its usage (no stack trace); a bad flag is 64', async () => {
      const { spawnSync } = await import('node:child_process');
      const script = join(import.meta.dirname, '..', '..', 'bench', 'generate-lake.ts');
      const help = spawnSync(process.execPath, ['--import', 'tsx', script, '--help'], { encoding: 'utf8' });
      expect(help.status, help.stderr).to.equal(0);
      expect(help.stdout).to.contain('usage: generate-lake --out DIR');
      const bad = spawnSync(process.execPath, ['--import', 'tsx', script, '--frob'], { encoding: 'utf8' });
      expect(bad.status).to.equal(64);
      expect(bad.stderr).to.contain('usage:').and.not.to.contain('    at ');
    });

    it('help lists only the options a command takes, each with its variable, within 100 columns', async () => {
      const archive = await runCli(['archive', '--help']);
      expect(archive.code).to.equal(0);
      expect(archive.stdout).to.contain('--lake').and.to.contain('[env: MUSICKPI_LAKE]');
      for (const absent of ['--kpis', '--max-bad-rows', '--workers', '--songs', '--rejects']) expect(archive.stdout).not.to.contain(absent);
      for (const command of ['run', 'validate', 'compute', 'archive', 'status', 'retract', 'init', 'query']) {
        const h = await runCli([command, '--help']);
        expect(h.code, command).to.equal(0);
        const options = h.stdout.split('\n').filter((l) => /^\s+(-\w, )?--[a-z]/.test(l) && !/--(help|version)\b/.test(l));
        // Each option's entry (its line and its wrapped continuation) names its variable.
        const entries = h.stdout.split(/\n(?=\s+(?:-\w, )?--[a-z])|\n\n/).map((e) => e.replace(/\s+/g, ' '));
        for (const l of options) {
          const entry = entries.find((e) => e.startsWith(l.replace(/\s+/g, ' ')));
          expect(entry, `${command}: ${l}`).to.match(/\[env: MUSICKPI_[A-Z0-9_]+\]/);
        }
        for (const l of h.stdout.split('\n')) expect(l.length, `${command}: ${l}`).to.be.at.most(100);
      }
    });

    it('query: the search path is --schema, DML prints its command tag and count, hand edits of KPI tables warn, errors get fitting hints', async () => {
      const url = await freshDatabase();
      const lake = copyLake('tiny');
      expect((await runCli(['run', '--lake', lake, '--warehouse', url, '--quiet'])).code).to.equal(0);
      const count = await runCli(['query', '--warehouse', url, '--json', 'select count(*)::int as n from hourly_kpis']);
      expect(count.code, count.stderr).to.equal(0);
      const n = (count.json as { n: number }[])[0].n;
      const del = await runCli(['query', '--warehouse', url, 'delete from hourly_kpis where listen_hour = 10']);
      expect(del.code, del.stderr).to.equal(0);
      expect(del.stdout.trim()).to.match(/^DELETE [1-9]\d*$/);
      expect(del.stderr).to.contain('ledger');
      expect(n).to.be.greaterThan(0);
      const syntax = await runCli(['query', '--warehouse', url, 'selec 1']);
      expect(syntax.code).to.equal(64);
      expect(syntax.stderr).not.to.contain('hourly_kpis');
      const missing = await runCli(['query', '--warehouse', url, 'select * from no_such_table']);
      expect(missing.code).to.equal(64);
      expect(missing.stderr).to.contain('hourly_kpis');
    });
  });
});

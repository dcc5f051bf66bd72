// Identifiers and secrets, through the built CLI (dist/): a malicious --schema is refused before
// any SQL; a password given in --warehouse, DATABASE_URL or PGPASSWORD never shows in stdout,
// stderr or --json, whether the database refuses it, cannot be reached, or the run succeeds;
// and the rejects output stays inside its folder of the lake whatever the input file names and
// --rejects say.

import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, cpSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO, queryRows, runCli, type CliResult } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';

/** Every password used here holds this marker in each of its parts: no output may contain it. */
const MARK = 'Zq7';

function expectNoSecret(r: CliResult, secrets: string[], where: string): void {
  const out = r.stdout + '\n' + r.stderr;
  expect(out, `${where}: marker`).to.not.contain(MARK);
  for (const s of secrets) {
    for (const form of new Set([s, encodeURIComponent(s)])) {
      if (form.length >= 4) expect(out, `${where}: ${JSON.stringify(form)}`).to.not.contain(form);
    }
  }
}

/**
 * The JSON report on stdout. Parsed from the first document, because a run whose warehouse
 * cannot be opened prints two today (a known bug, tested below).
 */
function report(r: CliResult): any {
  if (r.json !== undefined) return r.json;
  const end = r.stdout.indexOf('\n}\n');
  return end < 0 ? undefined : JSON.parse(r.stdout.slice(0, end + 2));
}

/** Every file and folder under dir, relative to it. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(dir, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** A copy of the tiny lake at <parent>/lake, so that anything written next to it shows. */
function lakeInParent(): { parent: string; lake: string } {
  const parent = mkdtempSync(join(tmpdir(), 'musickpi-sec-'));
  chmodSync(parent, 0o755);
  const lake = join(parent, 'lake');
  cpSync(join(REPO, 'fixtures', 'tiny'), lake, { recursive: true, preserveTimestamps: true });
  return { parent, lake };
}

const UNREACHABLE = 'postgresql://postgres:%s@127.0.0.1:1/musickpi';
const withPassword = (template: string, pw: string) => template.replace('%s', encodeURIComponent(pw));

describe('e2e security: identifiers, secrets, rejects confinement', function () {
  this.timeout(180_000);
  const cleanup: string[] = [];
  after(() => {
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });

  describe('--schema', () => {
    // The first four also go through a whole `run` against a real database.
    const MALICIOUS: [string, string][] = [
      ['SQL after a semicolon', 'x; drop table y'],
      ['a quoted identifier', '"x"'],
      ['a quote breaking out of the quoting', 'x"; DROP SCHEMA public CASCADE; --'],
      ['64 characters', 'a'.repeat(64)],
      ['empty', ''],
      ['unicode', 'schéma'],
      ['a dotted name', 'public.hourly_kpis'],
      ['a leading digit', '1abc'],
      ['a space', 'reporting schema'],
      ['a NUL-free control character', 'x\u0007'],
    ];

    async function userSchemas(url: string): Promise<string[]> {
      const rows = await queryRows(
        url,
        `SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public') ORDER BY 1`,
      );
      return rows.map((r) => String(r.nspname));
    }

    let url: string;
    before(async () => {
      url = await freshDatabase('sec_schema');
    });

    for (const [n, [what, schema]] of MALICIOUS.entries()) {
      // An empty value is a flag missing its value (64, like every flag); a bad name is config (78).
      const expected = schema === '' ? { code: 64, error: 'MKPI_USAGE' } : { code: 78, error: 'MKPI_CONFIG' };
      it(`${what} (${JSON.stringify(schema)}) is refused with ${expected.code} before any connection, and creates nothing`, async () => {
        // An unreachable warehouse: had the name got as far as a connection, the exit would be 69.
        const early = await runCli(['init', '--schema', schema, '--warehouse', withPassword(UNREACHABLE, `${MARK}pw`)]);
        expect(early.code, early.stderr).to.equal(expected.code);
        expect(early.stderr).to.contain(expected.error).and.to.contain('schema');
        if (n >= 4) return;

        const { parent, lake } = lakeInParent();
        cleanup.push(parent);
        const run = await runCli(['run', '--lake', lake, '--warehouse', url, '--json'], { env: { MUSICKPI_SCHEMA: schema } });
        expect(run.code, run.stderr).to.equal(78);
        expect(report(run)?.error?.code).to.equal('MKPI_CONFIG');
        expect(await userSchemas(url)).to.deep.equal([]);
        expect(await queryRows(url, `SELECT relname FROM pg_class WHERE relname IN ('x', 'y', 'hourly_kpis')`)).to.deep.equal([]);
        // Nothing read, nothing moved.
        expect(readdirSync(join(lake, 'streams')).sort()).to.deep.equal(['a.csv', 'b.csv']);
        expect(existsSync(join(lake, 'rejects'))).to.equal(false);
      });
    }

    it('a 63-character name, the longest PostgreSQL keeps, is accepted and used exactly, case included', async () => {
      const url = await freshDatabase('sec_schema63');
      const schema = 'S' + 'x'.repeat(61) + 'Z';
      const r = await runCli(['init', '--schema', schema, '--warehouse', url]);
      expect(r.code, r.stderr).to.equal(0);
      expect(await userSchemas(url)).to.deep.equal([schema]);
    });

    it('--json prints exactly one JSON document when the warehouse cannot be opened', async () => {
      const r = await runCli(['run', '--lake', join(REPO, 'fixtures', 'tiny'), '--schema', 'x;y', '--json']);
      expect(r.code).to.equal(78);
      expect(r.json, r.stdout).to.not.equal(undefined);
      expect(r.json.error.code).to.equal('MKPI_CONFIG');
    });

    it('reserved schema names (pg_catalog, pg_temp, pg_toast) are refused with 78, not sent to PostgreSQL', async () => {
      const url = await freshDatabase('sec_schema_pg');
      for (const schema of ['pg_catalog', 'pg_temp', 'pg_toast', 'PG_x']) {
        const r = await runCli(['init', '--schema', schema, '--warehouse', withPassword(UNREACHABLE, `${MARK}pw`)]);
        expect(r.code, `${schema}: ${r.stderr}`).to.equal(78);
        const real = await runCli(['init', '--schema', schema, '--warehouse', url]);
        expect(real.code, `${schema}: ${real.stderr}`).to.equal(78);
      }
    });
  });

  describe('passwords', () => {
    let url: string;
    let port: string;
    let realPassword: string;
    before(async () => {
      url = await freshDatabase('sec_pw');
      const u = new URL(url);
      port = u.port;
      realPassword = decodeURIComponent(u.password);
      expect(realPassword.length, 'the test server must use a password').to.be.greaterThan(0);
    });
    const wrongUrl = (pw: string) => {
      const u = new URL(url);
      u.password = encodeURIComponent(pw);
      return u.toString();
    };

    it('a wrong password for a reachable database: 78, and the password is in no output (--warehouse, DATABASE_URL, MUSICKPI_WAREHOUSE; text and --json)', async () => {
      const pw = `${MARK}-wrong-${MARK}`;
      const cases: [string, string[], Record<string, string>][] = [
        ['--warehouse', ['init', '--warehouse', wrongUrl(pw)], {}],
        ['--warehouse --json', ['init', '--json', '--warehouse', wrongUrl(pw)], {}],
        ['DATABASE_URL', ['init'], { DATABASE_URL: wrongUrl(pw) }],
        [
          'DATABASE_URL run --json',
          ['run', '--lake', join(REPO, 'fixtures', 'tiny'), '--dry-run', '--json'],
          { DATABASE_URL: wrongUrl(pw) },
        ],
        [
          'MUSICKPI_WAREHOUSE compute --dry-run',
          ['compute', '--lake', join(REPO, 'fixtures', 'tiny'), '--dry-run'],
          { MUSICKPI_WAREHOUSE: wrongUrl(pw) },
        ],
        ['query --json', ['query', '--json', 'select 1', '--warehouse', wrongUrl(pw)], {}],
      ];
      for (const [where, args, env] of cases) {
        const r = await runCli(args, { env });
        expect(r.code, `${where}: ${r.stderr}`).to.equal(78);
        expect(r.stdout + r.stderr, where).to.contain('password authentication failed');
        expectNoSecret(r, [pw], where);
        if (args.includes('--json')) expect(report(r)?.error?.code, where).to.equal('MKPI_CONFIG');
      }
    });

    it('a wrong PGPASSWORD: 78, and the password is in no output', async () => {
      const pw = `${MARK}-pgpassword`;
      const r = await runCli(['init', '--json'], {
        env: { PGHOST: '127.0.0.1', PGPORT: port, PGUSER: 'postgres', PGDATABASE: 'postgres', PGPASSWORD: pw, DATABASE_URL: undefined },
      });
      expect(r.code, r.stderr).to.equal(78);
      expectNoSecret(r, [pw], 'PGPASSWORD');
    });

    it('an unreachable or unresolvable database: 69, and no password in any output, special characters included', async () => {
      const passwords = [
        `${MARK}plain`,
        `${MARK}@at${MARK}`,
        `${MARK}:colon/slash${MARK}`,
        `${MARK}#hash?q=${MARK}`,
        `${MARK} space%25${MARK}`,
        `${MARK}'quote"${MARK}`,
      ];
      const templates = [UNREACHABLE, 'postgresql://postgres:%s@host.invalid:5432/musickpi'];
      for (const [i, pw] of passwords.entries()) {
        // Alternating host, flag or variable, and text or --json, to keep the number of runs down.
        const target = withPassword(templates[i % 2], pw);
        const [where, args, env]: [string, string[], Record<string, string>] =
          i % 3 === 2
            ? ['DATABASE_URL', ['init'], { DATABASE_URL: target }]
            : ['--warehouse', ['init', ...(i % 3 ? ['--json'] : []), '--warehouse', target], {}];
        const r = await runCli(args, { env });
        const label = `${where} ${JSON.stringify(pw)} ${templates[i % 2]}`;
        expect(r.code, `${label}: ${r.stderr}`).to.equal(69);
        expectNoSecret(r, [pw], label);
      }
    });

    it('a password in the query string is in no output either', async () => {
      const pw = `${MARK}-query`;
      for (const target of [
        `postgresql://127.0.0.1:1/x?user=postgres&password=${pw}`,
        `postgresql://127.0.0.1:${port}/x?user=postgres&password=${pw}`,
      ]) {
        const r = await runCli(['init', '--json', '--warehouse', target]);
        expect(r.code, r.stderr).to.be.oneOf([69, 78]);
        expectNoSecret(r, [pw], target);
      }
    });

    it('a connection URL that cannot be parsed (unencoded # or /, bad port, two hosts): no password in any output', async () => {
      for (const [i, target] of [
        `postgresql://postgres:${MARK}#${MARK}@127.0.0.1:1/x`,
        `postgresql://postgres:${MARK}/${MARK}@127.0.0.1:1/x`,
        `postgresql://postgres:${MARK}pw@127.0.0.1:notaport/x`,
        `postgresql://postgres:${MARK}pw@127.0.0.1:1,127.0.0.2:1/x`,
        `postgresql://postgres:${MARK}pw@[::1:1/x`,
        `postgresql://postgres:${MARK}@${MARK}@127.0.0.1:1/x`,
      ].entries()) {
        const [args, env]: [string[], Record<string, string>] =
          i % 2 ? [['init'], { DATABASE_URL: target }] : [['init', '--json', '--warehouse', target], {}];
        const r = await runCli(args, { env });
        expect(r.code, r.stderr).to.not.equal(0);
        expectNoSecret(r, [], target);
      }
    });

    it('a connection URL that cannot be parsed fails as a configuration error (78), without a stack trace', async () => {
      for (const target of [`postgresql://postgres:${MARK}#x@127.0.0.1:1/x`, `postgresql://postgres:${MARK}pw@127.0.0.1:notaport/x`]) {
        const r = await runCli(['init', '--warehouse', target]);
        expect(r.code, r.stderr).to.equal(78);
        expect(r.stderr).to.not.match(/\n\s+at /);
      }
    });

    it('a successful run never shows the password: stdout, stderr, --json report, or any file it writes', async () => {
      for (const [where, args, env] of [
        ['--warehouse --json', ['--json'], 'flag'],
        ['--warehouse text', [], 'flag'],
        ['DATABASE_URL --json', ['--json'], 'env'],
      ] as [string, string[], string][]) {
        const db = await freshDatabase('sec_run');
        const { parent, lake } = lakeInParent();
        cleanup.push(parent);
        const r = await runCli(['run', '--lake', lake, ...(env === 'flag' ? ['--warehouse', db] : []), ...args], {
          env: env === 'env' ? { DATABASE_URL: db } : {},
        });
        expect(r.code, `${where}: ${r.stderr}`).to.equal(0);
        expectNoSecret(r, [realPassword], where);
        if (args.includes('--json')) {
          expect(r.json.ok).to.equal(true);
          expect(r.json.warehouse).to.be.a('string').and.not.contain(realPassword);
        }
        for (const f of tree(lake)) {
          const p = join(lake, f);
          if (statSync(p).isFile()) expect(readFileSync(p, 'utf8'), `${where}: ${f}`).to.not.contain(realPassword);
        }
        const ledger = await queryRows(db, 'SELECT * FROM reporting_schema.musickpi_ledger');
        expect(JSON.stringify(ledger)).to.not.contain(realPassword);
      }
    });
  });

  describe('rejects output confinement', () => {
    const ODD_NAMES = [
      '..csv',
      '...csv',
      'a..b.csv',
      'x y.csv',
      '"q".csv',
      "'s'.csv",
      '$(touch mkpi-pwned).csv',
      ';rm -rf ~;.csv',
      '-rf.csv',
      '%2e%2e%2fevil.csv',
      '..%2F..%2Fx.csv',
      'ü nï cødé 😀.csv',
      'tab\tname.csv',
      'back\\slash.csv',
      ' lead and trail .csv',
      'C:evil.csv',
      '*.csv',
      '?.csv',
      'a,b.csv',
      '--rejects=..csv',
    ];

    it('stream files with odd names: rejects land in rejects/<run id>/ only, name every file exactly, and every file is archived under its name', async () => {
      const db = await freshDatabase('sec_names');
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      for (const [i, name] of ODD_NAMES.entries()) {
        writeFileSync(
          join(lake, 'streams', name),
          `user_id,track_id,listen_time\nu1,t1,2024-06-05 1${i % 10}:00:00\nu2,no-such-track,2024-06-05 10:00:00\n`,
        );
      }
      const before = tree(parent);
      const r = await runCli(['run', '--lake', lake, '--warehouse', db, '--json']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json.rejectsOutput).to.equal(`rejects/${r.json.runId}/rejects.csv`);
      const added = tree(parent).filter((p) => !before.includes(p));
      for (const p of added) expect(p.startsWith(`lake/`), `written outside the lake: ${p}`).to.equal(true);
      // The loaded dates' saved states live under _musickpi/state/, named by date only.
      const outside = added.filter(
        (p) =>
          !p.startsWith('lake/streams/archived') &&
          !p.startsWith('lake/rejects') &&
          !/^lake\/_musickpi(\/state(\/\d{4}-\d{2}-\d{2}\.state)?)?$/.test(p),
      );
      expect(outside, 'written outside streams/archived, rejects/ and _musickpi/state/').to.deep.equal([]);
      expect(tree(join(lake, 'rejects'))).to.deep.equal([r.json.runId, `${r.json.runId}/rejects.csv`]);
      expect(existsSync(join(REPO, 'mkpi-pwned')) || existsSync(join(lake, 'mkpi-pwned'))).to.equal(false);

      // The rejects CSV names each file exactly (quoted where it must be).
      const text = readFileSync(join(lake, r.json.rejectsOutput), 'utf8');
      const files = new Set<string>();
      let field = '';
      let quoted = false;
      let col = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (quoted) {
          if (c === '"' && text[i + 1] === '"') {
            field += '"';
            i++;
          } else if (c === '"') quoted = false;
          else field += c;
        } else if (c === '"') quoted = true;
        else if (c === ',' || c === '\n') {
          if (col === 0) files.add(field);
          col = c === ',' ? col + 1 : 0;
          field = '';
        } else field += c;
      }
      files.delete('file');
      files.delete('songs.csv'); // the tiny lake's duplicate song row is listed too
      expect([...files].sort()).to.deep.equal([...ODD_NAMES.map((n) => `streams/${n}`), 'streams/b.csv'].sort());
      expect(readdirSync(join(lake, 'streams', 'archived')).sort()).to.deep.equal([...ODD_NAMES, 'a.csv', 'b.csv'].sort());
    });

    for (const [what, args, env] of [
      ['--rejects ../x', ['--rejects', '../mkpi-escape'], {}],
      ['--rejects ../../x', ['--rejects', '../../mkpi-escape'], {}],
      ['--rejects a/../../x', ['--rejects', 'a/../../mkpi-escape'], {}],
      ['MUSICKPI_REJECTS=../x', [], { MUSICKPI_REJECTS: '../mkpi-escape' }],
    ] as [string, string[], Record<string, string>][]) {
      it(`${what} is refused with 64 and writes nothing anywhere`, async () => {
        for (const command of ['validate', 'run']) {
          const { parent, lake } = lakeInParent();
          cleanup.push(parent);
          const before = tree(parent);
          const extra = command === 'run' ? ['--warehouse', withPassword(UNREACHABLE, `${MARK}pw`)] : [];
          const r = await runCli([command, '--lake', lake, ...extra, ...args], { env });
          expect(r.code, `${command}: ${r.stderr}`).to.equal(64);
          expect(r.stderr).to.contain('rejects');
          expect(tree(parent), command).to.deep.equal(before);
          expect(existsSync(join(tmpdir(), 'mkpi-escape')), 'tmpdir').to.equal(false);
        }
      });
    }

    it('--rejects an absolute path or a file:// URI writes the rejects CSV there, and nothing else outside the lake', async () => {
      for (const as of ['path', 'uri']) {
        const { parent, lake } = lakeInParent();
        cleanup.push(parent);
        const out = mkdtempSync(join(tmpdir(), 'mkpi-rejects-out-'));
        cleanup.push(out);
        const before = tree(parent);
        const target = as === 'path' ? out : `file://${out}`;
        const r = await runCli(['validate', '--lake', lake, '--rejects', target, '--max-bad-rows', '1000000', '--json']);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.json.rejectsOutput).to.equal(join(out, 'rejects.csv'));
        expect(readdirSync(out)).to.deep.equal(['rejects.csv']);
        expect(tree(parent)).to.deep.equal(before);
      }
    });

    it('--rejects with backslash ".." segments writes nothing outside the lake', async () => {
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      const before = tree(parent);
      const r = await runCli(['validate', '--lake', lake, '--rejects', '..\\..\\mkpi-escape']);
      expect(r.code).to.not.equal(0);
      expect(tree(parent)).to.deep.equal(before);
    });

    it('--rejects with backslash ".." segments is refused cleanly: 64 (or 78), no uncaught error', async () => {
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      const r = await runCli(['validate', '--lake', lake, '--rejects', '..\\..\\mkpi-escape']);
      expect(r.code, r.stderr).to.be.oneOf([64, 78]);
      expect(r.stderr).to.not.contain('Unhandled');
    });

    it('a stream file named with backslash ".." segments never makes the run touch anything outside the lake', async () => {
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      writeFileSync(join(lake, 'streams', '..\\..\\evil.csv'), 'user_id,track_id,listen_time\nu1,zzz,2024-06-05 10:00:00\n');
      const before = tree(parent);
      const r = await runCli(['validate', '--lake', lake, '--json']);
      // Refused as an unsafe key (78) today; reading it as an ordinary name would be fine too.
      expect(r.code, r.stderr).to.be.oneOf([0, 78]);
      const added = tree(parent).filter((p) => !before.includes(p));
      for (const p of added) expect(p.startsWith('lake/rejects'), p).to.equal(true);
    });

    it('--rejects inside streams/ is refused, so the rejects CSV never becomes input of the next run', async () => {
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      const first = await runCli(['validate', '--lake', lake, '--rejects', 'streams']);
      const second = await runCli(['validate', '--lake', lake]);
      expect(first.code === 64 || second.code === 0, `first ${first.code}, then ${second.code}: ${second.stdout}`).to.equal(true);
    });

    it('a stream file whose name is not valid UTF-8 is not silently skipped (an error or a warning names it)', async () => {
      const { parent, lake } = lakeInParent();
      cleanup.push(parent);
      const name = Buffer.concat([Buffer.from(join(lake, 'streams') + '/bad'), Buffer.from([0xff, 0xfe]), Buffer.from('.csv')]);
      writeFileSync(name, 'user_id,track_id,listen_time\nu1,t1,2024-06-05 10:00:00\n');
      const r = await runCli(['validate', '--lake', lake, '--json']);
      const seen = r.code !== 0 || r.json.files.length === 3 || r.json.warnings.some((w: string) => w.includes('bad'));
      expect(seen, JSON.stringify(r.json?.files?.map((f: { name: string }) => f.name))).to.equal(true);
    });
  });
});

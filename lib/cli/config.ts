// The one place configuration is resolved: flags > MUSICKPI_* variables > defaults, validated
// and frozen before any side effect (no server started, no lake opened). It is also the only
// reader of the process environment: everything else receives the slice it needs from here.
//
// Each command takes a fixed set of options (COMMAND_OPTIONS); a MUSICKPI_* variable of an option
// the command does not take is ignored, so one environment can be shared by a DAG's tasks.

import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { MkpiError } from '../domain/errors.js';
import { KPI_TABLES, type KpiTable } from '../domain/kpi.js';
import type { LakeConnectOptions } from '../domain/lake.js';
import { DEFAULT_LAYOUT, normalisePrefix, type LakeLayout } from '../domain/layout.js';
import { RUN_ID_PATTERN } from '../domain/shards.js';

type Kind = 'string' | 'number' | 'boolean';

interface OptionSpec {
  kind: Kind;
  describe: string;
  group?: string;
  /** The default applied when neither the flag nor its variable is set. */
  default?: string | number | boolean;
  /** Shown in --help when the default is not a plain value. */
  defaultText?: string;
  alias?: string;
  /** Never printed, never enumerable in the resolved configuration. */
  secret?: boolean;
}

const LAKE = 'Lake:';
const S3 = 'S3 (credentials: AWS default chain):';
const WAREHOUSE = 'Warehouse:';
const COMPUTE = 'Compute:';
const OUTPUT = 'Output:';

/** Every option of every command. */
export const OPTIONS = {
  lake: { kind: 'string', describe: 'lake root: a folder or s3://bucket/prefix', group: LAKE },
  songs: { kind: 'string', describe: 'songs file, relative to the lake', group: LAKE, default: DEFAULT_LAYOUT.songs },
  users: { kind: 'string', describe: 'users file, relative to the lake', group: LAKE, default: DEFAULT_LAYOUT.users },
  streams: { kind: 'string', describe: 'folder of new stream files', group: LAKE, default: DEFAULT_LAYOUT.streams },
  archive: { kind: 'string', describe: 'folder archived stream files move to', group: LAKE, default: DEFAULT_LAYOUT.archive },
  recursive: {
    kind: 'boolean',
    describe: 'also read stream files in folders under the streams folder (date folders, dt= partitions)',
    group: LAKE,
    default: false,
  },
  rejects: {
    kind: 'string',
    describe: 'where the rejects CSV goes: a folder in the lake, a local path or an s3:// URI',
    group: LAKE,
    defaultText: 'rejects/<run id>/ in the lake; validate and --dry-run: a temp folder',
  },
  'cache-dir': {
    kind: 'string',
    describe: 'folder of the cache of parsed songs and users, reused while their files are unchanged',
    group: LAKE,
    defaultText: '$XDG_CACHE_HOME/musickpi or ~/.cache/musickpi',
  },
  'dimension-cache': {
    kind: 'boolean',
    describe: 'reuse the parsed songs and users from the cache folder (--no-dimension-cache: parse them every run)',
    group: LAKE,
    default: true,
  },
  'date-state': {
    kind: 'boolean',
    describe:
      "save each loaded date's counts under _musickpi/state/ in the lake, so a late file re-reads them instead of the archived files (--no-date-state: re-read the files)",
    group: LAKE,
    default: true,
  },
  'keep-rejects': {
    kind: 'number',
    describe: 'rejects/<run id>/ folders kept in the lake; older ones are removed (0: keep all)',
    group: LAKE,
    default: 30,
  },
  's3-endpoint': { kind: 'string', describe: 'endpoint of an S3-compatible store', group: S3 },
  's3-region': { kind: 'string', describe: 'S3 region', group: S3, defaultText: 'AWS_REGION, AWS_DEFAULT_REGION' },
  's3-force-path-style': { kind: 'boolean', describe: 'path-style S3 URLs (MinIO, Ceph)', group: S3, default: false },
  warehouse: {
    kind: 'string',
    describe: 'postgresql:// or redshift:// URL (put the password in PGPASSWORD or ~/.pgpass, not here)',
    group: WAREHOUSE,
    defaultText: 'DATABASE_URL, then PG* variables, then the embedded PostgreSQL',
    secret: true,
  },
  schema: { kind: 'string', describe: 'schema of the KPI tables and the ledger', group: WAREHOUSE, default: 'reporting_schema' },
  home: {
    kind: 'string',
    describe: "folder of the embedded PostgreSQL's data (used when no warehouse is configured)",
    group: WAREHOUSE,
    defaultText: '$XDG_DATA_HOME/musickpi or ~/.local/share/musickpi',
  },
  'connect-timeout': {
    kind: 'number',
    describe: 'seconds to keep retrying a warehouse that refuses connections before exit 69',
    group: WAREHOUSE,
    default: 30,
  },
  staging: {
    kind: 'string',
    describe: 'where plans, normalized parts and Redshift stage files go: a folder or s3://bucket/prefix/ (Redshift: S3)',
    group: WAREHOUSE,
    defaultText: '_musickpi/staging/ under the lake',
  },
  'iam-role': {
    kind: 'string',
    describe: 'Redshift: the IAM role ARN COPY reads the stage files with',
    group: WAREHOUSE,
    defaultText: "the cluster's default role",
  },
  'redshift-iam': {
    kind: 'boolean',
    describe: 'Redshift: temporary database credentials from the AWS default chain instead of a password',
    group: WAREHOUSE,
    default: false,
  },
  'redshift-cluster-id': {
    kind: 'string',
    describe: 'Redshift: the cluster id for --redshift-iam (when the host does not name it)',
    group: WAREHOUSE,
    defaultText: "the host's first label",
  },
  'adopt-lake': {
    kind: 'boolean',
    describe: "let this lake take over the schema's ledger (after moving a lake)",
    group: WAREHOUSE,
    default: false,
  },
  kpis: { kind: 'string', describe: 'KPI tables to compute: hourly, genre', group: COMPUTE, default: KPI_TABLES.join(',') },
  'dry-run': { kind: 'boolean', describe: 'write nothing, move nothing: report what would change', group: COMPUTE, default: false },
  'max-bad-rows': { kind: 'number', describe: 'bad stream rows tolerated before the run fails (exit 65)', group: COMPUTE, default: 0 },
  'max-orphan-rows': {
    kind: 'number',
    describe: 'orphan rows tolerated before the run fails (exit 65)',
    group: COMPUTE,
    defaultText: 'no limit: orphans only warn',
  },
  engine: {
    kind: 'string',
    describe: 'stream: compute in this process; warehouse: normalize here, join and aggregate in the warehouse',
    group: COMPUTE,
    default: 'stream',
  },
  'run-id': {
    kind: 'string',
    describe: "the plan's id: plan writes it, normalize and --engine warehouse read it (e.g. Airflow's run_id)",
    group: COMPUTE,
    defaultText: 'plan: a new id; run/compute: the run plans for itself; normalize: required',
  },
  shards: {
    kind: 'number',
    describe:
      'plan: how many shards to split the files into; normalize: N, with the index from JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX',
    group: COMPUTE,
    defaultText: 'plan: 1; a run that plans for itself: its workers',
  },
  shard: { kind: 'string', describe: 'normalize: the shard to write, i/N with i from 0', group: COMPUTE },
  workers: {
    kind: 'number',
    describe: 'worker threads reading stream files beside the main thread (0: the main thread alone)',
    group: COMPUTE,
    defaultText: 'min(2, cores)',
  },
  'memory-budget': {
    kind: 'number',
    describe:
      'MB of KPI state held in memory, shared by the readers; past it, state is spilled by date to a temporary folder (a long backfill stays within it; a daily run never reaches it)',
    group: COMPUTE,
    default: 128,
  },
  json: { kind: 'boolean', describe: 'print the result as one line of JSON on stdout', group: OUTPUT, default: false },
  quiet: { kind: 'boolean', alias: 'q', describe: 'no progress or log lines on stderr', group: OUTPUT, default: false },
  silent: {
    kind: 'boolean',
    alias: 's',
    describe: 'print nothing at all when the command succeeds (cron); failures still print',
    group: OUTPUT,
    default: false,
  },
  csv: { kind: 'boolean', describe: 'print CSV', group: OUTPUT, default: false },
  'log-format': { kind: 'string', describe: 'text, or json: one object per line on stderr', group: OUTPUT, default: 'text' },
  verbose: { kind: 'boolean', alias: 'v', describe: 'more detail on stderr (each file, each step)', group: OUTPUT, default: false },
  debug: { kind: 'boolean', describe: 'everything on stderr, SQL and timings included', group: OUTPUT, default: false },
  color: { kind: 'boolean', describe: 'colour on a terminal (--no-color, or NO_COLOR, turns it off)', group: OUTPUT, default: true },
  'openlineage-file': {
    kind: 'string',
    describe: 'append OpenLineage run events to this file (one JSON per line); OPENLINEAGE_URL sends them over HTTP',
    group: OUTPUT,
  },
  'metrics-file': { kind: 'string', describe: 'write Prometheus metrics of the run (textfile collector format)', group: OUTPUT },
  pushgateway: { kind: 'string', describe: 'push the same metrics to this Prometheus Pushgateway URL', group: OUTPUT },
  date: {
    kind: 'string',
    describe: 'one listen date (YYYY-MM-DD or an ISO instant): run/compute recompute it over every file that has it; report shows it',
    group: COMPUTE,
  },
  start: { kind: 'string', describe: 'with --end: the dates of [start, end) (dates or ISO instants), recomputed or shown', group: COMPUTE },
  end: { kind: 'string', describe: 'the end of the --start window, exclusive', group: COMPUTE },
  'expect-dates': {
    kind: 'string',
    describe: 'D or D..E (end exclusive): warn when new files carry listen dates outside it',
    group: COMPUTE,
  },
  'strict-dates': { kind: 'boolean', describe: 'with --expect-dates: fail (exit 65) instead of warning', group: COMPUTE, default: false },
  html: { kind: 'string', describe: 'also write the report as one self-contained HTML page to this file', group: OUTPUT },
  limit: { kind: 'number', describe: 'how many runs to list, newest first', group: OUTPUT, default: 20 },
  status: { kind: 'string', describe: 'only the runs with this status: ok or failed', group: OUTPUT },
  'report-file': {
    kind: 'string',
    describe: 'also write the result (pretty JSON) to this file, failures included',
    group: OUTPUT,
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;
export type CommandName =
  'run' | 'validate' | 'compute' | 'archive' | 'init' | 'query' | 'status' | 'retract' | 'report' | 'runs' | 'plan' | 'normalize';

const LOG = ['log-format', 'verbose', 'debug', 'color'] as const;
const OUT = ['json', 'quiet', 'silent', 'report-file', ...LOG] as const;
const OBSERVE = ['openlineage-file', 'metrics-file', 'pushgateway'] as const;
const WINDOW = ['date', 'start', 'end'] as const;
const EXPECT = ['expect-dates', 'strict-dates'] as const;
const LAKE_ROOT = ['lake', 'streams', 'archive', 'recursive', 's3-endpoint', 's3-region', 's3-force-path-style'] as const;
const DIMENSIONS = ['songs', 'users'] as const;
/** The commands whose pipeline loads the dimensions take their cache's options. */
const DIMENSION_CACHE = ['cache-dir', 'dimension-cache'] as const;
/** The commands that recompute dates from the reducers keep and read the dates' saved state. */
const DATE_STATE = ['date-state'] as const;
const REJECTS = ['rejects', 'keep-rejects'] as const;
const WH = ['warehouse', 'schema', 'home', 'connect-timeout', 'staging', 'iam-role', 'redshift-iam', 'redshift-cluster-id'] as const;
const GATES = ['max-bad-rows', 'max-orphan-rows', 'workers', 'memory-budget'] as const;

/** The options of the commands that load (run and compute take the same ones). */
const LOADING = [
  ...LAKE_ROOT,
  ...DIMENSIONS,
  ...DIMENSION_CACHE,
  ...DATE_STATE,
  ...REJECTS,
  ...WH,
  'adopt-lake',
  'kpis',
  'dry-run',
  ...GATES,
  'engine',
  'run-id',
  'shards',
  ...WINDOW,
  ...EXPECT,
  ...OUT,
  ...OBSERVE,
] as const;

export const COMMAND_OPTIONS = {
  run: LOADING,
  compute: LOADING,
  validate: [...LAKE_ROOT, ...DIMENSIONS, ...DIMENSION_CACHE, ...REJECTS, ...GATES, ...EXPECT, ...OUT, ...OBSERVE],
  archive: [...LAKE_ROOT, ...WH, 'adopt-lake', 'dry-run', ...OUT, ...OBSERVE],
  retract: [...LAKE_ROOT, ...DIMENSIONS, ...DIMENSION_CACHE, ...DATE_STATE, ...WH, 'dry-run', ...OUT, ...OBSERVE],
  status: [...LAKE_ROOT, ...WH, 'json', 'quiet', ...LOG],
  init: [...WH, ...OUT],
  query: [...WH, 'json', 'csv', 'quiet', ...LOG],
  report: [...WH, 'json', 'quiet', ...LOG, ...WINDOW, 'html'],
  runs: [...WH, 'limit', 'status', 'json', 'quiet', ...LOG],
  plan: [...LAKE_ROOT, ...DIMENSIONS, ...WH, 'adopt-lake', 'kpis', 'run-id', 'shards', ...OUT, ...OBSERVE],
  // The plan fixes the layout: normalize takes the lake's root and S3 options only.
  normalize: ['lake', 's3-endpoint', 's3-region', 's3-force-path-style', 'staging', 'run-id', 'shard', 'shards', ...OUT, ...OBSERVE],
} as const satisfies Record<CommandName, readonly OptionName[]>;

/** The environment variable of an option: --max-bad-rows → MUSICKPI_MAX_BAD_ROWS. */
export function envName(option: string): string {
  return 'MUSICKPI_' + option.toUpperCase().replace(/-/g, '_');
}

export function optionSpec(name: OptionName): OptionSpec {
  return OPTIONS[name];
}

// ---------------------------------------------------------------------------------------------
// The resolved configuration

export interface OutputConfig {
  json: boolean;
  quiet: boolean;
  silent: boolean;
  /** Where to write the result as pretty JSON too (absolute), if anywhere. */
  reportFile: string | undefined;
  logFormat: 'text' | 'json';
  /** How much goes to stderr: info (default), verbose, debug. */
  level: 'info' | 'verbose' | 'debug';
  /** Colour on stderr: a terminal, not NO_COLOR, not --no-color. */
  color: boolean;
  /** Progress may draw a spinner (a terminal, and not CI). */
  interactive: boolean;
}

export interface LakeConfig {
  uri: string;
  s3: LakeConnectOptions;
  layout: LakeLayout;
}

export interface RejectsConfig {
  /** Explicit target (a lake folder, a local path or an s3:// URI), or undefined for rejects/<run id>/. */
  target: string | undefined;
  keep: number;
}

/** The cache of loaded dimensions (lib/pipeline/dimension-cache.ts). */
export interface CacheConfig {
  /** Its folder, absolute; undefined when it is off (--no-dimension-cache, or no per-user folder). */
  dir: string | undefined;
}

export interface WarehouseConfig {
  schema: string;
  /** Folder of the embedded warehouse, absolute. */
  home: string;
  /** Why the home is not the per-user default, when it is not (printed as a warning). */
  homeWarning: string | undefined;
  connectRetryMs: number;
  adoptLake: boolean;
  /** Redshift only: where stage files go (explicit, or derived from an S3 lake), and how COPY and the connection authenticate. */
  redshift: { staging: string | undefined; iamRole: string | undefined; iam: boolean; clusterId: string | undefined };
  /** The --warehouse / MUSICKPI_WAREHOUSE URL (not enumerable: it may hold a password). */
  readonly url: string | undefined;
  /** DATABASE_URL and PG* variables, for the warehouse adapter (not enumerable). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The warehouse engine's plan and shards (docs/scale.md). */
export interface EngineConfig {
  engine: 'stream' | 'warehouse';
  /** Where plans and parts go: an absolute folder or an s3:// URI. */
  staging: string;
  /** Whether --staging (or its variable) named it, rather than the default under the lake. */
  stagingGiven: boolean;
  planId: string | undefined;
  shards: number | undefined;
  /** normalize: the shard to write (0-based). */
  shard: { index: number; count: number } | undefined;
  /** Uncompressed bytes at which a part rolls over (MKPI_TEST_PART_BYTES; default: normalize's). */
  partBytes: number | undefined;
}

export interface ComputeConfig {
  kpis: KpiTable[];
  dryRun: boolean;
  maxBadRows: number;
  maxOrphanRows: number;
  workers: number | undefined;
  /** --memory-budget, in bytes. */
  memoryBudgetBytes: number;
}

/** A window of listen dates, as the list of its UTC dates (YYYY-MM-DD), in order. */
export interface DateWindow {
  dates: string[];
  /** As the user gave it, for messages. */
  text: string;
}

/** Where the run is reported besides stdout: lineage, metrics, CI summaries. */
export interface ObserveConfig {
  openlineage: {
    /** OPENLINEAGE_URL (HTTP transport), or undefined. */
    url: string | undefined;
    /** OPENLINEAGE_API_KEY (not enumerable). */
    readonly apiKey: string | undefined;
    file: string | undefined;
    namespace: string;
    /** The parent run: OPENLINEAGE_PARENT_ID ("namespace/job/runId"), else Airflow's task. */
    parent: { namespace: string; job: string; runId: string | undefined } | undefined;
  };
  metricsFile: string | undefined;
  pushgateway: string | undefined;
  /** GITHUB_STEP_SUMMARY: a Markdown summary of the run is appended there. */
  githubStepSummary: string | undefined;
  /** AIRFLOW_CTX_* (the scheduler context), when present. */
  airflow: { dagId: string; taskId: string | undefined; dagRunId: string | undefined; tryNumber: string | undefined } | undefined;
}

export interface Config {
  command: CommandName;
  output: OutputConfig;
  /** --date / --start --end: dates recomputed over every file carrying them. */
  window: DateWindow | undefined;
  /** --expect-dates, and whether dates outside it fail the run (--strict-dates). */
  expectDates: (DateWindow & { strict: boolean }) | undefined;
  observe: ObserveConfig;
  lake: LakeConfig | undefined;
  rejects: RejectsConfig | undefined;
  /** Commands that load the dimensions: where their cache is. */
  cache: CacheConfig | undefined;
  /** run, compute, retract: whether dates' states are saved in the lake and read back (lib/stages/date-state.ts). */
  dateState: boolean;
  warehouse: WarehouseConfig | undefined;
  compute: ComputeConfig | undefined;
  /** The warehouse engine: engine kind, staging, plan id and shards (run, compute, plan, normalize). */
  engine: EngineConfig | undefined;
  /** MKPI_TEST_* variables (test hooks; empty in production). */
  testEnv: Readonly<Record<string, string>>;
  /** Positional arguments of the command (query's SQL, retract's keys). */
  positional: readonly string[];
  csv: boolean;
  /** `runs`: how many runs to list, and of which status. */
  runs: { limit: number; status: 'ok' | 'failed' | undefined } | undefined;
  /** report --html: the page to write (absolute), if any. */
  html: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

function usage(message: string, hint?: string): MkpiError {
  return new MkpiError('MKPI_USAGE', message, { hint });
}

/** Where an option's value came from, for messages that name what the user typed. */
type Source = { value: unknown; from: string } | undefined;

function pick(name: OptionName, argv: Record<string, unknown>, env: Env): Source {
  let v = argv[name];
  // A flag given twice: the last one wins, as in most Unix tools.
  if (Array.isArray(v)) v = v[v.length - 1];
  if (v !== undefined) return { value: v, from: `--${name}` };
  const e = env[envName(name)];
  if (e !== undefined && e !== '') return { value: e, from: envName(name) };
  return undefined;
}

function asString(name: OptionName, s: Source): string | undefined {
  if (!s) {
    const d = (OPTIONS[name] as OptionSpec).default;
    return d === undefined ? undefined : String(d);
  }
  const v = String(s.value).trim();
  if (v === '') throw usage(`${s.from} needs a value`);
  return v;
}

function asNumber(name: OptionName, s: Source, range: { min: number; max?: number }): number | undefined {
  const raw = asString(name, s);
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(Number.isSafeInteger(n) && n >= range.min && (range.max === undefined || n <= range.max))) {
    const limits = range.max === undefined ? `≥ ${range.min}` : `from ${range.min} to ${range.max}`;
    throw usage(`${s?.from ?? `--${name}`} must be a whole number ${limits}, not ${JSON.stringify(raw)}`);
  }
  return n;
}

function asBoolean(name: OptionName, s: Source): boolean {
  if (!s) return Boolean((OPTIONS[name] as OptionSpec).default);
  if (typeof s.value === 'boolean') return s.value;
  const v = String(s.value).trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw usage(`${s.from} must be true or false, not ${JSON.stringify(s.value)}`);
}

export function parseKpis(raw: string, from = '--kpis'): KpiTable[] {
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !(KPI_TABLES as readonly string[]).includes(n));
  if (names.length === 0 || bad.length > 0) {
    throw usage(`${from}: unknown KPI table ${bad.join(', ') || '(none given)'}`, `choose from ${KPI_TABLES.join(', ')}`);
  }
  return KPI_TABLES.filter((t) => names.includes(t));
}

function checkRelative(from: string, v: string): string {
  // Backslashes count as separators too: a key must not climb out of the lake on any OS.
  if (/^[\\/]/.test(v) || v.split(/[\\/]/).includes('..') || v.includes('\0')) {
    throw usage(`${from} must be a path inside the lake (relative, no ..): ${v}`);
  }
  return v;
}

function layoutOf(argv: Record<string, unknown>, env: Env, takes: (o: OptionName) => boolean): LakeLayout {
  const rel = (name: 'songs' | 'users' | 'streams' | 'archive') => {
    const s = takes(name) ? pick(name, argv, env) : undefined;
    return checkRelative(s?.from ?? `--${name}`, asString(name, s) ?? DEFAULT_LAYOUT[name]);
  };
  const streams = normalisePrefix(rel('streams'));
  const archive = normalisePrefix(rel('archive'));
  if (archive === streams) throw usage(`--archive must differ from --streams (both are ${streams || 'the lake root'})`);
  return {
    ...DEFAULT_LAYOUT,
    songs: rel('songs'),
    users: rel('users'),
    streams,
    archive,
    // Beside the streams, wherever they are; excluded from listings like the archive.
    retracted: `${streams}retracted/`,
    recursive: asBoolean('recursive', pick('recursive', argv, env)),
  };
}

/**
 * The embedded warehouse's home: the flag or variable, else a fixed per-user data folder (the
 * XDG base directory spec), never the current folder: cron starts in $HOME, Airflow's
 * BashOperator in a fresh temp folder, and a warehouse there would be lost or duplicated.
 */
function homeOf(s: Source, env: Env, cwd: string): { home: string; warning: string | undefined } {
  const given = asString('home', s);
  if (given !== undefined) return { home: resolve(cwd, given), warning: undefined };
  const xdg = env.XDG_DATA_HOME;
  if (xdg && isAbsolute(xdg)) return { home: join(xdg, 'musickpi'), warning: undefined };
  const user = env.HOME || safeHomedir();
  if (user && isAbsolute(user)) return { home: join(user, '.local', 'share', 'musickpi'), warning: undefined };
  const fallback = join(cwd, '.musickpi');
  return {
    home: fallback,
    warning: `no per-user data folder (neither XDG_DATA_HOME nor HOME is set): the embedded warehouse lives in ${fallback}; set --home or MUSICKPI_HOME to keep it in one place`,
  };
}

/**
 * The dimension cache's folder: the flag or variable, else the per-user cache folder (the XDG
 * base directory spec). Without one (no XDG_CACHE_HOME, no HOME) the cache is off rather than
 * written to the current folder.
 */
function cacheDirOf(s: Source, enabled: boolean, env: Env, cwd: string): string | undefined {
  if (!enabled) return undefined;
  const given = asString('cache-dir', s);
  if (given !== undefined) return resolve(cwd, given);
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'musickpi');
  const user = env.HOME || safeHomedir();
  if (user && isAbsolute(user)) return join(user, '.cache', 'musickpi');
  return undefined;
}

function safeHomedir(): string | undefined {
  try {
    return homedir();
  } catch {
    return undefined;
  }
}

function logFormatOf(s: Source): 'text' | 'json' {
  const v = asString('log-format', s) ?? 'text';
  if (v !== 'text' && v !== 'json') throw usage(`${s?.from ?? '--log-format'} must be text or json, not ${JSON.stringify(v)}`);
  return v;
}

const DAY_MS = 86_400_000;
const MAX_WINDOW_DAYS = 3660;

/** A date or an ISO instant as milliseconds since the epoch (a date is its UTC midnight). */
function instantOf(raw: string, from: string): number {
  const v = raw.trim();
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(v + 'T00:00:00Z') : /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms) || (/^\d{4}-\d{2}-\d{2}$/.test(v) && new Date(ms).toISOString().slice(0, 10) !== v)) {
    throw usage(`${from}: ${JSON.stringify(raw)} is neither a date (YYYY-MM-DD) nor an ISO instant`);
  }
  return ms;
}

/** The UTC dates a half-open window [start, end) touches. */
function datesOf(startMs: number, endMs: number, text: string): DateWindow {
  if (!(endMs > startMs)) throw usage(`the date window ${text} is empty or reversed (the end is exclusive)`);
  const first = Math.floor(startMs / DAY_MS);
  const last = Math.ceil(endMs / DAY_MS) - 1;
  if (last - first + 1 > MAX_WINDOW_DAYS) throw usage(`the date window ${text} spans more than ${MAX_WINDOW_DAYS} days`);
  const dates: string[] = [];
  for (let d = first; d <= last; d++) dates.push(new Date(d * DAY_MS).toISOString().slice(0, 10));
  return { dates, text };
}

/** "D" (one day) or "D..E" (end exclusive). */
function rangeOf(raw: string, from: string): DateWindow {
  const [a, b, ...rest] = raw.split('..');
  if (rest.length > 0 || !a) throw usage(`${from}: expected D or D..E, not ${JSON.stringify(raw)}`);
  const start = instantOf(a, from);
  const end = b === undefined ? (/T/.test(a) ? start + 1 : start + DAY_MS) : instantOf(b, from);
  return datesOf(start, end, raw);
}

function windowOf(date: Source, start: Source, end: Source): DateWindow | undefined {
  if (date && (start || end)) throw usage('--date cannot be combined with --start/--end');
  if (date) {
    const ms = instantOf(String(date.value), date.from);
    // An instant names the date it falls on.
    const day = Math.floor(ms / DAY_MS) * DAY_MS;
    return datesOf(day, day + DAY_MS, String(date.value));
  }
  if (!start && !end) return undefined;
  if (!start || !end) throw usage('--start and --end go together (the window is [start, end))');
  return datesOf(
    instantOf(String(start.value), start.from),
    instantOf(String(end.value), end.from),
    `${String(start.value)}..${String(end.value)}`,
  );
}

function observeOf(env: Env, cwd: string, get: (o: OptionName) => Source): ObserveConfig {
  const file = (o: OptionName) => ((f) => (f === undefined ? undefined : resolve(cwd, f)))(asString(o, get(o)));
  const namespace = env.OPENLINEAGE_NAMESPACE || 'musickpi';
  const airflow = env.AIRFLOW_CTX_DAG_ID
    ? {
        dagId: env.AIRFLOW_CTX_DAG_ID,
        taskId: env.AIRFLOW_CTX_TASK_ID,
        dagRunId: env.AIRFLOW_CTX_DAG_RUN_ID,
        tryNumber: env.AIRFLOW_CTX_TRY_NUMBER,
      }
    : undefined;
  let parent: ObserveConfig['openlineage']['parent'];
  const parentId = env.OPENLINEAGE_PARENT_ID;
  if (parentId) {
    const [ns, job, runId] = parentId.split('/');
    if (ns && job) parent = { namespace: ns, job, runId };
  } else if (airflow?.taskId) {
    parent = { namespace: env.OPENLINEAGE_NAMESPACE || 'default', job: `${airflow.dagId}.${airflow.taskId}`, runId: undefined };
  }
  const openlineage = {
    url: env.OPENLINEAGE_URL || undefined,
    file: file('openlineage-file'),
    namespace,
    parent,
  } as ObserveConfig['openlineage'];
  hidden(openlineage, 'apiKey', env.OPENLINEAGE_API_KEY || undefined);
  return Object.freeze({
    openlineage: Object.freeze(openlineage),
    metricsFile: file('metrics-file'),
    pushgateway: asString('pushgateway', get('pushgateway')),
    githubStepSummary: env.GITHUB_STEP_SUMMARY || undefined,
    airflow: airflow && Object.freeze(airflow),
  });
}

/** The stage files' prefix: the flag, else `_musickpi/staging/` under an S3 lake (never under streams/). */
function stagingOf(given: string | undefined, lakeUri: string | undefined, warehouseUrl: string | undefined): string | undefined {
  if (given !== undefined) {
    if (!/^s3:\/\/[^/]+/i.test(given)) {
      // A folder is staging for the warehouse engine on PostgreSQL; Redshift's COPY reads S3 only.
      if (warehouseUrl !== undefined && /^redshift(\+iam)?:/i.test(warehouseUrl)) {
        throw usage(`--staging must be an s3://bucket/prefix/ URI for Redshift, not ${JSON.stringify(given)}`);
      }
      return undefined;
    }
    return given.endsWith('/') ? given : given + '/';
  }
  if (lakeUri && /^s3a?:\/\//i.test(lakeUri)) return `${lakeUri.replace(/^s3a:/i, 's3:').replace(/\/+$/, '')}/_musickpi/staging/`;
  return undefined;
}

function hidden<T extends object>(target: T, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: false, writable: false });
}

export interface ResolveOptions {
  env?: Env;
  cwd?: string;
  /** Whether stderr is a terminal of known, non-zero width. */
  stderrIsTerminal?: boolean;
  positional?: readonly string[];
}

/**
 * Resolves a command's configuration. `argv` holds the flags as parsed (yargs, with no defaults
 * and no environment: a key is present only when the flag was given).
 */
export function resolveConfig(command: CommandName, argv: Record<string, unknown>, opts: ResolveOptions = {}): Readonly<Config> {
  try {
    return resolveSections(command, argv, opts);
  } catch (err) {
    // Every usage mistake points at the help of the command it was made in.
    if (err instanceof MkpiError && err.code === 'MKPI_USAGE' && err.hint === undefined) {
      throw new MkpiError(err.code, err.message, { hint: `see musickpi ${command} --help` });
    }
    throw err;
  }
}

function resolveSections(command: CommandName, argv: Record<string, unknown>, opts: ResolveOptions): Readonly<Config> {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const names: readonly OptionName[] = COMMAND_OPTIONS[command];
  const takes = (o: OptionName) => names.includes(o);
  const get = (o: OptionName) => (takes(o) ? pick(o, argv, env) : undefined);

  const json = asBoolean('json', get('json'));
  const silent = asBoolean('silent', get('silent'));
  const output: OutputConfig = Object.freeze({
    json,
    silent,
    quiet: silent || asBoolean('quiet', get('quiet')),
    logFormat: logFormatOf(get('log-format')),
    level: asBoolean('debug', get('debug')) ? 'debug' : asBoolean('verbose', get('verbose')) ? 'verbose' : 'info',
    color: Boolean(opts.stderrIsTerminal) && !env.NO_COLOR && asBoolean('color', get('color')),
    reportFile: ((f) => (f === undefined ? undefined : resolve(cwd, f)))(asString('report-file', get('report-file'))),
    interactive: Boolean(opts.stderrIsTerminal) && !env.CI,
  });

  let lake: LakeConfig | undefined;
  if (takes('lake')) {
    const uri = asString('lake', get('lake'));
    if (uri === undefined) throw usage(`musickpi ${command} needs --lake (or ${envName('lake')}): a folder or s3://bucket/prefix`);
    lake = Object.freeze({
      uri,
      layout: Object.freeze(layoutOf(argv, env, takes)),
      s3: Object.freeze({
        endpoint: asString('s3-endpoint', get('s3-endpoint')),
        region: asString('s3-region', get('s3-region')) ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined),
        forcePathStyle: asBoolean('s3-force-path-style', get('s3-force-path-style')) || undefined,
      }),
    });
  }

  const rejects: RejectsConfig | undefined = takes('rejects')
    ? Object.freeze({
        target: asString('rejects', get('rejects')),
        keep: asNumber('keep-rejects', get('keep-rejects'), { min: 0 }) ?? 0,
      })
    : undefined;
  if (rejects?.target !== undefined && lake && !/^[a-z][a-z0-9+.-]*:\/\//i.test(rejects.target) && !isAbsolute(rejects.target)) {
    const folder = normalisePrefix(checkRelative('--rejects', rejects.target));
    // A rejects CSV inside streams/ would be read as a stream file (and fail its schema) on every later run.
    for (const inner of [lake.layout.streams, lake.layout.archive]) {
      if (folder === inner || inner === '' || folder.startsWith(inner)) {
        throw usage(
          `--rejects ${folder} is inside the stream folder ${inner || '(the lake root)'}`,
          'pick a folder outside streams/, e.g. the default rejects/<run id>/',
        );
      }
    }
  }

  const cache: CacheConfig | undefined = takes('cache-dir')
    ? Object.freeze({ dir: cacheDirOf(get('cache-dir'), asBoolean('dimension-cache', get('dimension-cache')), env, cwd) })
    : undefined;

  let warehouse: WarehouseConfig | undefined;
  const stagingGiven = takes('staging') ? asString('staging', get('staging')) : undefined;
  if (stagingGiven && lake && /^s3a?:\/\//i.test(lake.uri)) {
    // Stage files under streams/ (or the archive) would be listed as stream files by the next run.
    const root = lake.uri.replace(/^s3a:/i, 's3:').replace(/\/+$/, '') + '/';
    const stage = stagingGiven.endsWith('/') ? stagingGiven : stagingGiven + '/';
    for (const inner of [lake.layout.streams, lake.layout.archive]) {
      if (stage.startsWith(root + inner))
        throw usage(
          `--staging ${stagingGiven} is inside the lake's ${inner || 'root'} folder`,
          'stage files must never land under streams/; the default is _musickpi/staging/ under the lake root',
        );
    }
  }
  if (takes('schema')) {
    const { home, warning } = homeOf(get('home'), env, cwd);
    const w = {
      schema: asString('schema', get('schema'))!,
      home,
      homeWarning: warning,
      connectRetryMs: (asNumber('connect-timeout', get('connect-timeout'), { min: 0, max: 3600 }) ?? 30) * 1000,
      adoptLake: asBoolean('adopt-lake', get('adopt-lake')),
      redshift: Object.freeze({
        staging: stagingOf(asString('staging', get('staging')), lake?.uri, asString('warehouse', get('warehouse'))),
        iamRole: asString('iam-role', get('iam-role')),
        iam: asBoolean('redshift-iam', get('redshift-iam')),
        clusterId: asString('redshift-cluster-id', get('redshift-cluster-id')),
      }),
    } as WarehouseConfig;
    hidden(w, 'url', asString('warehouse', get('warehouse')));
    const pgEnv: Record<string, string | undefined> = {};
    for (const k of ['DATABASE_URL', 'PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGPASSFILE']) pgEnv[k] = env[k];
    hidden(w, 'env', Object.freeze(pgEnv));
    warehouse = Object.freeze(w);
  }

  let compute: ComputeConfig | undefined;
  if (takes('max-bad-rows') || takes('kpis') || takes('dry-run')) {
    const kpisSource = get('kpis');
    compute = Object.freeze({
      kpis: parseKpis(asString('kpis', kpisSource) ?? KPI_TABLES.join(','), kpisSource?.from),
      dryRun: asBoolean('dry-run', get('dry-run')),
      maxBadRows: asNumber('max-bad-rows', get('max-bad-rows'), { min: 0 }) ?? 0,
      maxOrphanRows: asNumber('max-orphan-rows', get('max-orphan-rows'), { min: 0 }) ?? Infinity,
      workers: asNumber('workers', get('workers'), { min: 0, max: 64 }),
      memoryBudgetBytes: Math.round((asNumber('memory-budget', get('memory-budget'), { min: 16, max: 1_048_576 }) ?? 128) * 1024 * 1024),
    });
  }

  let engine: EngineConfig | undefined;
  if (takes('run-id')) {
    const given = get('engine');
    const kind = takes('engine') ? (asString('engine', given) ?? 'stream') : 'warehouse';
    if (kind !== 'stream' && kind !== 'warehouse')
      throw usage(`${given?.from ?? '--engine'} must be stream or warehouse, not ${JSON.stringify(kind)}`);
    const idSource = get('run-id');
    const planId = asString('run-id', idSource);
    if (planId !== undefined && !RUN_ID_PATTERN.test(planId)) {
      throw usage(`${idSource?.from ?? '--run-id'} ${JSON.stringify(planId)} is not a plan id: letters, digits and . _ : + - (up to 200)`);
    }
    const shards = asNumber('shards', get('shards'), { min: 1, max: 100_000 });
    let shard: EngineConfig['shard'];
    const shardSource = get('shard');
    if (shardSource) {
      shard = parseShardArg(String(shardSource.value), shardSource.from);
      if (shards !== undefined && shards !== shard.count)
        throw usage(`--shard ${shard.index}/${shard.count} and --shards ${shards} disagree`);
    } else if (command === 'normalize' && shards !== undefined) {
      const index = env.JOB_COMPLETION_INDEX ?? env.AWS_BATCH_JOB_ARRAY_INDEX;
      if (index === undefined)
        throw usage('--shards without --shard needs JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX for the index');
      shard = parseShardArg(
        `${index}/${shards}`,
        env.JOB_COMPLETION_INDEX !== undefined ? 'JOB_COMPLETION_INDEX' : 'AWS_BATCH_JOB_ARRAY_INDEX',
      );
    }
    if (command === 'normalize' && shard === undefined) throw usage('normalize needs --shard i/N (i from 0)');
    if (command === 'normalize' && planId === undefined) throw usage('normalize needs --run-id, the id its plan was made with');
    if (kind === 'stream' && (planId !== undefined || shards !== undefined)) {
      throw usage(`${planId !== undefined ? '--run-id' : '--shards'} goes with --engine warehouse`);
    }
    const stagingGiven = asString('staging', get('staging'));
    const lakeUri = lake?.uri ?? '';
    const staging =
      stagingGiven !== undefined
        ? /^[a-z][a-z0-9+.-]*:\/\//i.test(stagingGiven)
          ? stagingGiven.replace(/^s3a:/i, 's3:')
          : resolve(cwd, stagingGiven)
        : /^s3a?:\/\//i.test(lakeUri)
          ? `${lakeUri.replace(/^s3a:/i, 's3:').replace(/\/+$/, '')}/_musickpi/staging/`
          : join(resolve(cwd, lakeUri.replace(/^file:\/\//i, '')), '_musickpi', 'staging');
    // Parts under streams/ (or the archive) would be listed as stream files by the next run.
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(staging) && lake && !/^[a-z][a-z0-9+.-]*:\/\//i.test(lake.uri)) {
      const root = resolve(cwd, lake.uri);
      for (const inner of [lake.layout.streams, lake.layout.archive]) {
        if (inner === '') continue;
        const folder = join(root, inner);
        if (staging === folder.replace(/\/+$/, '') || staging.startsWith(folder.endsWith('/') ? folder : folder + '/')) {
          throw usage(
            `--staging ${stagingGiven ?? staging} is inside the lake's ${inner || 'root'} folder`,
            'staging must never be under streams/; the default is _musickpi/staging/ under the lake root',
          );
        }
      }
    }
    const partBytes = env.MKPI_TEST_PART_BYTES ? Number(env.MKPI_TEST_PART_BYTES) : undefined;
    engine = Object.freeze({
      engine: kind,
      staging,
      stagingGiven: stagingGiven !== undefined,
      planId,
      shards,
      shard: shard && Object.freeze(shard),
      partBytes,
    });
  }

  let runs: Config['runs'];
  if (takes('limit')) {
    const given = get('status');
    const status = asString('status', given);
    if (status !== undefined && status !== 'ok' && status !== 'failed') {
      throw usage(`${given?.from ?? '--status'} must be ok or failed, not ${JSON.stringify(status)}`);
    }
    runs = Object.freeze({ limit: asNumber('limit', get('limit'), { min: 1, max: 100_000 }) ?? 20, status });
  }

  const testEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('MKPI_TEST_') && v !== undefined) testEnv[k] = v;

  const windowDates = windowOf(get('date'), get('start'), get('end'));
  const expect = get('expect-dates');
  const expectDates = expect
    ? { ...rangeOf(String(expect.value), expect.from), strict: asBoolean('strict-dates', get('strict-dates')) }
    : undefined;
  if (!expect && get('strict-dates')) throw usage('--strict-dates needs --expect-dates');

  return Object.freeze({
    command,
    output,
    window: windowDates,
    expectDates: expectDates && Object.freeze(expectDates),
    observe: observeOf(env, cwd, get),
    lake,
    rejects,
    cache,
    dateState: takes('date-state') ? asBoolean('date-state', get('date-state')) : false,
    warehouse,
    compute,
    engine,
    runs,
    testEnv: Object.freeze(testEnv),
    positional: Object.freeze([...(opts.positional ?? [])]),
    csv: takes('csv') ? asBoolean('csv', get('csv')) : false,
    html: ((f) => (f === undefined ? undefined : resolve(cwd, f)))(takes('html') ? asString('html', get('html')) : undefined),
  });
}

/** "i/N", 0 ≤ i < N: a shard of a plan. */
export function parseShardArg(text: string, from = '--shard'): { index: number; count: number } {
  const m = /^\s*(\d{1,6})\s*\/\s*(\d{1,6})\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!(count >= 1 && index >= 0 && index < count)) {
    throw usage(`${from} must be i/N with 0 ≤ i < N (shards count from 0), not ${JSON.stringify(text)}`);
  }
  return { index, count };
}

/** A section every caller of a command knows is there (its command takes those options). */
export function required<T>(section: T | undefined, what: string): T {
  if (section === undefined) throw new MkpiError('MKPI_INTERNAL', `configuration has no ${what} section`);
  return section;
}

/** The closest known option to a mistyped one, for "did you mean". */
export function closestOption(command: CommandName, typed: string): string | undefined {
  const names: readonly string[] = [...COMMAND_OPTIONS[command], 'help'];
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = name.startsWith(typed) && typed.length >= 2 ? 0.5 : distance(typed, name);
    if (d <= Math.max(2, Math.floor(name.length / 3)) && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

// Options shared by the command modules. yargs' .env('MUSICKPI') gives the documented
// precedence: flags > MUSICKPI_* environment variables > defaults.

import type { Argv } from 'yargs';
import { MkpiError } from '../domain/errors.js';
import { KPI_TABLES, type KpiTable } from '../domain/kpi.js';
import { DEFAULT_LAYOUT, normalisePrefix, type LakeLayout } from '../domain/layout.js';

export interface LakeArgs {
  lake: string;
  songs: string;
  users: string;
  streams: string;
  archive: string;
  rejects?: string;
  's3-endpoint'?: string;
  's3-region'?: string;
  's3-force-path-style'?: boolean;
}

export interface WarehouseArgs {
  warehouse?: string;
  schema: string;
}

export interface OutputArgs {
  json: boolean;
  quiet: boolean;
}

export interface ComputeArgs {
  kpis: string;
  'dry-run': boolean;
  'max-bad-rows': number;
  'max-orphan-rows'?: number;
  workers?: number;
}

export function lakeOptions<T>(y: Argv<T>) {
  return y
    .option('lake', { type: 'string', demandOption: true, describe: 'lake root: a folder or s3://bucket/prefix', group: 'Lake:' })
    .option('songs', { type: 'string', default: DEFAULT_LAYOUT.songs, describe: 'songs file, relative to the lake', group: 'Lake:' })
    .option('users', { type: 'string', default: DEFAULT_LAYOUT.users, describe: 'users file, relative to the lake', group: 'Lake:' })
    .option('streams', { type: 'string', default: DEFAULT_LAYOUT.streams, describe: 'folder of new stream files', group: 'Lake:' })
    .option('archive', {
      type: 'string',
      default: DEFAULT_LAYOUT.archive,
      describe: 'folder archived stream files move to',
      group: 'Lake:',
    })
    .option('rejects', { type: 'string', describe: 'folder for the rejects CSV [default: rejects/<run id>/]', group: 'Lake:' })
    .option('s3-endpoint', {
      type: 'string',
      describe: 'endpoint of an S3-compatible store',
      group: 'S3 (credentials: AWS default chain):',
    })
    .option('s3-region', { type: 'string', describe: 'S3 region', group: 'S3 (credentials: AWS default chain):' })
    .option('s3-force-path-style', {
      type: 'boolean',
      describe: 'path-style S3 URLs (MinIO, Ceph)',
      group: 'S3 (credentials: AWS default chain):',
    });
}

export function warehouseOptions<T>(y: Argv<T>) {
  return y
    .option('warehouse', {
      type: 'string',
      describe: 'postgresql:// URL [default: DATABASE_URL, then PG* variables, then the embedded PostgreSQL]',
      group: 'Warehouse:',
    })
    .option('schema', { type: 'string', default: 'reporting_schema', describe: 'schema of the KPI tables', group: 'Warehouse:' });
}

export function outputOptions<T>(y: Argv<T>) {
  return y
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON run report on stdout' })
    .option('quiet', { type: 'boolean', default: false, alias: 'q', describe: 'no progress or log lines on stderr' });
}

export function computeOptions<T>(y: Argv<T>) {
  return y
    .option('kpis', { type: 'string', default: KPI_TABLES.join(','), describe: 'KPI tables to compute: hourly, genre', group: 'Compute:' })
    .option('dry-run', {
      type: 'boolean',
      default: false,
      describe: 'read, validate and compute; write nothing, move nothing',
      group: 'Compute:',
    })
    .option('max-bad-rows', {
      type: 'number',
      default: 0,
      describe: 'bad stream rows tolerated before the run fails (exit 65)',
      group: 'Compute:',
    })
    .option('max-orphan-rows', {
      type: 'number',
      describe: 'orphan rows tolerated [default: no limit, orphans only warn]',
      group: 'Compute:',
    })
    .option('workers', {
      type: 'number',
      describe: 'worker threads reading stream files next to the main thread (0 or 1: the main thread alone) [default: min(2, cores)]',
      group: 'Compute:',
    });
}

export function parseKpis(raw: string): KpiTable[] {
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !(KPI_TABLES as readonly string[]).includes(n));
  if (names.length === 0 || bad.length > 0) {
    throw new MkpiError('MKPI_USAGE', `--kpis: unknown KPI table ${bad.join(', ') || '(none given)'}`, {
      hint: `choose from ${KPI_TABLES.join(', ')}`,
    });
  }
  return KPI_TABLES.filter((t) => names.includes(t));
}

export function checkCount(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 0)) {
    throw new MkpiError('MKPI_USAGE', `--${name} must be a whole number ≥ 0`);
  }
}

function checkRelative(name: string, v: string): string {
  // Backslashes count as separators too: a key must not climb out of the lake on any OS.
  if (/^[\\/]/.test(v) || v.split(/[\\/]/).includes('..')) {
    throw new MkpiError('MKPI_USAGE', `--${name} must be a path inside the lake (relative, no ..): ${v}`);
  }
  return v;
}

export function layoutFrom(args: LakeArgs): LakeLayout {
  return {
    songs: checkRelative('songs', args.songs),
    users: checkRelative('users', args.users),
    streams: normalisePrefix(checkRelative('streams', args.streams)),
    archive: normalisePrefix(checkRelative('archive', args.archive)),
  };
}

export function rejectsKey(args: LakeArgs, runId: string): string {
  const folder = args.rejects === undefined ? `rejects/${runId}/` : normalisePrefix(checkRelative('rejects', args.rejects));
  const layout = layoutFrom(args);
  // A rejects CSV inside streams/ would be read as a stream file (and fail its schema) on every later run.
  for (const inner of [layout.streams, layout.archive]) {
    if (folder === inner || (inner !== '' && folder.startsWith(inner))) {
      throw new MkpiError('MKPI_USAGE', `--rejects ${folder} is inside the stream folder ${inner || '(the lake root)'}`, {
        hint: 'pick a folder outside streams/, e.g. the default rejects/<run id>/',
      });
    }
  }
  return `${folder}rejects.csv`;
}

/** The S3 connection options of the lake flags, for the main thread and the worker threads alike. */
export function s3Options(args: LakeArgs): { endpoint?: string; region?: string; forcePathStyle?: boolean } {
  return { endpoint: args['s3-endpoint'], region: args['s3-region'], forcePathStyle: args['s3-force-path-style'] };
}

// The warehouse engine's shard plan (domain/shards.ts): which shard reads which input file,
// fixed once per run so that every shard, wherever it runs, reads exactly its part; and the
// check that every shard's manifest is there and matches the plan before anything is loaded.

import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Lake, LakeObject } from '../domain/lake.js';
import type { KpiTable } from '../domain/kpi.js';
import type { LakeLayout } from '../domain/layout.js';
import { MkpiError } from '../domain/errors.js';
import { compareCodePoints } from '../domain/text.js';
import type { NormalizeJob } from './normalize.js';
import {
  MANIFEST_VERSION,
  PLAN_VERSION,
  RUN_ID_PATTERN,
  manifestKey,
  planKey,
  type PlannedDimension,
  type PlannedFile,
  type ShardManifest,
  type ShardPlan,
} from '../domain/shards.js';

/**
 * Deterministic LPT: items by size descending (then key, in code point order), each to the shard
 * with the fewest bytes so far (ties: the lowest index). Returns the shard of each item, by its
 * input index. Within 4/3 of the best possible makespan, and the same on every machine.
 */
export function assignShards(items: readonly { key: string; size: number }[], shards: number): number[] {
  if (!Number.isInteger(shards) || shards < 1) {
    throw new MkpiError('MKPI_USAGE', `shards must be a whole number of at least 1, not ${shards}`);
  }
  const order = items.map((_, i) => i);
  order.sort((a, b) => items[b].size - items[a].size || compareCodePoints(items[a].key, items[b].key) || a - b);
  const loads = new Array<number>(shards).fill(0);
  const out = new Array<number>(items.length);
  for (const i of order) {
    let best = 0;
    for (let s = 1; s < shards; s++) if (loads[s] < loads[best]) best = s;
    loads[best] += items[i].size;
    out[i] = best;
  }
  return out;
}

export interface MakePlanArgs {
  runId: string;
  lake: string;
  layout: LakeLayout;
  kpis: KpiTable[];
  shards: number;
  /** The run's stream files in listing order (their ids follow it), with the tables each is missing from. */
  files: { obj: LakeObject; missing: KpiTable[] }[];
  songs: LakeObject;
  users: LakeObject;
  now?: Date;
}

/** The plan of a run: dimension files and stream files assigned together, so that the bytes balance. */
export function makePlan(args: MakePlanArgs): ShardPlan {
  if (!RUN_ID_PATTERN.test(args.runId)) {
    throw new MkpiError('MKPI_USAGE', `run id ${JSON.stringify(args.runId)} is not valid`, {
      hint: 'a run id is 1-200 characters of letters, digits and . _ : + -, starting with a letter or digit',
    });
  }
  const dims = [
    { kind: 'songs' as const, obj: args.songs },
    { kind: 'users' as const, obj: args.users },
  ];
  const shard = assignShards([...dims.map((d) => d.obj), ...args.files.map((f) => f.obj)], args.shards);
  const dimensions: PlannedDimension[] = dims.map((d, i) => ({
    kind: d.kind,
    key: d.obj.key,
    fingerprint: d.obj.fingerprint,
    size: d.obj.size,
    shard: shard[i],
  }));
  const files: PlannedFile[] = args.files.map((f, i) => ({
    id: i + 1,
    key: f.obj.key,
    fingerprint: f.obj.fingerprint,
    size: f.obj.size,
    shard: shard[i + dims.length],
    missing: [...f.missing],
  }));
  return {
    version: PLAN_VERSION,
    runId: args.runId,
    createdAt: (args.now ?? new Date()).toISOString(),
    lake: args.lake,
    layout: { ...args.layout },
    kpis: [...args.kpis],
    shards: args.shards,
    dimensions,
    files,
  };
}

async function writeJson(staging: Lake, key: string, value: unknown, signal?: AbortSignal): Promise<void> {
  await staging.write(key, Readable.from([JSON.stringify(value, null, 2) + '\n']), signal);
}

async function readText(staging: Lake, key: string, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  await pipeline(
    await staging.read(key, signal),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    }),
    signal ? { signal } : {},
  );
  return Buffer.concat(chunks).toString('utf8');
}

export async function writePlan(staging: Lake, plan: ShardPlan, signal?: AbortSignal): Promise<void> {
  await writeJson(staging, planKey(plan.runId), plan, signal);
}

/** The plan of `runId`, as `musickpi plan` wrote it. */
export async function readPlan(staging: Lake, runId: string, signal?: AbortSignal): Promise<ShardPlan> {
  const key = planKey(runId);
  if ((await staging.stat(key)) === undefined) {
    throw new MkpiError('MKPI_PLAN_NOT_FOUND', `${staging.root}: no plan for run ${runId} (${key})`, {
      hint: `make it first: musickpi plan --run-id ${runId} (with the same --staging)`,
      details: { runId, key },
    });
  }
  const text = await readText(staging, key, signal);
  let plan: unknown;
  try {
    plan = JSON.parse(text);
  } catch (err) {
    throw mismatch(staging, key, runId, 'it is not valid JSON', err);
  }
  if (!isObject(plan)) throw mismatch(staging, key, runId, 'it is not a plan');
  if (plan.version !== PLAN_VERSION)
    throw mismatch(staging, key, runId, `its version is ${JSON.stringify(plan.version)}, not ${PLAN_VERSION}`);
  if (plan.runId !== runId) throw mismatch(staging, key, runId, `it is the plan of run ${JSON.stringify(plan.runId)}`);
  if (!Array.isArray(plan.files) || !Array.isArray(plan.dimensions) || !Number.isInteger(plan.shards) || (plan.shards as number) < 1) {
    throw mismatch(staging, key, runId, 'it is not a plan');
  }
  return plan as unknown as ShardPlan;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function mismatch(staging: Lake, key: string, runId: string, why: string, cause?: unknown): MkpiError {
  return new MkpiError('MKPI_PLAN_MISMATCH', `${staging.root}: ${key} cannot be used: ${why}`, {
    hint: `plan the run again (musickpi plan --run-id ${runId}) with this version of musickpi, or use another run id`,
    cause,
    details: { runId, key },
  });
}

/**
 * The manifest of one shard, or undefined when the shard is not complete: no manifest yet, or one
 * that cannot be read as this version's manifest (rewritten by running the shard again).
 */
export async function readManifest(
  staging: Lake,
  runId: string,
  shard: number,
  shards: number,
  signal?: AbortSignal,
): Promise<ShardManifest | undefined> {
  const key = manifestKey(runId, shard, shards);
  if ((await staging.stat(key)) === undefined) return undefined;
  let m: unknown;
  try {
    m = JSON.parse(await readText(staging, key, signal));
  } catch (err) {
    if (err instanceof SyntaxError) return undefined;
    throw err;
  }
  if (!isObject(m) || m.version !== MANIFEST_VERSION || !Array.isArray(m.files) || !Array.isArray(m.dimensions) || !isObject(m.parts)) {
    return undefined;
  }
  return m as unknown as ShardManifest;
}

/** Whether a manifest is the complete output of `shard` of the plan: the same files and dimensions, none missing or extra. */
function matchesPlan(m: ShardManifest, plan: ShardPlan, shard: number): boolean {
  if (m.runId !== plan.runId || m.shard !== shard || m.shards !== plan.shards) return false;
  const files = plan.files.filter((f) => f.shard === shard);
  if (m.files.length !== files.length) return false;
  for (let i = 0; i < files.length; i++) {
    const got = m.files[i];
    if (got.id !== files[i].id || got.key !== files[i].key || got.fingerprint !== files[i].fingerprint) return false;
  }
  const dims = plan.dimensions.filter((d) => d.shard === shard);
  if (m.dimensions.length !== dims.length) return false;
  return dims.every((d, i) => m.dimensions[i].kind === d.kind && m.dimensions[i].key === d.key);
}

/**
 * The manifests of every shard of the plan, in shard order; MKPI_SHARDS_INCOMPLETE naming the
 * shards whose manifest is missing or does not match the plan (nothing may be loaded then).
 */
export async function checkShards(staging: Lake, plan: ShardPlan, signal?: AbortSignal): Promise<ShardManifest[]> {
  const manifests: ShardManifest[] = [];
  const incomplete: number[] = [];
  for (let i = 0; i < plan.shards; i++) {
    if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal.reason });
    const m = await readManifest(staging, plan.runId, i, plan.shards, signal);
    if (m === undefined || !matchesPlan(m, plan, i)) incomplete.push(i);
    else manifests.push(m);
  }
  if (incomplete.length > 0) {
    const list = incomplete.map((i) => `${i}/${plan.shards}`);
    throw new MkpiError(
      'MKPI_SHARDS_INCOMPLETE',
      `run ${plan.runId}: ${incomplete.length} of ${plan.shards} shard${plan.shards === 1 ? ' is' : 's are'} not complete: ${incomplete.join(', ')}`,
      {
        hint: `run musickpi normalize --run-id ${plan.runId} --shard i/${plan.shards} for ${incomplete.length === 1 ? 'it' : 'each of them'} (${list.join(', ')}), then run again`,
        details: { runId: plan.runId, shards: incomplete },
      },
    );
  }
  return manifests;
}

/** What `normalize` does for one shard of the plan: its files (plan order) and dimensions. */
export function jobOf(plan: ShardPlan, shard: number): NormalizeJob {
  if (!Number.isInteger(shard) || shard < 0 || shard >= plan.shards) {
    throw new MkpiError('MKPI_USAGE', `run ${plan.runId} has shards 0-${plan.shards - 1}, not ${shard}`, {
      hint: `the plan was made for ${plan.shards} shard${plan.shards === 1 ? '' : 's'}: use --shard i/${plan.shards}`,
      details: { shard, shards: plan.shards },
    });
  }
  return {
    runId: plan.runId,
    shard,
    shards: plan.shards,
    files: plan.files.filter((f) => f.shard === shard).map((f) => ({ id: f.id, key: f.key, fingerprint: f.fingerprint })),
    dimensions: plan.dimensions.filter((d) => d.shard === shard),
    detailFiles: { songs: plan.layout.songs, users: plan.layout.users },
  };
}

const SHARD_SPEC = /^(\d{1,9})\/(\d{1,9})$/;

/** "3/16": the 4th of 16 shards (0-based index, like JOB_COMPLETION_INDEX). */
export function parseShard(text: string): { index: number; count: number } {
  const m = SHARD_SPEC.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new MkpiError('MKPI_USAGE', `--shard ${JSON.stringify(text)} is not i/N with 0 <= i < N`, {
      hint: 'shards are 0-based: --shard 0/4 … --shard 3/4 are the four shards of a 4-shard plan',
      details: { shard: text },
    });
  }
  return { index, count };
}

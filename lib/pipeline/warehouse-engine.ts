// The warehouse engine's steps (docs/scale.md): a plan fixes the input files and their shards;
// normalize (in worker threads here, or in many tasks of a scheduler) turns each shard into
// compact parts; the warehouse COPYs them, decides orphans and duplicates and computes every KPI
// in SQL. The lock, claim, ledger, listing, rejects publication, circuit breaker and archive are
// the streaming engine's own steps, handed in by pipeline.ts.

import { createRequire } from 'node:module';
import type { LakeObject } from '../domain/lake.js';
import type { EngineReject, EngineWarehouse, Warehouse } from '../domain/warehouse.js';
import { decodePartId, type NormalizedFile, type PartKind, type PartRef, type ShardManifest, type ShardPlan } from '../domain/shards.js';
import { MkpiError } from '../domain/errors.js';
import { dateToDay } from '../domain/listen-time.js';
import { REJECT_REASONS, SONG_REJECT_REASONS, USER_REJECT_REASONS } from '../domain/reject-reasons.js';
import { FileMatcher, filesToReread, locate, planPending } from '../stages/plan.js';
import type * as Shards from '../stages/shards.js';
import type * as Normalize from '../stages/normalize.js';
import { RejectSink, readRejectLines } from '../stages/rejects.js';
import { ledgerEntries } from '../stages/load.js';
import { duplicateDetail, shown } from '../stages/validate.js';
import { requireDimensionFiles, type DimensionFileReport } from '../stages/scan.js';
import type * as NormalizeWorkers from './normalize-workers.js';
import { zeroReasons } from './report.js';
import {
  addDatesToRecompute,
  addRowTotals,
  checkAborted,
  joinRoot,
  recordScan,
  refuseOtherLake,
  step,
  warehouseOf,
  warnDimensions,
  type Run,
  type Step,
} from './run.js';

// The plan, shard and normalize code loads when a warehouse-engine run needs it: the streaming
// engine (every daily run) never does. require(), as for the lazily loaded adapters: the same
// module cache as the static imports.
const load = createRequire(import.meta.url);
let modules: { shards: typeof Shards; normalize: typeof Normalize; workers: typeof NormalizeWorkers } | undefined;
const engineModules = () =>
  (modules ??= {
    shards: load('../stages/shards.js') as typeof Shards,
    normalize: load('../stages/normalize.js') as typeof Normalize,
    workers: load('./normalize-workers.js') as typeof NormalizeWorkers,
  });
const shardsModule = () => engineModules().shards;
const normalize = () => engineModules().normalize;
const normalizeWorkers = () => engineModules().workers;

/** The streaming engine's steps the warehouse engine shares. */
export interface SharedSteps {
  lock: Step;
  claim: Step;
  ledger: Step;
  list: Step;
  rejects: Step;
  gate: Step;
  archive: Step;
}

const identityOf = (f: { fileKey: string; fingerprint: string }) => `${f.fileKey}\n${f.fingerprint}`;

function engineOf(r: Run) {
  const e = r.opts.engine;
  if (!e) throw new MkpiError('MKPI_INTERNAL', `${r.opts.command} needs the engine options`);
  return e;
}

function isEngineWarehouse(w: Warehouse): w is EngineWarehouse {
  return typeof (w as Partial<EngineWarehouse>).openEngine === 'function';
}

function stagingRoot(r: Run): string {
  return engineOf(r).staging.root;
}

function planReport(r: Run, plan: ShardPlan): void {
  const shardBytes = new Array<number>(plan.shards).fill(0);
  for (const d of plan.dimensions) shardBytes[d.shard] += d.size;
  for (const f of plan.files) shardBytes[f.shard] += f.size;
  r.report.plan = { id: plan.runId, shards: plan.shards, staging: stagingRoot(r), shardBytes };
}

/** A new plan from the listing (the shared list step has matched it against the ledger). */
async function newPlan(r: Run, id: string, shards: number): Promise<ShardPlan> {
  const { songs, users } = await requireDimensionFiles(r.opts.lake, r.opts.layout);
  const plan = shardsModule().makePlan({
    runId: id,
    lake: r.opts.lake.root,
    layout: r.opts.layout,
    kpis: r.kpis,
    shards,
    files: r.plan!.pending.map((p) => ({ obj: p.obj, missing: p.missing })),
    songs,
    users,
  });
  await shardsModule().writePlan(engineOf(r).staging, plan, r.opts.signal);
  return plan;
}

/** Run ids as newRunId makes them (20241201T031500Z-abc123): what a run that plans for itself names its plan. */
const OWN_PLAN = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-[a-z0-9]+$/;
const STALE_OWN_PLAN_MS = 3_600_000;

/**
 * A run killed before its cleanup leaves its own plan's staging behind; the next run (holding the
 * run lock) removes such folders once they are an hour old. Plans made by `plan` (named by the
 * user's --run-id) are never touched: their shards may still be running elsewhere.
 */
async function sweepOwnPlans(r: Run): Promise<void> {
  const staging = engineOf(r).staging;
  const objects = await staging.list('').catch(() => []);
  const now = Date.now();
  for (const obj of objects) {
    const folder = obj.key.split('/')[0];
    const m = OWN_PLAN.exec(folder);
    if (!m || folder === r.opts.runId) continue;
    const at = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    if (now - at < STALE_OWN_PLAN_MS) continue;
    await staging.remove(obj.key).catch(() => undefined);
  }
}

/** A plan made for another lake is refused: its files and ids mean nothing here. */
function checkPlanLake(r: Run, plan: ShardPlan): void {
  const { lake } = r.opts;
  if (plan.lake !== lake.root) {
    throw new MkpiError('MKPI_PLAN_MISMATCH', `plan ${plan.runId} is for lake ${plan.lake}, not ${lake.root}`, {
      hint: 'give the same --lake as `musickpi plan` had, or plan again for this lake',
    });
  }
}

function checkPlanFits(r: Run, plan: ShardPlan): void {
  checkPlanLake(r, plan);
  const missing = r.kpis.filter((t) => !plan.kpis.includes(t));
  if (missing.length > 0 || plan.kpis.length !== r.kpis.length) {
    throw new MkpiError('MKPI_PLAN_MISMATCH', `plan ${plan.runId} was made for --kpis ${plan.kpis.join(',')}, not ${r.kpis.join(',')}`, {
      hint: 'give the same --kpis as the plan, or plan again',
    });
  }
}

/**
 * The run's plan: the one `musickpi plan` wrote under --run-id, its files matched against the
 * ledger of now (a file another run loaded since makes the plan stale), or, without --run-id, a
 * plan this run makes for itself and normalizes in its worker threads.
 */
const fixPlanStep = (list: Step) =>
  step('plan', async (r) => {
    const eng = engineOf(r);
    r.report.engine = 'warehouse';
    if (eng.planId === undefined) {
      if (!r.report.dryRun) await sweepOwnPlans(r);
      await list.run(r);
      const shards = Math.max(1, Math.floor(eng.shards ?? 1));
      const plan = await newPlan(r, r.opts.runId, shards);
      r.wh = { plan, ownPlan: true, manifests: [], staged: [], idOf: new Map(plan.files.map((f) => [f.key, f.id])) };
      planReport(r, plan);
      return;
    }
    const plan = await shardsModule().readPlan(eng.staging, eng.planId, r.opts.signal);
    checkPlanFits(r, plan);
    const objs: LakeObject[] = plan.files.map((f) => ({ key: f.key, size: f.size, fingerprint: f.fingerprint }));
    const ledger = [...(r.ledger ?? []), ...r.retractedEntries];
    const matched = await planPending(objs, new FileMatcher(r.opts.lake, r.opts.layout, ledger, r.opts.signal), r.kpis);
    if (matched.alreadyLoaded.length > 0 || matched.pending.some((p) => p.entry?.retractedAt)) {
      const keys = [
        ...matched.alreadyLoaded.map((p) => p.obj.key),
        ...matched.pending.filter((p) => p.entry?.retractedAt).map((p) => p.obj.key),
      ];
      throw new MkpiError(
        'MKPI_PLAN_STALE',
        `plan ${plan.runId}: ${keys.length} planned file(s) were loaded or retracted since it was made: ${keys.slice(0, 3).join(', ')}`,
        {
          hint: 'plan again (`musickpi plan` with a new --run-id) and normalize its shards',
          details: { files: keys },
        },
      );
    }
    r.plan = matched;
    r.wh = { plan, ownPlan: false, manifests: [], staged: [], idOf: new Map(plan.files.map((f) => [f.key, f.id])) };
    planReport(r, plan);
  });

/** A run that planned for itself normalizes every shard, in worker threads beside this one. */
const normalizeOwnStep = step('normalize', async (r) => {
  const wh = r.wh!;
  if (!wh.ownPlan) return;
  const eng = engineOf(r);
  const jobs = Array.from({ length: wh.plan.shards }, (_, i) => shardsModule().jobOf(wh.plan, i));
  r.emit({ type: 'stage', stage: 'streams', message: `normalizing ${wh.plan.files.length} stream file(s) in ${jobs.length} shard(s)` });
  let rows = 0;
  await r.timer.stage('normalize', () =>
    normalizeWorkers().normalizeShards(jobs, {
      lake: r.opts.lake,
      staging: eng.staging,
      lakeSpec: r.opts.parallel?.lake,
      stagingSpec: eng.stagingSpec,
      workers: jobs.length > 1 ? jobs.length : 0,
      signal: r.opts.signal,
      partBytes: eng.partBytes,
      onRows: (n) => {
        if (rows === 0) void r.opts.fault?.('mid-parse');
        rows += n;
        r.emit({ type: 'progress', rows, files: 0, totalFiles: wh.plan.files.length });
      },
    }),
  );
  r.report.plan!.normalizedHere = jobs.map((j) => j.shard);
});

function schemaErrorOf(e: { message: string; hint?: string } | undefined, file: string): MkpiError | undefined {
  return e === undefined ? undefined : new MkpiError('MKPI_SCHEMA', e.message, { hint: e.hint, details: { file } });
}

/**
 * Every planned file (stream files and dimensions) is still there with its planned fingerprint:
 * a file changed, replaced or removed after its shard read it would be loaded as it was, and
 * counted again as a new file by the next run. MKPI_PLAN_STALE: nothing is loaded; plan again.
 */
async function checkPlannedFiles(r: Run, plan: ShardPlan): Promise<void> {
  const { lake, signal } = r.opts;
  const items = [...plan.dimensions, ...plan.files];
  const stale: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      checkAborted(signal);
      const now = await lake.stat(item.key);
      if (now?.fingerprint !== item.fingerprint) stale.push(`${item.key} (${now === undefined ? 'gone' : 'changed'})`);
    }
  };
  // Stat calls are round trips on S3: a few at a time.
  await Promise.all(Array.from({ length: Math.min(16, items.length) }, worker));
  if (stale.length === 0) return;
  stale.sort();
  throw new MkpiError(
    'MKPI_PLAN_STALE',
    `plan ${plan.runId}: ${stale.length} planned file(s) changed or vanished since the plan: ${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}`,
    {
      hint: 'nothing was loaded; plan again (`musickpi plan` with a new --run-id) and normalize its shards',
      details: { files: stale },
    },
  );
}

/** Every shard complete (or the run stops, loading nothing); the files' reports from their manifests. */
const shardsStep = step('streams', async (r) => {
  const wh = r.wh!;
  const eng = engineOf(r);
  // The files as they are now: what normalize read must still be what the lake holds.
  await checkPlannedFiles(r, wh.plan);
  wh.manifests = await shardsModule().checkShards(eng.staging, wh.plan, r.opts.signal);
  const byId = new Map<number, NormalizedFile>();
  const dims = new Map<string, ShardManifest['dimensions'][number]>();
  for (const m of wh.manifests) {
    for (const f of m.files) byId.set(f.id, f);
    for (const d of m.dimensions) dims.set(d.kind, d);
  }
  for (const kind of ['songs', 'users'] as const) {
    const d = dims.get(kind);
    if (!d) throw new MkpiError('MKPI_SHARDS_INCOMPLETE', `plan ${wh.plan.runId}: no shard holds ${kind}`);
    const err = schemaErrorOf(d.schemaError, d.key);
    if (err) throw err;
    const reasons = kind === 'songs' ? SONG_REJECT_REASONS : USER_REJECT_REASONS;
    const report: DimensionFileReport = {
      file: d.key,
      bytes: d.bytes,
      rows: d.rows,
      valid: d.valid,
      duplicates: 0,
      rejected: Object.fromEntries(reasons.map((x) => [x, d.rejected[x] ?? 0])),
      duplicateHeaders: d.duplicateHeaders,
    };
    r.report.dimensions[kind] = report;
  }
  const pendingIds = new Set(r.plan!.pending.map((p) => wh.idOf.get(p.obj.key)!));
  r.scans = [];
  for (const f of wh.plan.files) {
    if (!pendingIds.has(f.id)) continue;
    const n = byId.get(f.id)!;
    r.scans.push({
      key: f.key,
      fingerprint: f.fingerprint,
      contentHash: n.contentHash,
      bytes: n.bytes,
      rows: n.rows,
      complete: n.listens,
      reduced: n.listens,
      rejected: { ...zeroReasons(), ...n.rejected },
      days: new Set(n.dates.map(dateToDay)),
      duplicateHeaders: n.duplicateHeaders,
      schemaError: schemaErrorOf(n.schemaError, f.key),
    });
  }
});

/**
 * The dates to recompute, as the streaming engine decides them; the loaded files carrying them
 * whose listens the warehouse does not keep (loaded by the streaming engine) are normalized here,
 * once, from where they are now (streams/ or the archive).
 */
const engineLateStep = step('reread', async (r) => {
  const wh = r.wh!;
  const warehouse = warehouseOf(r);
  if (!isEngineWarehouse(warehouse)) {
    throw new MkpiError('MKPI_CONFIG', `${warehouse.description} cannot run the warehouse engine`, { hint: 'use --engine stream' });
  }
  wh.session = await warehouse.openEngine();
  const session = wh.session;
  r.cleanups.push(() => session.close());
  const plan = r.plan!;
  addDatesToRecompute(r);
  wh.staged = plan.pending.map((p) => ({
    id: wh.idOf.get(p.obj.key)!,
    fileKey: p.entry?.fileKey ?? p.obj.key,
    fingerprint: p.entry?.fingerprint ?? p.obj.fingerprint,
  }));
  const allDates = new Set([...r.byTable.hourly, ...r.byTable.genre]);
  const reread = filesToReread(r.ledger ?? [], plan.pending, allDates);
  if (reread.length === 0) return;
  const stored = await session.storedFiles(reread.map((e) => ({ fileKey: e.fileKey, fingerprint: e.fingerprint })));
  const missing = reread.filter((e) => !stored.has(identityOf(e)));
  if (missing.length === 0) return;
  r.emit({ type: 'stage', stage: 'reread', message: `normalizing ${missing.length} loaded file(s) whose listens the warehouse lacks` });
  let next = wh.plan.files.length + 1;
  const files: { id: number; key: string; fingerprint: string }[] = [];
  for (const e of missing) {
    const obj = await locate(r.opts.lake, r.opts.layout, e, r.opts.signal);
    const id = next++;
    files.push({ id, key: obj.key, fingerprint: obj.fingerprint });
    wh.staged.push({ id, fileKey: e.fileKey, fingerprint: e.fingerprint });
  }
  const manifest = await r.timer.stage('reread', () =>
    normalize().normalizeShard(
      r.opts.lake,
      engineOf(r).staging,
      { runId: wh.plan.runId, shard: -1, shards: wh.plan.shards, files, dimensions: [], detailFiles: r.opts.layout },
      { signal: r.opts.signal, partBytes: engineOf(r).partBytes },
    ),
  );
  for (const f of manifest.files) {
    if (f.schemaError) throw schemaErrorOf(f.schemaError, f.key)!;
    r.report.reread.push({ name: f.key, bytes: f.bytes, rows: f.rows, rowsUsed: f.listens });
  }
  wh.manifests.push(manifest);
});

/** The parts into the warehouse; orphans and duplicates counted there; the report's totals. */
const engineStageStep = step('stage', async (r) => {
  const wh = r.wh!;
  const staging = engineOf(r).staging;
  const parts: Record<PartKind, PartRef[]> = { listens: [], songs: [], artists: [], users: [] };
  for (const m of wh.manifests) for (const k of Object.keys(parts) as PartKind[]) parts[k].push(...m.parts[k]);
  const s3 = staging.root.startsWith('s3://');
  r.emit({ type: 'stage', stage: 'load', message: `staging ${parts.listens.length} listens part(s) in ${warehouseOf(r).description}` });
  const staged = await r.timer.stage('stage', () =>
    wh.session!.stage({
      parts,
      files: wh.staged,
      read: (key, signal) => staging.read(key, signal),
      s3Uri: s3 ? (key) => joinRoot(staging.root, key) : undefined,
      signal: r.opts.signal,
    }),
  );
  const songs = r.report.dimensions.songs!;
  const users = r.report.dimensions.users!;
  // As the streaming engine counts them: valid rows that entered the dimension, duplicates apart.
  songs.duplicates = staged.songs.duplicates;
  songs.valid -= staged.songs.duplicates;
  users.duplicates = staged.users.duplicates;
  users.valid -= staged.users.duplicates;
  warnDimensions(r, songs, users);
  for (const scan of r.scans) {
    const id = wh.idOf.get(scan.key)!;
    const o = staged.orphans.get(id) ?? { unknown_track: 0, unknown_user: 0 };
    // Normalize rejects a track_id no song can have (unknown_track) itself; the warehouse the rest.
    scan.rejected.unknown_track = (scan.rejected.unknown_track ?? 0) + o.unknown_track;
    scan.rejected.unknown_user = (scan.rejected.unknown_user ?? 0) + o.unknown_user;
    scan.complete = scan.schemaError ? 0 : (staged.complete.get(id) ?? 0);
    scan.reduced = scan.complete;
    recordScan(r, scan);
  }
  addRowTotals(r.report);
  checkAborted(r.opts.signal);
});

/** Peeks one item ahead of an async iterator: the warehouse's rejects, merged by line with the shards'. */
class Peek<T> {
  private head: IteratorResult<T> | undefined;
  constructor(private readonly it: AsyncIterator<T>) {}
  async peek(): Promise<T | undefined> {
    this.head ??= await this.it.next();
    return this.head.done ? undefined : this.head.value;
  }
  take(): void {
    this.head = undefined;
  }
}

/**
 * The rejects CSV, row for row what the streaming engine writes: each dimension file's invalid
 * rows (from its shard) and duplicates (from the warehouse) by line, then each stream file's
 * row-level rejects (from its shard) and orphans (from the warehouse) by line, files in listing order.
 */
const engineRejectsStep = (publish: Step) =>
  step('rejects', async (r) => {
    if (!r.opts.rejectsKey) return;
    const wh = r.wh!;
    const staging = engineOf(r).staging;
    const sink = new RejectSink();
    r.rejects = sink;
    const fromWarehouse = new Peek<EngineReject>(wh.session!.rejects()[Symbol.asyncIterator]());
    const songsFile = r.opts.layout.songs;
    const usersFile = r.opts.layout.users;
    const render = (x: EngineReject): [string, number, string, string] => {
      if (x.kind === 'duplicate') {
        const file = x.dimension === 'songs' ? songsFile : usersFile;
        const reason = x.dimension === 'songs' ? 'duplicate_track_id' : 'duplicate_user_id';
        const id = x.dimension === 'songs' ? x.id : decodePartId(x.id);
        return [file, x.line, reason, duplicateDetail(x.dimension === 'songs' ? 'track_id' : 'user_id', id, x.firstLine)];
      }
      const file = wh.plan.files[x.fileId - 1]?.key ?? String(x.fileId);
      const detail =
        x.reason === 'unknown_track'
          ? `track_id ${shown(x.trackId)} is not a valid song in ${songsFile}`
          : `user_id ${shown(decodePartId(x.userId))} is not a valid user in ${usersFile}`;
      return [file, x.line, x.reason, detail];
    };
    const belongs = (x: EngineReject, group: { dimension?: 'songs' | 'users'; fileId?: number }) =>
      x.kind === 'duplicate' ? x.dimension === group.dimension : x.fileId === group.fileId;
    const drain = async (group: { dimension?: 'songs' | 'users'; fileId?: number }, beforeLine: number) => {
      for (
        let x = await fromWarehouse.peek();
        x !== undefined && belongs(x, group) && x.line < beforeLine;
        x = await fromWarehouse.peek()
      ) {
        const [file, line, reason, detail] = render(x);
        sink.addRendered(file, line, reason, detail, '');
        fromWarehouse.take();
      }
    };
    const merge = async (partKey: string | null, group: { dimension?: 'songs' | 'users'; fileId?: number }) => {
      if (partKey !== null) {
        for await (const rec of readRejectLines(await staging.read(partKey, r.opts.signal))) {
          await drain(group, rec.line);
          sink.addRendered(rec.file, rec.line, rec.reason, rec.detail, rec.raw);
        }
      }
      await drain(group, Infinity);
    };
    const dims = new Map(wh.manifests.flatMap((m) => m.dimensions).map((d) => [d.kind, d]));
    await merge(dims.get('songs')?.rejectsKey ?? null, { dimension: 'songs' });
    await merge(dims.get('users')?.rejectsKey ?? null, { dimension: 'users' });
    const files = new Map(
      wh.manifests
        .filter((m) => m.shard >= 0)
        .flatMap((m) => m.files)
        .map((f) => [f.id, f]),
    );
    const pending = new Set(r.scans.map((s) => wh.idOf.get(s.key)!));
    for (const f of wh.plan.files) {
      if (!pending.has(f.id)) continue;
      await merge(files.get(f.id)?.rejectsKey ?? null, { fileId: f.id });
    }
    // Orphans of re-read files are not reported again (they were when those files were loaded).
    await publish.run(r);
  });

const engineLoadStep = step('load', async (r) => {
  const { opts, report } = r;
  const wh = r.wh!;
  const ledger = ledgerEntries(opts.runId, r.kpis, r.plan!.pending, new Map(r.scans.map((s) => [s.key, s])));
  for (const t of ['hourly', 'genre'] as const) report.datesRecomputed[t] = [...r.byTable[t]].sort();
  const asked = (opts.window?.length ?? 0) > 0;
  if (r.plan!.pending.length === 0 && r.repair.retire.length === 0 && !asked) return;
  const dryRun = report.dryRun;
  if (!dryRun) r.emit({ type: 'stage', stage: 'load', message: `computing and loading in ${warehouseOf(r).description}` });
  checkAborted(opts.signal);
  const result = await r.timer.stage(dryRun ? 'compute' : 'load', () =>
    wh.session!.load({
      runId: opts.runId,
      ...(r.kpis.includes('hourly') ? { hourly: [...r.byTable.hourly].sort() } : {}),
      ...(r.kpis.includes('genre') ? { genre: [...r.byTable.genre].sort() } : {}),
      store: wh.staged,
      ledger: [...ledger, ...r.repair.keepers],
      retire: r.repair.retire.map((e) => ({ fileKey: e.fileKey, fingerprint: e.fingerprint })),
      dryRun,
      onStep: async (s) => {
        await opts.fault?.(s === 'committed' ? 'after-commit' : s);
        if (s !== 'committed') checkAborted(opts.signal);
      },
    }),
  );
  if (r.repair.retire.length > 0) report.ledgerRepaired = r.repair.retire.map((e) => e.fileKey);
  report.rowsWritten.hourly_kpis = result.hourlyRowsWritten;
  report.rowsWritten.genre_level_kpis = result.genreRowsWritten;
  if (!dryRun) report.loaded = true;
});

/** What a run leaves in staging goes once it is done with: the parts of a loaded plan, or a dry run's own plan. */
const cleanupStep = step('archive', async (r) => {
  const wh = r.wh;
  // Reached only when the run succeeded: a plan it loaded (or found nothing left to load in) is used up.
  if (!wh || (r.report.dryRun && !wh.ownPlan)) return;
  const staging = engineOf(r).staging;
  try {
    for (const obj of await staging.list(`${wh.plan.runId}/`)) await staging.remove(obj.key);
  } catch (err) {
    r.warn(`could not remove the staging of plan ${wh.plan.runId} under ${staging.root}: ${(err as Error).message}`);
  }
});

/** `plan`: the pending files fixed, with their shards, in staging. Writes nothing to the warehouse. */
const planCommandStep = (list: Step) =>
  step('plan', async (r) => {
    const eng = engineOf(r);
    r.report.engine = 'warehouse';
    await list.run(r);
    const id = eng.planId ?? r.opts.runId;
    const shards = Math.max(1, Math.floor(eng.shards ?? 1));
    // A plan made again under the same id starts its shards over: their old output no longer fits.
    // (A staging folder not made yet holds nothing.)
    const earlier = await eng.staging.list(`${id}/`).catch((err: unknown) => {
      if (err instanceof MkpiError && err.code === 'MKPI_NO_INPUT') return [];
      throw err;
    });
    for (const obj of earlier) if (obj.key.endsWith('/manifest.json')) await eng.staging.remove(obj.key);
    for (const obj of earlier) if (!obj.key.endsWith('/manifest.json')) await eng.staging.remove(obj.key);
    const plan = await newPlan(r, id, shards);
    planReport(r, plan);
    for (const p of r.plan!.pending) {
      r.report.files.push({
        name: p.obj.key,
        bytes: p.obj.size,
        rows: 0,
        complete: 0,
        rejected: zeroReasons(),
        dates: [],
        status: 'read',
      });
    }
    r.report.totals.files = plan.files.length;
    r.report.totals.bytes = plan.files.reduce((a, f) => a + f.size, 0);
  });

/** `normalize --shard i/N`: one shard's parts, rejects and manifest. Reads the plan, never the listing. */
const normalizeCommandStep = step('normalize', async (r) => {
  const eng = engineOf(r);
  r.report.engine = 'warehouse';
  if (eng.planId === undefined) {
    throw new MkpiError('MKPI_USAGE', 'normalize needs --run-id, the id its plan was made with');
  }
  const shard = eng.shard;
  if (shard === undefined) throw new MkpiError('MKPI_USAGE', 'normalize needs --shard i/N (0-based i)');
  const plan = await shardsModule().readPlan(eng.staging, eng.planId, r.opts.signal);
  checkPlanLake(r, plan);
  if (shard.count !== plan.shards) {
    throw new MkpiError('MKPI_PLAN_MISMATCH', `plan ${plan.runId} has ${plan.shards} shard(s), not ${shard.count}`, {
      hint: `use --shard i/${plan.shards}`,
    });
  }
  planReport(r, plan);
  const job = shardsModule().jobOf(plan, shard.index);
  r.emit({
    type: 'stage',
    stage: 'streams',
    message: `normalizing shard ${shard.index}/${shard.count}: ${job.files.length} stream file(s)`,
  });
  let rows = 0;
  const manifest = await r.timer.stage('normalize', () =>
    normalize().normalizeShard(r.opts.lake, eng.staging, job, {
      signal: r.opts.signal,
      partBytes: eng.partBytes,
      onRows: (n) => {
        rows += n;
        r.emit({ type: 'progress', rows, files: 0, totalFiles: job.files.length });
      },
    }),
  );
  reportShard(r, manifest);
});

function reportShard(r: Run, m: ShardManifest): void {
  const totals = r.report.totals;
  let rejects = 0;
  for (const f of m.files) {
    const rejected = { ...zeroReasons(), ...f.rejected };
    rejects += f.rejectsCount;
    totals.files++;
    totals.bytes += f.bytes;
    totals.rowsRead += f.rows;
    for (const x of REJECT_REASONS) totals.rejected[x] += rejected[x];
    r.report.files.push({
      name: f.key,
      bytes: f.bytes,
      rows: f.rows,
      complete: 0,
      rejected,
      dates: f.dates,
      status: f.schemaError ? 'schema_error' : 'read',
      ...(f.schemaError ? { error: f.schemaError.message } : {}),
    });
    // The shard is complete all the same; the run's circuit breaker stops on it (exit 65).
    if (f.schemaError) r.warn(`${f.key}: ${f.schemaError.message}; the run will stop on it before loading`);
  }
  for (const d of m.dimensions) if (d.schemaError) r.warn(`${d.key}: ${d.schemaError.message}; the run will stop on it before loading`);
  addRowTotals(r.report);
  for (const d of m.dimensions) {
    rejects += d.rejectsCount;
    r.report.dimensions[d.kind] = {
      file: d.key,
      bytes: d.bytes,
      rows: d.rows,
      valid: d.valid,
      duplicates: 0,
      rejected: d.rejected,
      duplicateHeaders: d.duplicateHeaders,
    };
  }
  const parts = Object.values(m.parts).reduce((a, p) => a + p.length, 0);
  const listens = m.parts.listens.reduce((a, p) => a + p.rows, 0);
  r.report.plan!.shard = { index: m.shard, parts, listens, rejects };
}

/**
 * `plan` reads the ledger without writing anything: a schema not yet created has an empty one;
 * a ledger that belongs to another lake is refused, as a dry run refuses it.
 */
const planLedgerStep = (ledger: Step) =>
  step('list', async (r) => {
    const warehouse = warehouseOf(r);
    if (!(await warehouse.isInitialised())) {
      r.ledger = [];
      return;
    }
    await refuseOtherLake(r);
    await ledger.run(r);
  });

/** The warehouse engine's command steps, built on the streaming engine's shared ones. */
export function warehouseEngineSteps(steps: SharedSteps): { compute: Step[]; run: Step[]; plan: Step[]; normalize: Step[] } {
  const compute = [
    steps.lock,
    steps.claim,
    steps.ledger,
    fixPlanStep(steps.list),
    normalizeOwnStep,
    shardsStep,
    engineLateStep,
    engineStageStep,
    engineRejectsStep(steps.rejects),
    steps.gate,
    engineLoadStep,
  ];
  return {
    compute: [...compute, cleanupStep],
    run: [...compute, steps.archive, cleanupStep],
    plan: [planLedgerStep(steps.ledger), planCommandStep(steps.list)],
    normalize: [normalizeCommandStep],
  };
}

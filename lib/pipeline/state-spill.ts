// The reducers' state under a memory budget (issue 12: memory flat in the days a run spans). A
// reader's state grows with the hours it has seen: a backfill of 90 days holds 2,160 of them, in
// every reader. Past the budget, a reader moves each date's hours out of memory into a temporary
// file, in the saved-state encoding (date-state.ts: counts, not rows, so a date spilled twice
// costs two small parts, not its listens), and starts afresh. At the end the pipeline takes the
// dates one at a time: the date's hours still in memory plus its spilled parts, added back
// (reduce.ts addCounts), which is exactly the state of all its rows, since states add up. So
// memory is bounded by the budget plus one date, whatever the days; a run under the budget (the
// daily run) never spills and pays one cheap size check every CHECKPOINT_ROWS rows.

import { closeSync, mkdirSync, openSync, readSync, utimesSync, writeSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { MkpiError } from '../domain/errors.js';
import { decodeDateState, encodeDateState, restoreDateState } from '../stages/date-state.js';
import { stateBytes, takeDay, type KpiState } from '../stages/reduce.js';

/** What each reader is allowed (the run's budget divided among its readers), and where it spills. */
export interface SpillOptions {
  /** A folder for this run alone; created on the first spill. */
  dir: string;
  /** Bytes of reducer state one reader holds before it spills. */
  budgetBytes: number;
}

/** One date's spilled counts: a byte range of a spill file. */
export interface SpillPart {
  day: number;
  path: string;
  offset: number;
  length: number;
}

/** The folders of runs' spills are named so under their parent. */
export const SPILL_FOLDER_PREFIX = 'musickpi-state-';
/** A spill folder this old belongs to a run that was killed: its next neighbour removes it. */
export const STALE_SPILL_MS = 24 * 3600 * 1000;

/** Removes the spill folders of killed runs under `parent` (best effort: a folder in use is never this old). */
export async function sweepStaleSpills(parent: string, now = Date.now()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(SPILL_FOLDER_PREFIX)) continue;
    const path = join(parent, name);
    const st = await stat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory() || now - st.mtimeMs < STALE_SPILL_MS) continue;
    await rm(path, { recursive: true, force: true }).catch(() => undefined);
    removed++;
  }
  return removed;
}

/** The "dimensions" a spilled part names: parts never leave the run that wrote them. */
const SPILLED = 'spilled';

let files = 0;

export class StateSpill {
  /** Spilled parts by epoch day. */
  private readonly parts = new Map<number, SpillPart[]>();
  private fd: number | undefined;
  private path = '';
  private offset = 0;
  private readonly readers = new Map<string, number>();
  /** Bytes kept for later in the run (the dates' states to save after the commit). */
  private readonly stash = new Map<string, Buffer | SpillPart>();
  /** How many times this reader spilled, and the bytes of every part it holds (the workers' included). */
  spills = 0;
  bytes = 0;

  constructor(private readonly opts: SpillOptions) {}

  /** Changes the budget (the calling thread reads alone after the scan, with the workers' share). */
  setBudget(bytes: number): void {
    this.opts.budgetBytes = bytes;
  }

  /** The same folder and budget, for a worker thread's own spill. */
  options(): SpillOptions {
    return { ...this.opts };
  }

  /** Spills every date of `state` when its hours hold more than the budget. */
  check(state: KpiState): void {
    if (stateBytes(state) > this.opts.budgetBytes) this.spill(state);
  }

  /** Moves every date of `state` into the spill file. */
  spill(state: KpiState): void {
    const days = [...new Set([...state.hours.keys()].map((k) => Math.floor(k / 24)))].sort((a, b) => a - b);
    for (const day of days) this.add([this.write(day, encodeDateState(takeDay(state, day), day, { dimensions: SPILLED, files: [] }))]);
    this.spills++;
    // The folder's time says the run is alive: the sweep of killed runs' folders goes by it.
    if (days.length > 0) utimesSync(this.opts.dir, new Date(), new Date());
  }

  private write(day: number, buf: Buffer): SpillPart {
    if (this.fd === undefined) {
      mkdirSync(this.opts.dir, { recursive: true, mode: 0o700 });
      this.path = join(this.opts.dir, `spill-${threadId}-${files++}.bin`);
      this.fd = openSync(this.path, 'wx', 0o600);
    }
    for (let done = 0; done < buf.length;) done += writeSync(this.fd, buf, done, buf.length - done, this.offset + done);
    const part = { day, path: this.path, offset: this.offset, length: buf.length };
    this.offset += buf.length;
    return part;
  }

  /**
   * Keeps bytes for later in the run under `name`: in memory while this run has not spilled,
   * in the spill file once it has (so that a run of many days keeps them out of memory too).
   */
  keep(name: string, buf: Buffer): void {
    this.stash.set(name, this.spills > 0 ? this.write(-1, buf) : buf);
  }

  /** The names kept, in the order kept. */
  keptNames(): string[] {
    return [...this.stash.keys()];
  }

  /** Bytes kept under `name`. */
  kept(name: string): Buffer | undefined {
    const k = this.stash.get(name);
    return k === undefined || Buffer.isBuffer(k) ? k : this.read(k);
  }

  private read(part: SpillPart): Buffer {
    const buf = Buffer.alloc(part.length);
    let fd = this.readers.get(part.path);
    if (fd === undefined) this.readers.set(part.path, (fd = openSync(part.path, 'r')));
    for (let done = 0; done < part.length;) {
      const n = readSync(fd, buf, done, part.length - done, part.offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf;
  }

  /** Parts another reader spilled (a worker thread's, handed over with its state). */
  add(parts: readonly SpillPart[]): void {
    for (const p of parts) {
      this.bytes += p.length;
      const list = this.parts.get(p.day);
      if (list) list.push(p);
      else this.parts.set(p.day, [p]);
    }
  }

  /** Every part, for handing over to another thread. */
  all(): SpillPart[] {
    return [...this.parts.values()].flat();
  }

  /**
   * One date's whole state: its hours moved out of `state`, plus its spilled parts added back.
   * A part that does not read back whole is a broken temporary file, never a result.
   */
  takeDay(state: KpiState, day: number): KpiState {
    const out = takeDay(state, day);
    for (const part of this.parts.get(day) ?? []) {
      const saved = decodeDateState(this.read(part), { dimensions: SPILLED, trackCount: state.trackCount, userCount: state.userCount });
      if (saved === undefined)
        throw new MkpiError('MKPI_INTERNAL', `a spilled part of the reducer state (${part.path}) does not read back`);
      restoreDateState(out, saved);
    }
    this.parts.delete(day);
    return out;
  }

  /** Closes the files (the caller removes the folder). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    for (const fd of this.readers.values()) closeSync(fd);
    this.readers.clear();
  }
}

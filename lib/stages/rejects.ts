// Rejected rows are never silently dropped (spec §3): each goes to a CSV with the file name,
// line number, reason and a short explanation of it (detail), plus the row as read. Dimension
// rows that lose to an earlier row of the same ID are listed there too. Rows are spooled to a local temp file (memory
// stays flat however many rows are rejected) and published into the lake at the end.
//
// Worker threads (parallel-scan.ts) each write the rejects of one stream file to a spool file of
// their own (RejectSpool: the same lines, no header); the main thread appends those spools to its
// RejectSink in listing order, so the output is byte for byte what one thread would have written.

import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Lake } from '../domain/lake.js';
import { MkpiError } from '../domain/errors.js';
import { CsvParseStream, type CsvBatch } from './parse.js';
import { csvField } from '../domain/text.js';

const FLUSH_AT = 1 << 20;
export const REJECTS_HEADER = 'file,line,reason,detail,raw\n';

/** One line of the rejects CSV. */
export function rejectLine(file: string, line: number, reason: string, detail: string, fields: readonly string[]): string {
  return renderedLine(file, line, reason, detail, fields.map(csvField).join(','));
}

/** One line of the rejects CSV whose raw column is already rendered (as a rejects part holds it). */
export function renderedLine(file: string, line: number, reason: string, detail: string, raw: string): string {
  return `${csvField(file)},${line},${reason},${csvField(detail)},${csvField(raw)}\n`;
}

/** One row of a rejects CSV (or of a rejects part: the same lines without the header). */
export interface RejectRecord {
  file: string;
  line: number;
  reason: string;
  detail: string;
  raw: string;
}

/**
 * The rows of a gzip rejects part, as written by normalize (lines of rejectLine, no header), in
 * their order. Streams: memory stays flat however many rows the part holds.
 */
export async function* readRejectLines(source: Readable): AsyncGenerator<RejectRecord> {
  const parser = new CsvParseStream();
  const gunzip = createGunzip();
  const done = pipeline(source, gunzip, parser);
  done.catch(() => undefined);
  for await (const batch of parser as AsyncIterable<CsvBatch>) {
    for (const f of batch.fields) {
      if (f.length !== 5) throw new MkpiError('MKPI_INTERNAL', `a rejects part holds a record of ${f.length} fields, not 5`);
      yield { file: f[0], line: Number(f[1]), reason: f[2], detail: f[3], raw: f[4] };
    }
  }
  await done;
}

/** Buffered, synchronous appends to one file: rejects lines, with or without the CSV header. */
class LineFile {
  private fd: number;
  private buf: string[] = [];
  private bufLen = 0;
  count = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.count++;
    this.push(rejectLine(file, line, reason, detail, fields));
  }

  push(s: string): void {
    this.buf.push(s);
    this.bufLen += s.length;
    if (this.bufLen >= FLUSH_AT) this.flush();
  }

  flush(): void {
    if (this.buf.length === 0) return;
    writeSync(this.fd, this.buf.join(''));
    this.buf = [];
    this.bufLen = 0;
  }

  /** Appends another file's bytes as they are. */
  appendFile(path: string): void {
    this.flush();
    const fd = openSync(path, 'r');
    try {
      const chunk = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        let off = 0;
        while (off < n) off += writeSync(this.fd, chunk, off, n - off);
      }
    } finally {
      closeSync(fd);
    }
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      this.flush();
    } finally {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = -1;
    }
  }
}

/** The rejects of one stream file, written by a worker thread: rejects lines without a header. */
export class RejectSpool {
  private readonly file: LineFile;

  constructor(path: string) {
    this.file = new LineFile(path);
  }

  get path(): string {
    return this.file.path;
  }

  get count(): number {
    return this.file.count;
  }

  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.file.add(file, line, reason, detail, fields);
  }

  /** Flushes and closes the file; idempotent. */
  close(): void {
    this.file.close();
  }
}

/** Where scanning code writes its rejects: the run's RejectSink, or a worker's RejectSpool. */
export interface RejectWriter {
  /** `detail` says why in a few words (validate.ts builds it); `fields` are the record as parsed. */
  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void;
}

export class RejectSink implements RejectWriter {
  private readonly dir: string;
  private readonly file: LineFile;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'musickpi-rejects-'));
    this.file = new LineFile(join(this.dir, 'rejects.csv'));
    this.file.push(REJECTS_HEADER);
  }

  /** Rows written so far. */
  get count(): number {
    return this.file.count;
  }

  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.file.add(file, line, reason, detail, fields);
  }

  /** Adds a row whose raw column is already rendered (a rejects part's row, or '' for a row the warehouse decided). */
  addRendered(file: string, line: number, reason: string, detail: string, raw: string): void {
    this.file.count++;
    this.file.push(renderedLine(file, line, reason, detail, raw));
  }

  /** Adds `count` rows already rendered as rejects lines (rejectLine's, joined): the dimension cache's replay. */
  addLines(lines: string, count: number): void {
    if (count === 0) return;
    this.file.count += count;
    this.file.push(lines);
  }

  /** Appends a closed RejectSpool's rows (`count` of them), after the rows written so far. */
  appendSpool(path: string, count: number): void {
    if (count === 0) return;
    this.file.appendFile(path);
    this.file.count += count;
  }

  /** Writes the rejects into the lake at `key`; returns false when there was nothing to write. */
  async publish(lake: Lake, key: string, signal?: AbortSignal): Promise<boolean> {
    this.file.flush();
    if (this.count === 0) return false;
    await lake.write(key, createReadStream(this.file.path), signal);
    return true;
  }

  dispose(): void {
    this.file.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Run ids as newRunId makes them (20241201T031500Z-abc123): sortable by time. */
const RUN_FOLDER = /^\d{8}T\d{6}Z-[a-z0-9]+$/;

/**
 * Keeps the newest `keep` run folders of rejects under `prefix` (rejects/<run id>/) and removes
 * the older ones, so that a daily job's rejects do not pile up. Folders not named like a run id
 * are never touched. Returns how many folders were removed.
 */
export async function pruneRejectFolders(lake: Lake, prefix: string, keep: number, signal?: AbortSignal): Promise<number> {
  if (keep <= 0) return 0;
  const byFolder = new Map<string, string[]>();
  for (const obj of await lake.list(prefix)) {
    const folder = obj.key.slice(prefix.length).split('/')[0];
    if (!RUN_FOLDER.test(folder) || !obj.key.slice(prefix.length).includes('/')) continue;
    const keys = byFolder.get(folder);
    if (keys) keys.push(obj.key);
    else byFolder.set(folder, [obj.key]);
  }
  const old = [...byFolder.keys()].sort().reverse().slice(keep);
  for (const folder of old) {
    for (const key of byFolder.get(folder)!) {
      if (signal?.aborted) return 0;
      await lake.remove(key);
    }
  }
  return old.length;
}

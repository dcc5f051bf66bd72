// Rejected rows are never silently dropped (spec §3): each goes to a CSV with the file name,
// line number and reason, plus the row as read. Rows are spooled to a local temp file (memory
// stays flat however many rows are rejected) and published into the lake at the end.

import { closeSync, mkdtempSync, openSync, rmSync, writeSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lake } from './lake/lake.js';
import { csvField } from './text.js';

const FLUSH_AT = 1 << 20;

export class RejectSink {
  private readonly dir: string;
  private readonly path: string;
  private fd: number;
  private buf: string[] = [];
  private bufLen = 0;
  count = 0;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'musickpi-rejects-'));
    this.path = join(this.dir, 'rejects.csv');
    this.fd = openSync(this.path, 'w');
    this.push('file,line,reason,raw\n');
  }

  add(file: string, line: number, reason: string, fields: readonly string[]): void {
    this.count++;
    const raw = fields.map(csvField).join(',');
    this.push(`${csvField(file)},${line},${reason},${csvField(raw)}\n`);
  }

  private push(s: string): void {
    this.buf.push(s);
    this.bufLen += s.length;
    if (this.bufLen >= FLUSH_AT) this.flush();
  }

  private flush(): void {
    if (this.buf.length === 0) return;
    writeSync(this.fd, this.buf.join(''));
    this.buf = [];
    this.bufLen = 0;
  }

  /** Writes the rejects into the lake at `key`; returns false when there was nothing to write. */
  async publish(lake: Lake, key: string, signal?: AbortSignal): Promise<boolean> {
    this.flush();
    if (this.count === 0) return false;
    await lake.write(key, createReadStream(this.path), signal);
    return true;
  }

  dispose(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

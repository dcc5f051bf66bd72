// Test-only: a lake that calls a hook at named points of its own work, so that tests can kill
// or pause the CLI *inside* a listing or a read (MKPI_TEST_FAULT / MKPI_TEST_PAUSE, see
// lib/cli/runtime.ts). Never used unless one of those variables names a lake point.
//
// Points: "list:<prefix>" before a listing of <prefix>; "read:<key>" while reading <key>, once
// the first part of its bytes has been handed on (so the reader is mid-parse).

import { Readable } from 'node:stream';
import type { Lake, LakeObject, MoveOptions, MoveOutcome } from '../domain/lake.js';

export type LakeHook = (point: string) => void | Promise<void>;

export class HookedLake implements Lake {
  constructor(
    private readonly inner: Lake,
    private readonly hook: LakeHook,
    private readonly wants: (point: string) => boolean,
  ) {}

  get root(): string {
    return this.inner.root;
  }

  stat(key: string): Promise<LakeObject | undefined> {
    return this.inner.stat(key);
  }

  async list(prefix: string, exclude?: string[]): Promise<LakeObject[]> {
    const point = `list:${prefix}`;
    if (this.wants(point)) await this.hook(point);
    return this.inner.list(prefix, exclude);
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    const point = `read:${key}`;
    const source = await this.inner.read(key, signal);
    if (!this.wants(point)) return source;
    const hook = this.hook;
    async function* bytes(): AsyncGenerator<Buffer> {
      try {
        let first = true;
        for await (const chunk of source) {
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
          if (first) {
            first = false;
            // Half now, the hook, then the rest: even a one-chunk file is interrupted mid-parse.
            const half = Math.floor(buf.length / 2);
            yield buf.subarray(0, half);
            await hook(point);
            yield buf.subarray(half);
          } else {
            yield buf;
          }
        }
      } finally {
        source.destroy();
      }
    }
    return Readable.from(bytes(), { objectMode: false });
  }

  write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    return this.inner.write(key, body, signal);
  }

  moveNoOverwrite(from: string, to: string, opts?: MoveOptions): Promise<MoveOutcome> {
    return this.inner.moveNoOverwrite(from, to, opts);
  }

  remove(key: string): Promise<void> {
    return this.inner.remove(key);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

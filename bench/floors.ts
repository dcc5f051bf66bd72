// The physical floors of a lake shape (issue 12), run as a child process like the engines so
// that its whole-process wall compares with theirs:
//   node dist/bench/floors.js read FILE…              the stream bytes read from page cache, one thread
//   node dist/bench/floors.js parse --threads N FILE…  lib/stages/parse.ts CsvParser alone over the
//                                                      bytes, N worker threads (no validation, no reduce)
// The parse floor cuts the files, taken as one run of bytes, into N equal parts at line ends (the
// generated lakes quote no newline in the stream files, and a floor need not be exact about
// records), so that one big file keeps every thread busy too. Prints one JSON line: bytes, records,
// and the in-process milliseconds.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { CsvParser } from '../lib/stages/parse.js';

const CHUNK = 1 << 20;

interface Segment {
  file: string;
  start: number;
  end: number;
}

/** Reads [start, end) of a file in 1 MB chunks, handing each chunk to `onChunk`; returns the bytes read. */
function readRange(seg: Segment, buf: Buffer, onChunk?: (chunk: Buffer) => void): number {
  const fd = openSync(seg.file, 'r');
  let pos = seg.start;
  try {
    while (pos < seg.end) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, seg.end - pos), pos);
      if (n === 0) break;
      onChunk?.(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return pos - seg.start;
}

/** The position just past the first '\n' at or after `at` (the file's size when there is none). */
function nextLineStart(file: string, at: number, size: number): number {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(64 * 1024);
  try {
    for (let pos = at; pos < size; pos += buf.length) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      const i = buf.subarray(0, n).indexOf(10);
      if (i >= 0) return pos + i + 1;
    }
    return size;
  } finally {
    closeSync(fd);
  }
}

/** The files as `parts` lists of segments of about equal bytes, each cut at a line end. */
export function split(files: string[], parts: number): Segment[][] {
  const sizes = files.map((f) => {
    const fd = openSync(f, 'r');
    const size = fstatSync(fd).size;
    closeSync(fd);
    return size;
  });
  const total = sizes.reduce((a, b) => a + b, 0);
  const out: Segment[][] = Array.from({ length: parts }, () => []);
  let part = 0;
  let budget = total / parts;
  for (let i = 0; i < files.length; i++) {
    let start = 0;
    while (start < sizes[i]) {
      const left = sizes[i] - start;
      if (part === parts - 1 || left <= budget) {
        out[part].push({ file: files[i], start, end: sizes[i] });
        budget -= left;
        break;
      }
      const end = nextLineStart(files[i], start + Math.floor(budget), sizes[i]);
      out[part].push({ file: files[i], start, end });
      start = end;
      part++;
      budget = total / parts;
    }
  }
  return out.filter((segs) => segs.length > 0);
}

function parseSegments(segs: Segment[]): { bytes: number; records: number } {
  const buf = Buffer.allocUnsafe(CHUNK);
  let bytes = 0;
  let records = 0;
  for (const seg of segs) {
    const parser = new CsvParser(() => records++);
    bytes += readRange(seg, buf, (c) => parser.write(c));
    parser.end();
  }
  return { bytes, records };
}

async function main(argv: string[]): Promise<void> {
  const mode = argv[0];
  let files = argv.slice(1);
  let threads = 2;
  if (files[0] === '--threads') {
    threads = Number(files[1]);
    files = files.slice(2);
  }
  const t0 = performance.now();
  let bytes = 0;
  let records = 0;
  if (mode === 'read') {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (const file of files) bytes += readRange({ file, start: 0, end: Number.MAX_SAFE_INTEGER }, buf);
  } else if (mode === 'parse') {
    const results = await Promise.all(
      split(files, threads).map(
        (segs) =>
          new Promise<{ bytes: number; records: number }>((resolve, reject) => {
            const w = new Worker(new URL(import.meta.url), { workerData: segs });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    for (const r of results) {
      bytes += r.bytes;
      records += r.records;
    }
  } else {
    process.stderr.write('usage: floors read FILE… | floors parse [--threads N] FILE…\n');
    process.exitCode = 64;
    return;
  }
  process.stdout.write(
    JSON.stringify({ mode, threads: mode === 'parse' ? threads : 1, bytes, records, ms: performance.now() - t0 }) + '\n',
  );
}

if (!isMainThread) {
  parentPort!.postMessage(parseSegments(workerData as Segment[]));
} else if (import.meta.url === `file://${process.argv[1]}`) {
  await main(process.argv.slice(2));
}

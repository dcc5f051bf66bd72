// RFC 4180 CSV parser (spec §1), built for throughput: a synchronous core (CsvParser) that
// turns byte chunks into records, and thin stream shells around it (CsvParseStream,
// parseCsv) that add backpressure, error propagation and, for .gz files, inflating.
//
// Most lines of a lake file hold no quote at all, so the core finds each line with
// indexOf('\n'), checks it against the next '"' position, and cuts it at the commas found by
// indexOf(','): memchr-speed searches instead of a per-character loop. Only lines with a quote
// go through a character state machine, whose state survives chunk boundaries so a quoted
// field may span any number of chunks. An unfinished quote-free line is carried over to the
// next chunk as text.
//
// Fields are slices of the decoded chunk text, and V8 keeps slices of 13+ chars as views into
// it: a consumer that keeps fields for the whole run (IDs in a dictionary) would hold on to
// the text of every chunk they came from. detachField copies such values.

import { createHash } from 'node:crypto';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

export const FLAG_OK = 0;
/** The input ended inside a quoted field; the record holds what was read. */
export const FLAG_UNTERMINATED = 1;
/** The record was longer than maxRecordChars; its fields were dropped (fields = []). */
export const FLAG_TOO_LONG = 2;

export const DEFAULT_MAX_RECORD_CHARS = 1_000_000;

/**
 * Receives each record: its fields (not trimmed), the 1-based physical line where it starts,
 * and a flag (FLAG_OK, FLAG_UNTERMINATED or FLAG_TOO_LONG; too-long wins when both apply).
 */
export type RecordHandler = (fields: string[], line: number, flag: number) => void;

export interface CsvParserOptions {
  /**
   * Longest record kept, in UTF-16 code units of its raw text (quotes included, line ending
   * excluded). Longer records are scanned to their end without being kept, which bounds memory.
   */
  maxRecordChars?: number;
  /**
   * Whether a U+FEFF that starts the input is a byte order mark and dropped (default true). A
   * parser that starts mid-file (a byte range of it, parallel-scan.ts) keeps it: there it is data.
   */
  bom?: boolean;
}

const LF = 10;
const CR = 13;
const QUOTE = 34;
const COMMA = 44;

// States of the quote-aware path.
const FIELD_START = 0;
const UNQUOTED = 1; // also text after a closing quote, which is kept literally
const QUOTED = 2;
const QUOTE_SEEN = 3; // a '"' inside a quoted field: closes it, unless another '"' follows

/**
 * Where a chunk's complete UTF-8 text ends: before a trailing lead byte whose sequence has not
 * fully arrived, else at the end. A lead byte (>= 0xC0) is never part of an earlier sequence,
 * so decoding the two sides apart gives the same text as decoding them together.
 */
function completeUtf8Length(b: Uint8Array): number {
  const n = b.length;
  const stop = n >= 4 ? n - 4 : 0;
  let k = n - 1;
  while (k >= stop && (b[k] & 0xc0) === 0x80) k--;
  if (k < stop || b[k] < 0xc0) return n;
  const need = b[k] >= 0xf0 ? 4 : b[k] >= 0xe0 ? 3 : 2;
  return n - k < need ? k : n;
}

export class CsvParser {
  private readonly onRecord: RecordHandler;
  private readonly maxChars: number;
  // Turns invalid bytes into U+FFFD. Used one-shot on whole sequences, with the split ones
  // carried over by hand: TextDecoder's streaming mode decodes at ~1.2 GB/s here, its one-shot
  // mode at ~9 GB/s. ignoreBOM, as one-shot calls would each drop a U+FEFF that starts a
  // chunk; decode() drops the file's own BOM instead.
  private readonly decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  /** Bytes of a UTF-8 sequence cut by the chunk boundary. */
  private carry: Uint8Array | null = null;
  private sawText: boolean;
  /** Text not yet consumed: the start of a quote-free line whose end has not arrived yet. */
  private tail = '';
  /** Physical line at the start of the unconsumed text. */
  private line = 1;
  private ended = false;

  // The record being read by the quote-aware path, when inRecord.
  private inRecord = false;
  private state = FIELD_START;
  private fields: string[] = [];
  private field = '';
  private recLine = 0;
  /** Raw chars of the record consumed in earlier chunks. */
  private recChars = 0;
  private tooLong = false;

  constructor(onRecord: RecordHandler, opts: CsvParserOptions = {}) {
    this.onRecord = onRecord;
    this.maxChars = opts.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
    this.sawText = opts.bom === false;
  }

  /** Physical lines consumed so far (line endings seen); after end(), every line ending of the input. */
  get lineEndings(): number {
    return this.line - 1;
  }

  /**
   * Whether the input so far ends exactly at a record boundary: no record half read, no text
   * carried over. True after a line ending outside quotes; what a byte range's reader checks at
   * its end, before end() (which would flush a half-read record).
   */
  get atRecordBoundary(): boolean {
    return !this.inRecord && this.tail === '' && this.carry === null;
  }

  write(chunk: Uint8Array): void {
    if (this.ended) throw new Error('CsvParser: write after end');
    let bytes = chunk;
    if (this.carry !== null) {
      bytes = new Uint8Array(this.carry.length + chunk.length);
      bytes.set(this.carry);
      bytes.set(chunk, this.carry.length);
      this.carry = null;
    }
    const cut = completeUtf8Length(bytes);
    if (cut < bytes.length) {
      this.carry = bytes.slice(cut);
      bytes = bytes.subarray(0, cut);
    }
    const text = this.decode(bytes);
    if (text.length > 0) this.process(this.tail.length === 0 ? text : this.tail + text, false);
  }

  /** Flushes the last record (a final line needs no line ending). Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const text = this.carry === null ? '' : this.decode(this.carry);
    this.carry = null;
    this.process(this.tail + text, true);
  }

  private decode(bytes: Uint8Array): string {
    const text = this.decoder.decode(bytes);
    if (this.sawText || text.length === 0) return text;
    this.sawText = true;
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  }

  private process(buf: string, eof: boolean): void {
    const len = buf.length;
    const max = this.maxChars;
    const onRecord = this.onRecord;
    let line = this.line;
    let pos = 0;
    // Positions of the next '"' and ',' at or after pos, len when there is none; found lazily
    // and reused across lines, so that each search covers new text only.
    let quote = -1;
    let comma = -1;
    for (;;) {
      if (this.inRecord) {
        this.line = line;
        pos = this.readRecord(buf, pos, eof);
        line = this.line;
        if (this.inRecord) break;
        continue;
      }
      if (pos >= len) break;
      let nl = buf.indexOf('\n', pos);
      if (nl === -1) {
        if (!eof) {
          // Don't let an endless line grow the carried text: the quote-aware path reads it
          // in bounded memory.
          if (len - pos > max) {
            this.begin(line);
            continue;
          }
          break;
        }
        nl = len;
      }
      if (quote < pos) {
        quote = buf.indexOf('"', pos);
        if (quote === -1) quote = len;
      }
      if (quote < nl) {
        this.begin(line);
        continue;
      }
      let end = nl;
      if (end > pos && buf.charCodeAt(end - 1) === CR) end--;
      if (end > pos) {
        if (end - pos > max) {
          onRecord([], line, FLAG_TOO_LONG);
        } else {
          // Faster than slice + split(','), which goes through the runtime for every line.
          if (comma < pos) {
            comma = buf.indexOf(',', pos);
            if (comma === -1) comma = len;
          }
          const fields: string[] = [];
          let start = pos;
          while (comma < end) {
            fields.push(buf.slice(start, comma));
            start = comma + 1;
            comma = buf.indexOf(',', start);
            if (comma === -1) comma = len;
          }
          fields.push(buf.slice(start, end));
          onRecord(fields, line, FLAG_OK);
        }
      }
      line++;
      pos = nl + 1;
    }
    this.line = line;
    this.tail = pos < len ? buf.slice(pos) : '';
  }

  private begin(line: number): void {
    this.inRecord = true;
    this.state = FIELD_START;
    this.fields = [];
    this.field = '';
    this.recLine = line;
    this.recChars = 0;
    this.tooLong = false;
  }

  /**
   * The quote-aware path: reads the current record from buf[pos]. Returns where it stopped: after the record's line
   * ending, or, when buf ran out first (inRecord stays true), where the next chunk's text must
   * resume, which is len except for a '\r' that may be half of a CRLF.
   */
  private readRecord(buf: string, pos: number, eof: boolean): number {
    const len = buf.length;
    const from = pos;
    let state = this.state;
    let field = this.field;
    const keep = !this.tooLong;
    let seg = pos; // start of the current field's text not yet appended to `field`
    for (;;) {
      if (state === UNQUOTED) {
        let i = pos;
        let c = 0;
        while (i < len) {
          c = buf.charCodeAt(i);
          if (c === COMMA || c === LF || c === CR) break;
          i++;
        }
        if (i === len) {
          pos = len;
          break;
        }
        if (c === CR) {
          if (i + 1 === len) {
            pos = i;
            break;
          }
          if (buf.charCodeAt(i + 1) !== LF) {
            pos = i + 1;
            continue;
          }
        }
        if (keep) field += buf.slice(seg, i);
        if (c === COMMA) {
          if (keep) this.fields.push(field);
          field = '';
          state = FIELD_START;
          pos = seg = i + 1;
          continue;
        }
        this.field = field;
        this.finish(this.recChars + (i - from), 0);
        this.line++;
        return c === CR ? i + 2 : i + 1;
      }
      if (state === FIELD_START) {
        if (pos === len) break;
        if (buf.charCodeAt(pos) === QUOTE) {
          state = QUOTED;
          pos++;
        } else {
          state = UNQUOTED;
        }
        seg = pos;
        continue;
      }
      if (state === QUOTED) {
        let i = pos;
        let c = 0;
        while (i < len) {
          c = buf.charCodeAt(i);
          if (c === QUOTE) break;
          if (c === LF) this.line++;
          i++;
        }
        if (keep) field += buf.slice(seg, i);
        if (i === len) {
          pos = seg = len;
          break;
        }
        state = QUOTE_SEEN;
        pos = seg = i + 1;
        continue;
      }
      // QUOTE_SEEN
      if (pos === len) break;
      // Either way the text goes on from here: a second '"' is the escaped quote itself and
      // starts the next quoted segment, anything else is literal text after the closing quote.
      state = buf.charCodeAt(pos) === QUOTE ? QUOTED : UNQUOTED;
      seg = pos;
      if (state === QUOTED) pos++;
    }

    // Out of text in this chunk.
    if (keep && seg < pos) field += buf.slice(seg, pos);
    this.recChars += pos - from;
    if (keep && this.recChars > this.maxChars) {
      this.tooLong = true;
      this.fields = [];
      field = '';
    }
    this.state = state;
    this.field = field;
    if (eof) {
      // A '\r' left at the very end is taken as a line ending whose '\n' is missing.
      this.finish(this.recChars, state === QUOTED ? FLAG_UNTERMINATED : FLAG_OK);
      return len;
    }
    return pos;
  }

  private finish(rawChars: number, flag: number): void {
    this.inRecord = false;
    // No raw text: an empty line, skipped (it only gets here with a tiny maxRecordChars).
    if (rawChars === 0) return;
    if (this.tooLong || rawChars > this.maxChars) {
      this.fields = [];
      this.onRecord([], this.recLine, FLAG_TOO_LONG);
      return;
    }
    const fields = this.fields;
    fields.push(this.field);
    this.fields = [];
    this.field = '';
    this.onRecord(fields, this.recLine, flag);
  }
}

/**
 * An equal string that does not keep the chunk text it was sliced from alive: keeping every
 * 50th 22-char ID of a 49 MB file retains ~50 MB of chunk text without it, none with it.
 * Slicing a fresh concatenation makes V8 flatten it into a new string of its own.
 */
export function detachField(s: string): string {
  return (' ' + s).slice(1);
}

/** The records parsed from one input chunk, as parallel arrays. */
export interface CsvBatch {
  fields: string[][];
  lines: number[];
  flags: number[];
}

function emptyBatch(): CsvBatch {
  return { fields: [], lines: [], flags: [] };
}

/**
 * Bytes in, CsvBatch objects out (one per input chunk that completed at least one record), so a
 * slow consumer holds back the source through the readable side's buffer.
 */
export class CsvParseStream extends Transform {
  private readonly parser: CsvParser;
  private batch = emptyBatch();

  constructor(opts: CsvParserOptions = {}) {
    super({ readableObjectMode: true });
    this.parser = new CsvParser((fields, line, flag) => {
      const b = this.batch;
      b.fields.push(fields);
      b.lines.push(line);
      b.flags.push(flag);
    }, opts);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.parser.write(chunk);
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.pushBatch();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.parser.end();
    } catch (err) {
      callback(err as Error);
      return;
    }
    this.pushBatch();
    callback();
  }

  private pushBatch(): void {
    if (this.batch.fields.length === 0) return;
    const b = this.batch;
    this.batch = emptyBatch();
    this.push(b);
  }
}

/**
 * Output chunk size of the gunzip stage. At zlib's default 16 KiB the parser's per-chunk cost shows:
 * a 58 MB file (17 MB gzipped) read in 1.1 s instead of 0.75 s (plain: 0.65 s); 256 KiB gains nothing more.
 */
const GUNZIP_CHUNK = 64 * 1024;

/**
 * Asked before each chunk goes on (after the records of a plain chunk were handled; before a
 * compressed chunk is inflated): a consumer whose records go to a slower sink returns a promise
 * to hold the chunk back until that sink drained (undefined: go on).
 */
export type Backpressure = () => Promise<void> | undefined;

/**
 * Parses a byte stream, calling onRecord synchronously for each record. Resolves with the
 * number of bytes read from the source (and, with `hash`, the SHA-256 of those bytes: a file's
 * identity in the ledger, computed on the pass that reads it anyway) once the source has ended
 * and every record was handled; rejects when the source fails, onRecord throws, or the signal
 * aborts.
 *
 * With `gunzip`, the source is gzip data (any number of members), inflated as it streams:
 * `bytes` and `sha256` are still those of the source's bytes, the records and their line
 * numbers those of the inflated text. Data that is not valid gzip rejects with zlib's error
 * (isCorruptGzip tells it apart).
 */
export async function parseCsv(
  source: Readable,
  onRecord: RecordHandler,
  opts: CsvParserOptions & { signal?: AbortSignal; hash?: boolean; gunzip?: boolean; backpressure?: Backpressure } = {},
): Promise<ParseResult> {
  const parser = new CsvParser(onRecord, opts);
  let atBoundary = true;
  const hash = opts.hash ? createHash('sha256') : undefined;
  const gunzip = opts.gunzip === true;
  // A consumer's wait goes before the inflating for a .gz source: from there on the records are
  // handled as zlib hands them over, so that a corrupt member stops the parse after the same
  // records whether or not anyone waits.
  const hold = (go: (err?: Error | null) => void): void => {
    const wait = opts.backpressure?.();
    if (wait === undefined) go();
    else wait.then(() => go(), go);
  };
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!gunzip) {
        bytes += chunk.length;
        hash?.update(chunk);
      }
      try {
        parser.write(chunk);
      } catch (err) {
        callback(err as Error);
        return;
      }
      if (gunzip) callback();
      else hold(callback);
    },
    final(callback) {
      try {
        atBoundary = parser.atRecordBoundary;
        parser.end();
      } catch (err) {
        callback(err as Error);
        return;
      }
      callback();
    },
  });
  if (gunzip) {
    // The stored bytes are counted and hashed before they are inflated.
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        hash?.update(chunk);
        hold((err) => (err ? callback(err) : callback(null, chunk)));
      },
    });
    await pipeline(source, tap, createGunzip({ chunkSize: GUNZIP_CHUNK }), sink, { signal: opts.signal });
  } else {
    await pipeline(source, sink, { signal: opts.signal });
  }
  const counts = { bytes, lineEndings: parser.lineEndings, endedAtBoundary: atBoundary };
  return hash ? { ...counts, sha256: hash.digest('hex') } : counts;
}

export interface ParseResult {
  /** Bytes read from the source (stored bytes, for gzip). */
  bytes: number;
  sha256?: string;
  /** Line endings of the (inflated) text: the physical lines of an input that ends with one. */
  lineEndings: number;
  /** Whether the input ended exactly at a record boundary (see CsvParser.atRecordBoundary). */
  endedAtBoundary: boolean;
}

// States of RecordBoundaryScanner, on bytes: the parser's grammar reduced to what decides where
// a record ends. Every byte the grammar reacts to (quote, comma, LF) is ASCII, and UTF-8 never
// uses ASCII bytes inside a multi-byte sequence, nor does the decoder's U+FFFD replacement of
// invalid bytes swallow one: so bytes and decoded text have the same boundaries. CR is
// ordinary text to it (CR LF ends a record at the LF, a lone CR is data) as it is to the parser.
const B_FIELD_START = 0;
const B_UNQUOTED = 1;
const B_QUOTED = 2;
const B_QUOTE_SEEN = 3;
const UTF8_BOM = [0xef, 0xbb, 0xbf];

/**
 * Finds record boundaries in a CSV byte stream without parsing it: for each target offset (in
 * increasing order), the first offset at or after it where CsvParser, reading the stream from
 * its start, would begin a new record (just after a line ending outside quotes). A parser started
 * at such an offset (with `bom: false`) reads the rest exactly as the whole-stream parser does,
 * which is what lets parallel-scan.ts split one file into byte ranges. Quote-free stretches are
 * skipped with indexOf (memchr speed); quoted fields, including ones spanning lines and chunks,
 * are followed exactly.
 */
export class RecordBoundaryScanner {
  private state = B_FIELD_START;
  /** Absolute offset of the next byte. */
  private offset = 0;
  /** Bytes of a leading BOM matched so far; -1 once past the start. */
  private bom = 0;
  private next = 0;

  constructor(
    private readonly targets: readonly number[],
    private readonly onBoundary: (offset: number) => void,
  ) {}

  get bytes(): number {
    return this.offset;
  }

  write(b: Uint8Array): void {
    const n = b.length;
    let i = 0;
    if (this.bom >= 0) {
      // The BOM the parser drops, possibly cut by chunk boundaries; a part of one is text.
      while (i < n && this.bom < 3 && b[i] === UTF8_BOM[this.bom]) {
        i++;
        this.bom++;
      }
      if (this.bom === 3) this.bom = -1;
      else if (i < n) {
        if (this.bom > 0) this.state = B_UNQUOTED;
        this.bom = -1;
      }
    }
    while (i < n) {
      const state = this.state;
      if (state === B_QUOTED) {
        const q = b.indexOf(QUOTE, i);
        if (q < 0) {
          i = n;
          break;
        }
        this.state = B_QUOTE_SEEN;
        i = q + 1;
        continue;
      }
      if (state === B_QUOTE_SEEN) {
        const c = b[i];
        if (c === QUOTE) this.state = B_QUOTED;
        else if (c === COMMA) this.state = B_FIELD_START;
        else if (c === LF) this.recordEnd(this.offset + i);
        else this.state = B_UNQUOTED;
        i++;
        continue;
      }
      // Outside quotes up to the next quote: every LF there ends a record.
      let q = b.indexOf(QUOTE, i);
      if (q < 0) q = n;
      while (this.next < this.targets.length) {
        const from = Math.max(i, this.targets[this.next] - 1 - this.offset);
        if (from >= q) break;
        const nl = b.indexOf(LF, from);
        if (nl < 0 || nl >= q) break;
        this.recordEnd(this.offset + nl);
      }
      if (q === n) {
        const last = n > i ? b[n - 1] : -1;
        if (last === COMMA || last === LF) this.state = B_FIELD_START;
        else if (last !== -1) this.state = B_UNQUOTED;
        i = n;
        break;
      }
      // A quote opens a quoted field only at a field's start; elsewhere it is text.
      const before = q > i ? b[q - 1] : -1;
      const atStart = before === -1 ? this.state === B_FIELD_START : before === COMMA || before === LF;
      this.state = atStart ? B_QUOTED : B_UNQUOTED;
      i = q + 1;
    }
    this.offset += n;
  }

  /** A record ended with the LF at absolute offset `at`. */
  private recordEnd(at: number): void {
    this.state = B_FIELD_START;
    const boundary = at + 1;
    if (this.next < this.targets.length && boundary >= this.targets[this.next]) {
      while (this.next < this.targets.length && this.targets[this.next] <= boundary) this.next++;
      this.onBoundary(boundary);
    }
  }
}

/**
 * Whether an error is zlib's verdict on its input (bad header, bad data, a CRC mismatch,
 * input that ends early), as opposed to a failure of the source or the consumer.
 */
export function isCorruptGzip(err: unknown): err is Error & { code: string; errno: number } {
  if (!(err instanceof Error) || !('errno' in err) || !('code' in err)) return false;
  return typeof err.errno === 'number' && typeof err.code === 'string' && /^Z_[A-Z_]+$/.test(err.code);
}

// The PostgreSQL v3 wire protocol, server side: frontend messages parsed from a socket's bytes,
// backend messages encoded. Only what a client such as node-pg sends and expects.

export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;
export const PROTOCOL_3 = 196608;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; version: number; params: Map<string, string> };

export type FrontendMessage =
  | { type: 'Query'; sql: string }
  | { type: 'Parse'; name: string; sql: string; paramTypes: number[] }
  | { type: 'Bind'; portal: string; statement: string; paramFormats: number[]; params: (Buffer | null)[]; resultFormats: number[] }
  | { type: 'Describe'; target: 'S' | 'P'; name: string }
  | { type: 'Execute'; portal: string; maxRows: number }
  | { type: 'Close'; target: 'S' | 'P'; name: string }
  | { type: 'Sync' }
  | { type: 'Flush' }
  | { type: 'Terminate' }
  | { type: 'Password'; password: string }
  | { type: 'Other'; code: string };

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  int16(): number {
    const v = this.buf.readInt16BE(this.at);
    this.at += 2;
    return v;
  }
  int32(): number {
    const v = this.buf.readInt32BE(this.at);
    this.at += 4;
    return v;
  }
  byte(): string {
    return String.fromCharCode(this.buf[this.at++]);
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new Error('protocol violation: unterminated string');
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return Buffer.from(b);
  }
}

/** Accumulates socket bytes and yields whole messages. */
export class MessageBuffer {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The next startup-phase packet (no type byte), if whole. */
  nextStartup(): StartupPacket | undefined {
    if (this.buf.length < 8) return undefined;
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > 10_000) throw new Error('protocol violation: bad startup packet length');
    if (this.buf.length < len) return undefined;
    const body = this.buf.subarray(4, len);
    this.buf = this.buf.subarray(len);
    const r = new Reader(Buffer.from(body));
    const code = r.int32();
    if (code === SSL_REQUEST) return { kind: 'ssl' };
    if (code === GSSENC_REQUEST) return { kind: 'gssenc' };
    if (code === CANCEL_REQUEST) return { kind: 'cancel', pid: r.int32(), secret: r.int32() };
    const params = new Map<string, string>();
    for (;;) {
      const key = r.cstring();
      if (!key) break;
      params.set(key, r.cstring());
    }
    return { kind: 'startup', version: code, params };
  }

  /** The next typed message, if whole. */
  next(): FrontendMessage | undefined {
    if (this.buf.length < 5) return undefined;
    const type = String.fromCharCode(this.buf[0]);
    const len = this.buf.readInt32BE(1);
    if (len < 4) throw new Error('protocol violation: bad message length');
    if (this.buf.length < len + 1) return undefined;
    const body = Buffer.from(this.buf.subarray(5, len + 1));
    this.buf = this.buf.subarray(len + 1);
    const r = new Reader(body);
    switch (type) {
      case 'Q':
        return { type: 'Query', sql: r.cstring() };
      case 'P': {
        const name = r.cstring();
        const sql = r.cstring();
        const n = r.int16();
        const paramTypes = Array.from({ length: n }, () => r.int32());
        return { type: 'Parse', name, sql, paramTypes };
      }
      case 'B': {
        const portal = r.cstring();
        const statement = r.cstring();
        const nf = r.int16();
        const paramFormats = Array.from({ length: nf }, () => r.int16());
        const np = r.int16();
        const params = Array.from({ length: np }, () => {
          const l = r.int32();
          return l < 0 ? null : r.bytes(l);
        });
        const nr = r.int16();
        const resultFormats = Array.from({ length: nr }, () => r.int16());
        return { type: 'Bind', portal, statement, paramFormats, params, resultFormats };
      }
      case 'D': {
        const target = r.byte() as 'S' | 'P';
        return { type: 'Describe', target, name: r.cstring() };
      }
      case 'E':
        return { type: 'Execute', portal: r.cstring(), maxRows: r.int32() };
      case 'C': {
        const target = r.byte() as 'S' | 'P';
        return { type: 'Close', target, name: r.cstring() };
      }
      case 'S':
        return { type: 'Sync' };
      case 'H':
        return { type: 'Flush' };
      case 'X':
        return { type: 'Terminate' };
      case 'p':
        return { type: 'Password', password: r.cstring() };
      default:
        return { type: 'Other', code: type };
    }
  }
}

// ---- backend messages -------------------------------------------------------------------------

class Writer {
  private parts: Buffer[] = [];
  private size = 0;
  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return this.add(b);
  }
  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.add(b);
  }
  cstring(s: string): this {
    return this.add(Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]));
  }
  add(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  message(type: string): Buffer {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(this.size + 4, 1);
    return Buffer.concat([head, ...this.parts]);
  }
}

export function authenticationOk(): Buffer {
  return new Writer().int32(0).message('R');
}

export function authenticationMd5(salt: Buffer): Buffer {
  return new Writer().int32(5).add(salt).message('R');
}

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().cstring(name).cstring(value).message('S');
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new Writer().int32(pid).int32(secret).message('K');
}

export function readyForQuery(status: string): Buffer {
  return new Writer().add(Buffer.from(status, 'latin1')).message('Z');
}

export interface FieldInfo {
  name: string;
  tableID: number;
  columnID: number;
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
}

export function rowDescription(fields: FieldInfo[]): Buffer {
  const w = new Writer().int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name).int32(f.tableID).int16(f.columnID).int32(f.dataTypeID).int16(f.dataTypeSize).int32(f.dataTypeModifier).int16(0);
  }
  return w.message('T');
}

export function dataRow(values: (string | null)[]): Buffer {
  const w = new Writer().int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else {
      const b = Buffer.from(v, 'utf8');
      w.int32(b.length).add(b);
    }
  }
  return w.message('D');
}

export function commandComplete(tag: string): Buffer {
  return new Writer().cstring(tag).message('C');
}

export const parseComplete = (): Buffer => new Writer().message('1');
export const bindComplete = (): Buffer => new Writer().message('2');
export const closeComplete = (): Buffer => new Writer().message('3');
export const noData = (): Buffer => new Writer().message('n');
export const portalSuspended = (): Buffer => new Writer().message('s');
export const emptyQueryResponse = (): Buffer => new Writer().message('I');

/** Fields of an ErrorResponse / NoticeResponse. */
export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: number;
  internalPosition?: string;
  internalQuery?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  dataType?: string;
  constraint?: string;
  file?: string;
  line?: string;
  routine?: string;
}

function fieldsMessage(type: 'E' | 'N', f: ErrorFields): Buffer {
  const w = new Writer();
  const put = (code: string, v: string | number | undefined) => {
    if (v === undefined || v === '') return;
    w.add(Buffer.from(code, 'latin1')).cstring(String(v));
  };
  put('S', f.severity);
  put('V', f.severity);
  put('C', f.code);
  put('M', f.message);
  put('D', f.detail);
  put('H', f.hint);
  put('P', f.position);
  put('p', f.internalPosition);
  put('q', f.internalQuery);
  put('W', f.where);
  put('s', f.schema);
  put('t', f.table);
  put('c', f.column);
  put('d', f.dataType);
  put('n', f.constraint);
  put('F', f.file);
  put('L', f.line);
  put('R', f.routine);
  w.add(Buffer.from([0]));
  return w.message(type);
}

export function errorResponse(f: ErrorFields): Buffer {
  return fieldsMessage('E', f);
}

export function noticeResponse(f: ErrorFields): Buffer {
  return fieldsMessage('N', f);
}

// COPY … FROM 's3://…' as Redshift runs it: the options Redshift documents (the CSV subset is
// executed, the rest refused as not emulated), objects read from the S3 test server by prefix or
// manifest, Redshift's header (per file) and empty-field rules, per-row validation against the
// target's declared types (VARCHAR lengths in bytes), load errors written to copies of
// stl_load_errors and sys_load_error_detail, and all-or-nothing insertion.

import { gunzipSync } from 'node:zlib';

import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';

import { identName, isIdent, isOp, isWord, matchParen, quoteIdent, stringValue, type Token } from './lexer.js';
import { notEmulated, syntaxError, type Refusal } from './rules.js';
import { CATALOG_SCHEMA, CHAR_CHECK_PREFIX, VARCHAR_CHECK_PREFIX } from './translate.js';
import type { ErrorFields } from './wire.js';

export interface CopyCommand {
  /** Target as a quoted (possibly qualified) identifier. */
  table: string;
  /** Target as written, lower case, for messages. */
  tableName: string;
  columns?: string[];
  source: string;
  manifest: boolean;
  gzip: boolean;
  ignoreHeader: number;
  delimiter: string;
  quote: string;
  emptyAsNull: boolean;
  blanksAsNull: boolean;
  nullAs: string;
  acceptInvChars?: string;
  maxError: number;
  truncateColumns: boolean;
  fillRecord: boolean;
  trimBlanks: boolean;
  ignoreBlankLines: boolean;
  roundDec: boolean;
  explicitIds: boolean;
  noLoad: boolean;
  dateAuto: boolean;
  timeAuto: boolean;
  region?: string;
  /** Option keywords as given (upper case), for assertions. */
  options: string[];
}

const SUFFIX = ' (refused by the Redshift stand-in)';

function copyError(message: string, reason: string, code = 'XX000'): Refusal {
  return { code, message: message + SUFFIX, reason };
}

/** COPY option strings: Redshift reads \t, \\ and octal \ddd escapes in them. */
function optionString(t: Token): string {
  return stringValue(t).replace(/\\(\\|t|n|r|[0-7]{1,3})/g, (_m, e: string) =>
    e === '\\' ? '\\' : e === 't' ? '\t' : e === 'n' ? '\n' : e === 'r' ? '\r' : String.fromCharCode(parseInt(e, 8)),
  );
}

const ROLE_ARN = /^arn:aws(-[a-z]+)*:iam::\d{12}:role\/[\w+=,.@/-]+$/;

/** Parses a COPY statement; a Refusal when Redshift (or the stand-in) would not run it. */
export function parseCopy(sig: Token[]): CopyCommand | Refusal {
  let i = 1;
  if (!isIdent(sig[i])) return syntaxError(sig[i]?.text ?? 'end of input', 'COPY without a table');
  const parts = [identName(sig[i])];
  i++;
  while (isOp(sig[i], '.') && isIdent(sig[i + 1])) {
    parts.push(identName(sig[i + 1]));
    i += 2;
  }
  let columns: string[] | undefined;
  if (isOp(sig[i], '(')) {
    const close = matchParen(sig, i);
    columns = [];
    for (let j = i + 1; j < close; j++) {
      if (isIdent(sig[j])) columns.push(identName(sig[j]));
      else if (!isOp(sig[j], ',')) return syntaxError(sig[j].text, 'COPY column list');
    }
    i = close + 1;
  }
  if (isWord(sig[i], 'TO')) return copyError('COPY … TO is not supported by Amazon Redshift (use UNLOAD)', 'COPY TO', '0A000');
  if (!isWord(sig[i], 'FROM')) return syntaxError(sig[i]?.text ?? 'end of input', 'COPY without FROM');
  i++;
  const src = sig[i];
  if (isWord(src, 'STDIN', 'PROGRAM'))
    return copyError(`COPY FROM ${src.upper} is not supported by Amazon Redshift (COPY reads S3)`, `COPY FROM ${src.upper}`, '0A000');
  if (!src || src.type !== 'string') return syntaxError(src?.text ?? 'end of input', 'COPY FROM without a quoted source');
  const source = stringValue(src);
  if (!source.startsWith('s3://')) {
    if (/^(emr|dynamodb):\/\//.test(source)) return notEmulated(`COPY FROM ${source.split(':')[0]}://`);
    return copyError(
      `LOAD source is not supported. (Hint: only S3 or DynamoDB or EMR based load is allowed): ${source}`,
      'COPY from a non-S3 source',
    );
  }
  i++;

  const cmd: CopyCommand = {
    table: parts.map(quoteIdent).join('.'),
    tableName: parts.join('.'),
    ...(columns ? { columns } : {}),
    source,
    manifest: false,
    gzip: false,
    ignoreHeader: 0,
    delimiter: '|',
    quote: '"',
    emptyAsNull: false,
    blanksAsNull: false,
    nullAs: '\\N',
    maxError: 0,
    truncateColumns: false,
    fillRecord: false,
    trimBlanks: false,
    ignoreBlankLines: false,
    roundDec: false,
    explicitIds: false,
    noLoad: false,
    dateAuto: false,
    timeAuto: false,
    options: [],
  };
  const seen = new Set<string>();
  let auth: string | undefined;
  let format: string | undefined;
  let delimiterGiven = false;
  const setAuth = (kind: string): Refusal | undefined => {
    if (auth && !(auth === 'ACCESS_KEY_ID' && (kind === 'SECRET_ACCESS_KEY' || kind === 'SESSION_TOKEN')))
      return copyError(`conflicting authorization: ${auth} and ${kind}`, 'COPY with two kinds of authorization');
    auth ??= kind;
    return undefined;
  };
  const takeString = (label: string): string | Refusal => {
    if (isWord(sig[i], 'AS')) i++;
    const t = sig[i];
    if (!t || t.type !== 'string') return syntaxError(t?.text ?? 'end of input', `${label} without a quoted value`);
    i++;
    return optionString(t);
  };
  const takeNumber = (label: string): number | Refusal => {
    if (isWord(sig[i], 'AS')) i++;
    const t = sig[i];
    if (!t || t.type !== 'number' || !/^\d+$/.test(t.text)) return syntaxError(t?.text ?? 'end of input', `${label} without an integer`);
    i++;
    return Number(t.text);
  };
  while (i < sig.length) {
    const t = sig[i];
    if (t.type !== 'word') return syntaxError(t.text, `COPY option ${t.text}`);
    const w = t.upper;
    i++;
    if (w === 'WITH' && isWord(sig[i], 'CREDENTIALS')) continue;
    if (seen.has(w)) return copyError(`conflicting or redundant options: ${w}`, `COPY with ${w} twice`, '42601');
    seen.add(w);
    cmd.options.push(w);
    switch (w) {
      case 'IAM_ROLE': {
        const r = setAuth(w);
        if (r) return r;
        if (isWord(sig[i], 'DEFAULT')) {
          i++;
          break;
        }
        const arn = takeString(w);
        if (typeof arn !== 'string') return arn;
        if (!arn.split(',').every((a) => ROLE_ARN.test(a)))
          return copyError(`Invalid IAM_ROLE value: ${arn}`, 'COPY with a malformed IAM role ARN');
        break;
      }
      case 'CREDENTIALS': {
        const r = setAuth(w);
        if (r) return r;
        const c = takeString(w);
        if (typeof c !== 'string') return c;
        const pairs = new Map(c.split(';').map((p) => p.split('=', 2) as [string, string]));
        const role = pairs.get('aws_iam_role');
        const keyed = pairs.has('aws_access_key_id') && pairs.has('aws_secret_access_key');
        if (/\s/.test(c) || (!keyed && !(role && role.split(',').every((a) => ROLE_ARN.test(a)))))
          return copyError(
            'Invalid credentials. Must be of the format: aws_iam_role=… or aws_access_key_id=…;aws_secret_access_key=…[;token=…]',
            'COPY with malformed CREDENTIALS',
          );
        break;
      }
      case 'ACCESS_KEY_ID':
      case 'SECRET_ACCESS_KEY':
      case 'SESSION_TOKEN': {
        const r = setAuth(w);
        if (r) return r;
        const s = takeString(w);
        if (typeof s !== 'string') return s;
        break;
      }
      case 'MANIFEST':
        cmd.manifest = true;
        break;
      case 'REGION': {
        const s = takeString(w);
        if (typeof s !== 'string') return s;
        cmd.region = s;
        break;
      }
      case 'FORMAT': {
        if (isWord(sig[i], 'AS')) i++;
        const f = sig[i];
        if (!isWord(f, 'CSV', 'JSON', 'AVRO', 'PARQUET', 'ORC', 'FIXEDWIDTH', 'SHAPEFILE'))
          return syntaxError(f?.text ?? 'end of input', 'FORMAT without a format');
        i++;
        if (f.upper !== 'CSV') return notEmulated(`COPY FORMAT ${f.upper}`);
        format = 'CSV';
        if (isWord(sig[i], 'QUOTE')) {
          i++;
          const q = takeString('QUOTE');
          if (typeof q !== 'string') return q;
          cmd.quote = q;
        }
        break;
      }
      case 'CSV':
        if (format) return copyError('conflicting or redundant options: CSV', 'COPY with CSV twice', '42601');
        format = 'CSV';
        if (isWord(sig[i], 'QUOTE')) {
          i++;
          const q = takeString('QUOTE');
          if (typeof q !== 'string') return q;
          cmd.quote = q;
        }
        break;
      case 'JSON':
      case 'AVRO':
      case 'PARQUET':
      case 'ORC':
      case 'FIXEDWIDTH':
      case 'SHAPEFILE':
        return notEmulated(`COPY ${w}`);
      case 'DELIMITER': {
        const d = takeString(w);
        if (typeof d !== 'string') return d;
        if (d.length !== 1 || d.charCodeAt(0) > 127)
          return copyError(`COPY delimiter must be a single ASCII character: '${d}'`, 'COPY with a bad DELIMITER');
        cmd.delimiter = d;
        delimiterGiven = true;
        break;
      }
      case 'GZIP':
        cmd.gzip = true;
        break;
      case 'BZIP2':
      case 'LZOP':
      case 'ZSTD':
        return notEmulated(`COPY ${w}`);
      case 'IGNOREHEADER': {
        const n = takeNumber(w);
        if (typeof n !== 'number') return n;
        cmd.ignoreHeader = n;
        break;
      }
      case 'EMPTYASNULL':
        cmd.emptyAsNull = true;
        break;
      case 'BLANKSASNULL':
        cmd.blanksAsNull = true;
        break;
      case 'NULL': {
        const s = takeString(w);
        if (typeof s !== 'string') return s;
        cmd.nullAs = s;
        break;
      }
      case 'DATEFORMAT':
      case 'TIMEFORMAT': {
        const s = takeString(w);
        if (typeof s !== 'string') return s;
        const dflt = w === 'DATEFORMAT' ? ['YYYY-MM-DD'] : ['YYYY-MM-DD HH:MI:SS', 'YYYY-MM-DD HH24:MI:SS'];
        if (s === 'auto') {
          if (w === 'DATEFORMAT') cmd.dateAuto = true;
          else cmd.timeAuto = true;
        } else if (!dflt.includes(s)) return notEmulated(`${w} '${s}'`);
        break;
      }
      case 'ACCEPTINVCHARS': {
        let repl = '?';
        if (isWord(sig[i], 'AS') || sig[i]?.type === 'string') {
          const s = takeString(w);
          if (typeof s !== 'string') return s;
          repl = s;
        }
        if (repl.length !== 1 || repl.charCodeAt(0) > 127 || repl === '\0')
          return copyError(`ACCEPTINVCHARS takes one ASCII character: '${repl}'`, 'COPY with a bad ACCEPTINVCHARS');
        cmd.acceptInvChars = repl;
        break;
      }
      case 'MAXERROR': {
        const n = takeNumber(w);
        if (typeof n !== 'number') return n;
        if (n > 100000) return copyError(`MAXERROR must be at most 100000: ${n}`, 'COPY with MAXERROR > 100000');
        cmd.maxError = n;
        break;
      }
      case 'IGNOREALLERRORS':
        cmd.maxError = Number.MAX_SAFE_INTEGER;
        break;
      case 'COMPUPDATE':
        if (isWord(sig[i], 'ON', 'OFF', 'TRUE', 'FALSE', 'PRESET')) {
          cmd.options[cmd.options.length - 1] = `${w} ${sig[i].upper}`;
          i++;
        }
        break;
      case 'STATUPDATE':
        if (isWord(sig[i], 'ON', 'OFF', 'TRUE', 'FALSE')) {
          cmd.options[cmd.options.length - 1] = `${w} ${sig[i].upper}`;
          i++;
        }
        break;
      case 'COMPROWS': {
        const n = takeNumber(w);
        if (typeof n !== 'number') return n;
        break;
      }
      case 'TRUNCATECOLUMNS':
        cmd.truncateColumns = true;
        break;
      case 'FILLRECORD':
        cmd.fillRecord = true;
        break;
      case 'TRIMBLANKS':
        cmd.trimBlanks = true;
        break;
      case 'IGNOREBLANKLINES':
        cmd.ignoreBlankLines = true;
        break;
      case 'ROUNDEC':
        cmd.roundDec = true;
        break;
      case 'EXPLICIT_IDS':
        cmd.explicitIds = true;
        break;
      case 'NOLOAD':
        cmd.noLoad = true;
        break;
      case 'ENCODING': {
        if (isWord(sig[i], 'AS')) i++;
        const e = sig[i];
        if (!isWord(e, 'UTF8', 'UTF16', 'UTF16LE', 'UTF16BE'))
          return syntaxError(e?.text ?? 'end of input', 'ENCODING without an encoding');
        i++;
        if (e.upper !== 'UTF8') return notEmulated(`ENCODING ${e.upper}`);
        break;
      }
      case 'ESCAPE':
      case 'REMOVEQUOTES':
        if (format === 'CSV' || seen.has('CSV') || seen.has('FORMAT'))
          return copyError(`CSV is not compatible with ${w}`, `COPY CSV with ${w}`);
        return notEmulated(`COPY ${w}`);
      case 'ACCEPTANYDATE':
      case 'ENCRYPTED':
      case 'MASTER_SYMMETRIC_KEY':
      case 'READRATIO':
      case 'SSH':
      case 'JSONPATHS':
        return notEmulated(`COPY ${w}`);
      default:
        return syntaxError(t.text, `unknown COPY option ${t.text.toUpperCase()}`);
    }
  }
  if (!auth)
    return copyError(
      'COPY requires authorization: IAM_ROLE, CREDENTIALS or ACCESS_KEY_ID and SECRET_ACCESS_KEY',
      'COPY without IAM_ROLE or CREDENTIALS',
    );
  if (auth === 'ACCESS_KEY_ID' && !seen.has('SECRET_ACCESS_KEY'))
    return copyError('ACCESS_KEY_ID needs SECRET_ACCESS_KEY', 'COPY with half a key pair');
  if (format !== 'CSV') return notEmulated('COPY without FORMAT CSV (the pipe-delimited text format)');
  if (!delimiterGiven) cmd.delimiter = ',';
  if (cmd.quote.length !== 1) return copyError(`QUOTE must be a single character: '${cmd.quote}'`, 'COPY with a bad QUOTE');
  if (cmd.quote === cmd.delimiter) return copyError('COPY delimiter and quote must be different', 'COPY with QUOTE = DELIMITER');
  return cmd;
}

// ---- execution ------------------------------------------------------------------------------

/** A failed COPY: the error the client gets. */
export class CopyFailure extends Error {
  constructor(readonly fields: ErrorFields) {
    super(fields.message);
  }
}

export interface LoadError {
  file: string;
  line: number;
  column: string;
  type: string;
  length: string;
  position: number;
  rawLine: string;
  rawField: string;
  code: number;
  reason: string;
}

export interface CopyContext {
  /** Runs SQL on the client's own backend session. */
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  s3: S3Client;
  /** Region of the S3 server (and of the "cluster"). */
  region: string;
  /** An explicit transaction block is open. */
  inBlock: boolean;
  /** Writes load errors where the client can read them, outside its transaction. */
  recordErrors(errors: LoadError[], tableId: number): Promise<void>;
  notice(message: string): void;
}

export interface CopyResult {
  rows: number;
  files: string[];
  errors: LoadError[];
}

interface TargetColumn {
  name: string;
  typname: string;
  category: string;
  typmod: number;
  notNull: boolean;
  hasDefault: boolean;
  identity: string;
  bytes?: number;
  char: boolean;
}

function failure(table: string, extra = ''): CopyFailure {
  return new CopyFailure({
    severity: 'ERROR',
    code: 'XX000',
    message: `Load into table '${table.split('.').pop()}' failed. Check 'sys_load_error_detail' system table for details.${extra}`,
  });
}

function plainFailure(message: string, code = 'XX000'): CopyFailure {
  return new CopyFailure({ severity: 'ERROR', code, message });
}

function parseS3Url(url: string): { bucket: string; key: string } {
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? { bucket: rest, key: '' } : { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

async function getObject(s3: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch (err) {
    const name = (err as { name?: string }).name;
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return undefined;
    if (name === 'NoSuchBucket')
      throw plainFailure(`S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,Bucket ${bucket}`);
    throw err;
  }
}

async function listFiles(ctx: CopyContext, cmd: CopyCommand): Promise<string[]> {
  const { bucket, key } = parseS3Url(cmd.source);
  if (!cmd.manifest) {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await ctx.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, ContinuationToken: token }));
        for (const o of res.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchBucket')
        throw plainFailure(`S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,Bucket ${bucket}`);
      throw err;
    }
    if (keys.length === 0) throw plainFailure(`The specified S3 prefix '${key}' does not exist`);
    return keys.sort().map((k) => `s3://${bucket}/${k}`);
  }
  const body = await getObject(ctx.s3, bucket, key);
  if (!body)
    throw plainFailure(
      `Problem reading manifest file - S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey,Key ${key}`,
    );
  let manifest: unknown;
  try {
    manifest = JSON.parse(body.toString('utf8'));
  } catch {
    throw plainFailure(`Manifest file is not in correct json format: ${cmd.source}`);
  }
  const entries = (manifest as { entries?: unknown }).entries;
  if (!Array.isArray(entries)) throw plainFailure(`Manifest file is not in correct json format (no "entries" array): ${cmd.source}`);
  const out: string[] = [];
  for (const e of entries as unknown[]) {
    const url = (e as { url?: unknown }).url;
    const mandatory = (e as { mandatory?: unknown }).mandatory ?? false;
    if (typeof url !== 'string' || !url.startsWith('s3://') || typeof mandatory !== 'boolean')
      throw plainFailure(`Manifest file is not in correct json format (entry ${JSON.stringify(e)}): ${cmd.source}`);
    const loc = parseS3Url(url);
    if (!loc.key || loc.key.endsWith('/')) throw plainFailure(`COPY with MANIFEST parameter requires full path of an S3 object: ${url}`);
    const exists = await getObject(ctx.s3, loc.bucket, loc.key);
    if (!exists) {
      if (mandatory) throw plainFailure(`Manifest file has mandatory file that does not exist: ${url}`);
      continue;
    }
    out.push(url);
  }
  // Regardless of the mandatory flags, COPY terminates if no files are found.
  if (out.length === 0) throw plainFailure(`No files found to load from manifest ${cmd.source}`);
  return out;
}

async function describeTarget(ctx: CopyContext, cmd: CopyCommand): Promise<{ oid: number; columns: TargetColumn[] }> {
  const oidRes = await ctx.query('SELECT $1::regclass::oid::int AS oid', [cmd.table]);
  const oid = Number(oidRes.rows[0]['oid']);
  const res = await ctx.query(
    `SELECT a.attname, t.typname, t.typcategory, a.atttypmod, a.attnotnull, a.atthasdef, a.attidentity,
            (SELECT c.conname FROM pg_constraint c
              WHERE c.conrelid = a.attrelid AND c.contype = 'c' AND c.conkey = ARRAY[a.attnum]::int2[]
                AND (c.conname LIKE '${VARCHAR_CHECK_PREFIX}%' OR c.conname LIKE '${CHAR_CHECK_PREFIX}%')
              LIMIT 1) AS bytecheck
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  );
  const columns = res.rows.map((r) => {
    const typname = String(r['typname']);
    const typmod = Number(r['atttypmod']);
    const check = r['bytecheck'] as string | null;
    let bytes: number | undefined;
    const m = check ? /^rs(?:vc|ch)_(\d+)_/.exec(check) : null;
    if (m) bytes = Number(m[1]);
    else if ((typname === 'varchar' || typname === 'bpchar') && typmod > 4) bytes = typmod - 4;
    else if (typname === 'text') bytes = 256;
    return {
      name: String(r['attname']),
      typname,
      category: String(r['typcategory']),
      typmod,
      notNull: r['attnotnull'] === true,
      hasDefault: r['atthasdef'] === true,
      identity: typeof r['attidentity'] === 'string' ? r['attidentity'] : '',
      ...(bytes !== undefined ? { bytes } : {}),
      char: typname === 'bpchar',
    };
  });
  return { oid, columns };
}

interface Field {
  buf: Buffer;
  quoted: boolean;
}

interface CsvRecord {
  fields: Field[];
  line: number;
  raw: Buffer;
  error?: { code: number; reason: string };
}

/** Redshift CSV: quote doubling, whitespace around quoted fields ignored, newline-terminated records. */
function parseCsv(buf: Buffer, start: number, firstLine: number, delim: number, quote: number): CsvRecord[] {
  const out: CsvRecord[] = [];
  const len = buf.length;
  let i = start;
  let line = firstLine;
  const blank = (b: number | undefined) => (b === 0x20 || b === 0x09) && b !== delim;
  while (i < len) {
    const recStart = i;
    const recLine = line;
    const fields: Field[] = [];
    let error: CsvRecord['error'];
    for (;;) {
      let j = i;
      while (blank(buf[j])) j++;
      if (buf[j] === quote) {
        j++;
        const parts: Buffer[] = [];
        let seg = j;
        let closed = false;
        while (j < len) {
          if (buf[j] === quote) {
            if (buf[j + 1] === quote) {
              parts.push(buf.subarray(seg, j + 1));
              j += 2;
              seg = j;
              continue;
            }
            parts.push(buf.subarray(seg, j));
            j++;
            closed = true;
            break;
          }
          if (buf[j] === 0x0a) line++;
          j++;
        }
        if (!closed) {
          error ??= { code: 1216, reason: 'Unterminated quoted field: missing closing quote' };
          parts.push(buf.subarray(seg, j));
        }
        while (blank(buf[j])) j++;
        if (j < len && buf[j] !== 0x0a && buf[j] !== delim) {
          error ??= {
            code: 1216,
            reason: `Invalid quote formatting for CSV: unexpected character after a closing quote at position ${j - recStart}`,
          };
          while (j < len && buf[j] !== 0x0a && buf[j] !== delim) j++;
        }
        fields.push({ buf: Buffer.concat(parts), quoted: true });
      } else {
        let k = i;
        while (k < len && buf[k] !== delim && buf[k] !== 0x0a) {
          if (buf[k] === quote)
            error ??= {
              code: 1216,
              reason: `Invalid quote formatting for CSV: a quote inside an unquoted field at position ${k - recStart}`,
            };
          k++;
        }
        fields.push({ buf: buf.subarray(i, k), quoted: false });
        j = k;
      }
      if (j < len && buf[j] === delim) {
        i = j + 1;
        continue;
      }
      const recEnd = j;
      if (j < len) line++;
      i = j < len ? j + 1 : len;
      out.push({ fields, line: recLine, raw: buf.subarray(recStart, recEnd), ...(error ? { error } : {}) });
      break;
    }
  }
  return out;
}

const FATAL_DECODER = new TextDecoder('utf-8', { fatal: true });

/** Length of the valid UTF-8 sequence at buf[i], or 0. */
function utf8SeqLength(buf: Buffer, i: number): number {
  const b = buf[i];
  const n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (n <= 1) return n;
  if (i + n > buf.length) return 0;
  try {
    FATAL_DECODER.decode(buf.subarray(i, i + n));
    return n;
  } catch {
    return 0;
  }
}

/** Decodes a field; invalid bytes are replaced (ACCEPTINVCHARS) or reported. */
function decodeField(buf: Buffer, replacement?: string): { value: string } | { badHex: string; position: number } {
  try {
    return { value: FATAL_DECODER.decode(buf) };
  } catch {
    const out: number[] = [];
    for (let i = 0; i < buf.length;) {
      const n = utf8SeqLength(buf, i);
      if (n === 0) {
        if (replacement === undefined) return { badHex: buf[i].toString(16).padStart(2, '0'), position: i };
        out.push(replacement.charCodeAt(0));
        i++;
      } else {
        for (let k = 0; k < n; k++) out.push(buf[i + k]);
        i += n;
      }
    }
    return { value: Buffer.from(out).toString('utf8') };
  }
}

/** raw_line as Redshift shows it: multibyte characters replaced by periods, 1024 bytes at most. */
function rawText(buf: Buffer): string {
  return buf
    .toString('utf8')
    .replace(/[^\x01-\x7f]/gu, '.')
    .slice(0, 1024);
}

/** Cuts a string to at most `bytes` UTF-8 bytes, on a character boundary. */
function truncateBytes(s: string, bytes: number): string {
  let out = '';
  let used = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (used + n > bytes) break;
    out += ch;
    used += n;
  }
  return out;
}

const INT_RANGES: Record<string, [bigint, bigint, string]> = {
  int2: [-32768n, 32767n, 'Short'],
  int4: [-2147483648n, 2147483647n, 'Integer'],
  int8: [-9223372036854775808n, 9223372036854775807n, 'Long'],
};

type Converted = { value: string | null | typeof DEFAULT } | { code: number; reason: string; position: number };

/** The DEFAULT keyword in place of a value (a NULL into a NOT NULL column that has a default). */
const DEFAULT = Symbol('default');

/** One field into one column, by Redshift's rules. */
function convert(cmd: CopyCommand, col: TargetColumn, field: Field): Converted {
  const decoded = decodeField(field.buf, col.category === 'S' && !col.char ? cmd.acceptInvChars : undefined);
  if ('badHex' in decoded) {
    return {
      code: 1220,
      reason: `String contains invalid or unsupported UTF8 codepoints. Bad UTF8 hex sequence: ${decoded.badHex} (error 3)`,
      position: decoded.position,
    };
  }
  let s = decoded.value;
  const nul = (): Converted => {
    if (!col.notNull) return { value: null };
    if (col.hasDefault) return { value: DEFAULT };
    return { code: 1213, reason: 'Missing data for not-null field', position: 0 };
  };
  if (s === cmd.nullAs) return nul();
  if (col.category === 'S') {
    if (s === '') return cmd.emptyAsNull ? nul() : { value: '' };
    if (cmd.blanksAsNull && /^[ \t]+$/.test(s)) return nul();
    if (s.includes('\0')) return { code: 1220, reason: 'String contains a NUL character (cannot be stored)', position: s.indexOf('\0') };
    if (cmd.trimBlanks && !col.char) s = s.replace(/[ \t]+$/, '');
    if (col.char) {
      const bad = [...s].findIndex((c) => c.charCodeAt(0) > 127);
      if (bad >= 0) {
        const hex = [...Buffer.from([...s][bad])].map((b) => b.toString(16).padStart(2, '0')).join(' ');
        return {
          code: 1220,
          reason: `Multibyte character not supported for CHAR (Hint: Try using VARCHAR). Invalid char: ${hex}`,
          position: bad,
        };
      }
    }
    if (col.bytes !== undefined && Buffer.byteLength(s) > col.bytes) {
      const cut = truncateBytes(s, col.bytes);
      // Extra characters that are all blanks are dropped, as on INSERT.
      if (cmd.truncateColumns || /^ +$/.test(s.slice(cut.length))) s = cut;
      else return { code: 1204, reason: 'String length exceeds DDL length', position: 0 };
    }
    return { value: s };
  }
  // Empty and blank fields of other types are NULL.
  if (/^[ \t]*$/.test(s)) return nul();
  // Blanks around a number or date are fine; a CR (of a CRLF line end) is not.
  const trimmed = s.replace(/^[ \t]+|[ \t]+$/g, '');
  const range = INT_RANGES[col.typname];
  if (range) {
    const m = /^[+-]?\d+$/.exec(trimmed);
    if (!m) {
      const pos = [...trimmed].findIndex((c, k) => !(/\d/.test(c) || (k === 0 && /[+-]/.test(c))));
      return {
        code: 1207,
        reason: `Invalid digit, Value '${trimmed[pos] ?? trimmed}', Pos ${Math.max(0, pos)}, Type: ${range[2]}`,
        position: Math.max(0, pos),
      };
    }
    const v = BigInt(trimmed);
    if (v < range[0] || v > range[1]) return { code: 1222, reason: `Overflow, Value '${trimmed}', Type: ${range[2]}`, position: 0 };
    return { value: trimmed };
  }
  if (col.typname === 'numeric') {
    if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(trimmed)) {
      const pos = [...trimmed].findIndex((c, k) => !(/[\d.]/.test(c) || (k === 0 && /[+-]/.test(c))));
      return {
        code: 1207,
        reason: `Invalid digit, Value '${trimmed[pos] ?? trimmed}', Pos ${Math.max(0, pos)}, Type: Decimal`,
        position: Math.max(0, pos),
      };
    }
    if (!cmd.roundDec && col.typmod > 4) {
      // COPY truncates extra decimal places (ROUNDEC rounds, as INSERT does).
      const scale = (col.typmod - 4) & 0xffff;
      const dot = trimmed.indexOf('.');
      if (dot >= 0 && trimmed.length - dot - 1 > scale) return { value: trimmed.slice(0, scale === 0 ? dot : dot + 1 + scale) };
    }
    return { value: trimmed };
  }
  if (col.typname === 'float4' || col.typname === 'float8') {
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(trimmed) && !/^[+-]?(inf|infinity|nan)$/i.test(trimmed)) {
      return {
        code: 1207,
        reason: `Invalid digit, Value '${trimmed}', Pos 0, Type: ${col.typname === 'float4' ? 'Float' : 'Double'}`,
        position: 0,
      };
    }
    return { value: trimmed };
  }
  if (col.typname === 'bool') {
    if (!/^(t|true|y|yes|1|f|false|n|no|0)$/i.test(trimmed))
      return { code: 1210, reason: `Invalid boolean value: '${trimmed}'`, position: 0 };
    return { value: /^(t|true|y|yes|1)$/i.test(trimmed) ? 'true' : 'false' };
  }
  if (col.typname === 'date' && !cmd.dateAuto && !/^\d{4}-\d{2}-\d{2}$/.test(trimmed)) {
    return { code: 1205, reason: `Invalid Date Format - length must be 10 or more: '${trimmed}' (DATEFORMAT 'YYYY-MM-DD')`, position: 0 };
  }
  if ((col.typname === 'timestamp' || col.typname === 'timestamptz') && !cmd.timeAuto) {
    const tz = col.typname === 'timestamptz' ? '([+-]\\d{2}(:?\\d{2})?)?' : '';
    if (!new RegExp(`^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}(\\.\\d{1,6})?${tz}$`).test(trimmed))
      return { code: 1206, reason: `Invalid timestamp format or value [YYYY-MM-DD HH24:MI:SS]: '${trimmed}'`, position: 0 };
  }
  return { value: trimmed };
}

interface PendingRow {
  values: (string | null | typeof DEFAULT)[];
  file: string;
  line: number;
  raw: Buffer;
}

/** Redshift's load-error code for a PostgreSQL error an INSERT raised. */
function loadCodeFor(sqlstate: string | undefined): number {
  switch (sqlstate) {
    case '22001':
    case '22003':
      return 1204;
    case '22P02':
      return 1207;
    case '22007':
    case '22008':
      return 1206;
    case '23502':
      return 1213;
    default:
      return 1216;
  }
}

/** Runs a parsed COPY on the client's session. Throws CopyFailure when it fails. */
export async function runCopy(cmd: CopyCommand, ctx: CopyContext): Promise<CopyResult> {
  if (cmd.region !== undefined && cmd.region !== ctx.region) {
    throw plainFailure(
      `S3ServiceException:The bucket you are attempting to access must be addressed using the specified endpoint (the bucket is in ${ctx.region}, REGION says ${cmd.region})`,
    );
  }
  const { oid, columns } = await describeTarget(ctx, cmd);
  let targets: TargetColumn[];
  if (cmd.columns) {
    targets = cmd.columns.map((c) => {
      const col = columns.find((x) => x.name === c);
      if (!col) throw plainFailure(`column "${c}" of relation "${cmd.tableName}" does not exist`, '42703');
      if (col.identity === 'a' && !cmd.explicitIds)
        throw plainFailure(`cannot set an identity column to a value (column "${c}"; use EXPLICIT_IDS)`);
      return col;
    });
  } else {
    targets = columns.filter((c) => c.identity !== 'a' || cmd.explicitIds);
  }
  const files = await listFiles(ctx, cmd);
  const errors: LoadError[] = [];
  const limit = Math.max(1, cmd.maxError);
  const rows: PendingRow[] = [];
  const addError = (e: LoadError) => {
    errors.push(e);
  };
  for (const file of files) {
    const { bucket, key } = parseS3Url(file);
    let body = await getObject(ctx.s3, bucket, key);
    if (!body) throw plainFailure(`S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey,Key ${key}`);
    if (cmd.gzip && body.length > 0) {
      try {
        body = gunzipSync(body);
      } catch (err) {
        throw plainFailure(`gzip: ${(err as Error).message} (file ${file})`);
      }
    }
    // IGNOREHEADER skips lines of every file.
    let start = 0;
    for (let h = 0; h < cmd.ignoreHeader && start < body.length; h++) {
      const nl = body.indexOf(0x0a, start);
      start = nl < 0 ? body.length : nl + 1;
    }
    const records = parseCsv(body, start, cmd.ignoreHeader + 1, cmd.delimiter.charCodeAt(0), cmd.quote.charCodeAt(0));
    for (const rec of records) {
      const base = { file, line: rec.line, rawLine: rawText(rec.raw) };
      if (rec.raw.length === 0 && rec.fields.length === 1 && !rec.fields[0].quoted) {
        if (cmd.ignoreBlankLines) continue;
        addError({
          ...base,
          column: '',
          type: '',
          length: '',
          position: 0,
          rawField: '',
          code: 1211,
          reason: 'Input line contained no data',
        });
      } else if (rec.error) {
        addError({ ...base, column: '', type: '', length: '', position: 0, rawField: '', ...rec.error });
      } else if (rec.fields.length > targets.length) {
        addError({ ...base, column: '', type: '', length: '', position: 0, rawField: '', code: 1202, reason: 'Extra column(s) found' });
      } else if (rec.fields.length < targets.length && !cmd.fillRecord) {
        const col = targets[rec.fields.length];
        addError({
          ...base,
          column: col.name,
          type: col.typname,
          length: String(col.bytes ?? ''),
          position: 0,
          rawField: '',
          code: 1214,
          reason: 'Delimiter not found',
        });
      } else {
        const values: PendingRow['values'] = [];
        let bad = false;
        for (let c = 0; c < targets.length; c++) {
          const col = targets[c];
          const field = rec.fields[c] ?? { buf: Buffer.alloc(0), quoted: false };
          const r = convert(cmd, col, field);
          if ('code' in r) {
            addError({
              ...base,
              column: col.name,
              type: col.typname,
              length: String(col.bytes ?? ''),
              position: r.position,
              rawField: rawText(field.buf),
              code: r.code,
              reason: r.reason,
            });
            bad = true;
            break;
          }
          values.push(r.value);
        }
        if (!bad) rows.push({ values, file, line: rec.line, raw: rec.raw });
      }
      if (errors.length >= limit) break;
    }
    if (errors.length >= limit) break;
  }
  if (errors.length >= limit && errors.length > 0 && cmd.maxError < Number.MAX_SAFE_INTEGER) {
    await ctx.recordErrors(errors, oid);
    throw failure(cmd.tableName);
  }
  let loaded = 0;
  if (!cmd.noLoad && rows.length > 0) {
    loaded = await insertRows(ctx, cmd, targets, rows, errors, limit);
    if (errors.length >= limit && cmd.maxError < Number.MAX_SAFE_INTEGER) {
      await ctx.recordErrors(errors, oid);
      throw failure(cmd.tableName);
    }
  }
  if (errors.length > 0) {
    await ctx.recordErrors(errors, oid);
    ctx.notice(
      `Load into table '${cmd.tableName.split('.').pop()}' completed, ${errors.length} record(s) could not be loaded.  Check 'sys_load_error_detail' system table for details.`,
    );
  }
  ctx.notice(`Load into table '${cmd.tableName.split('.').pop()}' completed, ${cmd.noLoad ? 0 : loaded} record(s) loaded successfully.`);
  return { rows: cmd.noLoad ? 0 : loaded, files, errors };
}

/** Inserts the rows (the caller holds a transaction or savepoint around it). Returns how many went in. */
async function insertRows(
  ctx: CopyContext,
  cmd: CopyCommand,
  targets: TargetColumn[],
  rows: PendingRow[],
  errors: LoadError[],
  limit: number,
): Promise<number> {
  const cols = targets.map((c) => quoteIdent(c.name)).join(', ');
  const overriding = cmd.explicitIds && targets.some((c) => c.identity === 'a') ? ' OVERRIDING SYSTEM VALUE' : '';
  const perRow = Math.max(1, targets.length);
  const batchSize = Math.max(1, Math.min(1000, Math.floor(30000 / perRow)));
  const insert = async (batch: PendingRow[]) => {
    const params: (string | null)[] = [];
    const tuples = batch.map((r) => {
      const cells = r.values.map((v) => {
        if (v === DEFAULT) return 'DEFAULT';
        params.push(v);
        return `$${params.length}`;
      });
      return `(${cells.join(', ')})`;
    });
    await ctx.query(`INSERT INTO ${cmd.table} (${cols})${overriding} VALUES ${tuples.join(', ')}`, params);
  };
  let loaded = 0;
  for (let at = 0; at < rows.length; at += batchSize) {
    const batch = rows.slice(at, at + batchSize);
    await ctx.query('SAVEPOINT rs_copy_batch');
    try {
      await insert(batch);
      await ctx.query('RELEASE SAVEPOINT rs_copy_batch');
      loaded += batch.length;
      continue;
    } catch {
      await ctx.query('ROLLBACK TO SAVEPOINT rs_copy_batch');
      await ctx.query('RELEASE SAVEPOINT rs_copy_batch');
    }
    // Row by row, to find the rows PostgreSQL refuses.
    for (const row of batch) {
      await ctx.query('SAVEPOINT rs_copy_row');
      try {
        await insert([row]);
        await ctx.query('RELEASE SAVEPOINT rs_copy_row');
        loaded++;
      } catch (err) {
        await ctx.query('ROLLBACK TO SAVEPOINT rs_copy_row');
        await ctx.query('RELEASE SAVEPOINT rs_copy_row');
        const e = err as { code?: string; message?: string; column?: string };
        const col = targets.find((c) => c.name === e.column);
        errors.push({
          file: row.file,
          line: row.line,
          column: col?.name ?? '',
          type: col?.typname ?? '',
          length: String(col?.bytes ?? ''),
          position: 0,
          rawLine: rawText(row.raw),
          rawField: '',
          code: loadCodeFor(e.code),
          reason: e.message ?? String(err),
        });
        if (errors.length >= limit) return loaded;
      }
    }
  }
  return loaded;
}

/** DDL of the load-error tables, with Redshift's column names and types. */
export const LOAD_ERROR_DDL = `
CREATE SCHEMA IF NOT EXISTS ${CATALOG_SCHEMA};
CREATE TABLE IF NOT EXISTS ${CATALOG_SCHEMA}.stl_load_errors (
  userid integer, slice integer, tbl integer, starttime timestamp, session integer, query integer,
  filename character(256), line_number bigint, colname character(127), type character(10), col_length character(10),
  position integer, raw_line character(1024), raw_field_value character(1024), err_code integer, err_reason character(100),
  is_partial integer, start_offset bigint, copy_job_id bigint
);
CREATE TABLE IF NOT EXISTS ${CATALOG_SCHEMA}.sys_load_error_detail (
  user_id integer, query_id bigint, transaction_id bigint, session_id integer, database_name character(64), table_id integer,
  start_time timestamp, file_name character(256), line_number bigint, column_name character(127), column_type character(10),
  column_length character(10), position integer, error_code integer, error_message character(512)
);
GRANT USAGE ON SCHEMA ${CATALOG_SCHEMA} TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA ${CATALOG_SCHEMA} TO PUBLIC;
`;

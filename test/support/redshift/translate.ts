// How a Redshift statement runs on the PostgreSQL behind the stand-in: Redshift-only spellings
// become PostgreSQL ones, and DDL gets Redshift's column semantics (VARCHAR(n) in bytes, TEXT as
// VARCHAR(256), unenforced keys, DECIMAL(18,0) by default).

import { randomBytes } from 'node:crypto';

import { identName, isIdent, isOp, isWord, matchParen, quoteIdent, quoteLiteral, significant, type Token } from './lexer.js';
import { FORWARDED_PARAMETERS, notEmulated, referencedRelations, unsupported, type Refusal } from './rules.js';

/** Values a statement may refer to that live in the session. */
export interface SessionValues {
  lastCopyId: number;
  lastCopyCount: number;
}

export type Plan =
  | { kind: 'exec'; sql: string; map: PositionMap; lockTables?: string[]; keyColumns?: { table: string; columns: string[] } }
  | { kind: 'noop'; tag: string }
  | { kind: 'copy' }
  | { kind: 'alter-varchar'; table: string; column: string; length: number }
  | { kind: 'refuse'; refusal: Refusal };

/** Schema holding the stand-in's copies of Redshift's load-error system tables. */
export const CATALOG_SCHEMA = 'redshift_standin';

/** Name prefixes of the CHECK constraints that give VARCHAR and CHAR their byte semantics. */
export const VARCHAR_CHECK_PREFIX = 'rsvc_';
export const CHAR_CHECK_PREFIX = 'rsch_';

export const MAX_VARCHAR = 65535;
export const MAX_CHAR = 4096;

/** Maps positions in the translated SQL back to the statement the client sent. */
export class PositionMap {
  private readonly spans: { out: number; src: number; len: number }[] = [];
  private length = 0;
  private readonly parts: string[] = [];

  add(text: string, src: number, srcLen = text.length): void {
    if (!text) return;
    this.spans.push({ out: this.length, src, len: Math.max(1, srcLen) });
    this.parts.push(text);
    this.length += text.length;
  }

  text(): string {
    return this.parts.join('');
  }

  /** 1-based character position in the output → 1-based position in the source. */
  source(position: number): number {
    const p = position - 1;
    let span = this.spans[0];
    for (const s of this.spans) {
      if (s.out > p) break;
      span = s;
    }
    if (!span) return position;
    return span.src + Math.min(p - span.out, span.len - 1) + 1;
  }
}

function nextSig(tokens: Token[], i: number, to = tokens.length): number {
  for (let j = i + 1; j < to; j++) if (tokens[j].type !== 'ws') return j;
  return -1;
}

function matchParenFull(tokens: Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    if (isOp(tokens[i], '(')) depth++;
    else if (isOp(tokens[i], ')')) {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

const LOAD_ERROR_TABLES = new Set(['SYS_LOAD_ERROR_DETAIL', 'STL_LOAD_ERRORS']);

/** What version() says on Redshift (a loader may detect Redshift by it). */
export const REDSHIFT_VERSION =
  'PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), Redshift 1.0.77467';

/** Emits tokens[from, to) with the expression-level rewrites. */
export function emitTokens(tokens: Token[], from: number, to: number, out: PositionMap, vals: SessionValues): void {
  let prevSig: Token | undefined;
  let prevPrevSig: Token | undefined;
  for (let i = from; i < to; i++) {
    const t = tokens[i];
    if (t.type === 'ws') {
      out.add(t.text, t.start);
      continue;
    }
    const nx = nextSig(tokens, i, to);
    const next = nx >= 0 ? tokens[nx] : undefined;
    const afterDot = isOp(prevSig, '.');
    let consumedTo = i;
    let emitted = false;
    if (t.type === 'qident' || (t.type === 'word' && t.text.startsWith('#'))) {
      // downcase_delimited_identifier is on by default: "Foo" names foo. #name is a plain (temporary) table name.
      out.add(quoteIdent(identName(t)), t.start, t.text.length);
      emitted = true;
    } else if (t.type === 'word' && !afterDot) {
      const emptyCall = isOp(next, '(') && isOp(tokens[nextSig(tokens, nx, to)], ')');
      const closeOfEmpty = emptyCall ? nextSig(tokens, nx, to) : -1;
      switch (t.upper) {
        case 'GETDATE':
          if (emptyCall) {
            // The statement's start (even inside a transaction block) to the second, in the session time zone, without a zone.
            out.add("date_trunc('second', statement_timestamp()::timestamp)", t.start, t.text.length);
            consumedTo = closeOfEmpty;
            emitted = true;
          }
          break;
        case 'SYSDATE':
          if (!isOp(next, '(')) {
            out.add('localtimestamp', t.start, t.text.length);
            emitted = true;
          }
          break;
        case 'VERSION':
          if (emptyCall) {
            out.add(quoteLiteral(REDSHIFT_VERSION), t.start, t.text.length);
            consumedTo = closeOfEmpty;
            emitted = true;
          }
          break;
        case 'NVL':
          if (isOp(next, '(')) {
            out.add('coalesce', t.start, t.text.length);
            emitted = true;
          }
          break;
        case 'LEN':
          if (isOp(next, '(')) {
            out.add('length', t.start, t.text.length);
            emitted = true;
          }
          break;
        case 'PG_LAST_COPY_ID':
        case 'PG_LAST_COPY_COUNT':
          if (emptyCall) {
            out.add(String(t.upper === 'PG_LAST_COPY_ID' ? vals.lastCopyId : vals.lastCopyCount), t.start, t.text.length);
            consumedTo = closeOfEmpty;
            emitted = true;
          }
          break;
        case 'MINUS':
          if (prevSig && !(prevSig.type === 'op' && prevSig.text !== ')')) {
            out.add('EXCEPT', t.start, t.text.length);
            emitted = true;
          }
          break;
        case 'PG_CATALOG':
          if (isOp(next, '.')) {
            const name = tokens[nextSig(tokens, nx, to)];
            if (name?.type === 'word' && LOAD_ERROR_TABLES.has(name.upper)) {
              out.add(CATALOG_SCHEMA, t.start, t.text.length);
              emitted = true;
            }
          }
          break;
        case 'MAX':
          if (isOp(prevSig, '(') && prevPrevSig?.type === 'word') {
            if (['VARCHAR', 'VARYING', 'NVARCHAR'].includes(prevPrevSig.upper)) {
              out.add(String(MAX_VARCHAR), t.start, t.text.length);
              emitted = true;
            } else if (['CHAR', 'CHARACTER', 'NCHAR', 'BPCHAR'].includes(prevPrevSig.upper)) {
              out.add(String(MAX_CHAR), t.start, t.text.length);
              emitted = true;
            }
          }
          break;
        case 'LISTAGG':
          if (isOp(next, '(')) {
            consumedTo = emitListagg(tokens, i, nx, to, out, vals);
            emitted = true;
          }
          break;
        case 'DATEADD':
        case 'DATEDIFF':
          if (isOp(next, '(')) {
            const done = emitDateFunction(tokens, i, nx, out, vals);
            if (done > 0) {
              consumedTo = done;
              emitted = true;
            }
          }
          break;
        default:
          if (LOAD_ERROR_TABLES.has(t.upper)) {
            out.add(`${CATALOG_SCHEMA}.${t.text.toLowerCase()}`, t.start, t.text.length);
            emitted = true;
          }
      }
    } else if (t.type === 'word' && afterDot && LOAD_ERROR_TABLES.has(t.upper)) {
      out.add(t.text.toLowerCase(), t.start, t.text.length);
      emitted = true;
    }
    if (!emitted) out.add(t.text, t.start);
    else if (consumedTo > i) i = consumedTo;
    prevPrevSig = prevSig;
    prevSig = tokens[i];
  }
}

/** The top-level argument ranges of the call whose '(' is at `open`. */
function callArgs(tokens: Token[], open: number): { close: number; args: [number, number][] } {
  const close = matchParenFull(tokens, open);
  const args: [number, number][] = [];
  let depth = 0;
  let argStart = open + 1;
  for (let i = open + 1; i < close; i++) {
    if (isOp(tokens[i], '(')) depth++;
    if (isOp(tokens[i], ')')) depth--;
    if (depth === 0 && isOp(tokens[i], ',')) {
      args.push([argStart, i]);
      argStart = i + 1;
    }
  }
  args.push([argStart, close]);
  return { close, args };
}

/** Redshift date parts (and their abbreviations) → PostgreSQL's. */
const DATE_PARTS: Record<string, string> = {};
for (const [part, names] of Object.entries({
  microsecond: ['microsecond', 'microseconds', 'microsec', 'microsecs', 'microsecon', 'usecond', 'useconds', 'us', 'usec', 'usecs'],
  millisecond: ['millisecond', 'milliseconds', 'ms', 'msec', 'msecs', 'msecond', 'mseconds', 'millisec', 'millisecs', 'millisecon'],
  second: ['second', 'seconds', 's', 'sec', 'secs'],
  minute: ['minute', 'minutes', 'm', 'min', 'mins'],
  hour: ['hour', 'hours', 'h', 'hr', 'hrs'],
  day: ['day', 'days', 'd'],
  month: ['month', 'months', 'mon', 'mons'],
  year: ['year', 'years', 'y', 'yr', 'yrs'],
}))
  for (const n of names) DATE_PARTS[n] = part;
const PART_SECONDS: Record<string, number> = { microsecond: 1e-6, millisecond: 1e-3, second: 1, minute: 60, hour: 3600, day: 86400 };

/**
 * DATEADD(part, n, t) → t + n * interval; DATEDIFF(part, a, b) → the number of part boundaries
 * crossed, as Redshift counts them. Returns the last index used, or 0 to leave the call alone.
 */
function emitDateFunction(tokens: Token[], at: number, open: number, out: PositionMap, vals: SessionValues): number {
  const { close, args } = callArgs(tokens, open);
  if (args.length !== 3) return 0;
  const partTok = significant(tokens.slice(args[0][0], args[0][1]));
  if (partTok.length !== 1 || !(partTok[0].type === 'word' || partTok[0].type === 'string')) return 0;
  const raw = partTok[0].type === 'string' ? partTok[0].text.slice(1, -1) : partTok[0].text;
  const part = DATE_PARTS[raw.toLowerCase()];
  if (!part) return 0;
  const src = tokens[at].start;
  const arg = (k: number, asTimestamp: boolean) => {
    out.add('(', src);
    emitTokens(tokens, args[k][0], args[k][1], out, vals);
    out.add(asTimestamp ? ')::timestamp' : ')', src);
  };
  const lone = (k: number) => {
    const sig = significant(tokens.slice(args[k][0], args[k][1]));
    return sig.length === 1 && sig[0].type === 'string';
  };
  if (tokens[at].upper === 'DATEADD') {
    out.add('(', src, tokens[at].text.length);
    arg(2, lone(2));
    out.add(' + ', src);
    arg(1, false);
    out.add(` * INTERVAL '1 ${part}')`, src);
    return close;
  }
  if (part === 'month' || part === 'year') {
    const months = part === 'month' ? ' * 12' : '';
    out.add('((extract(year from ', src, tokens[at].text.length);
    arg(2, true);
    out.add(') - extract(year from ', src);
    arg(1, true);
    out.add(`))${months}`, src);
    if (part === 'month') {
      out.add(' + extract(month from ', src);
      arg(2, true);
      out.add(') - extract(month from ', src);
      arg(1, true);
      out.add(')', src);
    }
    out.add(')::bigint', src);
    return close;
  }
  out.add(`round((extract(epoch from date_trunc('${part}', `, src, tokens[at].text.length);
  arg(2, true);
  out.add(`)) - extract(epoch from date_trunc('${part}', `, src);
  arg(1, true);
  out.add(`))) / ${PART_SECONDS[part]})::bigint`, src);
  return close;
}

/** LISTAGG(expr [, delim]) [WITHIN GROUP (ORDER BY …)] → string_agg(expr::text, delim [ORDER BY …]). Returns the last index used. */
function emitListagg(tokens: Token[], at: number, open: number, to: number, out: PositionMap, vals: SessionValues): number {
  const { close, args } = callArgs(tokens, open);
  let last = close;
  let orderBy: [number, number] | undefined;
  const w = nextSig(tokens, close, to);
  if (isWord(tokens[w], 'WITHIN')) {
    const g = nextSig(tokens, w, to);
    const p = nextSig(tokens, g, to);
    const pc = matchParenFull(tokens, p);
    orderBy = [p + 1, pc];
    last = pc;
  }
  out.add('string_agg(', tokens[at].start, tokens[at].text.length);
  const b1 = args[0][1];
  let a1 = args[0][0];
  const firstSig = nextSig(tokens, a1 - 1, b1);
  // With DISTINCT, PostgreSQL wants ORDER BY to repeat the argument exactly: no cast then.
  const distinct = isWord(tokens[firstSig], 'DISTINCT');
  if (distinct) {
    out.add('DISTINCT ', tokens[firstSig].start);
    a1 = firstSig + 1;
  }
  out.add(distinct ? '' : '(', tokens[a1]?.start ?? 0);
  emitTokens(tokens, a1, b1, out, vals);
  out.add(distinct ? ', ' : ')::text, ', tokens[b1].start);
  if (args[1]) emitTokens(tokens, args[1][0], args[1][1], out, vals);
  else out.add("''", tokens[close].start);
  if (orderBy) {
    out.add(' ', tokens[orderBy[0]].start);
    emitTokens(tokens, orderBy[0], orderBy[1], out, vals);
  }
  out.add(')', tokens[close].start);
  return last;
}

function emitAll(tokens: Token[], vals: SessionValues): { sql: string; map: PositionMap } {
  const map = new PositionMap();
  emitTokens(tokens, 0, tokens.length, map, vals);
  return { sql: map.text(), map };
}

/** Plans one statement (already checked by checkStatement). */
export function planStatement(tokens: Token[], vals: SessionValues): Plan {
  const sig = significant(tokens);
  const first = sig[0];
  if (!first) return { kind: 'noop', tag: '' };
  switch (first.type === 'word' ? first.upper : '') {
    case 'COPY':
      return { kind: 'copy' };
    case 'VACUUM':
      return { kind: 'noop', tag: 'VACUUM' };
    case 'ANALYZE':
      if (isWord(sig[1], 'COMPRESSION')) return { kind: 'refuse', refusal: notEmulated('ANALYZE COMPRESSION') };
      break;
    case 'SET':
    case 'RESET': {
      let i = 1;
      if (isWord(sig[i], 'SESSION', 'LOCAL') && !isWord(sig[i + 1], 'AUTHORIZATION', 'CHARACTERISTICS')) i++;
      const nameTok = sig[i];
      if (isIdent(nameTok) && !isOp(sig[i + 1], '.') && !isWord(nameTok, 'TIME', 'TRANSACTION', 'SESSION', 'ALL')) {
        const name = identName(nameTok);
        if (!FORWARDED_PARAMETERS.has(name)) return { kind: 'noop', tag: first.upper };
      }
      break;
    }
    case 'CREATE': {
      const created = planCreateTable(tokens, vals);
      if (created) return created;
      break;
    }
    case 'ALTER':
      if (isWord(sig[1], 'TABLE')) return planAlterTable(tokens, vals);
      break;
    case 'LOCK': {
      const { sql, map } = emitAll(tokens, vals);
      return { kind: 'exec', sql, map, lockTables: referencedRelations(sig) };
    }
    case 'DELETE':
      if (!isWord(sig[1], 'FROM')) {
        // Redshift's FROM is optional; PostgreSQL's is not.
        const map = new PositionMap();
        const at = tokens.indexOf(sig[0]);
        emitTokens(tokens, 0, at + 1, map, vals);
        map.add(' FROM', sig[0].start + sig[0].text.length, 0);
        emitTokens(tokens, at + 1, tokens.length, map, vals);
        return { kind: 'exec', sql: map.text(), map };
      }
      break;
  }
  const { sql, map } = emitAll(tokens, vals);
  return { kind: 'exec', sql, map };
}

// ---- DDL ------------------------------------------------------------------------------------

interface SigView {
  tokens: Token[];
  sig: Token[];
  /** Index in tokens of each significant token. */
  at: number[];
}

function view(tokens: Token[]): SigView {
  const at: number[] = [];
  tokens.forEach((t, i) => {
    if (t.type !== 'ws') at.push(i);
  });
  return { tokens, sig: at.map((i) => tokens[i]), at };
}

/** Emits significant tokens [a, b) (with the whitespace between them) through the expression rewrites. */
function emitSig(v: SigView, a: number, b: number, out: PositionMap, vals: SessionValues): void {
  if (b <= a) return;
  emitTokens(v.tokens, v.at[a], v.at[b - 1] + 1, out, vals);
}

class DdlRefusal extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.message);
  }
}

function refuse(r: Refusal): never {
  throw new DdlRefusal(r);
}

interface ColumnType {
  /** PostgreSQL type text. */
  pg: string;
  /** Byte limit of a character column. */
  bytes?: number;
  char?: boolean;
  integer?: boolean;
  /** Index after the type. */
  end: number;
}

function readLength(sig: Token[], i: number, def: number, max: number, label: string): { n: number; end: number } {
  if (!isOp(sig[i], '(')) return { n: def, end: i };
  const close = matchParen(sig, i);
  const arg = sig[i + 1];
  if (close !== i + 2 || !arg) refuse(unsupported(`${label} with these arguments`));
  let n: number;
  if (isWord(arg, 'MAX')) n = max;
  else if (arg.type === 'number' && /^\d+$/.test(arg.text)) n = Number(arg.text);
  else refuse(unsupported(`${label}(${arg.text})`));
  if (n < 1 || n > max)
    refuse({
      ...unsupported(`${label}(${n})`),
      message: `length for type ${label.toLowerCase()} cannot exceed ${max} (refused by the Redshift stand-in)`,
    });
  return { n, end: close + 1 };
}

/** Reads a Redshift column type at sig[i]. */
function readType(sig: Token[], i: number): ColumnType {
  const t = sig[i];
  if (!t || t.type !== 'word') refuse(unsupported(`the type ${t?.text ?? '(none)'}`));
  const w = t.upper;
  const w2 = sig[i + 1]?.type === 'word' ? sig[i + 1].upper : '';
  const varchar = (start: number, label: string): ColumnType => {
    const { n, end } = readLength(sig, start, 256, MAX_VARCHAR, label);
    return { pg: `varchar(${n})`, bytes: n, end };
  };
  const char = (start: number, def: number, label: string): ColumnType => {
    const { n, end } = readLength(sig, start, def, MAX_CHAR, label);
    return { pg: `char(${n})`, bytes: n, char: true, end };
  };
  switch (w) {
    case 'VARCHAR':
    case 'NVARCHAR':
      return varchar(i + 1, 'VARCHAR');
    case 'TEXT':
      // Redshift's silent conversion.
      return { pg: 'varchar(256)', bytes: 256, end: i + 1 };
    case 'CHARACTER':
      if (w2 === 'VARYING') return varchar(i + 2, 'VARCHAR');
      return char(i + 1, 1, 'CHAR');
    case 'NATIONAL':
      if ((w2 === 'CHARACTER' || w2 === 'CHAR') && isWord(sig[i + 2], 'VARYING')) return varchar(i + 3, 'VARCHAR');
      if (w2 === 'CHARACTER' || w2 === 'CHAR') return char(i + 2, 1, 'CHAR');
      break;
    case 'CHAR':
    case 'NCHAR':
      return char(i + 1, 1, 'CHAR');
    case 'BPCHAR':
      return char(i + 1, 256, 'CHAR');
    case 'INT':
    case 'INTEGER':
    case 'INT4':
      return { pg: 'integer', integer: true, end: i + 1 };
    case 'SMALLINT':
    case 'INT2':
      return { pg: 'smallint', end: i + 1 };
    case 'BIGINT':
    case 'INT8':
      return { pg: 'bigint', integer: true, end: i + 1 };
    case 'DECIMAL':
    case 'NUMERIC': {
      // Redshift's default precision and scale are (18, 0); PostgreSQL's numeric is unbounded.
      if (!isOp(sig[i + 1], '(')) return { pg: 'numeric(18,0)', end: i + 1 };
      const close = matchParen(sig, i + 1);
      const p = Number(sig[i + 2]?.text);
      const s = isOp(sig[i + 3], ',') ? Number(sig[i + 4]?.text) : 0;
      if (!(p >= 1 && p <= 38 && s >= 0 && s <= p)) refuse(unsupported(`DECIMAL with these precision and scale`, ' (precision 1 to 38)'));
      return { pg: `numeric(${p},${s})`, end: close + 1 };
    }
    case 'REAL':
    case 'FLOAT4':
      return { pg: 'real', end: i + 1 };
    case 'FLOAT8':
      return { pg: 'double precision', end: i + 1 };
    case 'FLOAT': {
      if (!isOp(sig[i + 1], '(')) return { pg: 'double precision', end: i + 1 };
      const p = Number(sig[i + 2]?.text);
      return { pg: p <= 24 ? 'real' : 'double precision', end: matchParen(sig, i + 1) + 1 };
    }
    case 'DOUBLE':
      if (w2 === 'PRECISION') return { pg: 'double precision', end: i + 2 };
      break;
    case 'BOOLEAN':
    case 'BOOL':
      return { pg: 'boolean', end: i + 1 };
    case 'DATE':
      return { pg: 'date', end: i + 1 };
    case 'TIMESTAMPTZ':
      return { pg: 'timestamptz', end: i + 1 };
    case 'TIMETZ':
      return { pg: 'timetz', end: i + 1 };
    case 'TIMESTAMP':
    case 'TIME': {
      if (isOp(sig[i + 1], '(')) refuse(unsupported(`${w}(p)`, ' (Redshift keeps microseconds)'));
      if (isWord(sig[i + 1], 'WITH', 'WITHOUT') && isWord(sig[i + 2], 'TIME') && isWord(sig[i + 3], 'ZONE')) {
        const tz = sig[i + 1].upper === 'WITH';
        return { pg: w === 'TIME' ? (tz ? 'timetz' : 'time') : tz ? 'timestamptz' : 'timestamp', end: i + 4 };
      }
      return { pg: w === 'TIME' ? 'time' : 'timestamp', end: i + 1 };
    }
    case 'VARBYTE':
    case 'VARBINARY':
    case 'SUPER':
    case 'GEOMETRY':
    case 'GEOGRAPHY':
    case 'HLLSKETCH':
    case 'INTERVAL':
      refuse(notEmulated(`the ${w} type`));
      break;
    case 'BINARY':
      if (w2 === 'VARYING') refuse(notEmulated('the VARBYTE type'));
      break;
  }
  refuse(unsupported(`the ${t.text.toUpperCase()} type`));
}

/** Attribute keywords that end a DEFAULT expression. */
const COLUMN_ATTRIBUTES = new Set([
  'IDENTITY',
  'GENERATED',
  'ENCODE',
  'DISTKEY',
  'SORTKEY',
  'COLLATE',
  'NOT',
  'NULL',
  'UNIQUE',
  'PRIMARY',
  'REFERENCES',
  'CONSTRAINT',
]);

interface ColumnResult {
  name: string;
  keyed: boolean;
}

/** Emits one column definition, sig[a, b). `forceNotNull`: a table-level PRIMARY KEY names it. */
function emitColumn(v: SigView, a: number, b: number, out: PositionMap, vals: SessionValues, forceNotNull: boolean): ColumnResult {
  const sig = v.sig;
  const nameTok = sig[a];
  if (!isIdent(nameTok)) refuse(unsupported(`the column definition starting with ${sig[a]?.text ?? '(nothing)'}`));
  const name = identName(nameTok);
  const type = readType(sig, a + 1);
  if (type.end > b) refuse(unsupported('this column definition'));
  emitSig(v, a, a + 1, out, vals);
  out.add(' ' + type.pg, sig[a + 1].start);
  const col = quoteIdent(name);
  if (type.bytes !== undefined && !type.char) {
    out.add(
      ` CONSTRAINT ${VARCHAR_CHECK_PREFIX}${type.bytes}_${randomBytes(4).toString('hex')} CHECK (octet_length(${col}) <= ${type.bytes})`,
      sig[a + 1].start,
    );
  } else if (type.char) {
    // CHAR holds single-byte characters only; then characters and bytes are the same count.
    out.add(
      ` CONSTRAINT ${CHAR_CHECK_PREFIX}${type.bytes}_${randomBytes(4).toString('hex')} CHECK (octet_length(CAST(${col} AS text)) = char_length(CAST(${col} AS text)))`,
      sig[a + 1].start,
    );
  }
  let notNull = false;
  let keyed = false;
  let i = type.end;
  while (i < b) {
    const t = sig[i];
    const w = t.type === 'word' ? t.upper : '';
    if (w === 'DEFAULT') {
      let j = i + 2;
      let depth = 0;
      for (; j < b; j++) {
        if (isOp(sig[j], '(')) depth++;
        if (isOp(sig[j], ')')) depth--;
        if (depth === 0 && sig[j].type === 'word' && COLUMN_ATTRIBUTES.has(sig[j].upper)) break;
      }
      out.add(' ', t.start);
      emitSig(v, i, j, out, vals);
      i = j;
    } else if (w === 'IDENTITY' || (w === 'GENERATED' && isWord(sig[i + 1], 'BY'))) {
      if (!type.integer) refuse(unsupported('IDENTITY on a column that is not INT or BIGINT'));
      const open = w === 'IDENTITY' ? i + 1 : i + 5;
      if (w === 'GENERATED' && !(isWord(sig[i + 2], 'DEFAULT') && isWord(sig[i + 3], 'AS') && isWord(sig[i + 4], 'IDENTITY')))
        refuse(syntax(sig[i + 2]));
      if (!isOp(sig[open], '(')) refuse(syntax(sig[open]));
      const close = matchParen(sig, open);
      const comma = sig.findIndex((x, k) => k > open && k < close && isOp(x, ','));
      if (comma < 0) refuse(syntax(sig[close]));
      const seed = sig
        .slice(open + 1, comma)
        .map((x) => x.text)
        .join('');
      const step = sig
        .slice(comma + 1, close)
        .map((x) => x.text)
        .join('');
      if (!/^-?\d+$/.test(seed) || !/^-?\d+$/.test(step)) refuse(syntax(sig[open + 1]));
      // IDENTITY(seed, step) does not take explicit values; GENERATED BY DEFAULT does.
      out.add(` GENERATED ${w === 'IDENTITY' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY (START WITH ${seed} INCREMENT BY ${step})`, t.start);
      notNull = true;
      i = close + 1;
    } else if (w === 'ENCODE') {
      i += 2;
    } else if (w === 'DISTKEY' || w === 'SORTKEY') {
      i += 1;
    } else if (w === 'COLLATE') {
      const c = sig[i + 1];
      if (isWord(c, 'CASE_SENSITIVE')) i += 2;
      else if (isWord(c, 'CASE_INSENSITIVE')) refuse(notEmulated('COLLATE CASE_INSENSITIVE'));
      else refuse(unsupported(`COLLATE ${c?.text ?? ''}`));
    } else if (w === 'NOT' && isWord(sig[i + 1], 'NULL')) {
      out.add(' NOT NULL', t.start);
      notNull = true;
      i += 2;
    } else if (w === 'NULL') {
      out.add(' NULL', t.start);
      i += 1;
    } else if (w === 'UNIQUE') {
      keyed = true;
      i += 1;
    } else if (w === 'PRIMARY' && isWord(sig[i + 1], 'KEY')) {
      keyed = true;
      if (!notNull) out.add(' NOT NULL', t.start);
      notNull = true;
      i += 2;
    } else if (w === 'REFERENCES') {
      keyed = true;
      i += 2;
      while (isOp(sig[i], '.') && isIdent(sig[i + 1])) i += 2;
      if (isOp(sig[i], '(')) i = matchParen(sig, i) + 1;
    } else if (w === 'CONSTRAINT') {
      // A named column constraint: keep what it constrains, drop the name.
      i += 2;
    } else if (w === 'CHECK') {
      refuse(unsupported('CHECK constraints'));
    } else {
      refuse(syntax(t));
    }
  }
  if (forceNotNull && !notNull) out.add(' NOT NULL', sig[b - 1].start);
  return { name, keyed: keyed || forceNotNull };
}

function syntax(t: Token | undefined): Refusal {
  return {
    code: '42601',
    message: `syntax error at or near "${t?.text ?? 'end of input'}" (refused by the Redshift stand-in)`,
    reason: `syntax: ${t?.text ?? 'end of input'}`,
  };
}

/** Splits sig[a, b) on top-level commas. */
function splitCommas(sig: Token[], a: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  let depth = 0;
  let start = a;
  for (let i = a; i < b; i++) {
    if (isOp(sig[i], '(')) depth++;
    if (isOp(sig[i], ')')) depth--;
    if (depth === 0 && isOp(sig[i], ',')) {
      out.push([start, i]);
      start = i + 1;
    }
  }
  out.push([start, b]);
  return out.filter(([x, y]) => y > x);
}

function readIdentList(sig: Token[], open: number): string[] {
  const close = matchParen(sig, open);
  return splitCommas(sig, open + 1, close).map(([x]) => identName(sig[x]));
}

/** Skips Redshift's table attributes from sig[i]; returns where they end. */
function skipTableAttributes(sig: Token[], i: number, end: number): number {
  while (i < end) {
    const t = sig[i];
    const w = t.type === 'word' ? t.upper : '';
    if (w === 'BACKUP' && isWord(sig[i + 1], 'YES', 'NO')) i += 2;
    else if (w === 'DISTSTYLE' && isWord(sig[i + 1], 'AUTO', 'EVEN', 'KEY', 'ALL')) i += 2;
    else if (w === 'DISTKEY' && isOp(sig[i + 1], '(')) i = matchParen(sig, i + 1) + 1;
    else if ((w === 'COMPOUND' || w === 'INTERLEAVED') && isWord(sig[i + 1], 'SORTKEY')) i += 1;
    else if (w === 'SORTKEY' && isWord(sig[i + 1], 'AUTO')) i += 2;
    else if (w === 'SORTKEY' && isOp(sig[i + 1], '(')) i = matchParen(sig, i + 1) + 1;
    else if (w === 'ENCODE' && isWord(sig[i + 1], 'AUTO')) i += 2;
    else break;
  }
  return i;
}

function planCreateTable(tokens: Token[], vals: SessionValues): Plan | undefined {
  const v = view(tokens);
  const sig = v.sig;
  let i = 1;
  if (isWord(sig[i], 'LOCAL')) i++;
  let temp = false;
  if (isWord(sig[i], 'TEMP', 'TEMPORARY')) {
    temp = true;
    i++;
  }
  if (!isWord(sig[i], 'TABLE')) return undefined;
  i++;
  if (isWord(sig[i], 'IF') && isWord(sig[i + 1], 'NOT') && isWord(sig[i + 2], 'EXISTS')) i += 3;
  if (!isIdent(sig[i])) return undefined;
  const hashTemp = !temp && sig[i].text.startsWith('#');
  const parts = [identName(sig[i])];
  i++;
  while (isOp(sig[i], '.') && isIdent(sig[i + 1])) {
    parts.push(identName(sig[i + 1]));
    i += 2;
  }
  const table = parts.map(quoteIdent).join('.');
  const out = new PositionMap();
  try {
    if (hashTemp) {
      // CREATE TABLE #name is a temporary table.
      emitSig(v, 0, 1, out, vals);
      out.add(' TEMP ', sig[1].start, 0);
      emitSig(v, 1, i, out, vals);
    } else emitSig(v, 0, i, out, vals);
    if (!isOp(sig[i], '(')) {
      // CREATE TABLE t [attributes] AS query
      const attrsEnd = skipTableAttributes(sig, i, sig.length);
      if (!isWord(sig[attrsEnd], 'AS')) refuse(syntax(sig[attrsEnd]));
      out.add(' ', sig[attrsEnd].start);
      emitSig(v, attrsEnd, sig.length, out, vals);
      return { kind: 'exec', sql: out.text(), map: out };
    }
    const close = matchParen(sig, i);
    const after = skipTableAttributes(sig, close + 1, sig.length);
    if (isWord(sig[after], 'AS')) {
      // CREATE TABLE t (col names) [attributes] AS query
      emitSig(v, i, close + 1, out, vals);
      out.add(' ', sig[after].start);
      emitSig(v, after, sig.length, out, vals);
      return { kind: 'exec', sql: out.text(), map: out };
    }
    if (after < sig.length) {
      const t = sig[after];
      if (isWord(t, 'WITH', 'TABLESPACE', 'PARTITION', 'INHERITS', 'USING', 'WITHOUT'))
        refuse(unsupported(`CREATE TABLE … ${t.text.toUpperCase()}`));
      refuse(syntax(t));
    }
    const elements = splitCommas(sig, i + 1, close);
    // Table-level keys first: their columns become NOT NULL (as PRIMARY KEY implies), the keys themselves go.
    const pk = new Set<string>();
    const keyColumns = new Set<string>();
    const isConstraint = (a: number) => isWord(sig[a], 'CONSTRAINT', 'PRIMARY', 'UNIQUE', 'FOREIGN', 'CHECK', 'EXCLUDE');
    for (const [a, b] of elements) {
      if (!isConstraint(a)) continue;
      const k = isWord(sig[a], 'CONSTRAINT') ? a + 2 : a;
      const kw = sig[k];
      if (isWord(kw, 'CHECK')) refuse(unsupported('CHECK constraints'));
      if (isWord(kw, 'EXCLUDE')) refuse(unsupported('EXCLUDE constraints'));
      const open = sig.findIndex((t, idx) => idx > k && idx < b && isOp(t, '('));
      if (open < 0) refuse(syntax(sig[k + 1]));
      const cols = readIdentList(sig, open);
      cols.forEach((c) => keyColumns.add(c));
      if (isWord(kw, 'PRIMARY')) cols.forEach((c) => pk.add(c));
    }
    out.add(' (', sig[i].start);
    let firstOut = true;
    for (const [a, b] of elements) {
      if (isConstraint(a)) continue;
      if (!firstOut) out.add(',', sig[a].start);
      out.add('\n  ', sig[a].start);
      firstOut = false;
      if (isWord(sig[a], 'LIKE')) {
        let j = a + 2;
        while (isOp(sig[j], '.') && isIdent(sig[j + 1])) j += 2;
        emitSig(v, a, j, out, vals);
        let defaults = false;
        while (j < b) {
          if (isWord(sig[j], 'INCLUDING', 'EXCLUDING') && isWord(sig[j + 1], 'DEFAULTS')) {
            defaults = sig[j].upper === 'INCLUDING';
            j += 2;
          } else refuse(unsupported(`LIKE … ${sig[j].text.toUpperCase()}`, ' (only INCLUDING or EXCLUDING DEFAULTS)'));
        }
        // The byte-length checks are what VARCHAR(n) means here: a LIKE copy keeps them.
        out.add(`${defaults ? ' INCLUDING DEFAULTS' : ''} INCLUDING CONSTRAINTS`, sig[a].start);
        continue;
      }
      const col = emitColumn(v, a, b, out, vals, pk.has(identName(sig[a])));
      if (col.keyed) keyColumns.add(col.name);
    }
    out.add('\n)', sig[close].start);
    return { kind: 'exec', sql: out.text(), map: out, keyColumns: { table, columns: [...keyColumns] } };
  } catch (err) {
    if (err instanceof DdlRefusal) return { kind: 'refuse', refusal: err.refusal };
    throw err;
  }
}

function planAlterTable(tokens: Token[], vals: SessionValues): Plan {
  const v = view(tokens);
  const sig = v.sig;
  let i = 2;
  const parts: string[] = [];
  while (isIdent(sig[i])) {
    parts.push(identName(sig[i]));
    i++;
    if (!isOp(sig[i], '.')) break;
    i++;
  }
  const table = parts.map(quoteIdent).join('.');
  const a = i;
  const w = sig[a]?.type === 'word' ? sig[a].upper : '';
  try {
    if (w === 'ADD') {
      const j = isWord(sig[a + 1], 'COLUMN') ? a + 2 : a + 1;
      if (isWord(sig[j], 'CONSTRAINT', 'PRIMARY', 'UNIQUE', 'FOREIGN')) return { kind: 'noop', tag: 'ALTER TABLE' };
      const out = new PositionMap();
      emitSig(v, 0, a, out, vals);
      out.add(' ADD COLUMN ', sig[a].start);
      emitColumn(v, j, sig.length, out, vals, false);
      return { kind: 'exec', sql: out.text(), map: out };
    }
    if (w === 'DROP' && isWord(sig[a + 1], 'CONSTRAINT')) return { kind: 'noop', tag: 'ALTER TABLE' };
    if (w === 'ALTER') {
      const j = isWord(sig[a + 1], 'COLUMN') ? a + 2 : a + 1;
      if (isWord(sig[j], 'DISTKEY', 'DISTSTYLE', 'SORTKEY', 'COMPOUND', 'ENCODE') || isWord(sig[j + 1], 'ENCODE'))
        return { kind: 'noop', tag: 'ALTER TABLE' };
      if (isWord(sig[j + 1], 'TYPE')) {
        const type = readType(sig, j + 2);
        if (type.end !== sig.length || type.bytes === undefined || type.char)
          refuse(unsupported('ALTER COLUMN … TYPE other than VARCHAR(n)'));
        return { kind: 'alter-varchar', table, column: identName(sig[j]), length: type.bytes };
      }
    }
    if (w === 'ROW') return { kind: 'refuse', refusal: notEmulated('ROW LEVEL SECURITY') };
  } catch (err) {
    if (err instanceof DdlRefusal) return { kind: 'refuse', refusal: err.refusal };
    throw err;
  }
  const { sql, map } = emitAll(tokens, vals);
  return { kind: 'exec', sql, map };
}

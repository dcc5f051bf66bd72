// What the stand-in refuses because Redshift would: PostgreSQL-only constructs, leader-node-only
// functions over user tables, statements that cannot run inside a transaction block. Every
// rule looks at tokens, so nothing inside a string literal, quoted identifier or comment counts.

import { identName, isIdent, isOp, isWord, matchParen, stringValue, type Token } from './lexer.js';

export interface StatementContext {
  /** An explicit transaction block (BEGIN … END) is open. */
  inBlock: boolean;
  /** The statement is one of several in one simple Query message (an implicit transaction). */
  multi: boolean;
}

export interface Refusal {
  /** SQLSTATE sent to the client. */
  code: string;
  /** The error message sent to the client. */
  message: string;
  /** Short description of what was refused, for `refused`. */
  reason: string;
  /** INFO notices sent before the error (Redshift names the offending function this way). */
  notices?: string[];
}

/** One SQL statement may be at most this many bytes on Redshift. */
export const MAX_STATEMENT_BYTES = 16 * 1024 * 1024;

const SUFFIX = ' (refused by the Redshift stand-in)';

export function unsupported(construct: string, extra = ''): Refusal {
  return { code: '0A000', message: `${construct} is not supported by Amazon Redshift${extra}${SUFFIX}`, reason: construct };
}

export function notEmulated(construct: string): Refusal {
  return {
    code: '0A000',
    message: `${construct} is valid on Redshift but not emulated by the stand-in${SUFFIX}`,
    reason: `not emulated: ${construct}`,
  };
}

export function syntaxError(near: string, reason: string): Refusal {
  return { code: '42601', message: `syntax error at or near "${near}"${SUFFIX}`, reason };
}

/** Statements Redshift has (first keyword). Anything else is refused. */
const REDSHIFT_COMMANDS = new Set([
  'ABORT',
  'ALTER',
  'ANALYZE',
  'BEGIN',
  'CALL',
  'CANCEL',
  'CLOSE',
  'COMMENT',
  'COMMIT',
  'COPY',
  'CREATE',
  'DEALLOCATE',
  'DECLARE',
  'DELETE',
  'DROP',
  'END',
  'EXECUTE',
  'EXPLAIN',
  'FETCH',
  'GRANT',
  'INSERT',
  'LOCK',
  'MERGE',
  'PREPARE',
  'REFRESH',
  'RESET',
  'REVOKE',
  'ROLLBACK',
  'SELECT',
  'SET',
  'SHOW',
  'START',
  'TRUNCATE',
  'UNLOAD',
  'UPDATE',
  'VACUUM',
  'WITH',
]);

/**
 * Configuration parameters Redshift's SET accepts (its configuration reference). Those PostgreSQL
 * also has are forwarded; the others are accepted and ignored.
 */
export const REDSHIFT_PARAMETERS = new Set([
  'activate_aqua',
  'analyze_threshold_percent',
  'cast_super_null_on_error',
  'datestyle',
  'default_geometry_encoding',
  'describe_field_name_in_uppercase',
  'downcase_delimited_identifier',
  'enable_case_sensitive_identifier',
  'enable_case_sensitive_super_attribute',
  'enable_numeric_rounding',
  'enable_result_cache_for_session',
  'enable_vacuum_boost',
  'error_on_nondeterministic_update',
  'extra_float_digits',
  'interval_forbid_composite_literals',
  'json_parse_dedup_attributes',
  'json_parse_truncate_strings',
  'max_concurrency_scaling_clusters',
  'max_cursor_result_set_size',
  'mv_enable_aqmv_for_session',
  'navigate_super_null_on_error',
  'parse_super_null_on_error',
  'query_group',
  'search_path',
  'seed',
  'spectrum_enable_pseudo_columns',
  'spectrum_enable_spectrum_oid',
  'spectrum_query_maxerror',
  'statement_timeout',
  'stored_proc_log_min_messages',
  'timezone',
  'wlm_query_slot_count',
]);

/** Redshift parameters PostgreSQL also knows, with the same meaning: these reach the backend. */
export const FORWARDED_PARAMETERS = new Set(['datestyle', 'extra_float_digits', 'search_path', 'statement_timeout', 'timezone']);

/** Functions PostgreSQL has and Redshift does not (its "unsupported PostgreSQL functions" list, and a few more). */
const UNSUPPORTED_FUNCTIONS: Record<string, string> = {
  UNNEST: 'arrays (unnest)',
  STRING_AGG: 'STRING_AGG (use LISTAGG)',
  ARRAY_AGG: 'ARRAY_AGG',
  STRING_TO_ARRAY: 'arrays (string_to_array)',
  REGEXP_SPLIT_TO_ARRAY: 'arrays (regexp_split_to_array)',
  REGEXP_SPLIT_TO_TABLE: 'REGEXP_SPLIT_TO_TABLE',
  REGEXP_MATCHES: 'REGEXP_MATCHES',
  FORMAT: 'format()',
  JSON_AGG: 'JSON_AGG',
  JSONB_AGG: 'JSONB_AGG',
  JSON_BUILD_OBJECT: 'JSON_BUILD_OBJECT',
  JSONB_BUILD_OBJECT: 'JSONB_BUILD_OBJECT',
  XMLAGG: 'XMLAGG',
  EVERY: 'EVERY()',
  CORR: 'CORR()',
  COVAR_POP: 'COVAR_POP()',
  COVAR_SAMP: 'COVAR_SAMP()',
  DIV: 'DIV()',
  SETSEED: 'SETSEED()',
  WIDTH_BUCKET: 'WIDTH_BUCKET()',
  BIT_LENGTH: 'BIT_LENGTH()',
  OVERLAY: 'OVERLAY()',
  CONVERT_FROM: 'CONVERT_FROM()',
  CONVERT_TO: 'CONVERT_TO()',
  QUOTE_NULLABLE: 'QUOTE_NULLABLE()',
  CLOCK_TIMESTAMP: 'CLOCK_TIMESTAMP() (use GETDATE() or SYSDATE)',
  TRANSACTION_TIMESTAMP: 'TRANSACTION_TIMESTAMP() (use SYSDATE)',
  STATEMENT_TIMESTAMP: 'STATEMENT_TIMESTAMP() (use GETDATE())',
  JUSTIFY_DAYS: 'JUSTIFY_DAYS()',
  JUSTIFY_HOURS: 'JUSTIFY_HOURS()',
  JUSTIFY_INTERVAL: 'JUSTIFY_INTERVAL()',
  PG_SLEEP: 'PG_SLEEP()',
  GENERATE_SUBSCRIPTS: 'GENERATE_SUBSCRIPTS()',
  GEN_RANDOM_UUID: 'UUIDs (gen_random_uuid)',
  NEXTVAL: 'sequences (nextval)',
  CURRVAL: 'sequences (currval)',
  SETVAL: 'sequences (setval)',
  ISFINITE: 'ISFINITE()',
  ROW: 'row constructors (ROW(…))',
  TXID_CURRENT: 'transaction ID functions (txid_current)',
  PG_CURRENT_XACT_ID: 'transaction ID functions (pg_current_xact_id)',
  INET_CLIENT_ADDR: 'INET_CLIENT_ADDR()',
  INET_SERVER_ADDR: 'INET_SERVER_ADDR()',
  PG_MY_TEMP_SCHEMA: 'PG_MY_TEMP_SCHEMA()',
  PG_POSTMASTER_START_TIME: 'PG_POSTMASTER_START_TIME()',
};

/** Leader-node-only functions: an error in any statement that references a user or system table. */
const LEADER_ONLY_CALLS = new Set([
  'NOW',
  'AGE',
  'SUBSTR',
  'CURRENT_SCHEMA',
  'CURRENT_SCHEMAS',
  'HAS_DATABASE_PRIVILEGE',
  'HAS_SCHEMA_PRIVILEGE',
  'HAS_TABLE_PRIVILEGE',
  'HAS_COLUMN_PRIVILEGE',
  'HAS_FUNCTION_PRIVILEGE',
  'HAS_LANGUAGE_PRIVILEGE',
  'TIMEOFDAY',
  'GETBIT',
  'GET_BIT',
  'GET_BYTE',
  'SET_BIT',
  'SET_BYTE',
  'TO_ASCII',
  'GENERATE_SERIES',
]);
/** The same, written without parentheses. */
const LEADER_ONLY_KEYWORDS = new Set(['CURRENT_TIMESTAMP', 'CURRENT_TIME', 'LOCALTIME', 'CURRENT_SCHEMA']);

/** Types PostgreSQL has and Redshift does not, as they would appear after `::`. */
const UNSUPPORTED_TYPES = new Set([
  'JSON',
  'JSONB',
  'UUID',
  'BYTEA',
  'INET',
  'CIDR',
  'MACADDR',
  'MONEY',
  'XML',
  'SERIAL',
  'BIGSERIAL',
  'SMALLSERIAL',
  'HSTORE',
  'TSVECTOR',
  'TSQUERY',
  'INT4RANGE',
  'INT8RANGE',
  'NUMRANGE',
  'TSRANGE',
  'TSTZRANGE',
  'DATERANGE',
  'BIT',
  'VARBIT',
  'POINT',
  'LINE',
  'LSEG',
  'BOX',
  'PATH',
  'POLYGON',
  'CIRCLE',
  'TXID_SNAPSHOT',
]);

/** Object identifier types: the leader node has them (catalog queries), compute nodes do not. */
const LEADER_ONLY_TYPES = new Set(['REGCLASS', 'REGTYPE', 'REGPROC', 'REGNAMESPACE', 'REGOPER', 'REGROLE', 'OID']);

/** Words after which '(' opens a subquery or a list, not a function call's arguments. */
const NON_CALL_WORDS = new Set([
  'IN',
  'EXISTS',
  'FROM',
  'JOIN',
  'AS',
  'ON',
  'WHERE',
  'AND',
  'OR',
  'NOT',
  'SELECT',
  'VALUES',
  'USING',
  'INTO',
  'TABLE',
  'LATERAL',
  'UNION',
  'ALL',
  'ANY',
  'SOME',
  'BY',
  'WITH',
  'HAVING',
  'WHEN',
  'THEN',
  'ELSE',
  'CASE',
  'INTERSECT',
  'EXCEPT',
  'MINUS',
  'LIKE',
  'SET',
  'RETURN',
  'IS',
  'OVER',
  'FILTER',
  'BETWEEN',
]);

/** Relations a statement names in FROM, JOIN, INTO, UPDATE, TABLE, USING, LOCK, TRUNCATE (lower case, qualified as written). */
export function referencedRelations(sig: Token[]): string[] {
  const out: string[] = [];
  const cte = new Set<string>();
  // CTE names are not relations.
  if (isWord(sig[0], 'WITH')) {
    let i = isWord(sig[1], 'RECURSIVE') ? 2 : 1;
    while (isIdent(sig[i])) {
      cte.add(identName(sig[i]));
      i++;
      if (isOp(sig[i], '(')) i = matchParen(sig, i) + 1;
      if (!isWord(sig[i], 'AS')) break;
      i++;
      if (!isOp(sig[i], '(')) break;
      i = matchParen(sig, i) + 1;
      if (i <= 0 || !isOp(sig[i], ',')) break;
      i++;
    }
  }
  // For each open parenthesis: does it hold a function call's arguments?
  const calls: boolean[] = [];
  const readName = (i: number, call = true): { name: string; next: number } | undefined => {
    if (!isIdent(sig[i])) return undefined;
    const parts = [identName(sig[i])];
    let j = i + 1;
    while (isOp(sig[j], '.') && isIdent(sig[j + 1])) {
      parts.push(identName(sig[j + 1]));
      j += 2;
    }
    if (call && isOp(sig[j], '(')) return undefined; // a function, e.g. FROM generate_series(…)
    return { name: parts.join('.'), next: j };
  };
  const add = (name: string) => {
    if (!cte.has(name)) out.push(name);
  };
  for (let i = 0; i < sig.length; i++) {
    const t = sig[i];
    if (isOp(t, '(')) {
      const prev = sig[i - 1];
      calls.push(!!prev && ((prev.type === 'word' && !NON_CALL_WORDS.has(prev.upper)) || prev.type === 'qident'));
      continue;
    }
    if (isOp(t, ')')) {
      calls.pop();
      continue;
    }
    if (t.type !== 'word' || calls[calls.length - 1]) continue;
    switch (t.upper) {
      case 'FROM':
      case 'USING':
      case 'JOIN': {
        let j = i + 1;
        for (;;) {
          if (isWord(sig[j], 'ONLY', 'LATERAL')) j++;
          const r = readName(j);
          if (!r) break;
          add(r.name);
          j = r.next;
          if (isWord(sig[j], 'AS')) j++;
          if (isIdent(sig[j]) && !isWord(sig[j], ...CLAUSE_END)) j++;
          if (t.upper === 'JOIN' || !isOp(sig[j], ',')) break;
          j++;
        }
        break;
      }
      case 'INTO':
      case 'TABLE':
      case 'TRUNCATE':
      case 'UPDATE':
      case 'LOCK': {
        let j = i + 1;
        if (isWord(sig[j], 'TABLE') && t.upper !== 'TABLE') j++;
        if (isWord(sig[j], 'IF') && isWord(sig[j + 1], 'NOT') && isWord(sig[j + 2], 'EXISTS')) j += 3;
        if (isWord(sig[j], 'IF') && isWord(sig[j + 1], 'EXISTS')) j += 2;
        if (t.upper === 'UPDATE' && isWord(sig[j], 'SET')) break; // MERGE … THEN UPDATE SET
        for (;;) {
          // INTO t (columns), TABLE t (definition): the parenthesis is not a call.
          const r = readName(j, false);
          if (!r) break;
          add(r.name);
          j = r.next;
          if (!isOp(sig[j], ',') || (t.upper !== 'LOCK' && t.upper !== 'TABLE')) break;
          j++;
        }
        break;
      }
    }
  }
  return out;
}

const CLAUSE_END = [
  'WHERE',
  'GROUP',
  'ORDER',
  'HAVING',
  'LIMIT',
  'OFFSET',
  'JOIN',
  'INNER',
  'LEFT',
  'RIGHT',
  'FULL',
  'CROSS',
  'NATURAL',
  'ON',
  'USING',
  'UNION',
  'INTERSECT',
  'EXCEPT',
  'MINUS',
  'SET',
  'WHEN',
  'VALUES',
  'SELECT',
  'QUALIFY',
  'WINDOW',
];

/** Catalog relations (pg_* and information_schema) run on the leader node; everything else is a user or system table. */
export function isCatalogRelation(name: string): boolean {
  const parts = name.split('.');
  const [schema, rel] = parts.length >= 2 ? [parts[parts.length - 2], parts[parts.length - 1]] : [undefined, parts[0]];
  if (schema === 'pg_catalog' || schema === 'information_schema') return true;
  return schema === undefined && rel.startsWith('pg_');
}

/** Refuses what Redshift would not run; undefined when the statement may go on. */
export function checkStatement(sig: Token[], ctx: StatementContext): Refusal | undefined {
  const first = sig[0];
  if (!first) return undefined;
  if (isOp(first, '(')) {
    // (SELECT …) UNION …: check the rest as usual.
  } else if (first.type !== 'word' || !REDSHIFT_COMMANDS.has(first.upper)) {
    if (isWord(first, 'DO')) return unsupported('DO blocks');
    if (isWord(first, 'LISTEN', 'NOTIFY', 'UNLISTEN')) return unsupported('LISTEN/NOTIFY');
    if (isWord(first, 'SAVEPOINT', 'RELEASE')) return unsupported('savepoints');
    return unsupported(`the ${first.text.toUpperCase()} command`);
  }
  const word = first.upper;

  const anywhere = checkAnywhere(sig);
  if (anywhere) return anywhere;

  switch (word) {
    case 'ROLLBACK':
    case 'ABORT':
      if (sig.some((t) => isWord(t, 'TO'))) return unsupported('savepoints (ROLLBACK TO SAVEPOINT)');
      if (sig.some((t) => isWord(t, 'PREPARED'))) return unsupported('two-phase commit');
      break;
    case 'COMMIT':
    case 'END':
      if (sig.some((t) => isWord(t, 'PREPARED', 'CHAIN'))) return unsupported(`COMMIT ${sig[1]?.text ?? ''}`.trim());
      break;
    case 'PREPARE':
      if (isWord(sig[1], 'TRANSACTION')) return unsupported('two-phase commit');
      break;
    case 'CREATE': {
      let i = 1;
      if (isWord(sig[i], 'OR') && isWord(sig[i + 1], 'REPLACE')) i += 2;
      const kind = sig[i];
      if (isWord(kind, 'UNIQUE') || isWord(kind, 'INDEX')) return unsupported('CREATE INDEX (Redshift has no indexes)');
      if (isWord(kind, 'SEQUENCE')) return unsupported('sequences (use IDENTITY)');
      if (isWord(kind, 'EXTENSION')) return unsupported('extensions');
      if (isWord(kind, 'TYPE', 'DOMAIN')) return unsupported(`CREATE ${kind.upper}`);
      if (isWord(kind, 'TRIGGER', 'RULE', 'EVENT')) return unsupported(`CREATE ${kind.upper}`);
      if (isWord(kind, 'UNLOGGED')) return unsupported('UNLOGGED tables');
      if (isWord(kind, 'TABLESPACE', 'COLLATION', 'PUBLICATION', 'SUBSCRIPTION', 'SERVER', 'FOREIGN', 'POLICY', 'STATISTICS', 'ACCESS'))
        return unsupported(`CREATE ${kind.upper}`);
      if (isWord(kind, 'GLOBAL')) return unsupported('GLOBAL TEMPORARY tables');
      break;
    }
    case 'DROP':
      if (isWord(sig[1], 'INDEX')) return unsupported('DROP INDEX (Redshift has no indexes)');
      if (isWord(sig[1], 'SEQUENCE', 'EXTENSION', 'TYPE', 'DOMAIN', 'TRIGGER')) return unsupported(`DROP ${sig[1].upper}`);
      break;
    case 'LOCK': {
      if (sig.some((t) => isWord(t, 'NOWAIT')))
        return unsupported('LOCK … NOWAIT (a second session waits; bound it with statement_timeout)');
      const inAt = sig.findIndex((t) => isWord(t, 'IN'));
      if (inAt > 0 && sig.slice(inAt).some((t) => isWord(t, 'MODE')))
        return unsupported('LOCK … IN … MODE (Redshift takes one exclusive lock: LOCK t1, t2)');
      if (isWord(sig[1], 'ONLY') || isWord(sig[2], 'ONLY')) return unsupported('LOCK ONLY');
      break;
    }
    case 'TRUNCATE': {
      // A multi-statement query is a transaction block too.
      if (ctx.inBlock || ctx.multi) return unsupported('TRUNCATE inside a transaction block', ' (it commits the transaction on Redshift)');
      let i = isWord(sig[1], 'TABLE') ? 2 : 1;
      if (!isIdent(sig[i])) break;
      i++;
      while (isOp(sig[i], '.') && isIdent(sig[i + 1])) i += 2;
      if (i < sig.length) return unsupported(`TRUNCATE ${sig[i].text} (Redshift truncates one table, with no options)`);
      break;
    }
    case 'VACUUM':
      if (ctx.inBlock || ctx.multi) return unsupported('VACUUM inside a transaction block', ' (it commits the transaction on Redshift)');
      break;
    case 'SET':
    case 'RESET':
      return checkSet(sig);
    case 'INSERT': {
      // INSERT INTO t AS alias (PostgreSQL's alias for ON CONFLICT) and OVERRIDING.
      if (isIdent(sig[2])) {
        let i = 3;
        while (isOp(sig[i], '.') && isIdent(sig[i + 1])) i += 2;
        if (isWord(sig[i], 'AS') || (isIdent(sig[i]) && !isWord(sig[i], 'VALUES', 'SELECT', 'WITH', 'DEFAULT')))
          return unsupported('INSERT … AS alias');
      }
      if (sig.some((t) => isWord(t, 'OVERRIDING'))) return unsupported('INSERT … OVERRIDING');
      break;
    }
    case 'DELETE': {
      let i = isWord(sig[1], 'FROM') ? 2 : 1;
      if (isWord(sig[i], 'ONLY')) return unsupported('DELETE FROM ONLY');
      if (!isIdent(sig[i])) break;
      i++;
      while (isOp(sig[i], '.') && isIdent(sig[i + 1])) i += 2;
      if (i < sig.length && !isWord(sig[i], 'USING', 'WHERE')) return unsupported('an alias for the target table of DELETE');
      break;
    }
    case 'MERGE': {
      const using = sig.findIndex((t) => isWord(t, 'USING'));
      if (using > 0 && isOp(sig[using + 1], '(')) return unsupported('MERGE with a subquery as source (the source must be a table)');
      break;
    }
    case 'WITH':
      if (sig.some((t) => isWord(t, 'MERGE'))) return unsupported('WITH in a MERGE statement');
      break;
    case 'UNLOAD':
      return notEmulated('UNLOAD');
    case 'ALTER':
      if (isWord(sig[1], 'TABLE')) return checkAlterTable(sig, ctx);
      if (isWord(sig[1], 'SEQUENCE', 'INDEX', 'EXTENSION', 'TYPE', 'DOMAIN')) return unsupported(`ALTER ${sig[1].upper}`);
      break;
  }

  return checkLeaderOnly(sig);
}

function checkAnywhere(sig: Token[]): Refusal | undefined {
  for (let i = 0; i < sig.length; i++) {
    const t = sig[i];
    const next = sig[i + 1];
    if (isOp(t, '[', ']')) return unsupported('arrays and subscripts ([…])');
    if (t.type === 'op' && t.text.includes('@>')) return unsupported('array/JSON containment operators');
    if (t.type !== 'word') {
      if (isOp(t, '::') && next?.type === 'word' && UNSUPPORTED_TYPES.has(next.upper)) return unsupported(`the ${next.upper} type`);
      if (isOp(t, '(') && isWord(next, 'VALUES')) return unsupported('VALUES lists used as constant tables');
      continue;
    }
    // A qualified name's last part (schema.format) is not a function of ours.
    const qualified = isOp(sig[i - 1], '.');
    const call = isOp(next, '(') && !qualified;
    if (t.upper === 'ARRAY') return unsupported('arrays (ARRAY)');
    if (call && UNSUPPORTED_FUNCTIONS[t.upper]) return unsupported(UNSUPPORTED_FUNCTIONS[t.upper]);
    if (call && t.upper.startsWith('ARRAY_')) return unsupported(`arrays (${t.text})`);
    if (call && t.upper.startsWith('TO_REG')) return unsupported(`${t.text.toLowerCase()}()`);
    if (call && (t.upper.startsWith('PG_ADVISORY_') || t.upper.startsWith('PG_TRY_ADVISORY_')))
      return unsupported(`advisory locks (${t.text})`);
    if (call && t.upper.startsWith('JSONB_')) return unsupported(`JSONB (${t.text})`);
    if (t.upper === 'SERIAL' || t.upper === 'BIGSERIAL' || t.upper === 'SMALLSERIAL') return unsupported(`${t.upper} (use IDENTITY)`);
    if (t.upper === 'RETURNING') return unsupported('RETURNING');
    if (t.upper === 'ON' && isWord(next, 'CONFLICT')) return unsupported('INSERT … ON CONFLICT');
    if (t.upper === 'ON' && isWord(next, 'COMMIT')) return unsupported('ON COMMIT (temporary tables last until the session ends)');
    if (t.upper === 'IS' && (isWord(next, 'DISTINCT') || (isWord(next, 'NOT') && isWord(sig[i + 2], 'DISTINCT'))))
      return unsupported('IS [NOT] DISTINCT FROM');
    if (
      t.upper === 'FOR' &&
      (isWord(next, 'UPDATE', 'SHARE') || (isWord(next, 'NO', 'KEY') && isWord(sig[i + 2], 'KEY', 'SHARE', 'UPDATE')))
    )
      return unsupported(`SELECT … FOR ${next.upper} (row locks)`);
    if (t.upper === 'SKIP' && isWord(next, 'LOCKED')) return unsupported('SKIP LOCKED');
    if ((t.upper === 'ANY' || t.upper === 'ALL' || t.upper === 'SOME') && isOp(next, '(') && !isWord(sig[i + 2], 'SELECT', 'WITH')) {
      const prev = sig[i - 1];
      // = ANY(…) / <> ALL(…) over an array; UNION ALL (SELECT …) and SELECT ALL are fine.
      if (prev?.type === 'op' && /[=<>!]/.test(prev.text)) return unsupported(`${t.upper}(array)`);
    }
    if (t.upper === 'VALUES' && i === 0) return unsupported('VALUES lists used as constant tables');
    if (t.upper === 'GENERATED' && isWord(next, 'ALWAYS')) return unsupported('GENERATED ALWAYS (use IDENTITY(seed, step))');
  }
  return undefined;
}

function checkSet(sig: Token[]): Refusal | undefined {
  const reset = isWord(sig[0], 'RESET');
  let i = 1;
  if (!reset && isWord(sig[i], 'SESSION', 'LOCAL')) {
    if (isWord(sig[i], 'SESSION') && isWord(sig[i + 1], 'AUTHORIZATION', 'CHARACTERISTICS')) return undefined;
    i++;
  }
  if (!reset && isWord(sig[i], 'TRANSACTION')) return undefined;
  if (isWord(sig[i], 'ALL') && reset) return undefined;
  if (!reset && isWord(sig[i], 'TIME') && isWord(sig[i + 1], 'ZONE')) return undefined;
  if (isWord(sig[i], 'ROLE')) return unsupported('SET ROLE');
  const nameTok = sig[i];
  if (!isIdent(nameTok)) return undefined;
  let name = identName(nameTok);
  // A session context variable (two-part name).
  if (isOp(sig[i + 1], '.') && isIdent(sig[i + 2])) {
    if (nameTok.type === 'qident') return unsupported('delimited identifiers in context variable names');
    name += '.' + identName(sig[i + 2]);
    return undefined;
  }
  if (name === 'lock_timeout') return unsupported('lock_timeout (bound waits with SET statement_timeout = <integer ms>)');
  if (!REDSHIFT_PARAMETERS.has(name)) {
    return { code: '42704', message: `unrecognized configuration parameter "${name}"${SUFFIX}`, reason: `SET ${name}` };
  }
  if (reset) return undefined;
  const valueAt = isWord(sig[i + 1], 'TO') || isOp(sig[i + 1], '=') ? i + 2 : -1;
  const value = valueAt > 0 ? sig[valueAt] : undefined;
  if (name === 'statement_timeout' && value) {
    const text = value.type === 'string' ? stringValue(value) : value.text;
    const ok = isWord(value, 'DEFAULT') || ((value.type === 'number' || value.type === 'string') && /^\d+$/.test(text));
    if (!ok || valueAt + 1 < sig.length)
      return {
        code: '22023',
        message: `invalid value for parameter "statement_timeout": ${value.text} (Redshift takes an integer number of milliseconds)${SUFFIX}`,
        reason: `SET statement_timeout to a non-integer value (${value.text})`,
      };
  }
  if (name === 'extra_float_digits' && value?.type === 'number' && Number(value.text) > 2) {
    return { code: '22023', message: `extra_float_digits must be between -15 and 2${SUFFIX}`, reason: 'SET extra_float_digits > 2' };
  }
  return undefined;
}

function checkAlterTable(sig: Token[], ctx: StatementContext): Refusal | undefined {
  let i = 2;
  if (isWord(sig[i], 'IF')) return unsupported('ALTER TABLE IF EXISTS');
  if (isWord(sig[i], 'ONLY')) return unsupported('ALTER TABLE ONLY');
  if (!isIdent(sig[i])) return undefined;
  i++;
  while (isOp(sig[i], '.') && isIdent(sig[i + 1])) i += 2;
  const action = sig.slice(i);
  // Top-level commas separate actions.
  const actions: Token[][] = [[]];
  let depth = 0;
  for (const t of action) {
    if (isOp(t, '(')) depth++;
    if (isOp(t, ')')) depth--;
    if (depth === 0 && isOp(t, ',')) actions.push([]);
    else actions[actions.length - 1].push(t);
  }
  const layoutOnly = (a: Token[]) =>
    isWord(a[0], 'ALTER') &&
    (isWord(a[1], 'DISTKEY', 'DISTSTYLE', 'SORTKEY', 'COMPOUND', 'ENCODE') ||
      (isWord(a[1], 'COLUMN') && isWord(a[3], 'ENCODE')) ||
      (isIdent(a[1]) && isWord(a[2], 'ENCODE')));
  if (actions.length > 1 && !actions.every(layoutOnly))
    return unsupported('several ALTER TABLE actions in one statement (one column per ALTER TABLE)');
  for (const a of actions) {
    if (isWord(a[0], 'ADD')) {
      const j = isWord(a[1], 'COLUMN') ? 2 : 1;
      if (isWord(a[j], 'IF')) return unsupported('ADD COLUMN IF NOT EXISTS');
      if (isWord(a[j], 'CHECK') || (isWord(a[j], 'CONSTRAINT') && isWord(a[j + 2], 'CHECK'))) return unsupported('CHECK constraints');
      if (isWord(a[j], 'EXCLUDE') || (isWord(a[j], 'CONSTRAINT') && isWord(a[j + 2], 'EXCLUDE'))) return unsupported('EXCLUDE constraints');
      const isConstraint = isWord(a[j], 'CONSTRAINT', 'PRIMARY', 'UNIQUE', 'FOREIGN');
      if (!isConstraint && a.some((t) => isWord(t, 'PRIMARY', 'UNIQUE', 'REFERENCES', 'IDENTITY', 'GENERATED')))
        return unsupported('ADD COLUMN with UNIQUE, PRIMARY KEY, REFERENCES or IDENTITY');
    } else if (isWord(a[0], 'DROP')) {
      const j = isWord(a[1], 'COLUMN') ? 2 : 1;
      if (isWord(a[j], 'IF')) return unsupported('DROP COLUMN IF EXISTS');
    } else if (isWord(a[0], 'ALTER')) {
      const j = isWord(a[1], 'COLUMN') ? 2 : 1;
      if (isWord(a[j], 'DISTKEY', 'DISTSTYLE', 'SORTKEY', 'COMPOUND', 'ENCODE')) continue;
      const verb = a[j + 1];
      if (isWord(verb, 'ENCODE')) continue;
      if (isWord(verb, 'TYPE')) {
        if (ctx.inBlock || ctx.multi)
          return {
            ...unsupported('ALTER TABLE ALTER COLUMN … TYPE inside a transaction block'),
            code: '25001',
            message: `ALTER TABLE ALTER COLUMN cannot run inside a transaction block${SUFFIX}`,
          };
        if (!isWord(a[j + 2], 'VARCHAR', 'CHARACTER', 'NVARCHAR'))
          return unsupported(`ALTER COLUMN … TYPE ${a[j + 2]?.text ?? ''}`.trim(), ' (only the size of a VARCHAR column can change)');
        if (isWord(a[j + 2], 'CHARACTER') && !isWord(a[j + 3], 'VARYING'))
          return unsupported('ALTER COLUMN … TYPE CHARACTER', ' (only the size of a VARCHAR column can change)');
        continue;
      }
      if (isWord(verb, 'SET') && isWord(a[j + 2], 'DATA'))
        return unsupported('ALTER COLUMN … SET DATA TYPE (use ALTER COLUMN … TYPE VARCHAR(n))');
      return unsupported(`ALTER COLUMN … ${verb?.text.toUpperCase() ?? ''}`.trim(), ' (only TYPE VARCHAR(n) and ENCODE)');
    } else if (isWord(a[0], 'APPEND')) {
      return notEmulated('ALTER TABLE APPEND');
    } else if (isWord(a[0], 'RENAME', 'OWNER', 'ROW')) {
      continue;
    } else {
      return unsupported(`ALTER TABLE … ${a[0]?.text.toUpperCase() ?? ''}`.trim());
    }
  }
  return undefined;
}

function checkLeaderOnly(sig: Token[]): Refusal | undefined {
  const found: string[] = [];
  for (let i = 0; i < sig.length; i++) {
    const t = sig[i];
    if (isOp(t, '::') && sig[i + 1]?.type === 'word' && LEADER_ONLY_TYPES.has(sig[i + 1].upper))
      found.push(`::${sig[i + 1].text.toLowerCase()}`);
    if (t.type !== 'word' || isOp(sig[i - 1], '.')) continue;
    const call = isOp(sig[i + 1], '(');
    if (call && LEADER_ONLY_CALLS.has(t.upper)) found.push(`${t.text.toLowerCase()}()`);
    else if (!call && LEADER_ONLY_KEYWORDS.has(t.upper)) found.push(t.text.toLowerCase());
    else if (call && /^HAS_.*_PRIVILEGE$/.test(t.upper)) found.push(`${t.text.toLowerCase()}()`);
  }
  if (found.length === 0) return undefined;
  const user = referencedRelations(sig).filter((r) => !isCatalogRelation(r));
  if (user.length === 0) return undefined;
  return {
    code: 'XX000',
    message: `Specified types or functions (one per INFO message) not supported on Redshift tables.${SUFFIX}`,
    reason: `leader-node-only function ${found.join(', ')} in a statement over ${user.join(', ')}`,
    notices: found.map((f) => `Function "${f}" not supported.`),
  };
}

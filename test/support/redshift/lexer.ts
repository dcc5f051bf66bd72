// A small SQL lexer for the Redshift stand-in: enough of PostgreSQL's lexical rules (strings,
// E'' strings, quoted identifiers, dollar quotes, nested comments, parameters) that the checks
// and rewrites never look inside a literal, and statements split where the server would.

export type TokenType = 'ws' | 'word' | 'qident' | 'string' | 'dollar' | 'number' | 'param' | 'op';

export interface Token {
  type: TokenType;
  /** The source text of the token. */
  text: string;
  /** Offset of the token in the statement it came from. */
  start: number;
  /** Upper-cased text for words, '' otherwise. */
  upper: string;
}

const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const OP_CHARS = '+-*/<>=~!@#%^&|`?';

export class LexError extends Error {}

export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  const push = (type: TokenType, start: number, end: number) => {
    const text = sql.slice(start, end);
    out.push({ type, text, start, upper: type === 'word' ? text.toUpperCase() : '' });
  };
  while (i < n) {
    const c = sql[i];
    const start = i;
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i])) i++;
      push('ws', start, i);
      continue;
    }
    if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
      push('ws', start, i);
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      let depth = 0;
      while (i < n) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else i++;
      }
      if (depth !== 0) throw new LexError('unterminated /* comment');
      push('ws', start, i);
      continue;
    }
    if (c === "'" || ((c === 'E' || c === 'e') && sql[i + 1] === "'")) {
      const backslash = c !== "'";
      i += backslash ? 2 : 1;
      for (;;) {
        if (i >= n) throw new LexError('unterminated quoted string');
        const ch = sql[i];
        if (backslash && ch === '\\') {
          i += 2;
          continue;
        }
        if (ch === "'") {
          if (sql[i + 1] === "'") {
            i += 2;
            continue;
          }
          i++;
          break;
        }
        i++;
      }
      push('string', start, i);
      continue;
    }
    if (c === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new LexError('unterminated quoted identifier');
        if (sql[i] === '"') {
          if (sql[i + 1] === '"') {
            i += 2;
            continue;
          }
          i++;
          break;
        }
        i++;
      }
      push('qident', start, i);
      continue;
    }
    if (c === '$') {
      const param = /^\$\d+/.exec(sql.slice(i));
      if (param) {
        i += param[0].length;
        push('param', start, i);
        continue;
      }
      const tag = /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        if (end < 0) throw new LexError('unterminated dollar-quoted string');
        i = end + tag[0].length;
        push('dollar', start, i);
        continue;
      }
      i++;
      push('op', start, i);
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(sql[i + 1] ?? ''))) {
      const m = /^(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(sql.slice(i))!;
      i += m[0].length;
      push('number', start, i);
      continue;
    }
    // A leading # names a temporary table on Redshift (#stage).
    if (IDENT_START.test(c) || (c === '#' && IDENT_START.test(sql[i + 1] ?? ''))) {
      i++;
      while (i < n && IDENT_PART.test(sql[i])) i++;
      push('word', start, i);
      continue;
    }
    if (c === ':' && sql[i + 1] === ':') {
      i += 2;
      push('op', start, i);
      continue;
    }
    if (OP_CHARS.includes(c)) {
      while (i < n && OP_CHARS.includes(sql[i]) && !(sql[i] === '-' && sql[i + 1] === '-') && !(sql[i] === '/' && sql[i + 1] === '*')) i++;
      push('op', start, i);
      continue;
    }
    i++;
    push('op', start, i);
  }
  return out;
}

export interface Statement {
  /** The statement's text, without surrounding whitespace and comments. */
  text: string;
  /** Its tokens, with offsets into `text`. */
  tokens: Token[];
  /** Where `text` starts in the query string. */
  offset: number;
}

/** Statements of a query string, split on top-level semicolons; empty ones are dropped. */
export function splitStatements(sql: string): Statement[] {
  const tokens = tokenize(sql);
  const out: Statement[] = [];
  let startIdx = 0;
  const flush = (endIdx: number) => {
    let a = startIdx;
    let b = endIdx;
    while (a < b && tokens[a].type === 'ws') a++;
    while (b > a && tokens[b - 1].type === 'ws') b--;
    if (a === b) return;
    const from = tokens[a].start;
    const last = tokens[b - 1];
    const text = sql.slice(from, last.start + last.text.length);
    out.push({ text, tokens: tokens.slice(a, b).map((t) => ({ ...t, start: t.start - from })), offset: from });
  };
  tokens.forEach((t, idx) => {
    if (t.type === 'op' && t.text === ';') {
      flush(idx);
      startIdx = idx + 1;
    }
  });
  flush(tokens.length);
  return out;
}

/** The significant tokens (no whitespace or comments). */
export function significant(tokens: Token[]): Token[] {
  return tokens.filter((t) => t.type !== 'ws');
}

/** The value of a string literal token ('' escapes; E'' backslash escapes, simply). */
export function stringValue(t: Token): string {
  if (t.type !== 'string') throw new Error('not a string literal');
  if (t.text.startsWith("'")) return t.text.slice(1, -1).replace(/''/g, "'");
  return t.text
    .slice(2, -1)
    .replace(/''/g, "'")
    .replace(/\\(.)/g, (_m, ch: string) => ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' })[ch] ?? ch);
}

/** The name an identifier token stands for (unquoted words fold to lower case; so do quoted ones on Redshift). */
export function identName(t: Token): string {
  if (t.type === 'qident') return t.text.slice(1, -1).replace(/""/g, '"').toLowerCase();
  return t.text.toLowerCase();
}

export function isIdent(t: Token | undefined): t is Token {
  return !!t && (t.type === 'word' || t.type === 'qident');
}

export function isWord(t: Token | undefined, ...words: string[]): boolean {
  return !!t && t.type === 'word' && (words.length === 0 || words.includes(t.upper));
}

export function isOp(t: Token | undefined, ...ops: string[]): boolean {
  return !!t && t.type === 'op' && ops.includes(t.text);
}

/** Index of the token closing the parenthesis opened at `open` (significant tokens). */
export function matchParen(sig: Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < sig.length; i++) {
    if (isOp(sig[i], '(')) depth++;
    else if (isOp(sig[i], ')')) {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** A double-quoted identifier for a name. */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** A standard string literal. */
export function quoteLiteral(value: string): string {
  return "'" + value.replace(/'/g, "''") + "'";
}

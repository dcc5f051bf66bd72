// One client connection of the stand-in: the wire protocol towards the client, one pg.Client
// towards the backend PostgreSQL, and Redshift's rules in between.

import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

import type { S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';

import { CopyFailure, parseCopy, runCopy, type CopyCommand, type LoadError } from './copy.js';
import { isWord, LexError, quoteIdent, significant, splitStatements, type Statement } from './lexer.js';
import { checkStatement, MAX_STATEMENT_BYTES, type Refusal } from './rules.js';
import { CHAR_CHECK_PREFIX, planStatement, VARCHAR_CHECK_PREFIX, type PositionMap } from './translate.js';
import * as wire from './wire.js';

/** What the session needs from the stand-in as a whole. */
export interface Shared {
  password: string;
  backendUrl: string;
  s3: S3Client;
  region: string;
  statements: string[];
  copies: CopyRecord[];
  refused: { sql: string; reason: string }[];
  /** Key columns (PRIMARY KEY, UNIQUE, REFERENCES) by table oid: stripped from the DDL, remembered for ALTER COLUMN. */
  keyColumns: Map<number, Set<string>>;
  faults: { failCommits: number; injected: number };
  sessions: Set<Session>;
  nextQueryId(): number;
  /** An autocommit connection to a database, for work outside the client's transaction. */
  side(database: string): Promise<pg.Client>;
  ensureCatalog(database: string): Promise<void>;
}

export interface CopyRecord {
  table: string;
  from: string;
  rows: number;
  manifest: boolean;
  /** The objects read. */
  files: string[];
  /** The COPY's option keywords, e.g. 'IAM_ROLE', 'COMPUPDATE OFF'. */
  options: string[];
}

/** Startup parameters node-pg and the usual drivers send; Redshift rejects exotic ones. */
const STARTUP_PARAMETERS = new Set([
  'user',
  'database',
  'application_name',
  'client_encoding',
  'DateStyle',
  'TimeZone',
  'extra_float_digits',
]);

const RAW_TYPES = { getTypeParser: () => (v: string) => v };

/** node-pg's query config as node-pg takes it (its types lack queryMode). */
interface BackendQuery {
  text: string;
  values?: unknown[];
  rowMode?: 'array';
  queryMode?: 'extended';
  types?: typeof RAW_TYPES;
}

interface Result {
  fields?: wire.FieldInfo[];
  rows: (string | null)[][];
  tag: string;
  empty?: boolean;
}

/** An error for the client, with PostgreSQL's fields. */
export class ClientError extends Error {
  constructor(readonly fields: wire.ErrorFields) {
    super(fields.message);
  }
}

type PreparedStatement = Statement;

interface Portal {
  statement: PreparedStatement;
  params: (string | Buffer | null)[];
  result?: Result;
  sent: number;
}

export class Session {
  private readonly buffer = new wire.MessageBuffer();
  private phase: 'startup' | 'auth' | 'ready' | 'closed' = 'startup';
  private queue: Promise<void> = Promise.resolve();
  private user = '';
  private database = '';
  private applicationName = '';
  private startupSettings: string[] = [];
  private salt = randomBytes(4);
  private backend: pg.Client | undefined;
  pid = 0;
  readonly secret = randomInt(1, 2 ** 31 - 1);
  /** Transaction status of the backend, as its last ReadyForQuery said. */
  private status = 'I';
  /** Inside the implicit transaction the stand-in opened for a multi-statement query. */
  private wrapper = false;
  /** The open transaction has run LOCK. */
  private locked = false;
  private lockedTables: string[] = [];
  private tags: string[] = [];
  /** ReadyForQuery messages seen from the backend, and who waits for the next ones. */
  private readySeen = 0;
  private readyWaiters: { n: number; resolve: () => void }[] = [];
  /** Backend queries in flight. */
  private busy = 0;
  private rowDescription = false;
  private lastCopyId = -1;
  private lastCopyCount = -1;
  private readonly statementsByName = new Map<string, PreparedStatement>();
  private readonly portals = new Map<string, Portal>();
  private skipping = false;

  constructor(
    private readonly socket: Socket,
    private readonly shared: Shared,
  ) {
    shared.sessions.add(this);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.buffer.push(chunk);
      this.pump();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => void this.close());
  }

  private write(b: Buffer): void {
    if (this.phase !== 'closed' && !this.socket.destroyed) this.socket.write(b);
  }

  private pump(): void {
    try {
      for (;;) {
        if (this.phase === 'closed') return;
        if (this.phase === 'startup') {
          const p = this.buffer.nextStartup();
          if (!p) return;
          this.enqueue(() => this.onStartup(p));
          if (p.kind === 'startup' || p.kind === 'cancel') this.phase = p.kind === 'startup' ? 'auth' : 'closed';
          continue;
        }
        const m = this.buffer.next();
        if (!m) return;
        this.enqueue(() => (this.phase === 'auth' ? this.onAuth(m) : this.onMessage(m)));
      }
    } catch (err) {
      this.fatal('08P01', (err as Error).message);
    }
  }

  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue
      .then(fn)
      .catch((err: unknown) => this.fatal('XX000', `stand-in internal error: ${(err as Error).stack ?? String(err)}`));
  }

  private fatal(code: string, message: string): void {
    this.write(wire.errorResponse({ severity: 'FATAL', code, message }));
    this.socket.end();
    void this.close();
  }

  async close(): Promise<void> {
    if (this.phase === 'closed' && !this.backend) {
      this.shared.sessions.delete(this);
      return;
    }
    this.phase = 'closed';
    this.shared.sessions.delete(this);
    const b = this.backend;
    this.backend = undefined;
    // A client gone mid-statement (killed, say): end the backend's work now, as a server notices a
    // closed connection, rather than when a lock wait or long statement finishes.
    if (b && this.busy > 0 && this.pid && this.database) {
      const side = await this.shared.side(this.database).catch(() => undefined);
      await side?.query('SELECT pg_terminate_backend($1)', [this.pid]).catch(() => undefined);
    }
    if (b) await b.end().catch(() => undefined);
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** Cancels the statement running on this session's backend (a CancelRequest). */
  async cancel(): Promise<void> {
    if (!this.pid || !this.database) return;
    const side = await this.shared.side(this.database);
    await side.query('SELECT pg_cancel_backend($1)', [this.pid]).catch(() => undefined);
  }

  // ---- startup and authentication -------------------------------------------------------------

  private async onStartup(p: wire.StartupPacket): Promise<void> {
    if (p.kind === 'ssl' || p.kind === 'gssenc') {
      // No TLS here: sslmode=disable clients go on in plain text.
      if (!this.socket.destroyed) this.socket.write('N');
      return;
    }
    if (p.kind === 'cancel') {
      for (const s of this.shared.sessions) if (s !== this && s.pid === p.pid && s.secret === p.secret) await s.cancel();
      this.socket.end();
      return;
    }
    if (p.version !== wire.PROTOCOL_3) return this.fatal('0A000', `unsupported frontend protocol ${p.version >> 16}.${p.version & 0xffff}`);
    for (const [k, v] of p.params) {
      if (!STARTUP_PARAMETERS.has(k)) {
        this.shared.refused.push({ sql: `startup packet: ${k}=${v}`, reason: `startup parameter ${k}` });
        return this.fatal('0A000', `startup parameter "${k}" is not accepted by Redshift (refused by the Redshift stand-in)`);
      }
    }
    const enc = p.params.get('client_encoding');
    if (enc !== undefined && !/^utf-?8$/i.test(enc)) return this.fatal('22023', `client_encoding must be UTF8, not ${enc}`);
    const efd = p.params.get('extra_float_digits');
    if (efd !== undefined && !(Number(efd) >= -15 && Number(efd) <= 2))
      return this.fatal('22023', 'extra_float_digits must be between -15 and 2');
    this.user = p.params.get('user') ?? '';
    if (!this.user) return this.fatal('28000', 'no user name given in the startup packet');
    this.database = p.params.get('database') || this.user;
    this.applicationName = p.params.get('application_name') ?? '';
    for (const k of ['DateStyle', 'TimeZone', 'extra_float_digits']) {
      const v = p.params.get(k);
      if (v !== undefined) this.startupSettings.push(`-c ${k}=${v.replace(/[\s\\]/g, (c) => '\\' + c)}`);
    }
    // Redshift asks for an MD5 password by default.
    this.write(wire.authenticationMd5(this.salt));
  }

  private async onAuth(m: wire.FrontendMessage): Promise<void> {
    if (m.type !== 'Password') return this.fatal('08P01', `expected a password message, got ${m.type}`);
    const inner = createHash('md5')
      .update(this.shared.password + this.user)
      .digest('hex');
    const expected = 'md5' + createHash('md5').update(inner).update(this.salt).digest('hex');
    if (m.password !== expected) return this.fatal('28P01', `password authentication failed for user "${this.user}"`);
    const url = new URL(this.shared.backendUrl);
    url.pathname = '/' + encodeURIComponent(this.database);
    // Redshift's session defaults: UTC, ISO/MDY dates, floats shown with 15 significant digits.
    const options = ['-c TimeZone=UTC', '-c DateStyle=ISO,MDY', '-c extra_float_digits=0', ...this.startupSettings].join(' ');
    const backend = new pg.Client({
      connectionString: url.toString(),
      options,
      application_name: this.applicationName || 'redshift-standin',
    });
    backend.on('error', () => {
      if (this.phase !== 'closed') this.fatal('57P01', 'terminating connection: the backend of the Redshift stand-in went away');
    });
    try {
      await backend.connect();
    } catch (err) {
      await backend.end().catch(() => undefined);
      const e = err as { code?: string; message?: string };
      return this.fatal(e.code ?? '08006', e.message ?? String(err));
    }
    this.backend = backend;
    const con = (backend as unknown as { connection: EventEmitter }).connection;
    con.on('readyForQuery', (msg: { status: string }) => {
      this.status = msg.status;
      this.readySeen++;
      this.readyWaiters = this.readyWaiters.filter((w) => (w.n <= this.readySeen ? (w.resolve(), false) : true));
      if (msg.status === 'I') {
        this.locked = false;
        this.lockedTables = [];
      }
    });
    con.on('commandComplete', (msg: { text: string }) => this.tags.push(msg.text));
    con.on('rowDescription', () => {
      this.rowDescription = true;
    });
    backend.on('notice', (n) => {
      if (this.phase === 'ready')
        this.write(wire.noticeResponse({ severity: n.severity ?? 'NOTICE', code: n.code ?? '00000', message: n.message ?? '' }));
    });
    const pidRes = await this.raw<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    this.pid = pidRes.rows[0].pid;
    await this.shared.ensureCatalog(this.database);
    this.phase = 'ready';
    this.write(wire.authenticationOk());
    for (const [k, v] of [
      ['server_version', '8.0.2'],
      ['server_encoding', 'UNICODE'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['TimeZone', 'UTC'],
      ['integer_datetimes', 'on'],
      ['is_superuser', 'off'],
      ['session_authorization', this.user],
      ['application_name', this.applicationName],
    ] as const)
      this.write(wire.parameterStatus(k, v));
    this.write(wire.backendKeyData(this.pid, this.secret));
    this.write(wire.readyForQuery('I'));
  }

  // ---- messages ---------------------------------------------------------------------------------

  private async onMessage(m: wire.FrontendMessage): Promise<void> {
    if (m.type === 'Terminate') {
      this.socket.end();
      await this.close();
      return;
    }
    if (m.type === 'Query') return this.simpleQuery(m.sql);
    if (m.type === 'Sync') {
      this.skipping = false;
      this.write(wire.readyForQuery(this.status));
      return;
    }
    if (m.type === 'Flush') return;
    if (this.skipping) return;
    try {
      await this.extended(m);
    } catch (err) {
      this.sendError(err);
      this.skipping = true;
    }
  }

  private async simpleQuery(sql: string): Promise<void> {
    let stmts: Statement[];
    try {
      stmts = splitStatements(sql);
    } catch (err) {
      if (!(err instanceof LexError)) throw err;
      this.shared.statements.push(sql);
      this.sendError(new ClientError({ severity: 'ERROR', code: '42601', message: err.message }));
      this.write(wire.readyForQuery(this.status));
      return;
    }
    if (stmts.length === 0) {
      this.write(wire.emptyQueryResponse());
      this.write(wire.readyForQuery(this.status));
      return;
    }
    const multi = stmts.length > 1;
    const txControl = stmts.some((s) => isWord(significant(s.tokens)[0], 'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT'));
    // Several statements in one Query run as one transaction, unless they manage their own.
    const wrap = multi && this.status === 'I' && !txControl;
    try {
      if (wrap) {
        await this.raw('BEGIN');
        this.wrapper = true;
      }
      for (const s of stmts) {
        this.shared.statements.push(s.text);
        const r = await this.runStatement(s, undefined, multi);
        this.sendResult(r, true, 0);
      }
      if (wrap) {
        this.wrapper = false;
        await this.raw('COMMIT');
      }
    } catch (err) {
      if (wrap && this.status !== 'I') await this.raw('ROLLBACK').catch(() => undefined);
      this.sendError(err);
    } finally {
      this.wrapper = false;
    }
    this.write(wire.readyForQuery(this.status));
  }

  private async extended(m: wire.FrontendMessage): Promise<void> {
    switch (m.type) {
      case 'Parse': {
        let stmts: Statement[];
        try {
          stmts = splitStatements(m.sql);
        } catch (err) {
          if (err instanceof LexError) throw new ClientError({ severity: 'ERROR', code: '42601', message: err.message });
          throw err;
        }
        if (stmts.length > 1)
          throw new ClientError({ severity: 'ERROR', code: '42601', message: 'cannot insert multiple commands into a prepared statement' });
        const s = stmts[0] ?? { text: '', tokens: [], offset: 0 };
        this.shared.statements.push(s.text);
        this.statementsByName.set(m.name, s);
        this.write(wire.parseComplete());
        return;
      }
      case 'Bind': {
        const statement = this.statementsByName.get(m.statement);
        if (!statement)
          throw new ClientError({ severity: 'ERROR', code: '26000', message: `prepared statement "${m.statement}" does not exist` });
        if (m.resultFormats.some((f) => f !== 0))
          throw new ClientError({
            severity: 'ERROR',
            code: '0A000',
            message: 'binary result formats are not emulated by the Redshift stand-in',
          });
        const params = m.params.map((p, i) => {
          if (p === null) return null;
          const fmt = m.paramFormats.length === 0 ? 0 : m.paramFormats.length === 1 ? m.paramFormats[0] : m.paramFormats[i];
          return fmt === 1 ? p : p.toString('utf8');
        });
        this.portals.set(m.portal, { statement, params, sent: 0 });
        this.write(wire.bindComplete());
        return;
      }
      case 'Describe': {
        if (m.target === 'S') {
          if (!this.statementsByName.has(m.name))
            throw new ClientError({ severity: 'ERROR', code: '26000', message: `prepared statement "${m.name}" does not exist` });
          throw new ClientError({
            severity: 'ERROR',
            code: '0A000',
            message: 'Describe of a prepared statement is not emulated by the Redshift stand-in',
          });
        }
        const portal = this.portal(m.name);
        portal.result ??= await this.runStatement(portal.statement, portal.params, false);
        if (portal.result.fields) this.write(wire.rowDescription(portal.result.fields));
        else this.write(wire.noData());
        return;
      }
      case 'Execute': {
        const portal = this.portal(m.portal);
        portal.result ??= await this.runStatement(portal.statement, portal.params, false);
        const r = portal.result;
        const remaining = r.rows.length - portal.sent;
        const n = m.maxRows > 0 ? Math.min(m.maxRows, remaining) : remaining;
        for (let i = 0; i < n; i++) this.write(wire.dataRow(r.rows[portal.sent + i]));
        portal.sent += n;
        if (m.maxRows > 0 && portal.sent < r.rows.length) this.write(wire.portalSuspended());
        else if (r.empty) this.write(wire.emptyQueryResponse());
        else this.write(wire.commandComplete(r.tag));
        return;
      }
      case 'Close':
        if (m.target === 'S') this.statementsByName.delete(m.name);
        else this.portals.delete(m.name);
        this.write(wire.closeComplete());
        return;
      default:
        throw new ClientError({
          severity: 'ERROR',
          code: '0A000',
          message: `frontend message ${m.type === 'Other' ? m.code : m.type} is not supported by the Redshift stand-in`,
        });
    }
  }

  private portal(name: string): Portal {
    const p = this.portals.get(name);
    if (!p) throw new ClientError({ severity: 'ERROR', code: '34000', message: `portal "${name}" does not exist` });
    return p;
  }

  private sendResult(r: Result, describe: boolean, from: number): void {
    if (r.empty) {
      this.write(wire.emptyQueryResponse());
      return;
    }
    if (describe && r.fields) this.write(wire.rowDescription(r.fields));
    for (let i = from; i < r.rows.length; i++) this.write(wire.dataRow(r.rows[i]));
    this.write(wire.commandComplete(r.tag));
  }

  private sendError(err: unknown): void {
    if (err instanceof ClientError) {
      this.write(wire.errorResponse(err.fields));
      return;
    }
    const e = err as Error & Partial<Record<keyof wire.ErrorFields, string>>;
    if (typeof e.code === 'string' && typeof e.severity === 'string') {
      this.write(wire.errorResponse({ ...(e as unknown as wire.ErrorFields), position: undefined }));
      return;
    }
    this.write(wire.errorResponse({ severity: 'ERROR', code: 'XX000', message: `stand-in internal error: ${e.message ?? String(err)}` }));
  }

  // ---- statements -------------------------------------------------------------------------------

  private async runStatement(stmt: Statement, params: (string | Buffer | null)[] | undefined, multi: boolean): Promise<Result> {
    const { text, tokens } = stmt;
    if (tokens.length === 0) return { rows: [], tag: '', empty: true };
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_STATEMENT_BYTES) {
      return this.refuse(text, {
        code: '54000',
        message: `Statement is too large. Statement Size: ${bytes} bytes. Maximum Allowed: ${MAX_STATEMENT_BYTES} bytes (refused by the Redshift stand-in)`,
        reason: `statement over 16 MB (${bytes} bytes)`,
      });
    }
    const sig = significant(tokens);
    const inBlock = this.status !== 'I' && !this.wrapper;
    const refusal = checkStatement(sig, { inBlock, multi });
    if (refusal) return this.refuse(text, refusal);
    const plan = planStatement(tokens, { lastCopyId: this.lastCopyId, lastCopyCount: this.lastCopyCount });
    if (plan.kind === 'refuse') return this.refuse(text, plan.refusal);
    const word = sig[0].upper;
    if (this.status === 'E' && plan.kind !== 'exec') {
      throw new ClientError({
        severity: 'ERROR',
        code: '25P02',
        message: 'current transaction is aborted, commands ignored until end of transaction block',
      });
    }
    switch (plan.kind) {
      case 'noop':
        return { rows: [], tag: plan.tag };
      case 'copy': {
        const cmd = parseCopy(sig);
        if ('code' in cmd) return this.refuse(text, cmd);
        return this.copy(cmd);
      }
      case 'alter-varchar':
        return this.alterVarchar(plan.table, plan.column, plan.length);
      case 'exec': {
        if ((word === 'COMMIT' || word === 'END') && this.status === 'T' && this.locked && this.shared.faults.failCommits > 0)
          return this.injectConflict();
        const r = await this.backendQuery(plan.sql, params, { map: plan.map, offset: stmt.offset });
        if (plan.lockTables) {
          this.locked = true;
          this.lockedTables.push(...plan.lockTables);
        }
        if (plan.keyColumns && plan.keyColumns.columns.length > 0) {
          const oid = await this.raw<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [plan.keyColumns.table]);
          const o = oid.rows[0]?.oid;
          if (o) this.shared.keyColumns.set(o, new Set(plan.keyColumns.columns));
        }
        return r;
      }
    }
  }

  private async backendQuery(
    sql: string,
    params?: (string | Buffer | null)[],
    map?: { map: PositionMap; offset: number },
  ): Promise<Result> {
    this.tags = [];
    this.rowDescription = false;
    try {
      const res = await this.raw({
        text: sql,
        ...(params ? { values: params, queryMode: 'extended' as const } : {}),
        rowMode: 'array',
        types: RAW_TYPES,
      });
      const fields = this.rowDescription
        ? res.fields.map((f) => ({
            name: f.name,
            tableID: f.tableID,
            columnID: f.columnID,
            dataTypeID: f.dataTypeID,
            dataTypeSize: f.dataTypeSize,
            dataTypeModifier: f.dataTypeModifier,
          }))
        : undefined;
      return {
        ...(fields ? { fields } : {}),
        rows: (res.rows ?? []) as unknown as (string | null)[][],
        tag: this.tags.pop() ?? res.command ?? '',
      };
    } catch (err) {
      throw this.clientErrorFrom(err, map);
    }
  }

  /** A backend error as the client sees it: positions mapped back, byte-length checks as Redshift's errors. */
  private clientErrorFrom(err: unknown, map?: { map: PositionMap; offset: number }): unknown {
    const e = err as pg.DatabaseError;
    if (typeof e.code !== 'string' || typeof e.severity !== 'string') return err;
    const fields: wire.ErrorFields = {
      severity: e.severity,
      code: e.code,
      message: e.message,
      ...(e.detail ? { detail: e.detail } : {}),
      ...(e.hint ? { hint: e.hint } : {}),
      ...(e.position && map ? { position: map.offset + map.map.source(Number(e.position)) } : {}),
      ...(e.where ? { where: e.where } : {}),
      ...(e.schema ? { schema: e.schema } : {}),
      ...(e.table ? { table: e.table } : {}),
      ...(e.column ? { column: e.column } : {}),
      ...(e.dataType ? { dataType: e.dataType } : {}),
      ...(e.routine ? { routine: e.routine } : {}),
    };
    const vc = e.constraint ? new RegExp(`^${VARCHAR_CHECK_PREFIX}(\\d+)_`).exec(e.constraint) : null;
    if (e.code === '23514' && vc)
      return new ClientError({ severity: 'ERROR', code: '22001', message: `value too long for type character varying(${vc[1]})` });
    if (e.code === '23514' && e.constraint?.startsWith(CHAR_CHECK_PREFIX))
      return new ClientError({
        severity: 'ERROR',
        code: 'XX000',
        message: 'Multibyte character not supported for CHAR (Hint: try using VARCHAR)',
      });
    if (e.code === '57014')
      return new ClientError({ ...fields, message: `Query (${this.shared.nextQueryId()}) canceled on user's request` });
    return new ClientError(fields);
  }

  private async refuse(text: string, r: Refusal): Promise<never> {
    this.shared.refused.push({ sql: text, reason: r.reason });
    for (const n of r.notices ?? []) this.write(wire.noticeResponse({ severity: 'INFO', code: '00000', message: n }));
    // On Redshift the failed statement aborts the open transaction.
    if (this.status === 'T') await this.abortTransaction();
    throw new ClientError({ severity: 'ERROR', code: r.code, message: r.message });
  }

  private async abortTransaction(): Promise<void> {
    await this.raw('SELECT 1/0').catch(() => undefined);
  }

  /**
   * Every backend query goes through here. node-pg rejects a query on its ErrorResponse, before
   * the ReadyForQuery that carries the new transaction status: wait for that one too.
   */
  private async raw<R extends pg.QueryResultRow = Record<string, unknown>>(
    config: string | BackendQuery,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const backend = this.backend;
    if (!backend) throw new ClientError({ severity: 'FATAL', code: '57P01', message: 'the session is closed' });
    const n = this.readySeen + 1;
    this.busy++;
    try {
      return await (typeof config === 'string' ? backend.query<R>(config, values) : backend.query<R>(config as pg.QueryConfig));
    } catch (err) {
      const e = err as { code?: unknown; severity?: unknown };
      if (typeof e.code === 'string' && typeof e.severity === 'string' && this.backend) {
        await new Promise<void>((resolve) => {
          if (this.readySeen >= n) resolve();
          else this.readyWaiters.push({ n, resolve });
        });
      }
      throw err;
    } finally {
      this.busy--;
    }
  }

  private async injectConflict(): Promise<Result> {
    this.shared.faults.failCommits -= 1;
    this.shared.faults.injected += 1;
    let oid = 0;
    if (this.lockedTables[0]) {
      const r = await this.raw<{ oid: number | null }>('SELECT to_regclass($1)::oid::int AS oid', [this.lockedTables[0]]).catch(
        () => undefined,
      );
      oid = r?.rows[0]?.oid ?? 0;
    }
    await this.raw('ROLLBACK');
    const a = randomInt(1000, 900000);
    throw new ClientError({
      severity: 'ERROR',
      code: 'XX000',
      message: '1023',
      detail: `Serializable isolation violation on table - ${oid}, transactions forming the cycle are: ${a}, ${a + randomInt(1, 50)} (pid:${this.pid})`,
    });
  }

  private async copy(cmd: CopyCommand): Promise<Result> {
    const queryId = this.shared.nextQueryId();
    const inTxn = this.status === 'T';
    const q = async (text: string, values?: unknown[]) => {
      try {
        return await this.raw(text, values);
      } catch (err) {
        throw this.clientErrorFrom(err);
      }
    };
    await q(inTxn ? 'SAVEPOINT rs_copy' : 'BEGIN');
    this.lastCopyId = queryId;
    let result;
    try {
      result = await runCopy(cmd, {
        query: q,
        s3: this.shared.s3,
        region: this.shared.region,
        inBlock: inTxn,
        recordErrors: (errors, tableId) => this.recordErrors(errors, tableId, queryId),
        notice: (message) => this.write(wire.noticeResponse({ severity: 'INFO', code: '00000', message })),
      });
      await q(inTxn ? 'RELEASE SAVEPOINT rs_copy' : 'COMMIT');
    } catch (err) {
      if (inTxn) {
        await this.raw('ROLLBACK TO SAVEPOINT rs_copy').catch(() => undefined);
        // A failed COPY aborts the transaction it runs in.
        await this.abortTransaction();
      } else await this.raw('ROLLBACK').catch(() => undefined);
      this.lastCopyCount = 0;
      if (err instanceof CopyFailure) throw new ClientError(err.fields);
      throw err;
    }
    this.lastCopyCount = result.rows;
    this.shared.copies.push({
      table: cmd.tableName,
      from: cmd.source,
      rows: result.rows,
      manifest: cmd.manifest,
      files: result.files,
      options: cmd.options,
    });
    return { rows: [], tag: `COPY ${result.rows}` };
  }

  private async recordErrors(errors: LoadError[], tableId: number, queryId: number): Promise<void> {
    const side = await this.shared.side(this.database);
    const start = new Date().toISOString().replace('T', ' ').replace('Z', '');
    // PostgreSQL text cannot hold NUL.
    const cut = (s: string, n: number) => s.replace(/\0/g, '.').slice(0, n);
    for (const e of errors.slice(0, 100)) {
      await side.query(
        `INSERT INTO redshift_standin.stl_load_errors
           (userid, slice, tbl, starttime, session, query, filename, line_number, colname, type, col_length, position,
            raw_line, raw_field_value, err_code, err_reason, is_partial, start_offset, copy_job_id)
         VALUES (100, 0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, 0)`,
        [
          tableId,
          start,
          this.pid,
          queryId,
          cut(e.file, 256),
          e.line,
          cut(e.column, 127),
          cut(e.type, 10),
          cut(e.length, 10),
          e.position,
          cut(e.rawLine, 1024),
          cut(e.rawField, 1024),
          e.code,
          cut(e.reason, 100),
        ],
      );
      await side.query(
        `INSERT INTO redshift_standin.sys_load_error_detail
           (user_id, query_id, transaction_id, session_id, database_name, table_id, start_time, file_name, line_number,
            column_name, column_type, column_length, position, error_code, error_message)
         VALUES (100, $1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          queryId,
          this.pid,
          cut(this.database, 64),
          tableId,
          start,
          cut(e.file, 256),
          e.line,
          cut(e.column, 127),
          cut(e.type, 10),
          cut(e.length, 10),
          e.position,
          e.code,
          cut(e.reason, 512),
        ],
      );
    }
  }

  /** ALTER TABLE t ALTER COLUMN c TYPE VARCHAR(n): the byte-length check moves with the declared size. */
  private async alterVarchar(table: string, column: string, length: number): Promise<Result> {
    const q = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => {
      try {
        return await this.raw<R>(text, values);
      } catch (err) {
        throw this.clientErrorFrom(err);
      }
    };
    const fail = (code: string, message: string) => new ClientError({ severity: 'ERROR', code, message });
    await q('BEGIN');
    try {
      const info = await q<{ attnum: number; typname: string; atthasdef: boolean; oid: number }>(
        `SELECT a.attnum, t.typname, a.atthasdef, a.attrelid::int AS oid
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = $1::regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`,
        [table, column],
      );
      const col = info.rows[0];
      if (!col) throw fail('42703', `column "${column}" of relation "${table.replace(/"/g, '')}" does not exist`);
      if (col.typname !== 'varchar')
        throw fail('0A000', `ALTER COLUMN TYPE can change only the size of a VARCHAR column ("${column}" is ${col.typname})`);
      if (col.atthasdef) throw fail('0A000', `cannot alter column "${column}" with a default value`);
      if (this.shared.keyColumns.get(col.oid)?.has(column))
        throw fail('0A000', `cannot alter column "${column}": it is part of a UNIQUE, PRIMARY KEY or FOREIGN KEY constraint`);
      const c = quoteIdent(column);
      const max = await q<{ m: number }>(`SELECT coalesce(max(octet_length(${c})), 0)::int AS m FROM ${table}`);
      if (max.rows[0].m > length) throw fail('XX000', 'target column size should be greater or equal to current maximum column size');
      const checks = await q<{ conname: string }>(
        `SELECT conname FROM pg_constraint WHERE conrelid = $1 AND contype = 'c' AND conkey = ARRAY[$2::int2] AND conname LIKE '${VARCHAR_CHECK_PREFIX}%'`,
        [col.oid, col.attnum],
      );
      const actions = [
        ...checks.rows.map((r) => `DROP CONSTRAINT ${quoteIdent(r.conname)}`),
        `ALTER COLUMN ${c} TYPE varchar(${length})`,
        `ADD CONSTRAINT ${VARCHAR_CHECK_PREFIX}${length}_${randomBytes(4).toString('hex')} CHECK (octet_length(${c}) <= ${length})`,
      ];
      await q(`ALTER TABLE ${table} ${actions.join(', ')}`);
      await q('COMMIT');
    } catch (err) {
      await this.raw('ROLLBACK').catch(() => undefined);
      throw err;
    }
    return { rows: [], tag: 'ALTER TABLE' };
  }
}

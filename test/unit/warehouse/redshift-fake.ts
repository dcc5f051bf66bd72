// A fake Redshift for the dialect's unit tests: pg clients that record every statement they are
// sent and answer from a little state (which tables exist, their columns, the lease rows, the
// lake claim), so that the lease logic, the load transaction's order and retries, and the SQL
// the dialect emits can be checked without a server. It checks no SQL itself: the tests do.

import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { RUN_COLUMNS, RUNS_EXPECTED_COLUMNS } from '../../../lib/adapters/warehouse/core/runs.js';

export interface Sent {
  session: number;
  sql: string;
  values?: unknown[];
}

export interface LeaseState {
  run_id: string;
  token: string;
  host: string;
  pid: number;
  boot_id: string | null;
  ttl_ms: number;
  /** Seconds since the last heartbeat. */
  idle_s: number;
  held_s: number;
}

export interface FakeColumn {
  table_name: string;
  column_name: string;
  data_type: string;
  character_maximum_length: number | null;
}

/** Columns of every table as sql/redshift/init.sql creates them; `narrow` gives KPI strings VARCHAR(255) (the original DDL). */
export function redshiftColumns(narrow = false): FakeColumn[] {
  const v = (n: number) => ({ data_type: 'character varying', character_maximum_length: n });
  const t = (data_type: string) => ({ data_type, character_maximum_length: null });
  const kpi = narrow ? 255 : 1020;
  const spec: Record<string, Record<string, { data_type: string; character_maximum_length: number | null }>> = {
    hourly_kpis: {
      listen_date: t('date'),
      listen_hour: t('integer'),
      unique_listeners: t('integer'),
      listen_counts: t('integer'),
      top_artist: v(kpi),
      avg_sessions_per_user: t('double precision'),
      diversity_index: t('double precision'),
      most_engaged_age_group: v(kpi),
    },
    genre_level_kpis: {
      listen_date: t('date'),
      track_genre: v(kpi),
      listen_count: t('integer'),
      popularity_index: t('double precision'),
      average_duration: t('double precision'),
      most_popular_track_id: v(kpi),
    },
    musickpi_ledger: {
      file_key: v(1024),
      fingerprint: v(256),
      size: t('bigint'),
      rows: t('bigint'),
      run_id: v(256),
      loaded_at: t('timestamp with time zone'),
      archived_key: v(1024),
      hourly_loaded: t('boolean'),
      genre_loaded: t('boolean'),
      archived_fingerprint: v(256),
      content_hash: v(64),
      retracted_at: t('timestamp with time zone'),
    },
    musickpi_ledger_dates: { file_key: v(1024), fingerprint: v(256), listen_date: t('date') },
    musickpi_lake: { id: t('boolean'), lake: v(4096), claimed_at: t('timestamp with time zone') },
    musickpi_runs: Object.fromEntries(
      RUN_COLUMNS.map(([name, width]) => [name, width === null ? t(RUNS_EXPECTED_COLUMNS[name]) : v(width)]),
    ),
    musickpi_run_lock: {
      run_id: v(256),
      token: v(64),
      host: v(1020),
      pid: t('integer'),
      boot_id: v(64),
      taken_at: t('timestamp without time zone'),
      heartbeat_at: t('timestamp without time zone'),
      ttl_ms: t('bigint'),
    },
    musickpi_listen_files: {
      file_id: t('integer'),
      file_key: v(1024),
      fingerprint: v(256),
      rows: t('bigint'),
      run_id: v(256),
      stored_at: t('timestamp with time zone'),
    },
    musickpi_listens: {
      file_id: t('integer'),
      line: t('bigint'),
      user_id: v(65535),
      track_id: v(65535),
      listen_date: t('date'),
      listen_hour: t('smallint'),
    },
  };
  return Object.entries(spec).flatMap(([table_name, cols]) =>
    Object.entries(cols).map(([column_name, c]) => ({ table_name, column_name, ...c })),
  );
}

type Result = Partial<pg.QueryResult> & { rows?: unknown[] };

export class FakeRedshift {
  sent: Sent[] = [];
  configs: pg.ClientConfig[] = [];
  schemaExists = false;
  tables = new Set<string>();
  columns: FakeColumn[] = redshiftColumns();
  lease: LeaseState[] = [];
  lake: string | null = null;
  loadErrors: Record<string, unknown>[] = [];
  ledgerFiles: Record<string, unknown>[] = [];
  ledgerDates: Record<string, unknown>[] = [];
  /** Row counts the merge statements report. */
  counts = { delete: 2, insert: 3 };
  /** Called before each statement: throw to make it fail. */
  failWith: ((s: Sent) => Error | undefined) | undefined;
  private sessions = 0;

  newClient = (config: pg.ClientConfig): pg.Client => {
    this.configs.push(config);
    return new FakeClient(this, ++this.sessions) as unknown as pg.Client;
  };

  /** Every statement, in order, without session-setting noise filtered out. */
  get sql(): string[] {
    return this.sent.map((s) => s.sql);
  }

  /** The tables init() would create, as if it had run. */
  initialised(columns = redshiftColumns()): this {
    this.schemaExists = true;
    this.columns = columns;
    for (const c of columns) this.tables.add(c.table_name);
    return this;
  }

  handle(s: Sent): Result {
    const injected = this.failWith?.(s);
    if (injected) throw injected;
    const sql = s.sql.replace(/\s+/g, ' ').trim();
    const values = s.values ?? [];
    const verb = /^\w+/.exec(sql)?.[0]?.toUpperCase() ?? '';
    const ok = (r: Result = {}): Result => ({ command: verb, rowCount: r.rows ? r.rows.length : 0, rows: [], fields: [], ...r });

    if (/^(SET|BEGIN|COMMIT|ROLLBACK|LOCK)\b/i.test(sql)) return ok({ rowCount: null });
    if (/FROM pg_namespace/.test(sql)) return ok({ rows: this.schemaExists ? [{ '?column?': 1 }] : [] });
    if (/information_schema\.tables/.test(sql)) {
      return ok({
        rows: values
          .slice(1)
          .filter((t) => this.tables.has(String(t)))
          .map((t) => ({ table_name: t })),
      });
    }
    if (/information_schema\.columns/.test(sql)) {
      const wanted = new Set(values.slice(1).map(String));
      return ok({ rows: this.columns.filter((c) => wanted.has(c.table_name) && this.tables.has(c.table_name)) });
    }
    if (/^CREATE SCHEMA/i.test(sql)) {
      this.schemaExists = true;
      return ok({ rowCount: null });
    }
    const created = /^CREATE TABLE IF NOT EXISTS "[^"]+"\.(\w+)/i.exec(sql);
    if (created) {
      this.tables.add(created[1]);
      return ok({ rowCount: null });
    }
    if (/^(CREATE TEMP TABLE|ALTER TABLE)/i.test(sql)) return ok({ rowCount: null });

    // The lease.
    if (/^SELECT run_id, token.*FROM "[^"]+"\.musickpi_run_lock/i.test(sql)) return ok({ rows: this.lease.map((r) => ({ ...r })) });
    if (/^SELECT token FROM "[^"]+"\.musickpi_run_lock/i.test(sql)) return ok({ rows: this.lease.map((r) => ({ token: r.token })) });
    if (/^INSERT INTO "[^"]+"\.musickpi_run_lock/i.test(sql)) {
      const [run_id, token, host, pid, boot_id, ttl_ms] = values as [string, string, string, number, string | null, number];
      this.lease.push({ run_id, token, host, pid, boot_id, ttl_ms, idle_s: 0, held_s: 0 });
      return ok({ rowCount: 1 });
    }
    if (/^DELETE FROM "[^"]+"\.musickpi_run_lock WHERE token = \$1/i.test(sql)) {
      const before = this.lease.length;
      this.lease = this.lease.filter((r) => r.token !== values[0]);
      return ok({ rowCount: before - this.lease.length });
    }
    if (/^DELETE FROM "[^"]+"\.musickpi_run_lock$/i.test(sql)) {
      const n = this.lease.length;
      this.lease = [];
      return ok({ rowCount: n });
    }
    if (/^UPDATE "[^"]+"\.musickpi_run_lock SET heartbeat_at/i.test(sql)) {
      const mine = this.lease.filter((r) => r.token === values[0]);
      for (const r of mine) r.idle_s = 0;
      return ok({ rowCount: mine.length });
    }

    // The lake claim.
    if (/^SELECT lake FROM "[^"]+"\.musickpi_lake/i.test(sql)) {
      if (!this.tables.has('musickpi_lake')) throw Object.assign(new Error('relation "musickpi_lake" does not exist'), { code: '42P01' });
      return ok({ rows: this.lake === null ? [] : [{ lake: this.lake }] });
    }
    if (/^INSERT INTO "[^"]+"\.musickpi_lake/i.test(sql)) {
      this.lake = String(values[0]);
      return ok({ rowCount: 1 });
    }
    if (/^DELETE FROM "[^"]+"\.musickpi_lake/i.test(sql)) {
      const n = this.lake === null ? 0 : 1;
      this.lake = null;
      return ok({ rowCount: n });
    }

    // The ledger as read.
    if (/^SELECT file_key, fingerprint, size/i.test(sql)) return ok({ rows: this.ledgerFiles });
    if (/^SELECT file_key, fingerprint, listen_date FROM "[^"]+"\.musickpi_ledger_dates/i.test(sql)) return ok({ rows: this.ledgerDates });
    if (/^UPDATE "[^"]+"\.musickpi_ledger SET archived_key/i.test(sql)) return ok({ rowCount: 1 });

    if (/sys_load_error_detail|stl_load_errors/i.test(sql)) return ok({ rows: this.loadErrors });
    if (/^COPY /i.test(sql)) return ok({ rowCount: 10 });
    if (/^DELETE FROM "[^"]+"\.(hourly_kpis|genre_level_kpis)/i.test(sql)) return ok({ rowCount: this.counts.delete });
    if (/^INSERT INTO "[^"]+"\.(hourly_kpis|genre_level_kpis)/i.test(sql)) return ok({ rowCount: this.counts.insert });
    if (/^INSERT INTO /i.test(sql)) return ok({ rowCount: (sql.match(/\),\s*\(/g)?.length ?? 0) + 1 });
    if (/^SELECT 1 AS x/i.test(sql)) return ok({ rows: [[1]], fields: [{ name: 'x' } as pg.FieldDef], rowCount: 1 });
    return ok();
  }
}

class FakeClient extends EventEmitter {
  readonly connection = { stream: { destroy: () => undefined } };
  private ended = false;

  constructor(
    private readonly server: FakeRedshift,
    private readonly session: number,
  ) {
    super();
  }

  async connect(): Promise<void> {}

  async query(config: string | { text: string; values?: unknown[] }, values?: unknown[]): Promise<Result> {
    if (this.ended) throw new Error('Client was closed and is not queryable');
    const text = typeof config === 'string' ? config : config.text;
    const vals = typeof config === 'string' ? values : (config.values ?? values);
    const s: Sent = { session: this.session, sql: text, ...(vals ? { values: vals } : {}) };
    this.server.sent.push(s);
    // Answers come asynchronously, as from a socket.
    await Promise.resolve();
    return this.server.handle(s);
  }

  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.emit('end');
  }
}

/** An error as pg reports a server error. */
export function serverError(code: string, message: string, detail?: string): Error {
  return Object.assign(new Error(message), { code, ...(detail ? { detail } : {}) });
}

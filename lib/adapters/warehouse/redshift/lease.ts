// The run lock on Redshift, which has no advisory locks: a lease row in musickpi_run_lock
// (the holder's run id, host, pid, when it was taken, its last heartbeat, its time-to-live).
// Taken when there is none, or when the holder is gone: its heartbeat older than its TTL, or
// its process dead on this very machine (a crashed run on the same host is taken over at once,
// as PostgreSQL's lock would vanish with its session). Renewed on a timer while the run works,
// deleted on release. Every change happens under LOCK of the table; the load transaction
// locks it too and checks, under that lock, that its lease is still there (fencing), so a run
// that lost its lease can never commit.

import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type RunLock } from '../../../domain/warehouse.js';
import { type Conn, type Connections } from '../core/connection.js';
import { type RetryClock } from '../core/retry.js';
import { lockedTransaction, type Timeouts } from './tx.js';

const LOCK_APP = 'musickpi (run lock)';

export interface LeaseIdentity {
  host: string;
  pid: number;
  /** Tells two machines of one host name apart (Linux: the kernel's boot id); null when unknown. */
  bootId: string | null;
  /** Whether a process of this machine is alive (for a holder on this machine). */
  isAlive: (pid: number) => boolean;
}

export interface LeaseOptions extends Timeouts {
  schema: string;
  quoted: string;
  /** Shown to other runs as the holder. */
  runId: string;
  ttlMs: number;
  heartbeatMs: number;
  identity: LeaseIdentity;
  conflictAttempts: number;
  clock?: RetryClock;
  /** Creates the lease table (and the schema) when missing, on the lease's session. */
  ensureTable: (c: pg.Client) => Promise<void>;
  /** Told the tokens of the leases taken over: what their runs staged may be left in S3. */
  onTakeOver?: (tokens: string[]) => Promise<void>;
  warn?: (l: string) => void;
}

interface LeaseRow {
  run_id: string;
  token: string;
  host: string;
  pid: number;
  boot_id: string | null;
  ttl_ms: number | string;
  idle_s: number | string | null;
  held_s: number | string | null;
}

interface Held {
  conn: Conn;
  token: string;
  timer: NodeJS.Timeout | undefined;
  beat: Promise<void> | undefined;
  released: boolean;
  lost: boolean;
  failingSince: number | undefined;
}

export function newToken(): string {
  return randomBytes(8).toString('hex');
}

function seconds(s: number): string {
  return s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
}

function describeHolder(r: LeaseRow): string {
  const held = Number(r.held_s ?? 0);
  const idle = Number(r.idle_s ?? 0);
  return `run ${r.run_id} on host ${r.host}, pid ${r.pid}, holding it for ${seconds(held)}, last heartbeat ${seconds(idle)} ago`;
}

export class LeaseRunLock {
  private held: Held | undefined;
  private readonly table: string;

  constructor(
    private readonly db: Connections,
    private readonly opts: LeaseOptions,
  ) {
    this.table = `${opts.quoted}.musickpi_run_lock`;
  }

  /** The token of the lease this warehouse holds now, if any. */
  get token(): string | undefined {
    return this.held && !this.held.released ? this.held.token : undefined;
  }

  private gone(r: LeaseRow): 'expired' | 'dead' | undefined {
    if (Number(r.idle_s ?? 0) * 1000 > Number(r.ttl_ms)) return 'expired';
    const me = this.opts.identity;
    if (r.host === me.host && r.boot_id !== null && r.boot_id === me.bootId && !me.isAlive(Number(r.pid))) return 'dead';
    return undefined;
  }

  private readRows(c: pg.Client): Promise<pg.QueryResult<LeaseRow>> {
    return c.query<LeaseRow>(
      `SELECT run_id, token, host, pid, boot_id, ttl_ms,
              EXTRACT(EPOCH FROM GETDATE()) - EXTRACT(EPOCH FROM heartbeat_at) AS idle_s,
              EXTRACT(EPOCH FROM GETDATE()) - EXTRACT(EPOCH FROM taken_at) AS held_s
         FROM ${this.table}`,
    );
  }

  async acquire(): Promise<RunLock> {
    const o = this.opts;
    const conn = await this.db.connect('taking the run lock', LOCK_APP);
    const token = newToken();
    let takenOver: LeaseRow[] = [];
    try {
      await o.ensureTable(conn.client);
      takenOver = await lockedTransaction(conn.client, [this.table], o, { attempts: o.conflictAttempts, clock: o.clock }, async (c) => {
        const rows = (await this.readRows(c)).rows;
        const live = rows.filter((r) => this.gone(r) === undefined);
        if (live.length > 0) {
          throw new MkpiError('MKPI_LOCKED', `another musickpi run is loading schema ${o.schema} of ${this.db.description}`, {
            hint:
              `the run lock is held by ${describeHolder(live[0])}; wait for it to finish. ` +
              `A holder that stops renewing it loses it after ${seconds(Number(live[0].ttl_ms) / 1000)}.`,
            details: { schema: o.schema, holder: { runId: live[0].run_id, host: live[0].host, pid: Number(live[0].pid) } },
          });
        }
        if (rows.length > 0) await c.query(`DELETE FROM ${this.table}`);
        await c.query(
          `INSERT INTO ${this.table} (run_id, token, host, pid, boot_id, taken_at, heartbeat_at, ttl_ms)
           VALUES ($1, $2, $3, $4, $5, GETDATE(), GETDATE(), $6)`,
          [o.runId, token, o.identity.host, o.identity.pid, o.identity.bootId, Math.floor(o.ttlMs)],
        );
        return rows;
      });
    } catch (err) {
      await conn.client.end().catch(() => undefined);
      throw this.db.toError(err, 'taking the run lock');
    }
    for (const r of takenOver) {
      const why =
        this.gone(r) === 'dead' ? 'its process is gone' : `its heartbeat stopped more than ${seconds(Number(r.ttl_ms) / 1000)} ago`;
      o.warn?.(`took over the run lock of schema ${o.schema} from ${describeHolder(r)}: ${why}`);
    }
    const state: Held = { conn, token, timer: undefined, beat: undefined, released: false, lost: false, failingSince: undefined };
    this.held = state;
    state.timer = setInterval(() => this.heartbeat(state), Math.max(10, o.heartbeatMs));
    state.timer.unref();
    if (takenOver.length > 0 && o.onTakeOver) {
      await o.onTakeOver(takenOver.map((r) => r.token)).catch((err: unknown) => {
        o.warn?.(`could not remove what the previous holder staged: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    return { release: () => this.release(state) };
  }

  /** One renewal at a time; a failed one is tried again at the next tick, on a new session if the old one died. */
  private heartbeat(state: Held): void {
    if (state.released || state.beat) return;
    const o = this.opts;
    state.beat = (async () => {
      try {
        if (state.conn.dead) {
          await state.conn.client.end().catch(() => undefined);
          state.conn = await this.db.connect('renewing the run lock', LOCK_APP);
        }
        const renewed = await lockedTransaction(state.conn.client, [this.table], o, { attempts: 1 }, async (c) => {
          const r = await c.query(`UPDATE ${this.table} SET heartbeat_at = GETDATE() WHERE token = $1`, [state.token]);
          return (r.rowCount ?? 0) > 0;
        });
        state.failingSince = undefined;
        if (!renewed && !state.lost) {
          state.lost = true;
          o.warn?.(`the run lock of schema ${o.schema} was taken over by another run; this run will not commit a load`);
        }
      } catch (err) {
        const now = Date.now();
        state.failingSince ??= now;
        if (now - state.failingSince >= o.ttlMs / 2) {
          state.failingSince = now;
          o.warn?.(`the run lock of schema ${o.schema} could not be renewed: ${this.db.toError(err, 'renewing the run lock').message}`);
        }
      } finally {
        state.beat = undefined;
      }
    })();
  }

  /**
   * Fencing, inside the load transaction and under its LOCK of the lease table: the lease must
   * still be this run's. A warehouse that never took the lock (tests loading directly) is not checked.
   */
  async fence(c: pg.Client): Promise<void> {
    const state = this.held;
    if (!state || state.released) return;
    const r = await c.query<{ token: string }>(`SELECT token FROM ${this.table}`);
    if (state.lost || r.rows.length === 0 || r.rows.some((x) => x.token !== state.token)) {
      state.lost = true;
      throw new MkpiError('MKPI_RETRY_LATER', 'the run lock (a lease) was lost before commit; the load was rolled back', {
        hint: 'another run took it over (this run stopped renewing it for longer than its time-to-live); run again',
      });
    }
  }

  private async release(state: Held): Promise<void> {
    if (state.released) return;
    state.released = true;
    if (this.held === state) this.held = undefined;
    if (state.timer) clearInterval(state.timer);
    await state.beat;
    const o = this.opts;
    try {
      if (state.conn.dead) state.conn = await this.db.connect('releasing the run lock', LOCK_APP);
      await lockedTransaction(state.conn.client, [this.table], o, { attempts: o.conflictAttempts, clock: o.clock }, (c) =>
        c.query(`DELETE FROM ${this.table} WHERE token = $1`, [state.token]),
      );
    } catch (err) {
      // Left behind, the lease expires after its TTL (or is taken over at once on this machine once this process ends).
      o.warn?.(`could not release the run lock of schema ${o.schema}: ${this.db.toError(err, 'releasing the run lock').message}`);
    } finally {
      await state.conn.client.end().catch(() => undefined);
    }
  }

  /** close(): the lease is released, not left to expire, so that the next run need not wait. */
  async drop(): Promise<void> {
    const state = this.held;
    if (state && !state.released) await this.release(state);
  }
}

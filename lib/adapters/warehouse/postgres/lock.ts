// The run lock: a session-level advisory lock on a dedicated connection, so it vanishes by
// itself when the process or connection dies.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type RunLock } from '../../../domain/warehouse.js';
import { type Conn, type Connections } from '../core/connection.js';

const LOCK_APP = 'musickpi (run lock)';

interface HeldLock {
  conn: Conn;
  backendPid: number;
  released: boolean;
}

export class AdvisoryRunLock {
  private lock: HeldLock | undefined;

  constructor(
    private readonly db: Connections,
    private readonly schema: string,
  ) {}

  async acquire(): Promise<RunLock> {
    const conn = await this.db.connect('taking the run lock', LOCK_APP);
    const key = `musickpi:${this.schema}`;
    let got: { ok: boolean; pid: number };
    try {
      const r = await conn.client.query<{ ok: boolean; pid: number }>(
        'SELECT pg_try_advisory_lock(hashtext($1)) AS ok, pg_backend_pid() AS pid',
        [key],
      );
      got = r.rows[0];
      if (!got.ok) {
        const holder = await lockHolder(conn.client, key).catch(() => undefined);
        throw new MkpiError('MKPI_LOCKED', `another musickpi run is loading schema ${this.schema} of ${this.db.description}`, {
          hint:
            `another musickpi run holds the lock${holder ? ` (${holder})` : ''}; wait for it to finish. ` +
            'The lock goes away by itself when that run ends or its connection drops.',
          details: { schema: this.schema },
        });
      }
    } catch (err) {
      await conn.client.end().catch(() => undefined);
      throw this.db.toError(err, 'taking the run lock');
    }
    const state = { conn, backendPid: got.pid, released: false };
    this.lock = state;
    return {
      release: async () => {
        if (state.released) return;
        state.released = true;
        if (this.lock === state) this.lock = undefined;
        // A dead connection has already dropped the lock on the server: nothing to undo.
        if (!conn.dead) await conn.client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
        await conn.client.end().catch(() => undefined);
      },
    };
  }

  /** Two runs must never load at once: if our lock session died, another run may be loading. */
  async checkStillHeld(c: pg.Client): Promise<void> {
    const lock = this.lock;
    if (!lock || lock.released) return;
    const r = await c.query<{ held: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1) AS held`,
      [lock.backendPid],
    );
    if (!r.rows[0].held || lock.conn.dead) {
      throw new MkpiError('MKPI_RETRY_LATER', 'the run lock was lost (its connection ended) before commit; the load was rolled back', {
        hint: 'another run may have started meanwhile; run again',
      });
    }
  }

  /** Ending the session is what drops the lock on the server; no unlock round trip at close. */
  async drop(): Promise<void> {
    const lock = this.lock;
    if (lock && !lock.released) {
      lock.released = true;
      this.lock = undefined;
      await lock.conn.client.end().catch(() => undefined);
    }
  }
}

async function lockHolder(c: pg.Client, key: string): Promise<string | undefined> {
  // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
  const r = await c.query<{ pid: number; application_name: string | null; backend_start: Date | null; client_addr: string | null }>(
    `WITH k AS (SELECT hashtext($1)::bigint AS h)
       SELECT a.pid, a.application_name, a.backend_start, host(a.client_addr) AS client_addr
         FROM pg_locks l
         JOIN k ON l.classid = ((k.h >> 32) & 4294967295)::oid AND l.objid = (k.h & 4294967295)::oid
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        LIMIT 1`,
    [key],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  const parts = [`backend pid ${row.pid}`];
  if (row.application_name) parts.push(`application "${row.application_name}"`);
  if (row.client_addr) parts.push(`from ${row.client_addr}`);
  if (row.backend_start) parts.push(`connected since ${row.backend_start.toISOString()}`);
  return parts.join(', ');
}

// Running the server of a cluster: a free loopback port, the postgres process with its log in
// a file, and readiness judged by a real connection.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { pgModule } from '../core/pg.js';
import { SUPERUSER } from './cluster.js';
import { fail, libraryHint } from './errors.js';
import { childEnv, sleep, tail } from './process.js';
import type { RunAs } from './run-as-user.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface Started {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
}

export async function startServer(
  bin: string,
  dataDir: string,
  password: string,
  who: RunAs | undefined,
  opts: { home: string; durable: boolean; readyTimeoutMs: number; onSpawn: (pid: number, port: number) => Promise<void> },
): Promise<Started> {
  const logFile = path.join(opts.home, 'pg.log');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const args = [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      // No Unix socket: we only connect over loopback TCP, and a socket path under a deep CI
      // checkout can exceed the 107-byte limit, or collide in /tmp with another server's.
      '-c',
      'unix_socket_directories=',
      '-c',
      'TimeZone=UTC',
      // fsync stays on for a persisted cluster; synchronous_commit stays on too: one load is
      // one commit per run, so it would save a single flush, and archiving trusts that a
      // reported commit survives.
      ...(opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    ];
    // The server writes straight to a file, so its log survives us being killed.
    const fd = openSync(logFile, 'w', 0o600);
    let child: ChildProcess;
    let spawnError: Error | undefined;
    try {
      child = spawn(path.join(bin, 'postgres'), args, {
        cwd: path.dirname(dataDir),
        env: childEnv(),
        // Own session: a Ctrl-C in the terminal reaches the CLI, which then stops the server
        // in order, instead of the server dying under an open transaction.
        detached: true,
        stdio: ['ignore', fd, fd],
        ...(who ? { uid: who.uid, gid: who.gid } : {}),
      });
    } catch (err) {
      closeSync(fd);
      throw fail(`cannot start PostgreSQL: ${(err as Error).message}`, undefined, err);
    }
    // the child holds its own copy of the descriptor
    closeSync(fd);
    let exitInfo: string | undefined;
    const exited = new Promise<void>((resolve) => {
      child.on('error', (err) => {
        spawnError = err;
        exitInfo ??= `spawn failed: ${err.message}`;
        resolve();
      });
      child.on('exit', (code, signal) => {
        exitInfo ??= signal ? `killed by ${signal}` : `exit ${code}`;
        resolve();
      });
    });
    child.unref();
    if (child.pid !== undefined) await opts.onSpawn(child.pid, port);

    const ready = await waitReady(port, password, dataDir, opts.readyTimeoutMs, () => exitInfo !== undefined);
    if (ready === 'ready') return { child, port, exited };

    if (ready === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
    const log = await tail(logFile);
    if (spawnError) {
      throw fail(
        `cannot start PostgreSQL: ${spawnError.message}`,
        (spawnError as NodeJS.ErrnoException).code === 'EACCES'
          ? "the server's user cannot reach the binaries; see the notes on running as root"
          : undefined,
        spawnError,
      );
    }
    const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(log);
    const shmBusy = /pre-existing shared memory block .* is still in use/i.test(log);
    if ((portTaken || shmBusy) && attempt < 5) {
      if (shmBusy) await sleep(1_000);
      continue;
    }
    throw fail(
      ready === 'timeout'
        ? `embedded PostgreSQL did not accept connections within ${opts.readyTimeoutMs} ms; server log:\n${log}`
        : `embedded PostgreSQL stopped during startup (${exitInfo}); server log:\n${log}`,
      libraryHint(log) ?? `the full server log is in ${logFile}`,
    );
  }
}

/** Readiness = a real connection that reaches *our* cluster (not whatever else owns the port). */
async function waitReady(
  port: number,
  password: string,
  dataDir: string,
  timeoutMs: number,
  hasExited: () => boolean,
): Promise<'ready' | 'exited' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  const realData = await fs.realpath(dataDir).catch(() => dataDir);
  for (;;) {
    if (hasExited()) return 'exited';
    const client = new (pgModule().Client)({
      host: '127.0.0.1',
      port,
      user: SUPERUSER,
      password,
      database: 'postgres',
      connectionTimeoutMillis: 2_000,
      application_name: 'musickpi (embedded readiness)',
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const r = await client.query<{ d: string }>("SELECT current_setting('data_directory') AS d");
      await client.end().catch(() => undefined);
      const d = r.rows[0]?.d;
      if (d === dataDir || d === realData) return 'ready';
    } catch {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) return 'timeout';
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
}

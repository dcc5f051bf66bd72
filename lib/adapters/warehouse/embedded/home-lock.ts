// Ownership of a home: owner.json names the node process and the postgres it started.
// A short-lived mutex file makes the read-decide-write of owner.json atomic between processes.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MkpiError } from '../../../domain/errors.js';
import { fail } from './errors.js';
import { isPostmasterOf, procStat, processAlive, sleep, stopPid } from './process.js';

export interface Owner {
  nodePid: number;
  nodeStart?: string;
  hostname: string;
  postgresPid: number | null;
  postgresStart?: string;
  port: number | null;
  dataDir?: string;
  startedAt: string;
}

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

export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export async function writeOwner(file: string, owner: Owner): Promise<void> {
  // Written whole and renamed into place: a reader never sees half a file.
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(owner, null, 2) + '\n', { mode: 0o644 });
  await fs.rename(tmp, file);
}

/** Claims the home or throws MKPI_LOCKED; returns the previous (dead) owner, if any. */
export async function claimHome(home: string, log: (l: string) => void): Promise<Owner | undefined> {
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

export async function releaseHome(home: string): Promise<void> {
  const ownerFile = path.join(home, 'owner.json');
  const cur = await readJson<Owner>(ownerFile);
  if (cur && cur.nodePid === process.pid) await fs.rm(ownerFile, { force: true });
}

/** Stops a server a dead owner left running, and clears a postmaster.pid nobody holds. */
export async function recoverStale(prev: Owner | undefined, dataDir: string, log: (l: string) => void): Promise<void> {
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

// Processes. A pid alone is not an identity (pids are reused), so owner.json also records the
// kernel's start time of each process where /proc offers it.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A timeout that does not by itself keep the process alive. */
export const sleepUnref = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function procStat(pid: number): { state: string; start: string } | undefined {
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
export function isPostmasterOf(pid: number, dataDir: string): boolean {
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
export async function stopPid(pid: number, log: (l: string) => void, start?: string): Promise<void> {
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
export function run(cmd: string, args: string[], opts: SpawnOptions): Promise<RunResult> {
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

export function childEnv(): NodeJS.ProcessEnv {
  // A minimal environment: PG* variables meant for clients (PGPORT, PGDATA…) must not steer
  // the server, and C messages keep the server log readable for anyone.
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
}

export async function tail(file: string, bytes = 4000): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.length > bytes ? '…' + text.slice(-bytes) : text;
  } catch {
    return '';
  }
}

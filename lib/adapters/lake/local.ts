import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { MkpiError } from '../../domain/errors.js';
import type { Lake, LakeObject, MoveOptions, MoveOutcome } from '../../domain/lake.js';
import { assertSafeKey, compareKeys } from './keys.js';
import { discard } from './streams.js';

// Temp files of in-flight writes/copies carry this marker so that a listing running at the
// same time never reports a half-written object.
const TEMP_MARKER = '.mkpi-tmp-';

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

function fingerprintOf(st: fs.Stats): string {
  return `${st.size}:${Math.floor(st.mtimeMs)}`;
}

function tempSibling(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}${TEMP_MARKER}${randomBytes(6).toString('hex')}`);
}

async function unlinkQuietly(file: string): Promise<void> {
  await fsp.unlink(file).catch(() => undefined);
}

/** Turns an abort into an MkpiError the CLI can map, keeping the reason as the cause. */
function interrupted(signal: AbortSignal, what: string): MkpiError {
  return new MkpiError('MKPI_INTERRUPTED', `${what} interrupted`, { cause: signal.reason });
}

function ioError(err: unknown, action: string, file: string): MkpiError {
  const code = errnoCode(err);
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new MkpiError('MKPI_NO_INPUT', `${action}: ${file} does not exist`, { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new MkpiError('MKPI_CONFIG', `${action}: permission denied on ${file}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new MkpiError('MKPI_LAKE_UNAVAILABLE', `${action}: ${file}: ${message}`, { cause: err });
}

/** The last step of a move, once the copy is complete and verified. */
async function removeSource(src: string, dst: string): Promise<'moved'> {
  try {
    await fsp.unlink(src);
  } catch (err) {
    // The target is complete; a leftover source is finished by the next run ('exists' + same fingerprint).
    if (errnoCode(err) !== 'ENOENT') {
      throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: copied to ${dst} but cannot remove ${src}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return 'moved';
}

export class LocalLake implements Lake {
  readonly root: string;

  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
  }

  /** Absolute path of a key, after refusing any key that could escape the root. */
  private pathOf(key: string, what = 'key'): string {
    assertSafeKey(key, what);
    const resolved = path.resolve(this.root, ...key.split('/'));
    // Second line of defence: whatever the key looks like, the path must stay under the root.
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep)) {
      throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what} ${JSON.stringify(key)}: resolves outside ${this.root}`);
    }
    if (resolved === this.root) {
      throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what} ${JSON.stringify(key)}: names the lake root itself`);
    }
    return resolved;
  }

  async stat(key: string): Promise<LakeObject | undefined> {
    const file = this.pathOf(key);
    let st: fs.Stats;
    try {
      st = await fsp.stat(file);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw ioError(err, 'stat', file);
    }
    if (!st.isFile()) return undefined;
    return { key, size: st.size, fingerprint: fingerprintOf(st) };
  }

  async list(prefix: string, exclude: string[] = []): Promise<LakeObject[]> {
    if (prefix !== '') assertSafeKey(prefix, 'prefix');
    for (const e of exclude) assertSafeKey(e, 'exclude prefix');
    try {
      const st = await fsp.stat(this.root);
      if (!st.isDirectory()) throw new MkpiError('MKPI_CONFIG', `Lake root ${this.root} is not a directory`);
    } catch (err) {
      if (err instanceof MkpiError) throw err;
      throw ioError(err, 'list lake', this.root);
    }

    // Walk only the deepest directory the prefix fully names; the rest of the prefix filters names.
    const slash = prefix.lastIndexOf('/');
    const startKey = slash >= 0 ? prefix.slice(0, slash + 1) : '';
    const isExcluded = (key: string): boolean => exclude.some((e) => key.startsWith(e));
    const out: LakeObject[] = [];

    const walk = async (dirKey: string): Promise<void> => {
      const dir = dirKey === '' ? this.root : path.join(this.root, ...dirKey.split('/').filter(Boolean));
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = errnoCode(err);
        // A prefix folder that does not exist (yet) simply holds nothing.
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw ioError(err, 'list', dir);
      }
      const subdirs: string[] = [];
      await Promise.all(
        entries.map(async (entry) => {
          if (entry.name.includes(TEMP_MARKER)) return;
          const key = dirKey + entry.name;
          if (entry.isDirectory()) {
            const sub = key + '/';
            // Prune whole excluded subtrees (an archive grows forever; never walk it).
            if (isExcluded(sub)) return;
            if (sub.startsWith(prefix) || prefix.startsWith(sub)) subdirs.push(sub);
            return;
          }
          if (!key.startsWith(prefix) || isExcluded(key)) return;
          // Symlinks to files are data somebody placed in the lake on purpose, so they count;
          // links to folders are not followed (cycles).
          if (!entry.isFile() && !entry.isSymbolicLink()) return;
          const file = path.join(dir, entry.name);
          const st = await fsp.stat(file).catch((err: unknown) => {
            // Vanished between readdir and stat (or a dangling link): it is simply not there.
            // Anything else (EACCES...) must not silently drop an input file.
            if (errnoCode(err) === 'ENOENT' && !entry.name.includes('\uFFFD')) return undefined;
            // A name that is not valid UTF-8 cannot be addressed by its decoded key: skipping it
            // would silently drop an input file, so stop and name it.
            if (errnoCode(err) === 'ENOENT') {
              throw new MkpiError('MKPI_CONFIG', `${file}: the file name is not valid UTF-8`, {
                hint: 'rename the file (lake keys are UTF-8)',
              });
            }
            throw ioError(err, 'list', file);
          });
          if (st === undefined || !st.isFile()) return;
          out.push({ key, size: st.size, fingerprint: fingerprintOf(st) });
        }),
      );
      for (const sub of subdirs) await walk(sub);
    };

    if (!isExcluded(prefix)) await walk(startKey);
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  read(key: string, signal?: AbortSignal): Promise<Readable> {
    return this.open(key, signal);
  }

  readRange(key: string, start: number, end: number, signal?: AbortSignal): Promise<Readable> {
    return this.open(key, signal, { start, end });
  }

  private async open(key: string, signal: AbortSignal | undefined, range?: { start: number; end: number }): Promise<Readable> {
    const file = this.pathOf(key);
    if (signal?.aborted) throw interrupted(signal, `read ${key}`);
    // Opening first turns "missing" into a rejected promise instead of a later stream error.
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(file, 'r');
    } catch (err) {
      throw ioError(err, 'read', file);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new MkpiError('MKPI_NO_INPUT', `read: ${file} is not a file`);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err instanceof MkpiError ? err : ioError(err, 'read', file);
    }
    // createReadStream's `end` is inclusive (callers never ask for an empty range).
    const bounds = range === undefined ? {} : { start: range.start, end: range.end - 1 };
    const stream = handle.createReadStream({ autoClose: true, highWaterMark: 256 * 1024, ...bounds });
    if (signal) {
      const onAbort = (): void => {
        stream.destroy(interrupted(signal, `read ${key}`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  async write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    const file = this.pathOf(key);
    if (signal?.aborted) {
      discard(body);
      throw interrupted(signal, `write ${key}`);
    }
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
    } catch (err) {
      discard(body);
      throw ioError(err, 'write', path.dirname(file));
    }
    // Write aside then rename: a reader (or a crash) never sees a half-written object.
    const tmp = tempSibling(file);
    try {
      // flush: fsync before close, so the rename never publishes a file whose bytes are still only in cache.
      await pipeline(body, fs.createWriteStream(tmp, { flags: 'wx', flush: true }), signal ? { signal } : {});
      await fsp.rename(tmp, file);
    } catch (err) {
      await unlinkQuietly(tmp);
      discard(body);
      if (signal?.aborted) throw interrupted(signal, `write ${key}`);
      if (err instanceof MkpiError) throw err;
      // Only filesystem failures are the lake's; a failing body stream is the caller's error.
      if (typeof err === 'object' && err !== null && 'syscall' in err) throw ioError(err, 'write', file);
      throw err;
    }
  }

  async moveNoOverwrite(from: string, to: string, opts: MoveOptions = {}): Promise<MoveOutcome> {
    const src = this.pathOf(from, 'source key');
    const dst = this.pathOf(to, 'target key');
    if (opts.expectFingerprint !== undefined) {
      const now = await this.stat(from);
      if (!now) throw new MkpiError('MKPI_NO_INPUT', `archive: ${src} does not exist`);
      if (now.fingerprint !== opts.expectFingerprint) return 'changed';
    }
    try {
      await fsp.mkdir(path.dirname(dst), { recursive: true });
    } catch (err) {
      throw ioError(err, 'archive', path.dirname(dst));
    }
    try {
      // link() fails with EEXIST instead of replacing: the no-overwrite check and the
      // publish are one atomic step, with no window for a race.
      await fsp.link(src, dst);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') return 'exists';
      if (code === 'ENOENT') {
        if (!(await exists(src))) throw new MkpiError('MKPI_NO_INPUT', `archive: ${src} does not exist`, { cause: err });
        throw ioError(err, 'archive', dst);
      }
      if (code === 'EXDEV' || code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EMLINK') {
        // Different filesystems, or one without hard links (some network/FUSE mounts).
        return this.copyThenDelete(src, dst, to, opts);
      }
      throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: cannot link ${src} to ${dst}: ${(err as Error).message}`, { cause: err });
    }
    // The link names the inode that was at `from` at that instant: if that is not the listed
    // version any more (replaced since the check above), take the link back and leave it be.
    let linked: fs.Stats;
    try {
      linked = await fsp.stat(dst);
    } catch (err) {
      throw ioError(err, 'archive', dst);
    }
    if (opts.expectFingerprint !== undefined && fingerprintOf(linked) !== opts.expectFingerprint) {
      await unlinkQuietly(dst);
      return 'changed';
    }
    await opts.afterCopy?.({ key: to, size: linked.size, fingerprint: fingerprintOf(linked) });
    return removeSource(src, dst);
  }

  private async copyThenDelete(src: string, dst: string, to: string, opts: MoveOptions): Promise<MoveOutcome> {
    if (await exists(dst)) return 'exists';
    const before = await fsp.stat(src).catch((err: unknown) => {
      throw ioError(err, 'archive', src);
    });
    if (opts.expectFingerprint !== undefined && fingerprintOf(before) !== opts.expectFingerprint) return 'changed';
    // Copy beside the target first so the target name only ever holds a complete, verified file.
    const tmp = tempSibling(dst);
    try {
      await fsp.copyFile(src, tmp, fs.constants.COPYFILE_EXCL);
      const handle = await fsp.open(tmp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      // Keep the mtime so the archived copy has the same fingerprint as the file the ledger recorded.
      // utimes goes through a double of seconds; aiming at the middle of the millisecond keeps the
      // rounding error from landing in the neighbouring one.
      const mtime = (Math.floor(before.mtimeMs) + 0.5) / 1000;
      await fsp.utimes(tmp, before.atimeMs / 1000, mtime);
      const [copied, after] = await Promise.all([fsp.stat(tmp), fsp.stat(src)]);
      if (fingerprintOf(copied) !== fingerprintOf(before) || fingerprintOf(after) !== fingerprintOf(before)) {
        throw new MkpiError(
          'MKPI_ARCHIVE_FAILED',
          `archive: verification failed copying ${src} to ${dst} (copy ${fingerprintOf(copied)}, source ${fingerprintOf(before)} -> ${fingerprintOf(after)})`,
        );
      }
      try {
        await fsp.link(tmp, dst);
        await unlinkQuietly(tmp);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EEXIST') {
          await unlinkQuietly(tmp);
          return 'exists';
        }
        // No hard links at all on the target filesystem: rename is atomic but replaces, so
        // re-check right before it. Runs are serialised by the run lock, so the window is
        // only open to somebody writing the archive by hand.
        if (await exists(dst)) {
          await unlinkQuietly(tmp);
          return 'exists';
        }
        await fsp.rename(tmp, dst);
      }
    } catch (err) {
      await unlinkQuietly(tmp);
      if (err instanceof MkpiError) throw err;
      throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: cannot copy ${src} to ${dst}: ${(err as Error).message}`, { cause: err });
    }
    await opts.afterCopy?.({ key: to, size: before.size, fingerprint: fingerprintOf(before) });
    return removeSource(src, dst);
  }

  async remove(key: string): Promise<void> {
    const file = this.pathOf(key);
    try {
      await fsp.unlink(file);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw ioError(err, 'remove', file);
    }
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.lstat(file);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

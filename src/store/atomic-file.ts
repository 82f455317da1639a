/**
 * Crash-safe state files. A reader sees either the old content or the new one, never a mix, even
 * if the writer is killed mid-write: the data goes to a temporary file in the same directory, is
 * fsynced, renamed over the target (atomic on POSIX), and the directory is fsynced so the rename
 * itself survives a power loss.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { StateFileError } from './errors.js';

export interface WriteFileAtomicOptions {
  /** File mode of a newly written file (subject to the umask); default 0o666. */
  mode?: number;
}

const TEMP_MARKER = '.tmp-';

let tempCounter = 0;

/** Unique per process (pid) and per write (counter); the pid also tells removeStaleTempFiles whose it is. */
function tempPathFor(path: string): string {
  return `${path}${TEMP_MARKER}${process.pid}-${(tempCounter++).toString(36)}-${Date.now().toString(36)}`;
}

function checkMode(mode: number | undefined): number {
  if (mode === undefined) return 0o666;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new TypeError(`writeFileAtomic: option "mode" must be an integer between 0 and 0o7777, got ${String(mode)}`);
  }
  return mode;
}

// Some filesystems refuse fsync on a directory; the rename is then as durable as they allow.
function isIgnorableDirSyncError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EINVAL' || code === 'EISDIR' || code === 'EPERM' || code === 'ENOTSUP' || code === 'EBADF';
}

/**
 * Replaces `path` with `data` atomically and durably. The directory must exist. On failure the
 * temporary file is removed and a `StateFileError` (operation `write`) is thrown.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const mode = checkMode(options.mode);
  const tempPath = tempPathFor(path);
  let renamed = false;
  try {
    const file = await fsp.open(tempPath, 'wx', mode);
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
    await fsp.rename(tempPath, path);
    renamed = true;
    const dir = await fsp.open(nodePath.dirname(path), 'r');
    try {
      await dir.sync();
    } catch (error) {
      if (!isIgnorableDirSyncError(error)) throw error;
    } finally {
      await dir.close();
    }
  } catch (error) {
    if (!renamed) await fsp.rm(tempPath, { force: true }).catch(() => undefined);
    throw new StateFileError(path, 'write', { cause: error });
  }
}

/**
 * Synchronous `writeFileAtomic`, for paths where the event loop may not turn again (shutdown,
 * `process.on('exit')`). Same guarantees and errors.
 */
export function writeFileAtomicSync(path: string, data: string | Buffer, options: WriteFileAtomicOptions = {}): void {
  const mode = checkMode(options.mode);
  const tempPath = tempPathFor(path);
  let renamed = false;
  try {
    const fd = fs.openSync(tempPath, 'wx', mode);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tempPath, path);
    renamed = true;
    const dirFd = fs.openSync(nodePath.dirname(path), 'r');
    try {
      fs.fsyncSync(dirFd);
    } catch (error) {
      if (!isIgnorableDirSyncError(error)) throw error;
    } finally {
      fs.closeSync(dirFd);
    }
  } catch (error) {
    if (!renamed) fs.rmSync(tempPath, { force: true });
    throw new StateFileError(path, 'write', { cause: error });
  }
}

function parseJson<T>(path: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new StateFileError(path, 'parse', { cause: error });
  }
}

/**
 * Reads and parses a JSON file. Returns `undefined` when the file does not exist; throws
 * `StateFileError` with operation `read` (I/O failure) or `parse` (not JSON). The value is not
 * validated: callers check its shape.
 */
export async function readJsonFile<T = unknown>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(path, 'read', { cause: error });
  }
  return parseJson<T>(path, text);
}

/** Synchronous `readJsonFile`. */
export function readJsonFileSync<T = unknown>(path: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(path, 'read', { cause: error });
  }
  return parseJson<T>(path, text);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the pid exists but belongs to someone else, so it is alive.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary files that writers of `path` left behind when they were killed mid-write
 * (`<path>.tmp-<pid>-<counter>-<time>` whose pid is no longer alive). Temporaries of live writers are
 * kept. Returns how many files were removed. Call it once at startup, before writing.
 */
export function removeStaleTempFiles(path: string): number {
  const dir = nodePath.dirname(path);
  const prefix = `${nodePath.basename(path)}${TEMP_MARKER}`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const match = /^(\d+)-[0-9a-z-]+$/.exec(name.slice(prefix.length));
    if (!match) continue;
    const pid = Number(match[1]);
    // Our own pid counts as alive: an async write of this process may be in flight.
    if (isProcessAlive(pid)) continue;
    fs.rmSync(nodePath.join(dir, name), { force: true });
    removed += 1;
  }
  return removed;
}

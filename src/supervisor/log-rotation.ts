/**
 * Cell log files: copytruncate rotation, reading the tail, and following new output.
 * A cell writes its log through its own O_APPEND descriptor, which the daemon never holds, so
 * rotation copies the file aside and truncates it in place instead of renaming it.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, renameSync, statSync, truncateSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

/**
 * Rotates `file` when it is larger than `maxBytes`: `file.(keep-1)` → `file.keep` ... `file.1` →
 * `file.2`, then `file` is copied to `file.1` and truncated to 0 bytes (the oldest is dropped).
 * The writer keeps its descriptor; with O_APPEND its next write lands at the new end. What the
 * writer appends during the copy is copied too, in rounds, until a round finds next to nothing
 * new; only a write between that last round and the truncate, microseconds, can be lost (a whole
 * copy's worth with logrotate's plain copytruncate).
 *
 * A copy takes at most the last 4 x `maxBytes` (16 MiB at least) of the file, and what comes
 * during the copy up to twice that: a file is checked about twice before it fills (see
 * RotationSchedule), so only a cell that wrote far faster than that (gigabytes between two
 * checks, or faster than the copy goes) loses its oldest output, instead of the disk filling up;
 * the copy says where and how much, in a line of its own. Returns true if it rotated. A missing
 * file is not an error.
 */
export function rotateIfLarger(file: string, maxBytes: number, keep: number): boolean {
  if (!Number.isInteger(keep) || keep < 0) throw new TypeError(`rotateIfLarger: keep must be an integer >= 0, got ${keep}`);
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (size <= maxBytes) return false;
  if (keep > 0) {
    for (let i = keep - 1; i >= 1; i--) {
      if (existsSync(`${file}.${i}`)) renameSync(`${file}.${i}`, `${file}.${i + 1}`);
    }
    copyThenTruncate(file, `${file}.1`, maxBytes);
  } else {
    truncateSync(file, 0);
  }
  return true;
}

/** Rounds of copying before the truncate; a writer faster than the copy ends it anyway. */
const MAX_COPY_ROUNDS = 16;
/** A round that found this little new output is the last before the truncate. */
const SETTLED_BYTES = 64 * 1024;
/** The least a copy takes of a file's end (see rotateIfLarger): a steady 8 MB/s with a 1 MB max_size loses nothing. */
const MIN_COPY_WINDOW = 16 * 1024 * 1024;

function copyThenTruncate(file: string, copy: string, maxBytes: number): void {
  const src = openSync(file, 'r+');
  try {
    const dst = openSync(copy, 'w');
    try {
      const buf = Buffer.allocUnsafe(1024 * 1024);
      const window = Math.max(4 * maxBytes, MIN_COPY_WINDOW);
      // How far into `file` the copy has come (copied or skipped), and what it has written.
      let copied = 0;
      let written = 0;
      let lastByte = 0x0a;
      let flooded = false;
      const copyTo = (end: number) => {
        if (end - copied > window) {
          flooded = true;
          // More than a copy's worth behind: the oldest of it goes, and the copy says so.
          const skipped = end - window - copied;
          copied += skipped;
          const note = Buffer.from(`${lastByte === 0x0a ? '' : '\n'}[cell] ${skipped} bytes of output dropped here: the cell wrote faster than its log is rotated (logs.max_size)\n`);
          writeSync(dst, note);
          written += note.length;
        }
        while (copied < end) {
          const n = readSync(src, buf, 0, Math.min(buf.length, end - copied), copied);
          if (n === 0) break;
          writeSync(dst, buf, 0, n);
          copied += n;
          written += n;
          lastByte = buf[n - 1];
        }
      };
      // A flood is not caught up with: one last look, then the truncate.
      for (let round = 0; round < MAX_COPY_ROUNDS && written < 2 * window && !flooded; round++) {
        const before = copied;
        copyTo(fstatSync(src).size);
        if (round > 0 && copied - before < SETTLED_BYTES) break;
      }
      // The last bytes, right before the truncate.
      copyTo(fstatSync(src).size);
      ftruncateSync(src, 0);
    } finally {
      closeSync(dst);
    }
  } finally {
    closeSync(src);
  }
}

/**
 * When to check each log file next, from how fast it grew: a file filling up is checked about
 * twice before it reaches its limit (at most every 100 ms), a quiet one every 10 s. So a cell
 * that writes 5 MB/s stays near its `max_size`, and 100 quiet cells cost 10 stats a second.
 */
/** When a file seen for the first time is checked again. */
const FIRST_RECHECK_MS = 250;

export class RotationSchedule {
  static readonly MIN_MS = 100;
  static readonly MAX_MS = 10_000;
  private readonly seen = new Map<string, { size: number; at: number; due: number }>();

  /** Checks the files that are due at `now` (rotating the large ones); returns the next due time. */
  run(files: string[], now: number, maxBytes: number, keep: number): number {
    const live = new Set(files);
    for (const file of this.seen.keys()) if (!live.has(file)) this.seen.delete(file);
    let next = now + RotationSchedule.MAX_MS;
    for (const file of files) {
      const last = this.seen.get(file);
      if (last && last.due > now) {
        next = Math.min(next, last.due);
        continue;
      }
      let size = 0;
      try {
        size = statSync(file).size;
      } catch {
        // Not written yet.
      }
      // Bytes per ms since the last check, measured before a rotation empties the file.
      const rate = last && now > last.at ? Math.max(0, size - last.size) / (now - last.at) : null;
      if (size > maxBytes && rotateIfLarger(file, maxBytes, keep)) size = 0;
      // A file seen for the first time is looked at again soon, to learn its pace (a cell that
      // writes megabytes a second from its start is not left a second unchecked).
      const untilFull = rate === null ? FIRST_RECHECK_MS : rate > 0 ? Math.max(0, maxBytes - size) / rate / 2 : RotationSchedule.MAX_MS;
      const wait = Math.min(RotationSchedule.MAX_MS, Math.max(RotationSchedule.MIN_MS, untilFull));
      // On a grid, so files checked at different moments fall due together (one wake-up, not one
      // per file): a second for the quiet ones, a quarter for the ones filling up.
      const grid = wait >= 1000 ? 1000 : RotationSchedule.MIN_MS;
      const due = Math.ceil((now + wait) / grid) * grid;
      this.seen.set(file, { size, at: now, due });
      next = Math.min(next, due);
    }
    return next;
  }
}

const CHUNK = 64 * 1024;

/** Rotated copies a follower reads back through when several rotations came between two reads. */
const MAX_COPIES_FOLLOWED = 32;

export interface FollowOptions {
  /** Byte offset to start from; default: the current end of the file (like `tail -f`). */
  fromOffset?: number;
  /** Fallback poll interval for when fs.watch misses events (network filesystems). Default 500 ms. */
  pollMs?: number;
}

/**
 * Calls `onChunk` with text appended to `file` until `signal` aborts; resolves then. Wakes on
 * fs.watch events and on a poll. When the file shrinks (truncated by rotation) it first reads
 * the rest of what it was reading from the rotated copy `file.1` (`file.2`, then all of `file.1`,
 * after two rotations, and so on), then goes on from offset 0;
 * when it is replaced, it reads the new file from offset 0. A file that does not exist yet is waited for, then read from its
 * start. The poll timer keeps the event loop alive until `signal` aborts.
 */
export async function followFile(
  file: string,
  onChunk: (text: string) => void,
  signal: AbortSignal,
  options: FollowOptions = {},
): Promise<void> {
  if (signal.aborted) return;
  const pollMs = options.pollMs ?? 500;
  let position = options.fromOffset;
  let inode: number | undefined;
  let decoder = new StringDecoder('utf8');
  // The inode of `file.1` when last looked at (undefined: none; null: not looked at yet).
  let copyInode: number | undefined | null = null;
  let watcher: FSWatcher | undefined;
  let reading = false;
  let again = false;

  const startWatch = () => {
    watcher?.close();
    watcher = undefined;
    try {
      watcher = watch(file, { persistent: false }, () => void pump());
      watcher.on('error', () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      // Not there yet, or not watchable: the poll covers it.
    }
  };

  const readNew = async () => {
    let st;
    try {
      st = await stat(file);
    } catch {
      // Not created yet: everything it will hold is new.
      position ??= 0;
      return;
    }
    if (inode !== undefined && st.ino !== inode) {
      // Replaced by another file: start over at its beginning.
      position = 0;
      decoder = new StringDecoder('utf8');
      startWatch();
    } else if (!watcher) {
      startWatch();
    }
    inode = st.ino;
    position ??= st.size;
    // A rotation makes a new `.1` (the older copies are renamed away first): seen by its inode,
    // since the file itself may have grown past our position again by the time we look.
    const copy = await stat(`${file}.1`).catch(() => undefined);
    const rotated = copyInode !== null && copy !== undefined && copy.ino !== copyInode;
    if (rotated) {
      // Each rotation since the last read made a copy: `.1` the newest, and the one that was
      // `.1` then is now `.k+1`. The oldest new copy holds what came after our position; the
      // others, all of what came between the truncates; the stream goes on at the start of the file.
      const copies = [copy];
      for (let i = 2; i <= MAX_COPIES_FOLLOWED; i++) {
        const older = await stat(`${file}.${i}`).catch(() => undefined);
        if (older === undefined || older.ino === copyInode) break;
        copies.push(older);
      }
      for (let i = copies.length; i >= 1; i--) {
        const start = i === copies.length ? position : 0;
        if (copies[i - 1]!.size >= start) await readFrom(`${file}.${i}`, start);
      }
      position = 0;
    } else if (st.size < position) {
      position = 0;
    }
    copyInode = copy?.ino;
    if (st.size === position) return;
    position = await readFrom(file, position);
  };

  /** Passes on what `path` holds from `start` to its end; returns the offset reached. */
  const readFrom = async (path: string, start: number): Promise<number> => {
    let at = start;
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      while (!signal.aborted) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        // Aborted while reading: the follower is gone, nothing more is passed on.
        if (bytesRead === 0 || signal.aborted) break;
        at += bytesRead;
        const text = decoder.write(buf.subarray(0, bytesRead));
        if (text) onChunk(text);
      }
    } finally {
      await fh.close();
    }
    return at;
  };

  // One read at a time; a wake-up during a read schedules one more.
  const pump = async (): Promise<void> => {
    if (signal.aborted) return;
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        await readNew().catch(() => undefined);
      } while (again && !signal.aborted);
    } finally {
      reading = false;
    }
  };

  await pump();
  const timer = setInterval(() => void pump(), pollMs);
  await new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(timer);
  watcher?.close();
}

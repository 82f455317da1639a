/**
 * Cell log files: copytruncate rotation, reading the tail, and following new output.
 * A cell writes its log through its own O_APPEND descriptor, which the daemon never holds, so
 * rotation copies the file aside and truncates it in place instead of renaming it.
 */
import { closeSync, copyFileSync, existsSync, fstatSync, openSync, readSync, renameSync, statSync, truncateSync, watch, type FSWatcher } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

/**
 * Rotates `file` when it is larger than `maxBytes`: `file.(keep-1)` → `file.keep` ... `file.1` →
 * `file.2`, then `file` is copied to `file.1` and truncated to 0 bytes (the oldest is dropped).
 * The writer keeps its descriptor; with O_APPEND its next write lands at the new end. Lines written
 * between the copy and the truncate are lost, as with logrotate's copytruncate.
 * Returns true if it rotated. A missing file is not an error.
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
    copyFileSync(file, `${file}.1`);
  }
  truncateSync(file, 0);
  return true;
}

const CHUNK = 64 * 1024;

/**
 * The last `n` lines of a cell's log (without line ends): those of `file`, and when it has fewer,
 * the missing ones from its rotated copies `file.1`, `file.2`, ... (oldest first in the result),
 * up to `n` in all, so a rotation just before does not hide the lines before it. Each file is
 * read backwards in 64 KiB chunks, so the cost depends on the lines wanted, not the file sizes.
 * A final line end does not count as an empty line. A line that rotation cut in two (the copy
 * took its start, the writer appended the rest to `file`) is joined again. Missing files have no
 * lines; the rotated copies are read up to the first missing one.
 */
export function readLastLines(file: string, n: number): string[] {
  if (n <= 0) return [];
  const current = readTail(file, n);
  let lines = current?.lines ?? [];
  // While the lines so far begin at a file's start, the next older copy holds the ones before.
  let isFromStart = current?.isFromStart ?? true;
  for (let i = 1; isFromStart; i++) {
    // One more line than missing: the last one of an older file may be the start of lines[0].
    const older = readTail(`${file}.${i}`, n - lines.length + 1);
    if (!older) break;
    const olderLines = older.lines;
    if (!older.endsWithNewline && lines.length > 0 && olderLines.length > 0) lines[0] = olderLines.pop() + lines[0];
    const taken = olderLines.slice(Math.max(0, olderLines.length - (n - lines.length)));
    isFromStart = older.isFromStart && taken.length === olderLines.length;
    lines = [...taken, ...lines];
  }
  return lines;
}

/**
 * The last `n` lines of one file, whether it ends with a line end, and whether they are all its
 * lines (so the first is at its start); undefined when the file does not exist.
 */
function readTail(file: string, n: number): { lines: string[]; endsWithNewline: boolean; isFromStart: boolean } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    let end = fstatSync(fd).size;
    const chunks: Buffer[] = [];
    const size = end;
    let newlines = 0;
    // n line ends (not counting one that ends the file) bound the last n lines; or the file start does.
    while (end > 0 && newlines < n) {
      const start = Math.max(0, end - CHUNK);
      const buf = Buffer.allocUnsafe(end - start);
      const read = readSync(fd, buf, 0, buf.length, start);
      const chunk = buf.subarray(0, read);
      for (let i = chunk.length - 1; i >= 0; i--) {
        if (chunk[i] !== 0x0a) continue;
        if (start + i === size - 1) continue;
        newlines++;
      }
      chunks.unshift(chunk);
      end = start;
    }
    // Decoded once, so a multi-byte character split across chunks stays whole.
    const whole = Buffer.concat(chunks);
    const endsWithNewline = whole.length === 0 || whole[whole.length - 1] === 0x0a;
    const lines = whole.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    const isFromStart = end === 0 && lines.length <= n;
    return { lines: lines.slice(-n).map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)), endsWithNewline, isFromStart };
  } finally {
    closeSync(fd);
  }
}

export interface FollowOptions {
  /** Byte offset to start from; default: the current end of the file (like `tail -f`). */
  fromOffset?: number;
  /** Fallback poll interval for when fs.watch misses events (network filesystems). Default 500 ms. */
  pollMs?: number;
}

/**
 * Calls `onChunk` with text appended to `file` until `signal` aborts; resolves then. Wakes on
 * fs.watch events and on a poll. When the file shrinks (truncated by rotation) or is replaced,
 * it reads again from offset 0. A file that does not exist yet is waited for, then read from its
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
    if (st.size < position) {
      position = 0;
      decoder = new StringDecoder('utf8');
    }
    if (st.size === position) return;
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      while (!signal.aborted) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        const text = decoder.write(buf.subarray(0, bytesRead));
        if (text) onChunk(text);
      }
    } finally {
      await fh.close();
    }
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

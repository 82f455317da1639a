import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Reading the end of a cell's log files, shared by the daemon (`cell logs`) and the CLI (which
 * reads them itself when no daemon runs: the logs of a mesh that is down are still on disk).
 */

const CHUNK = 64 * 1024;

/**
 * The last `n` lines of a cell's log (without line ends): those of `file`, and when it has fewer,
 * the missing ones from its rotated copies `file.1`, `file.2`, ... (oldest first in the result),
 * up to `n` in all, so a rotation just before does not hide the lines before it. Each file is
 * read backwards in 64 KiB chunks, so the cost depends on the lines wanted, not the file sizes.
 * A final line end does not count as an empty line. A line that rotation cut in two (the copy
 * took its start, the writer appended the rest to `file`) is joined again. Missing files have no
 * lines; the rotated copies are read up to the first missing one. With `endAt`, the current file
 * is read as if it ended there (a follow goes on from that offset: no line twice, none skipped).
 */
export function readLastLines(file: string, n: number, endAt?: number): string[] {
  if (n <= 0) return [];
  const current = readTail(file, n, endAt);
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
function readTail(file: string, n: number, endAt = Infinity): { lines: string[]; endsWithNewline: boolean; isFromStart: boolean } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    let end = Math.min(fstatSync(fd).size, endAt);
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

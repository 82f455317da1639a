import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';

/** The largest manifest read, by the CLI and the daemon (a manifest of 10,000 cells is ~1 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** A file that `readRegularTextFile` would not read, and why (`reason` reads after the file name). */
export class TextFileError extends Error {
  override name = 'TextFileError';
  constructor(
    readonly file: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`${file}: ${reason}`, options);
  }
}

/**
 * The whole text (UTF-8) of the regular file `file`, checked before a byte is read: a FIFO would
 * block the reader until someone writes to it, a device such as /dev/zero never ends (the reader
 * grows until it is killed), and a file over `maxBytes` is not what the caller reads. Opened
 * non-blocking, so a FIFO is refused rather than waited on.
 */
export function readRegularTextFile(file: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TextFileError(file, code === 'ENOENT' ? 'file not found' : `cannot read the file: ${(err as Error).message}`, { cause: err });
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new TextFileError(file, 'is a directory, not a file');
    if (!stat.isFile()) {
      const kind = stat.isFIFO() ? 'a FIFO' : stat.isCharacterDevice() || stat.isBlockDevice() ? 'a device' : stat.isSocket() ? 'a socket' : 'a special file';
      throw new TextFileError(file, `is ${kind}, not a regular file`);
    }
    if (stat.size > maxBytes) throw new TextFileError(file, `is too large: ${formatBytes(stat.size)} (at most ${formatBytes(maxBytes)})`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function formatBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1).replace(/\.0$/, '')} MiB` : n >= 1024 ? `${Math.round(n / 1024)} KiB` : `${n} bytes`;
}

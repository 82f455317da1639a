import { ApiError, CellHomeError, DaemonNotRunningError } from '../api/index.js';
import { printable } from './table.js';

/** A failure the CLI reports as one line and an exit code (2: bad input, 1: it did not work). */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const isTty = process.stderr.isTTY === true;
let lastProgress = '';
/** A progress line on stderr: rewritten in place on a terminal, printed on change otherwise. */
export function progress(line: string): void {
  if (line === lastProgress) return;
  lastProgress = line;
  if (isTty) process.stderr.write(`\r\x1b[2K${line}`);
  else process.stderr.write(`${line}\n`);
}
/**
 * The progress line `line`, once `work` has taken longer than `afterMs`: a quick answer (a bad
 * cell name refused at once) stays the one line it is. Resolves or rejects as `work` does.
 */
export async function progressIfSlow<T>(line: string, work: Promise<T>, afterMs = 300): Promise<T> {
  const timer = setTimeout(() => progress(line), afterMs);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}

export function endProgress(): void {
  if (isTty && lastProgress) process.stderr.write('\r\x1b[2K');
  lastProgress = '';
}

/** Prints a command's failure as one line and exits with its code (3: no daemon). */
export function reportError(err: unknown): never {
  endProgress();
  process.stderr.write(`cell: ${printable(err instanceof Error ? err.message : String(err))}\n`);
  process.exit(exitCodeOf(err));
}

/** 2: a usage error or a request the daemon refused; 3: no daemon; 1: anything else. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof ApiError) return err.status >= 400 && err.status < 500 ? 2 : 1;
  if (err instanceof DaemonNotRunningError) return 3;
  if (err instanceof CellHomeError) return 2;
  return 1;
}

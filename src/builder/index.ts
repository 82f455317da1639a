import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { SourceHasher } from './version.js';
import type { CellSpec } from '../manifest/index.js';

export { SourceHasher, RACY_WINDOW_MS, type SourceHasherIo, type FileStat } from './version.js';

/** A build command exited non-zero or could not run. */
export class BuildError extends Error {
  override name = 'BuildError';
  constructor(
    readonly cell: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly logFile: string,
    options?: ErrorOptions,
    readonly signal: string | null = null,
  ) {
    super(`cell ${cell}: build \`${command}\` failed (${exitCode === null ? (signal ? `killed by ${signal}` : 'could not run') : `exit code ${exitCode}`}), see ${logFile}`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, command: this.command, exitCode: this.exitCode, logFile: this.logFile };
  }
}

// One cache of source-file digests for the process: the daemon's version loop and `cell up`
// ask for the same cells' versions again and again.
const sourceHasher = new SourceHasher();

/**
 * The version of a cell: BLAKE3 over its spec (run, env, build) and its `source` files (sorted
 * relative paths and the digests of their contents), so the same tree run the same way always
 * gives the same version. Files whose stat (dev, ino, size, mtime, ctime) did not change since
 * the last call are not read again; see `SourceHasher`.
 */
export function computeVersion(spec: Pick<CellSpec, 'cwd' | 'source' | 'run' | 'env' | 'build'>): Promise<string> {
  return sourceHasher.version(spec);
}

/** Runs a cell's `build` command in its cwd, output appended to `logFile`. Rejects with BuildError. */
export function runBuild(spec: CellSpec, logFile: string, env: Record<string, string>): Promise<void> {
  const command = spec.build;
  if (!command) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const fd = openSync(logFile, 'a');
    const child = spawn('/bin/sh', ['-c', command], { cwd: spec.cwd, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.on('error', (err) => reject(new BuildError(spec.name, command, null, logFile, { cause: err })));
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new BuildError(spec.name, command, code, logFile, undefined, signal))));
  });
}

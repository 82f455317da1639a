import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { blake3 } from '@noble/hashes/blake3.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import type { CellSpec } from '../manifest/index.js';

/** A build command exited non-zero or could not run. */
export class BuildError extends Error {
  override name = 'BuildError';
  constructor(
    readonly cell: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly logFile: string,
    options?: ErrorOptions,
  ) {
    super(`cell ${cell}: build \`${command}\` failed (${exitCode === null ? 'could not run' : `exit code ${exitCode}`}), see ${logFile}`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, command: this.command, exitCode: this.exitCode, logFile: this.logFile };
  }
}

const VERSION_LENGTH = 12;

/**
 * The version of a cell: BLAKE3 over its spec (run, env, build) and its `source` files (sorted
 * relative paths and contents), so the same tree run the same way always gives the same version.
 */
export async function computeVersion(spec: Pick<CellSpec, 'cwd' | 'source' | 'run' | 'env' | 'build'>): Promise<string> {
  // How the cell is built and run is part of what it is: changing either makes a new version.
  const how = utf8ToBytes(JSON.stringify({ run: spec.run, env: spec.env, build: spec.build ?? null }));
  // The same digest as the incremental hasher below, at about half its cost: `cell up` hashes
  // every cell of the manifest before the first start.
  if (spec.source.length === 0) return bytesToHex(blake3(how)).slice(0, VERSION_LENGTH);
  const hasher = blake3.create({});
  hasher.update(how);
  // Loaded here, for cells that list source files: ~100 KB of code (tinyglobby, picomatch, fdir)
  // the daemon would otherwise load on the path of every start.
  const { glob } = await import('tinyglobby');
  const files = (await glob(spec.source, { cwd: spec.cwd, onlyFiles: true, dot: false, ignore: ['**/node_modules/**'] })).sort();
  for (const rel of files) {
    hasher.update(utf8ToBytes(rel));
    hasher.update(new Uint8Array([0]));
    hasher.update(new Uint8Array(await readFile(`${spec.cwd}/${rel}`)));
    hasher.update(new Uint8Array([0]));
  }
  return bytesToHex(hasher.digest()).slice(0, VERSION_LENGTH);
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
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new BuildError(spec.name, command, code, logFile))));
  });
}

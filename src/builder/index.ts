import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
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
    /** Set when the build ran past its `build_timeout` and was stopped. */
    readonly timeoutMs: number | null = null,
  ) {
    const why = timeoutMs !== null ? `still running after build_timeout ${timeoutMs / 1000}s: stopped` : exitCode === null ? (signal ? `killed by ${signal}` : 'could not run') : `exit code ${exitCode}`;
    super(`cell ${cell}: build \`${command}\` failed (${why}), see ${logFile}`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, command: this.command, exitCode: this.exitCode, logFile: this.logFile, timeoutMs: this.timeoutMs };
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

/** How many files `spec`'s `source` globs matched when its version was last computed. */
export function sourceFileCount(spec: Pick<CellSpec, 'cwd' | 'source'>): number | undefined {
  return sourceHasher.sourceFileCount(spec);
}

/**
 * How long a build may run when its spec does not say (`build_timeout`; the same as DEFAULTS in
 * manifest/schema.ts, not imported: that module would bring zod into the daemon).
 */
const DEFAULT_BUILD_TIMEOUT_MS = 10 * 60_000;

/** Runs a cell's `build` command in its cwd, output appended to `logFile`. Rejects with BuildError. */
export function runBuild(spec: CellSpec, logFile: string, env: Record<string, string>, signal?: AbortSignal): Promise<void> {
  const command = spec.build;
  if (!command) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const fd = openSync(logFile, 'a');
    // Every process of this build carries the marker, in its own group or not (setsid).
    const buildId = randomUUID();
    // Its own process group: a build that hangs is stopped whole (the shell and what it ran).
    const child = spawn('/bin/sh', ['-c', command], { cwd: spec.cwd, env: { ...env, [BUILD_MARKER_VAR]: buildId }, stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    let timedOut = false;
    const timeoutMs = spec.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    const stopGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // Gone already.
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      stopGroup('SIGTERM');
      killTimer ??= setTimeout(() => stopGroup('SIGKILL'), 2000).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, timeoutMs);
    // The daemon going down (`cell down`) takes a build in progress with it: no process of the
    // mesh outlives a down.
    if (signal?.aborted) stop();
    signal?.addEventListener('abort', stop, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new BuildError(spec.name, command, null, logFile, { cause: err }));
    });
    child.on('exit', (code, exitSignal) => {
      clearTimeout(timer);
      // Not later: the group's id could be another's by then.
      clearTimeout(killTimer);
      signal?.removeEventListener('abort', stop);
      // What the build left running in its group (a `&` child, or all of it when its shell was
      // killed alone) ends with it: a build is over when its command is.
      stopGroup('SIGKILL');
      // A build the daemon stopped (build_timeout, `cell down`) is stopped whole: also what left
      // its group (setsid), found by the marker. One that ended by itself keeps those (a build
      // server such as bazel's or gradle's is meant to outlive it).
      if (timedOut || signal?.aborted) killMarked(`${BUILD_MARKER_VAR}=${buildId}`);
      if (code === 0 && !timedOut) resolve();
      else reject(new BuildError(spec.name, command, code, logFile, undefined, exitSignal, timedOut ? timeoutMs : null));
    });
  });
}

/** Marks the processes of one build in their environment, so that none outlives its stop. */
export const BUILD_MARKER_VAR = 'CELL_BUILD_ID';

/**
 * SIGKILLs every process whose environment holds `marker` (NAME=value): what a build started and
 * moved out of its process group. A scan of /proc, once per build the daemon stopped.
 */
function killMarked(marker: string): void {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return;
  }
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(marker)) process.kill(Number(name), 'SIGKILL');
    } catch {
      // Gone, or another user's.
    }
  }
}

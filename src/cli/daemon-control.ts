import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, fstatSync, readSync, readFileSync, existsSync, rmdirSync, statSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ApiClient,
  CellHomeError,
  DAEMON_EXIT_ALREADY_RUNNING,
  DaemonNotRunningError,
  cellHomePaths,
  checkCellHome,
  daemonEnv,
  instanceProcessesOfHome,
  type DaemonGo,
  type ParsedManifest,
  type StatusView,
} from '../api/index.js';
import { CliError, progress } from './output.js';

export function daemonEntry(): string {
  return fileURLToPath(new URL('../daemon/main.js', import.meta.url));
}

/** Whether a daemon answers on `socket`. No socket file, no daemon: no HTTP round trip then. */
async function isUp(socket: string, api: ApiClient): Promise<boolean> {
  if (!existsSync(socket)) return false;
  // A daemon that a `cell down` is ending: wait until it is gone, then this command starts a new
  // one (it used to apply to the one leaving, and fail with "not running" or a reset).
  const deadline = Date.now() + SHUTDOWN_WAIT_MS;
  for (;;) {
    let leaving: boolean;
    try {
      leaving = (await api.get<StatusView>('/v1/status', { timeoutMs: 2000 })).daemon.shutting_down === true;
    } catch (err) {
      if (err instanceof DaemonNotRunningError) return false;
      // Its connection reset as it exited.
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' || Date.now() > deadline) throw err;
      leaving = true;
    }
    if (!leaving) return true;
    if (Date.now() > deadline) throw new CliError(`the cell daemon is still shutting down (a \`cell down\` runs) after ${SHUTDOWN_WAIT_MS / 1000} s; run the command again once it is done`);
    progress('waiting for the daemon to finish shutting down (a `cell down` is under way)');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How long `cell up` waits for a daemon that is shutting down to be gone. */
const SHUTDOWN_WAIT_MS = 120_000;

/** A daemon process started ahead of the manifest's validation, waiting for `go` (see startDaemon). */
export interface PendingDaemon {
  /**
   * Lets it boot (with the manifest's gateway port) and waits until its API answers. `parsed` is
   * the manifest as this command validated it: the daemon takes it for its first apply if the
   * file still has that text, instead of parsing it again in a process of its own.
   */
  go(gatewayPort: number, parsed?: ParsedManifest): Promise<void>;
  /** The manifest was bad: ends it before it touched CELL_HOME; resolves once it is gone. */
  abandon(): Promise<void>;
}

/**
 * Starts the background daemon for `home` unless one runs already (then: null), without waiting
 * for `cell up` to validate the manifest. The daemon boots node and loads its code (the slow
 * part: ~150 ms), then waits on its stdin for `go` (with the manifest as this command parsed
 * it): only then does it take the lock and touch CELL_HOME. So a bad manifest still starts no daemon (`abandon`), and
 * a good one finds it loaded by the time it is validated. Without a `go` (this command died) the
 * daemon exits. It is detached (its own session), with its output in logs/daemon.out.
 */
export async function startDaemon(home: string, manifest: string): Promise<PendingDaemon | null> {
  requireUsableHome(home);
  const paths = cellHomePaths(home);
  const api = new ApiClient(paths.socket);
  if (await isUp(paths.socket, api)) return null;
  // What this command creates for the daemon's output, so that a bad manifest (`abandon`) leaves
  // CELL_HOME as it found it: a first `cell up` with a typo must not leave a home behind.
  const outExisted = existsSync(paths.daemonOut);
  const firstCreatedDir = mkdirSync(paths.logs, { recursive: true });
  const out = openSync(paths.daemonOut, 'a');
  // Where this attempt's output starts: a failure is told from it, not from earlier attempts'.
  const outStart = fstatSync(out).size;
  // The daemon's V8 tuning is set by its entry point (daemon/main.ts says why not here).
  const child = spawn(process.execPath, ['--v8-pool-size=1', daemonEntry(), '--home', home, '--manifest', manifest, '--await-go'], {
    detached: true,
    stdio: ['pipe', out, out],
    // Tuned for the daemon (api/paths.ts); the cells get the user's values back.
    env: { ...daemonEnv(process.env), CELL_HOME: home },
  });
  closeSync(out);
  let exited: number | null = null;
  const exit = new Promise<void>((resolve) => child.on('exit', (code) => ((exited = code ?? 1), resolve())));
  child.stdin!.on('error', () => {}); // a daemon that died early: its exit says why
  return {
    async go(gatewayPort, parsed) {
      child.stdin!.end(JSON.stringify({ gatewayPort, parsed } satisfies DaemonGo) + '\n');
      child.unref();
      await waitUp(paths, api, () => exited, outStart);
    },
    async abandon() {
      // No `go`: the daemon exits (daemon/main.ts), before touching CELL_HOME.
      child.stdin!.end();
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }, 5000);
      await exit;
      clearTimeout(timer);
      if (!outExisted) removeCreatedOutput(paths.daemonOut, firstCreatedDir);
    },
  };
}

/**
 * Removes the daemon's output file if the abandoned daemon wrote nothing to it, then the
 * directories `mkdirSync` created for it (up to `firstCreatedDir`), each only if empty.
 */
function removeCreatedOutput(daemonOut: string, firstCreatedDir: string | undefined): void {
  try {
    if (statSync(daemonOut).size > 0) return;
    unlinkSync(daemonOut);
  } catch {
    return;
  }
  if (!firstCreatedDir) return;
  for (let dir = dirname(daemonOut); ; dir = dirname(dir)) {
    try {
      rmdirSync(dir);
    } catch {
      return; // not empty (or gone): what is left is not only ours
    }
    if (dir === firstCreatedDir || dir === dirname(dir)) return;
  }
}

/**
 * The instances a daemon that is gone (killed, crashed) left running: the pids its last
 * `control-plane.json` names that are still alive. A cell outlives its daemon by design; this is
 * how `cell down` finds there is a mesh to stop although no daemon answers.
 */
export function instancesLeftRunning(home: string): { key: string; pid: number }[] {
  let file: { processes?: Record<string, { pid?: unknown }> };
  try {
    file = JSON.parse(readFileSync(cellHomePaths(home).controlPlane, 'utf8'));
  } catch {
    // Missing or unreadable (deleted, or corrupt while no daemon ran): the processes themselves
    // still say whose they are.
    return instanceProcessesOfHome(home).map((p) => ({ key: `${p.cell}.${p.instance}`, pid: p.pid }));
  }
  const left: { key: string; pid: number }[] = [];
  for (const [key, proc] of Object.entries(file.processes ?? {})) {
    const pid = proc?.pid;
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) continue;
    try {
      process.kill(pid, 0);
      left.push({ key, pid });
    } catch {
      // EPERM: alive but not ours, so not a cell of this user's mesh; ESRCH: gone.
    }
  }
  return left;
}

/**
 * Fails with a usage error (exit 2) when no daemon could serve `home` (its socket path would be
 * too long): checked before anything is started or created there.
 */
export function requireUsableHome(home: string): void {
  try {
    checkCellHome(home);
  } catch (err) {
    if (err instanceof CellHomeError) throw new CliError(err.message, 2);
    throw err;
  }
}

/**
 * Starts a daemon for `home` with no manifest to apply: it readopts what the last one left
 * running (validating each pid's start time) and serves the API. For `cell down` after a daemon
 * died. Resolves once the API answers; null when a daemon already runs.
 */
export async function takeOverDaemon(home: string, manifestHint: string): Promise<boolean> {
  const pending = await startDaemon(home, manifestHint);
  if (!pending) return false;
  // Port 0: the gateway keeps the port its readopted (or restarted) process has.
  // A `cell down` sent while it still boots its gateway is taken as any other (daemon/index.ts).
  await pending.go(0);
  return true;
}

async function waitUp(paths: ReturnType<typeof cellHomePaths>, api: ApiClient, exitCode: () => number | null, outStart: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await isUp(paths.socket, api)) return;
    // Lost a race with another start (two `cell up` at once): the daemon that won serves this
    // command too, once it is up.
    if (exitCode() !== null && exitCode() !== DAEMON_EXIT_ALREADY_RUNNING) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const code = exitCode();
  // A daemon that could not even write why (its daemon.out on a full disk) left nothing to read.
  const reason = tellingLine(readFrom(paths.daemonOut, outStart)) || diskFull(paths.home);
  // What the daemon printed before it exited is in daemon.out; a daemon still booting logs to daemon.log.
  const see = code !== null ? paths.daemonOut : `${paths.daemonOut} and ${paths.daemonLog}`;
  throw new Error(`the cell daemon did not start${code !== null ? ` (exit code ${code})` : ' within 30s'}${reason ? `: ${reason}` : ''}; see ${see}`);
}

/** Says so when the filesystem of `dir` has (next to) no space left; '' otherwise. */
function diskFull(dir: string): string {
  try {
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    return free < 1024 * 1024 ? `the disk of ${dir} is full (${free} bytes free)` : '';
  } catch {
    return '';
  }
}

/** What `file` holds from byte `start` on (its last 64 KiB at most); '' when it cannot be read. */
function readFrom(file: string, start: number): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const end = fstatSync(fd).size;
    const from = Math.max(start, end - 65536);
    if (end <= from) return '';
    const bytes = Buffer.alloc(end - from);
    const n = readSync(fd, bytes, 0, bytes.length, from);
    return bytes.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * The one line of a failed daemon's output that says why: its own report (`cell daemon: …`,
 * written by daemon/main.ts, without that prefix), else the message line of an uncaught error
 * (`Error: ENOENT: …`), else the last line that is not part of a stack trace or node's footer.
 */
export function tellingLine(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const lastly = [...lines].reverse();
  const own = lastly.find((l) => l.startsWith('cell daemon: '));
  if (own) return own.slice('cell daemon: '.length);
  const thrown = lines.find((l) => /^(?:Uncaught )?(?:[A-Z]\w*)?(?:Error|Exception)(?: \[\w+\])?: /.test(l));
  if (thrown) return thrown;
  // Stack frames, node's footer and carets, the properties of an inspected error, warnings.
  const noise = /^(?:at |Node\.js v|[{}[\]^~]+$|\w+: (?:'.*'|-?\d+|\w+|\[.*\]|\{.*\}),?$|\(node:\d+\) |\(Use `node --trace)/;
  return lastly.find((l) => !noise.test(l)) ?? '';
}

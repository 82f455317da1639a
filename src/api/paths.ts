import { lstatSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CellHomeNotADirectoryError, CellHomeTooLongError } from './errors.js';

/** The files of one `$CELL_HOME` (default `~/.cell`); one daemon per home. */
export interface CellHomePaths {
  home: string;
  run: string;
  socket: string;
  lock: string;
  logs: string;
  daemonLog: string;
  daemonOut: string;
  stateDb: string;
  controlPlane: string;
  repo: string;
  keys: string;
}

export function resolveCellHome(explicit?: string): string {
  // An empty value is no value: `CELL_HOME= cell status` means the default home, not the current directory.
  return resolve(explicit || process.env.CELL_HOME || join(homedir(), '.cell'));
}

export function cellHomePaths(home: string): CellHomePaths {
  const run = join(home, 'run');
  const logs = join(home, 'logs');
  return {
    home,
    run,
    socket: join(run, 'daemon.sock'),
    lock: join(run, 'daemon.lock'),
    logs,
    daemonLog: join(logs, 'daemon.log'),
    daemonOut: join(logs, 'daemon.out'),
    stateDb: join(home, 'state.db'),
    controlPlane: join(home, 'control-plane.json'),
    repo: join(home, 'repo'),
    keys: join(home, 'keys'),
  };
}

/**
 * The longest path a unix socket can have, in bytes: `sun_path` holds 108 on Linux (104 on macOS
 * and the BSDs), the terminating NUL included. Node does not check it: a longer path is cut short,
 * and a daemon would listen on a file named after its first bytes (`$CELL_HOME/ru`).
 */
export const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/**
 * Why `path` cannot be a unix socket (it is longer than MAX_SOCKET_PATH_BYTES), as a message that
 * names the path, its length and the limit; null when it can. For the daemon's socket, see
 * checkCellHome; the daemon checks each instance's `$CELL_HOME/run/<cell>.<i>.sock` with this.
 */
export function socketPathTooLong(path: string): string | null {
  const bytes = Buffer.byteLength(path);
  if (bytes <= MAX_SOCKET_PATH_BYTES) return null;
  return `socket ${path} would be ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of unix socket paths`;
}

/**
 * Throws `CellHomeTooLongError` when `home` cannot have a daemon: its socket would be longer than
 * unix sockets allow. Run before anything is started or created for the home.
 */
export function checkCellHome(home: string): void {
  const socket = cellHomePaths(home).socket;
  const bytes = Buffer.byteLength(socket);
  if (bytes > MAX_SOCKET_PATH_BYTES) throw new CellHomeTooLongError(home, socket, bytes, MAX_SOCKET_PATH_BYTES);
  const file = fileInPathOf(home);
  if (file !== undefined) throw new CellHomeNotADirectoryError(home, file);
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** `dir` itself or the nearest of its parents that exists and is not a directory (or is a dangling link), if any. */
export function fileInPathOf(dir: string): string | undefined {
  for (let at = resolve(dir); ; at = dirname(at)) {
    try {
      return statSync(at).isDirectory() ? undefined : at;
    } catch {
      // A symbolic link to nothing cannot be made a directory either.
      if (isLink(at)) return at;
      // Missing (created later) or under a file (ENOTDIR): look further up.
    }
    if (dirname(at) === at) return undefined;
  }
}

/** Log file of one instance: `logs/<cell>.<index>.log`. */
export function instanceLogFile(paths: CellHomePaths, cell: string, index: number): string {
  return join(paths.logs, `${cell}.${index}.log`);
}

/**
 * The instance log files of `cell` that are on disk (`logs/<cell>.<index>.log`), by index: those
 * of instances that no longer run too. None when there is no logs folder yet.
 */
export function instanceLogFilesOnDisk(paths: CellHomePaths, cell: string): { instance: number; file: string }[] {
  let names: string[];
  try {
    names = readdirSync(paths.logs);
  } catch {
    return [];
  }
  const found: { instance: number; file: string }[] = [];
  for (const name of names) {
    const index = name.startsWith(`${cell}.`) ? /^(\d+)\.log$/.exec(name.slice(cell.length + 1)) : null;
    if (index) found.push({ instance: Number(index[1]), file: join(paths.logs, name) });
  }
  return found.sort((a, b) => a.instance - b.instance);
}

/**
 * What the daemon and the gateway change in their own environment. Both are ours, not the user's
 * programs, so they run tuned; cells get the user's values back (cellBaseEnv).
 */
export const DAEMON_ENV_TUNING: Readonly<Record<string, string>> = {
  // One malloc arena: each thread's own arena (libuv pool, V8 workers) costs ~10 MB of RSS in a
  // process that allocates little.
  MALLOC_ARENA_MAX: '1',
  // Node 20 reads this file and initialises OpenSSL before running any code (~90 ms with a distro
  // CA bundle, i.e. 3x node's own start). Neither process makes a TLS connection.
  NODE_EXTRA_CA_CERTS: '',
};

/** The user's own values of the tuned variables (JSON; null for unset) travel in this variable. */
export const USER_ENV_VAR = 'CELL_USER_ENV';

/**
 * Where `bin/cell` (the shell wrapper) keeps the user's NODE_EXTRA_CA_CERTS, which it empties for
 * the CLI's own node. Whatever reads "the user's environment" reads through this.
 */
export const USER_CA_CERTS_VAR = 'CELL_USER_NODE_EXTRA_CA_CERTS';

/** `env` as the user had it, before bin/cell emptied NODE_EXTRA_CA_CERTS for the CLI. */
function userEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env[USER_CA_CERTS_VAR] === undefined) return env;
  const user: NodeJS.ProcessEnv = { ...env, NODE_EXTRA_CA_CERTS: env[USER_CA_CERTS_VAR] };
  delete user[USER_CA_CERTS_VAR];
  return user;
}

/** The environment to start the daemon with, from the CLI's. */
export function daemonEnv(cliEnv: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const user = userEnv(cliEnv);
  const saved = Object.fromEntries(Object.keys(DAEMON_ENV_TUNING).map((k) => [k, user[k] ?? null]));
  return { ...user, ...DAEMON_ENV_TUNING, [USER_ENV_VAR]: JSON.stringify(saved) };
}

/** The environment cells inherit: the daemon's own, with the daemon-only tuning undone. */
export function cellBaseEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const base = Object.fromEntries(Object.entries(userEnv(env)).filter((e): e is [string, string] => e[1] !== undefined));
  const savedJson = base[USER_ENV_VAR];
  if (savedJson === undefined) return base;
  delete base[USER_ENV_VAR];
  let saved: Record<string, unknown> = {};
  try {
    saved = JSON.parse(savedJson) as Record<string, unknown>;
  } catch {
    // Not ours (or mangled): leave the environment as it is.
    return base;
  }
  for (const k of Object.keys(DAEMON_ENV_TUNING)) {
    const v = saved[k];
    if (typeof v === 'string') base[k] = v;
    else delete base[k];
  }
  return base;
}

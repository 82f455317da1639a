import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

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
  return resolve(explicit ?? process.env.CELL_HOME ?? join(homedir(), '.cell'));
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

/** Log file of one instance: `logs/<cell>.<index>.log`. */
export function instanceLogFile(paths: CellHomePaths, cell: string, index: number): string {
  return join(paths.logs, `${cell}.${index}.log`);
}

/**
 * The daemon runs with MALLOC_ARENA_MAX=1 (memory); the value the user had (or '' for none) travels
 * in this variable so that cells get the user's environment, not the daemon's tuning.
 */
export const INHERITED_ARENA_VAR = 'CELL_USER_MALLOC_ARENA_MAX';

/** The environment cells inherit: the daemon's own, with the daemon-only tuning undone. */
export function cellBaseEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const base = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  if (INHERITED_ARENA_VAR in base) {
    const user = base[INHERITED_ARENA_VAR];
    delete base[INHERITED_ARENA_VAR];
    if (user) base.MALLOC_ARENA_MAX = user;
    else delete base.MALLOC_ARENA_MAX;
  }
  return base;
}

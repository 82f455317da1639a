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

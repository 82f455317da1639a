import { openSync, writeSync, closeSync, readFileSync, unlinkSync } from 'node:fs';
import { checkCellHome } from '../api/index.js';
import { isDeadState, readProcStat } from '../supervisor/index.js';
import { DaemonAlreadyRunningError } from './errors.js';

function startTicksOf(pid: number): number | undefined {
  const stat = readProcStat(pid);
  return stat && !isDeadState(stat.state) ? stat.startTicks : undefined;
}

/**
 * One daemon per CELL_HOME: an exclusive lock file holding our pid and its start time. A lock
 * whose process is gone (or whose pid was reused by another program) is stale and taken over.
 * Returns the release function. Throws a `CellHomeError` first when no daemon can serve `home`
 * (its socket path too long, or it is a file): a foreground `cell up` gets here without the
 * CLI's own check.
 */
export function acquireDaemonLock(lockFile: string, home: string): () => void {
  checkCellHome(home);
  const mine = { pid: process.pid, startTicks: startTicksOf(process.pid) };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(lockFile, 'wx', 0o600);
      writeSync(fd, JSON.stringify(mine));
      closeSync(fd);
      return () => {
        try {
          const held = JSON.parse(readFileSync(lockFile, 'utf8'));
          if (held.pid === process.pid) unlinkSync(lockFile);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let held: { pid?: number; startTicks?: number } = {};
      try {
        held = JSON.parse(readFileSync(lockFile, 'utf8'));
      } catch {
        // Half-written by a daemon killed at that instant: stale.
      }
      if (held.pid && held.pid !== process.pid && startTicksOf(held.pid) !== undefined && startTicksOf(held.pid) === held.startTicks) {
        throw new DaemonAlreadyRunningError(home, held.pid);
      }
      try {
        unlinkSync(lockFile);
      } catch {
        // Another starter removed it first; retry.
      }
    }
  }
  throw new Error(`could not take the daemon lock ${lockFile}`);
}

import { readdirSync, readFileSync } from 'node:fs';

/** A live process started for a cell instance of some home (or a child of one). */
export interface InstanceProcess {
  pid: number;
  /** Its parent and its process group. */
  ppid: number;
  pgrp: number;
  cell: string;
  /** CELL_INSTANCE as it carries it (a string: it is read from the environment). */
  instance: string;
  /** Field 22 of /proc/<pid>/stat: its start, in clock ticks after boot. */
  startTicks: number;
}

/**
 * Marks a process booted as a warm spare (supervisor/warm-node.ts). Its /proc environ stays the
 * spare's after it becomes an instance's program, so it carries CELL_HOME and this, not CELL_NAME.
 */
export const WARM_SPARE_VAR = 'CELL_WARM_SPARE';
/** The `cell` of a process found by WARM_SPARE_VAR: which instance it became is not in /proc. */
export const WARM_STARTED = '(warm-started)';

/**
 * The live processes that carry `home`'s CELL_HOME and a cell instance's CELL_NAME and
 * CELL_INSTANCE in their environment: every instance has them, and its children inherit them.
 * What the daemon finds strays with, and what `cell down` falls back on when the daemon and
 * control-plane.json are both gone. Also processes started from a warm spare (cell WARM_STARTED,
 * instance '?'): a spare no daemon waits on has ended, so one alive is a program. Linux /proc;
 * processes not ours to read are skipped. With `startedFromTicks`, only processes started at
 * that clock tick after boot or later.
 */
export function instanceProcessesOfHome(home: string, startedFromTicks = 0): InstanceProcess[] {
  const homeVar = `CELL_HOME=${home}`;
  const found: InstanceProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      // The stat first: it is smaller than the environment, and rules most processes out when
      // only the recent ones are wanted. The command name may hold spaces and parentheses: the
      // fields start after the last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const state = fields[0];
      const startTicks = Number(fields[19]);
      // A zombie or dead process has finished: nothing to stop or adopt.
      if (state === 'Z' || state === 'X' || state === 'x' || startTicks < startedFromTicks) continue;
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (!environ.includes(homeVar)) continue;
      let cell = environ.find((e) => e.startsWith('CELL_NAME='))?.slice('CELL_NAME='.length);
      let instance = environ.find((e) => e.startsWith('CELL_INSTANCE='))?.slice('CELL_INSTANCE='.length);
      if (cell === undefined || instance === undefined) {
        // A program started from a warm spare: its environ is the spare's, which names no cell.
        if (!environ.includes(`${WARM_SPARE_VAR}=1`)) continue;
        cell = WARM_STARTED;
        instance = '?';
      }
      found.push({ pid, ppid: Number(fields[1]), pgrp: Number(fields[2]), cell, instance, startTicks });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

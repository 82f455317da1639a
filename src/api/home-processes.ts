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
 * The live processes that carry `home`'s CELL_HOME and a cell instance's CELL_NAME and
 * CELL_INSTANCE in their environment: every instance has them, and its children inherit them.
 * What the daemon finds strays with, and what `cell down` falls back on when the daemon and
 * control-plane.json are both gone. Linux /proc; processes not ours to read are skipped. With
 * `startedFromTicks`, only processes started at that clock tick after boot or later.
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
      const cell = environ.find((e) => e.startsWith('CELL_NAME='))?.slice('CELL_NAME='.length);
      const instance = environ.find((e) => e.startsWith('CELL_INSTANCE='))?.slice('CELL_INSTANCE='.length);
      if (cell === undefined || instance === undefined) continue;
      found.push({ pid, ppid: Number(fields[1]), pgrp: Number(fields[2]), cell, instance, startTicks });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

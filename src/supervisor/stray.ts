import { readFileSync } from 'node:fs';
import { instanceProcessesOfHome } from '../api/index.js';
import { clockTicksPerSecond, isDeadState, processIds, readProcStat } from './proc.js';

/**
 * Processes that carry our `CELL_HOME` and a `CELL_INSTANCE` in their environment but that no
 * record tracks: an instance spawned just before the daemon was killed, before its pid was saved.
 * Members of a tracked instance's process group (its own children) are not strays.
 */
export function findStrayInstances(home: string, trackedGroups: Set<number>): { pid: number; cell: string; instance: string }[] {
  return instanceProcessesOfHome(home)
    .filter((p) => !trackedGroups.has(p.pgrp))
    .map(({ pid, cell, instance }) => ({ pid, cell, instance }));
}

/**
 * Whether a live member of process group `pgid` carries our `CELL_HOME`: the group is a cell's,
 * not another program's that took the id of a process of ours that died (pids are reused).
 */
export function isGroupOfHome(pgid: number, home: string): boolean {
  const homeVar = `CELL_HOME=${home}`;
  for (const pid of processIds()) {
    const stat = readProcStat(pid);
    if (!stat || stat.pgrp !== pgid || isDeadState(stat.state)) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(homeVar)) return true;
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return false;
}

/**
 * Signals a stray: its whole process group when it leads one (a `setsid` escapee takes its own
 * children along), else the process alone (a group signal to a non-leader's pid would miss it).
 * Returns false when it is gone already (signal 0 only asks that).
 */
export function signalStray(pid: number, signal: NodeJS.Signals | 0): boolean {
  const stat = readProcStat(pid);
  if (!stat || isDeadState(stat.state)) return false;
  try {
    process.kill(stat.pgrp === pid ? -pid : pid, signal);
    return true;
  } catch {
    return false; // gone meanwhile
  }
}

/** Clock ticks since boot now (/proc/uptime): comparable with a process's start ticks, unlike the wall clock. */
export function ticksSinceBoot(): number {
  const seconds = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
  return Math.floor(seconds * clockTicksPerSecond());
}

/** An ended instance whose escapees are looked for: its end, and the group of its next process (spared). */
export interface EndedInstance {
  cell: string;
  instance: number;
  /** When its process started and ended, in clock ticks after boot: its escapees started in between. */
  startedTicks: number;
  endedTicks: number;
  sparedGroup: number | null;
}

/**
 * Processes ended instances left outside their process groups, in one pass over /proc: they carry
 * the home's CELL_HOME and an instance's CELL_NAME and CELL_INSTANCE, started before its end
 * (`endedTicks`, see ticksSinceBoot), and are neither in the group of the instance's next process
 * nor children of it. A child that called setsid(), or a program that daemonized itself, escapes the group
 * kill of its instance's end.
 */
export function findEscapees(home: string, ended: EndedInstance[]): { pid: number; cell: string; instance: number }[] {
  const byKey = new Map(ended.map((e) => [`${e.cell}\0${e.instance}`, e]));
  const found: { pid: number; cell: string; instance: number }[] = [];
  for (const p of instanceProcessesOfHome(home, Math.min(...ended.map((e) => e.startedTicks)))) {
    const e = byKey.get(`${p.cell}\0${p.instance}`);
    // Started in a tick before the end (ticks are 10 ms: one in the same tick may be the next
    // process's), and neither in the next process's group nor its child.
    if (e && p.startTicks < e.endedTicks && p.pgrp !== e.sparedGroup && p.ppid !== e.sparedGroup) found.push({ pid: p.pid, cell: e.cell, instance: e.instance });
  }
  return found;
}

import { clockTicksPerSecond, readProcStat } from '../supervisor/index.js';

export interface ProcessUsage {
  /** CPU time (user + system) in ms since the process started. */
  cpuMs: number;
  rssBytes: number;
}

/** CPU time and resident memory of a process from /proc; undefined when it is gone. */
export function readProcessUsage(pid: number): ProcessUsage | undefined {
  const stat = readProcStat(pid);
  if (!stat) return undefined;
  return { cpuMs: ((stat.utimeTicks + stat.stimeTicks) * 1000) / clockTicksPerSecond(), rssBytes: stat.rssBytes };
}

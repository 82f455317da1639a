import { readFileSync } from 'node:fs';

export interface ProcessUsage {
  /** CPU time (user + system) in ms since the process started. */
  cpuMs: number;
  rssBytes: number;
}

const TICK_MS = 10; // CLK_TCK is 100 on Linux
const PAGE = 4096;

/** CPU time and resident memory of a process from /proc; undefined when it is gone. */
export function readProcessUsage(pid: number): ProcessUsage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime 15, rss (pages) 24.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const rssPages = Number(fields[21]);
    return { cpuMs: (utime + stime) * TICK_MS, rssBytes: rssPages * PAGE };
  } catch {
    return undefined;
  }
}

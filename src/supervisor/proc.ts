/**
 * Reading the Linux /proc filesystem: process state, start time and resource counters.
 * Everything here is synchronous and cheap (one small read per call), and returns undefined
 * instead of throwing when a process is gone, since processes vanish between any two reads.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { arch, endianness } from 'node:os';

export interface ProcStat {
  /** One letter: R running, S sleeping, D disk wait, Z zombie, T stopped, X dead, I idle... */
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22: start time in clock ticks after boot; with the pid it identifies a process. */
  startTicks: number;
  utimeTicks: number;
  stimeTicks: number;
  rssBytes: number;
}

/**
 * Parses the text of /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself
 * hold spaces and parentheses, so fields are split only after the last ')'.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const rest = text.slice(close + 2).trim().split(' ');
  if (rest.length < 22) return undefined;
  const field = (n: number): number => Number(rest[n - 3]);
  return {
    state: rest[0],
    ppid: field(4),
    pgrp: field(5),
    utimeTicks: field(14),
    stimeTicks: field(15),
    startTicks: field(22),
    rssBytes: field(24) * pageSize(),
  };
}

/** The stat of a process, or undefined when no such process exists (or /proc is unreadable). */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/** The pids of every process /proc lists now (none when /proc cannot be read). */
export function processIds(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) pids.push(Number(name));
  }
  return pids;
}

/** True for states of a process that has finished running: zombie (Z) or dead (X). */
export function isDeadState(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

let auxv: { clockTicks?: number; pageSize?: number } | undefined;

// The kernel hands every process its clock tick rate and page size in the auxiliary vector
// (AT_CLKTCK = 17, AT_PAGESZ = 6); reading it avoids running `getconf` as a child process.
function readAuxv(): { clockTicks?: number; pageSize?: number } {
  if (auxv) return auxv;
  auxv = {};
  try {
    if (!arch().endsWith('64')) return auxv;
    const buf = readFileSync('/proc/self/auxv');
    const le = endianness() === 'LE';
    for (let off = 0; off + 16 <= buf.length; off += 16) {
      const type = Number(le ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off));
      const value = Number(le ? buf.readBigUInt64LE(off + 8) : buf.readBigUInt64BE(off + 8));
      if (type === 0) break;
      if (type === 17) auxv.clockTicks = value;
      if (type === 6) auxv.pageSize = value;
    }
  } catch {
    // Fall back below.
  }
  return auxv;
}

function getconf(name: string): number | undefined {
  try {
    const n = Number(execFileSync('getconf', [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

let ticks: number | undefined;
let page: number | undefined;

/** Clock ticks per second (USER_HZ) of /proc times; 100 on every common Linux. Read once. */
export function clockTicksPerSecond(): number {
  ticks ??= readAuxv().clockTicks ?? getconf('CLK_TCK') ?? 100;
  return ticks;
}

/** Memory page size in bytes, for the rss field. Read once. */
export function pageSize(): number {
  page ??= readAuxv().pageSize ?? getconf('PAGESIZE') ?? 4096;
  return page;
}

let bootTime: number | undefined;

/** When the machine booted, in ms since the epoch (the `btime` line of /proc/stat). Read once. */
export function bootTimeMs(): number {
  if (bootTime === undefined) {
    const match = /^btime\s+(\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
    if (!match) throw new Error('no btime line in /proc/stat');
    bootTime = Number(match[1]) * 1000;
  }
  return bootTime;
}

/** Wall-clock start time (ms since the epoch) of a process from its `startTicks`. */
export function processStartTimeMs(startTicks: number): number {
  return bootTimeMs() + Math.round((startTicks * 1000) / clockTicksPerSecond());
}

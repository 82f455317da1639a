/**
 * Who holds the listening socket of a port: the instance's own process group, or another program.
 *
 * Why: a readiness check connects to the instance's port and cannot tell who answered. The daemon
 * checks that the port is free just before the spawn, but between that and the instance's own
 * `listen` (seconds in a burst, minutes for a program slow to bind) any other program may take
 * it: another mesh's cell, a dev server, a test. Its answer would then make the instance ready,
 * and the gateway would send the cell's traffic to that program. CI saw exactly this: a cell that
 * never bound its port went ready on another mesh's `db`.
 *
 * Linux: a listener is a LISTEN line of /proc/net/tcp{,6} with a socket inode, and a process holds
 * it when one of its /proc/<pid>/fd links reads `socket:[inode]`.
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { isDeadState, processIds, readProcStat } from './proc.js';

export type PortHolder =
  /** A process of the instance (its group, or a descendant) holds the listener. */
  | { kind: 'group' }
  /** Another program holds it; `pid` and `command` when it could be found (another user's may not). */
  | { kind: 'other'; pid: number | null; command: string | null }
  /** Cannot tell (no listener seen, /proc unreadable, a group member's fds unreadable): trust the check. */
  | { kind: 'unknown' };

const TCP_TABLES = ['/proc/net/tcp', '/proc/net/tcp6'];
const LISTEN = '0A';

/**
 * The socket inode of one line of a table when it is a listener of `port`, else undefined. A line
 * is `sl local_address rem_address st ... uid timeout inode ...`, addresses as `HEXADDR:HEXPORT`.
 * `listening` is false for a line that is no listener at all (the listeners come first).
 */
function listenerOf(line: string, port: number): { listening: boolean; inode?: string } {
  const fields = line.trim().split(/\s+/);
  if (fields.length < 10 || fields[3] !== LISTEN) return { listening: false };
  const local = fields[1];
  const colon = local.lastIndexOf(':');
  if (colon < 0 || parseInt(local.slice(colon + 1), 16) !== port || fields[9] === '0') return { listening: true };
  return { listening: true, inode: fields[9] };
}

/** The socket inodes listening on `port` (any address) in a table's text, header line first. */
export function parseListenerInodes(tableText: string, port: number): string[] {
  const inodes: string[] = [];
  for (const line of tableText.split('\n').slice(1)) {
    const inode = listenerOf(line, port).inode;
    if (inode !== undefined) inodes.push(inode);
  }
  return inodes;
}

/**
 * The inodes of the listeners of `port` that a connection to 127.0.0.1 reaches: those of the IPv4
 * table if it has any (an address of its own wins over the IPv6 wildcard), else the IPv6 table's
 * (`::`, dual-stack: node's default `listen(port)`).
 */
function listenerInodes(port: number): Set<string> {
  for (const table of TCP_TABLES) {
    const inodes = readListeners(table, port);
    if (inodes.length > 0) return new Set(inodes);
  }
  return new Set();
}

/**
 * The LISTEN lines of one table for `port`, read a page at a time and no further than needed.
 * Why not readFileSync: the kernel lists the listening sockets first and then walks the whole
 * established hash (262144 buckets on this 24 GiB VM, ~5 ms per walk, and a read to the end walks
 * it twice), which in a cold start of 100 cells was 1.3 s of the daemon's main thread. The reads
 * stop at the port's listener, or at the first line past the listeners.
 */
function readListeners(table: string, port: number): string[] {
  let fd: number;
  try {
    fd = openSync(table, 'r');
  } catch {
    return []; // no IPv6, or no /proc
  }
  const page = Buffer.alloc(4096);
  const found: string[] = [];
  let partial = '';
  let header = true;
  try {
    for (;;) {
      const n = readSync(fd, page, 0, page.length, null);
      if (n === 0) return found;
      const lines = (partial + page.toString('latin1', 0, n)).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (header) {
          header = false;
          continue;
        }
        const { listening, inode } = listenerOf(line, port);
        if (!listening) return found;
        if (inode !== undefined) found.push(inode);
      }
      if (found.length > 0) return found;
    }
  } catch {
    return found;
  } finally {
    closeSync(fd);
  }
}

/** Whether `pid` holds one of `inodes`; undefined when its descriptors cannot be read. */
function holdsOneOf(pid: number, inodes: Set<string>): boolean | undefined {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const fd of fds) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (link.startsWith('socket:[') && inodes.has(link.slice(8, -1))) return true;
  }
  return false;
}

function commandLine(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return text.length > 120 ? text.slice(0, 120) + '…' : text || null;
  } catch {
    return null;
  }
}

/**
 * Who holds the listener of 127.0.0.1:`port` (or of the wildcard address) for the instance whose
 * process group is `pgid`. The group's leader is looked at first (the common case: the program
 * itself listens), then the rest of the instance's processes (its group, and descendants that
 * made groups of their own), and only when none holds it, every process.
 */
export function findPortHolder(pgid: number, port: number): PortHolder {
  const inodes = listenerInodes(port);
  if (inodes.size === 0) return { kind: 'unknown' };
  const leader = holdsOneOf(pgid, inodes);
  if (leader === true) return { kind: 'group' };
  let unreadable = leader === undefined;
  const pids = processIds();
  const parentOf = new Map<number, number>();
  const groupOf = new Map<number, number>();
  for (const pid of pids) {
    const stat = readProcStat(pid);
    if (!stat || isDeadState(stat.state)) continue;
    parentOf.set(pid, stat.ppid);
    groupOf.set(pid, stat.pgrp);
  }
  const descends = (pid: number): boolean => {
    for (let p = parentOf.get(pid), hops = 0; p !== undefined && p > 1 && hops < 64; p = parentOf.get(p), hops++) {
      if (p === pgid) return true;
    }
    return false;
  };
  const members = [...parentOf.keys()].filter((pid) => pid !== pgid && (groupOf.get(pid) === pgid || descends(pid)));
  for (const pid of members) {
    const holds = holdsOneOf(pid, inodes);
    if (holds === true) return { kind: 'group' };
    if (holds === undefined) unreadable = true;
  }
  // A process of the instance we could not look into may be the holder: accuse no one then.
  if (unreadable) return { kind: 'unknown' };
  for (const pid of pids) {
    if (holdsOneOf(pid, inodes) === true) return { kind: 'other', pid, command: commandLine(pid) };
  }
  return { kind: 'other', pid: null, command: null };
}

/** The one line `cell status` shows for a listener held by another program. */
export function portHolderDetail(port: number, holder: Extract<PortHolder, { kind: 'other' }>): string {
  const who = holder.pid === null ? 'another program' : `pid ${holder.pid}${holder.command ? ` (${holder.command})` : ''}`;
  return `port ${port} answers, but ${who} holds its listener, not a process of this instance`;
}

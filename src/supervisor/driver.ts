/**
 * The `ProcessDriver` seam: how the supervisor starts, signals and watches OS processes.
 * The real driver uses child_process; tests use a scriptable fake.
 */
import type { PortHolder } from './port-holder.js';

export interface SpawnRequest {
  cell: string;
  instance: number;
  /** Command line; the driver runs `/bin/sh -c "exec <command>"` so the pid is the program's own. */
  command: string;
  cwd: string;
  /** Full environment of the child (the caller merges the daemon's own env in). */
  env: Record<string, string>;
  /** stdout and stderr are appended straight to this file (no pipe through the daemon). */
  logFile: string;
  /**
   * The start follows a failure of the instance (a crash, a failed check) and its cell allows a
   * warm start (`restart.warm`): the driver may start it from a warm spare, and keeps one ready
   * for the next failure a while.
   */
  afterFailure?: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A running (or just exited) process. `startTicks` is field 22 of /proc/<pid>/stat: with the pid it
 * identifies the process across daemon restarts, so a reused pid is never mistaken for ours.
 */
export interface ProcessHandle {
  readonly pid: number;
  readonly startTicks: number;
  /** Resolves once, when the process has exited (for adopted processes: when it is seen gone). */
  readonly exited: Promise<ExitInfo>;
  /**
   * Taken over from an earlier daemon: its exit is seen by polling, late, when its pid (and so a
   * group id) may be another program's already.
   */
  readonly adopted?: boolean;
  /** Started from a warm spare (see warm-node.ts): node had booted before the start was asked for. */
  readonly warm?: boolean;
}

export interface ProcessDriver {
  /** Starts the process in its own process group. Rejects with `SpawnError` if it cannot start. */
  spawn(req: SpawnRequest): Promise<ProcessHandle>;
  /**
   * Takes over a process started by an earlier daemon. Returns undefined when no process with this
   * pid and start time is alive. Exit of an adopted process is noticed by polling.
   */
  adopt(pid: number, startTicks: number): ProcessHandle | undefined;
  /** Sends `signal` to the whole process group of `pid`; ignores a group that is already gone. */
  signalGroup(pid: number, signal: NodeJS.Signals): void;
  /** True while a process with this pid and start time exists (zombies count as gone). */
  isAlive(pid: number, startTicks: number): boolean;
  /** True while any process of the group led by `pgid` exists. */
  groupAlive(pgid: number): boolean;
  /**
   * Who holds the listener of `port` that a check of the instance led by `pgid` reached (see
   * port-holder.ts). A driver without it: the check's word is taken as it is.
   */
  portHolder?(pgid: number, port: number): PortHolder;
  /** Ends what the driver itself keeps running (a warm spare); instances are left alone. */
  close?(): void;
}

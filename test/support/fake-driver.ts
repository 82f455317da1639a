/**
 * A scriptable `ProcessDriver` for supervisor and reconciler tests (after Nomad's mock driver).
 * Processes are entries in a table; time is a `Clock` (a ManualClock in tests), so a script like
 * "crash with code 3 after 500 ms" plays out inside `clock.advance(500)`.
 */
import { ManualClock, type Clock } from '../../src/clock/index.js';
import type { ExitInfo, ProcessDriver, ProcessHandle, SpawnRequest } from '../../src/supervisor/driver.js';
import { SpawnError } from '../../src/supervisor/errors.js';

export interface FakeScript {
  /** Exits on its own after this long (with `exitCode`); without it, runs until signaled. */
  runForMs?: number;
  /** Code of an exit on its own. Default 0. */
  exitCode?: number;
  /** Survives SIGTERM (only SIGKILL, or another fatal signal, ends it). */
  ignoreSigterm?: boolean;
  /** After a signal it handles, takes this long to exit (a graceful drain). Default 0: at once. */
  stopAfterMs?: number;
  /**
   * A signal it handles ends it with this code (a graceful shutdown handler exits 0) instead of
   * ending by the signal itself (code null).
   */
  signalExitCode?: number;
  /** spawn rejects with a SpawnError whose cause has this message. */
  startError?: string;
  /**
   * Its process group stays alive after it exits (a grandchild it left behind), until the group
   * receives SIGKILL.
   */
  leavesOrphans?: boolean;
  /**
   * A shell line's group: a signal it handles ends the leader (the shell) at once, while the rest
   * of the group (the program the shell started) exits this long after it, unless SIGKILLed first.
   */
  groupStopsAfterMs?: number;
}

export interface FakeSpawn extends SpawnRequest {
  pid: number;
  startTicks: number;
  /** Clock time of the spawn. */
  at: number;
}

export interface FakeSignal {
  pid: number;
  signal: NodeJS.Signals;
  at: number;
}

export interface FakeProcess {
  readonly pid: number;
  readonly startTicks: number;
  readonly cell: string | undefined;
  readonly instance: number | undefined;
  readonly script: FakeScript;
  isRunning: boolean;
  isGroupAlive: boolean;
  exit: ExitInfo | undefined;
  /** The handle spawn or adopt returns; `exited` resolves when the process ends. */
  readonly handle: ProcessHandle;
}

const FATAL_BY_DEFAULT = new Set<NodeJS.Signals>(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGKILL', 'SIGUSR1', 'SIGUSR2', 'SIGABRT']);

export class FakeProcessDriver implements ProcessDriver {
  /** Every spawn request that got a process, in order. */
  readonly spawns: FakeSpawn[] = [];
  /** Every signalGroup call, in order, including those to gone groups. */
  readonly signals: FakeSignal[] = [];
  /** Spawn requests that were refused by a `startError` script. */
  readonly failedSpawns: SpawnRequest[] = [];

  private readonly byCell = new Map<string, FakeScript>();
  private readonly byCommand = new Map<string, FakeScript>();
  private readonly table = new Map<number, FakeProcess & { settle(info: ExitInfo): void; cancelTimer?: () => void }>();
  private nextPid = 10_000;
  private nextTicks = 5_000;

  constructor(readonly clock: Clock = new ManualClock()) {}

  /** Scripts every later spawn of `cell` (a command script, if any, wins). Returns this. */
  script(cell: string, script: FakeScript): this {
    this.byCell.set(cell, script);
    return this;
  }

  /** Scripts every later spawn whose command is exactly `command`. Returns this. */
  scriptCommand(command: string, script: FakeScript): this {
    this.byCommand.set(command, script);
    return this;
  }

  async spawn(req: SpawnRequest): Promise<ProcessHandle> {
    const script = this.byCommand.get(req.command) ?? this.byCell.get(req.cell) ?? {};
    if (script.startError !== undefined) {
      this.failedSpawns.push(req);
      throw new SpawnError(req, { cause: new Error(script.startError) });
    }
    const proc = this.add(this.nextPid++, this.nextTicks++, script, req);
    this.spawns.push({ ...req, pid: proc.pid, startTicks: proc.startTicks, at: this.clock.now() });
    if (script.runForMs !== undefined) {
      proc.cancelTimer = this.clock.setTimer(script.runForMs, () => this.finish(proc.pid, { code: script.exitCode ?? 0, signal: null }));
    }
    return proc.handle;
  }

  /**
   * Puts a process in the table as if an earlier daemon had started it, for `adopt` tests.
   * It runs until signaled or ended with `exitProcess`.
   */
  addOrphan(pid: number, startTicks: number, script: FakeScript = {}): void {
    this.add(pid, startTicks, script);
  }

  adopt(pid: number, startTicks: number): ProcessHandle | undefined {
    return this.isAlive(pid, startTicks) ? this.table.get(pid)!.handle : undefined;
  }

  signalGroup(pid: number, signal: NodeJS.Signals): void {
    this.signals.push({ pid, signal, at: this.clock.now() });
    const proc = this.table.get(pid);
    if (!proc) return;
    if (signal === 'SIGKILL') {
      proc.isGroupAlive = false;
      this.finish(pid, { code: null, signal });
      return;
    }
    if (!proc.isRunning) return;
    if (signal === 'SIGTERM' && proc.script.ignoreSigterm) return;
    if (!FATAL_BY_DEFAULT.has(signal)) return;
    const exit: ExitInfo = proc.script.signalExitCode !== undefined ? { code: proc.script.signalExitCode, signal: null } : { code: null, signal };
    proc.cancelTimer?.();
    if (proc.script.groupStopsAfterMs !== undefined) {
      this.finish(pid, { code: null, signal });
      this.clock.setTimer(proc.script.groupStopsAfterMs, () => (proc.isGroupAlive = false));
      return;
    }
    const delay = proc.script.stopAfterMs ?? 0;
    if (delay > 0) proc.cancelTimer = this.clock.setTimer(delay, () => this.finish(pid, exit));
    else this.finish(pid, exit);
  }

  isAlive(pid: number, startTicks: number): boolean {
    const proc = this.table.get(pid);
    return proc !== undefined && proc.isRunning && proc.startTicks === startTicks;
  }

  groupAlive(pgid: number): boolean {
    const proc = this.table.get(pgid);
    return proc !== undefined && (proc.isRunning || proc.isGroupAlive);
  }

  /** Ends a running process by hand (a crash), as if it exited with `code` or died of `signal`. */
  exitProcess(pid: number, code: number | null, signal: NodeJS.Signals | null = null): void {
    const proc = this.table.get(pid);
    if (!proc) throw new Error(`FakeProcessDriver: no process ${pid}`);
    this.finish(pid, { code, signal });
  }

  /** The process with this pid (running or exited), if the driver ever had it. */
  get(pid: number): FakeProcess | undefined {
    return this.table.get(pid);
  }

  /** Processes still running, optionally of one cell. */
  running(cell?: string): FakeProcess[] {
    return [...this.table.values()].filter((p) => p.isRunning && (cell === undefined || p.cell === cell));
  }

  /** Signals sent to one process group. */
  signalsTo(pid: number): NodeJS.Signals[] {
    return this.signals.filter((s) => s.pid === pid).map((s) => s.signal);
  }

  private add(pid: number, startTicks: number, script: FakeScript, req?: SpawnRequest) {
    let settle!: (info: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((resolve) => (settle = resolve));
    const proc = {
      pid,
      startTicks,
      cell: req?.cell,
      instance: req?.instance,
      script,
      isRunning: true,
      isGroupAlive: true,
      exit: undefined as ExitInfo | undefined,
      handle: { pid, startTicks, exited },
      settle,
      cancelTimer: undefined as (() => void) | undefined,
    };
    this.table.set(pid, proc);
    return proc;
  }

  private finish(pid: number, info: ExitInfo): void {
    const proc = this.table.get(pid);
    if (!proc || !proc.isRunning) return;
    proc.cancelTimer?.();
    proc.isRunning = false;
    if (!proc.script.leavesOrphans && proc.script.groupStopsAfterMs === undefined) proc.isGroupAlive = false;
    proc.exit = info;
    proc.settle(info);
  }
}

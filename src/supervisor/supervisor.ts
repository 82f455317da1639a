import { existsSync, rmSync } from 'node:fs';
import type { Clock } from '../clock/index.js';
import type { CellSpec } from '../manifest/index.js';
import type { Store, TxnOp } from '../store/index.js';
import type { Registry } from '../registry/index.js';
import type { EventLog } from '../observer/index.js';
import { probe, probeHttpThen, type ProbeResult } from '../health/index.js';
import {
  announcedReady,
  draining,
  exitedUnexpectedly,
  instanceKey,
  launched,
  newInstanceRecord,
  pausedFor,
  probeFailed,
  probePassed,
  readyCount,
  servingCount,
  isDependencyMet,
  isCellCompleted,
  reconcile,
  released,
  resumed,
  spawnFailed,
  stoppedOnRequest,
  type Action,
  type Desired,
  type DesiredCell,
  type ExitEvent,
  type InstanceRecord,
} from '../reconciler/index.js';
import type { ExitInfo, ProcessDriver, ProcessHandle } from './driver.js';
import { findEscapees, findStrayInstances, isGroupOfHome, signalStray, ticksSinceBoot, type EndedInstance } from './stray.js';
import { PortAllocator } from './ports.js';
import { portHolderDetail } from './port-holder.js';

type StartAction = Extract<Action, { type: 'start' }>;

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SupervisorOptions {
  driver: ProcessDriver;
  store: Store;
  clock: Clock;
  registry: Registry;
  events: EventLog;
  log: Logger;
  home: string;
  /** Environment every instance inherits (the daemon's own), before the cell's `env`. */
  baseEnv: Record<string, string>;
  logFileOf(cell: string, index: number): string;
  /** Unix socket an instance is handed as CELL_SOCKET (an SDK cell listens there). */
  socketOf(cell: string, index: number): string;
  /** The per-mesh secret handed to cells as CELL_SECRET (the SDK handshake proves it). */
  secret: string;
  /** Called after any record change (for control-plane.json and watchers). */
  onChange?(): void;
  /**
   * The version of the code an instance is about to run (the seed: "query Builder for latest
   * version" before a spawn). Defaults to the desired version computed at apply time.
   */
  versionFor?(cell: DesiredCell): Promise<string>;
  /** Where instance ports come from (default: the dynamic range, see ports.ts). */
  ports?: PortAllocator;
  /**
   * Resolves once whoever routes to instances (the gateway) has stopped sending new requests to
   * a ready instance just deregistered for a stop: only then does it get its stop signal, so no
   * request is sent on a connection the instance is closing. Default: at once.
   */
  drain?(cell: string, index: number): Promise<void>;
}

export interface LastProbe {
  at: number;
  result: ProbeResult;
}

const RECORD_PREFIX = 'instances/';
/** First readiness probe delay of a launching instance; grows ×1.5 up to the check interval. */
const FIRST_READY_PROBE_MS = 20;
/**
 * Readiness probes of launching instances fall due on this grid of the clock, so one timer
 * wake-up runs every probe due in the same 20 ms. On a VM a wake-up costs about what the probe
 * it runs does: ~800 refused probes on a ramp each, in a process doing nothing else, took
 * ~0.44 s of CPU on their own timers and ~0.21 s on the grid (in a cold start of 100 cells,
 * where the daemon's loop is busy anyway, its CPU went down ~5 %). A step comes at most 20 ms
 * later than its ramp says.
 */
const LAUNCH_PROBE_GRID_MS = 20;
/** How often a stop looks whether the rest of a group has exited once its leader has (a /proc scan). */
const GROUP_EXIT_POLL_MS = 50;
/**
 * How long after an instance's end its escapees are looked for (see sweepEscapees): long enough
 * that a burst of crashes or restarts is swept in one pass, after their replacements are up.
 */
const ESCAPEE_SWEEP_DELAY_MS = 3000;
/** How often records are written again while the store refuses writes (see storeFailed). */
const STORE_RETRY_MS = 1000;

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve));
}

/**
 * The supervisor (the seed's Hypervisor) executes the reconciler's actions on real processes
 * through a ProcessDriver, runs the health probes, and turns what it sees (spawned, probe passed,
 * exited) into record transitions. It holds the only copy of the observed state that matters and
 * persists every change under `instances/` in the store before acting on the next one.
 *
 * Order of a start: port picked → record `launching` (persisted, so no second start can race it)
 * → spawn → pid persisted → probes → `ready` → registered in the registry.
 * Order of a stop: deregistered (the gateway stops routing) → `draining` → stop signal, timeout,
 * SIGTERM, kill_after, SIGKILL to the whole group → `stopped`.
 */
export class Supervisor {
  private desired: Desired = { cells: new Map() };
  /** The last spec of each cell a later setDesired left out: its launching orphans are probed with it. */
  private readonly removedSpecs = new Map<string, CellSpec>();
  private readonly records = new Map<string, InstanceRecord>();
  private readonly handles = new Map<string, ProcessHandle>();
  private readonly probeTimers = new Map<string, () => void>();
  /** Launching instances' next probes by the grid time they are due at (see LAUNCH_PROBE_GRID_MS), with their ramp. */
  private readonly launchProbeSlots = new Map<number, { ramps: Map<string, number>; cancel: () => void }>();
  private readonly rounds = new Map<number, { members: Set<string>; cancel: () => void }>();
  private readonly roundOf = new Map<string, number>();
  private readonly probesInFlight = new Set<string>();
  private spawnChain: Promise<void> = Promise.resolve();
  /** Starts between their claim and their pid being recorded; `stopAll` waits for them. */
  private readonly startsInFlight = new Set<Promise<void>>();
  private readonly probeFailures = new Map<string, number>();
  private readonly lastProbes = new Map<string, LastProbe>();
  private readonly stopsInFlight = new Map<string, Promise<void>>();
  private readonly usedPorts = new Set<number>();
  private readonly ports: PortAllocator;
  private tickQueued = false;
  /** While the store refuses writes (see storeFailed): its last error; null while it takes them. */
  private storeError: string | null = null;
  /** Ended instances whose escapees the next sweep looks for, by key: their process's start and end (ticks since boot). */
  private readonly endedInstances = new Map<string, Omit<EndedInstance, 'sparedGroup'>>();
  private sweepDue = false;
  private cancelStoreRetry: (() => void) | null = null;
  private cancelWake: (() => void) | null = null;
  /** When the reconciler is due to run again by itself (a backoff, a grace deadline), or null. */
  private wakeAt: number | null = null;
  /** While halted (shutdown, restart of everything), the reconciler starts nothing. */
  private halted = false;
  private detached = false;
  /** Which cells may be started now; the daemon opens it to app cells once the kernel is up. */
  private startGate: (cell: string) => boolean = () => true;

  constructor(private readonly o: SupervisorOptions) {
    this.ports = o.ports ?? new PortAllocator();
  }

  // ---------------------------------------------------------------- state

  get desiredCells(): ReadonlyMap<string, DesiredCell> {
    return this.desired.cells;
  }

  /** Ready instances of `cell` among the ones the manifest asks for (the reconciler's count). */
  readyCount(cell: string): number {
    return readyCount(cell, this.desired, this.records);
  }

  /** Whether every instance of `cell` has completed its run (a one-shot job done). */
  isCompleted(cell: string): boolean {
    return isCellCompleted(cell, this.desired, this.records);
  }

  /** Whether `dependent` may start as far as its dependency `dep` goes (healthy, or completed where it waits for that). */
  dependencyMet(dependent: CellSpec, dep: string): boolean {
    return isDependencyMet(dependent, dep, this.desired, this.records);
  }

  /** Ready instances of `cell` and ones whose one-shot run completed: what its dependents need. */
  servingCount(cell: string): number {
    return servingCount(cell, this.desired, this.records);
  }

  /**
   * The cells with no instance to route to but one on its way: launching, waiting out a restart
   * backoff, or being replaced after failing its health check. (Not a failed, paused or stopped
   * one: nothing is coming there by itself.)
   */
  startingCells(): Set<string> {
    const coming = new Set<string>();
    const routable = new Set<string>();
    for (const rec of this.records.values()) {
      if (rec.state === 'ready' && !rec.killedForHealth) routable.add(rec.cell);
      else if (rec.state === 'launching' || rec.state === 'backoff' || rec.killedForHealth) coming.add(rec.cell);
    }
    for (const cell of routable) coming.delete(cell);
    return coming;
  }

  /** Whether any instance of an application cell is in a crash loop (`failed`). */
  hasFailedInstance(isApp: (cell: string) => boolean): boolean {
    for (const rec of this.records.values()) if (rec.state === 'failed' && isApp(rec.cell)) return true;
    return false;
  }

  instances(): InstanceRecord[] {
    // Code-unit order, not localeCompare: a collator loads ICU data (~8 MB resident) into the daemon.
    return [...this.records.values()].sort((a, b) => (a.cell < b.cell ? -1 : a.cell > b.cell ? 1 : a.index - b.index));
  }

  /** Whether the instance's recorded process (pid and start time) is alive now. */
  isRunning(rec: InstanceRecord): boolean {
    return rec.pid !== null && this.o.driver.isAlive(rec.pid, rec.startTicks ?? 0);
  }

  lastProbe(cell: string, index: number): LastProbe | undefined {
    return this.lastProbes.get(instanceKey(cell, index));
  }

  /** Limits starts to the cells `gate` accepts (kernel boot); other actions go on as usual. */
  setStartGate(gate: (cell: string) => boolean): void {
    this.startGate = gate;
    this.requestTick();
  }

  /** Replaces the desired state; instances are started, paused or stopped by the next tick. */
  setDesired(desired: Desired): void {
    for (const [name, cell] of this.desired.cells) if (!desired.cells.has(name)) this.removedSpecs.set(name, cell.spec);
    for (const name of desired.cells.keys()) this.removedSpecs.delete(name);
    this.desired = desired;
    this.requestTick();
  }

  /** Puts held instances (failed, stopped) of `cells` back under the reconciler. Returns how many. */
  release(cells: Iterable<string>): number {
    const wanted = new Set(cells);
    let count = 0;
    for (const rec of this.records.values()) {
      // A completed one-shot run stays done while its version is the desired one.
      if (rec.completed && rec.version === this.desired.cells.get(rec.cell)?.version) continue;
      if (wanted.has(rec.cell) && rec.hold) {
        this.update(released(rec, this.o.clock.now()), 'released');
        count++;
      }
    }
    this.requestTick();
    return count;
  }

  // ---------------------------------------------------------------- boot: readoption

  /**
   * Loads the records an earlier daemon left in the store and takes over their processes: a live
   * process with the same pid and start time is adopted as it is; a dead one is counted as gone
   * (and its leftover group killed); an untracked process carrying our CELL_HOME, or a live one
   * whose record says it is stopped, is killed (a stray), so a cell never runs twice. Call once,
   * before the first tick.
   */
  readopt(): { adopted: number; gone: number; strays: number } {
    const now = this.o.clock.now();
    let adopted = 0;
    let gone = 0;
    let killed = 0;
    for (const entry of this.o.store.list<InstanceRecord>(RECORD_PREFIX, now)) {
      const rec = entry.value;
      const key = instanceKey(rec.cell, rec.index);
      this.records.set(key, rec);
      this.usedPorts.add(rec.port);
      if (rec.pid === null || rec.startTicks === null) {
        // Spawned or stopping when the daemon died, before a pid was saved: start it again
        // (a process it may have left is killed below as a stray).
        if (rec.state === 'launching') this.update(stoppedOnRequest(rec, 'daemon stopped while starting', now, false));
        else if (rec.state === 'draining') this.update(stoppedOnRequest(rec, 'stopped while the daemon was down', now));
        continue;
      }
      const handle = this.o.driver.adopt(rec.pid, rec.startTicks);
      if (handle && (rec.state === 'stopped' || rec.state === 'failed' || rec.state === 'backoff')) {
        // Alive though its record says no process runs (a start that raced a stop in an earlier
        // daemon): the reconciler would start the instance beside it, so it goes.
        this.o.log.warn({ cell: rec.cell, instance: rec.index, pid: rec.pid, state: rec.state }, 'killing a process its record says is not running');
        this.o.driver.signalGroup(rec.pid, 'SIGKILL');
        this.update({ ...rec, pid: null, startTicks: null });
        killed++;
      } else if (handle) {
        adopted++;
        this.attach(key, handle);
        this.o.log.info({ cell: rec.cell, instance: rec.index, pid: rec.pid }, 'readopted instance');
        if (rec.state === 'draining') void this.stopInstance(rec.cell, rec.index, rec.reason ?? 'stop resumed');
        else if (rec.state === 'launching' || rec.state === 'ready') this.startProbing(key, rec.state === 'ready' ? 0 : FIRST_READY_PROBE_MS);
      } else {
        gone++;
        // What the dead instance left in its group goes with it, if that group is still ours: a
        // daemon down for long may find the pid (so the group id) taken by another program.
        if (this.o.driver.groupAlive(rec.pid) && isGroupOfHome(rec.pid, this.o.home)) this.o.driver.signalGroup(rec.pid, 'SIGKILL');
        const spec = this.desired.cells.get(rec.cell)?.spec;
        if (rec.state === 'draining' || !spec) {
          this.update(stoppedOnRequest(rec, 'stopped while the daemon was down', now), 'gone');
        } else if (rec.state === 'paused' || rec.state === 'launching' || rec.state === 'ready') {
          const next = exitedUnexpectedly(rec, { code: null, signal: null }, spec, now);
          this.update({ ...next, reason: 'exited while the daemon was down' }, 'gone');
        } else {
          this.update({ ...rec, pid: null, startTicks: null });
        }
      }
    }
    const strays = this.strays();
    for (const stray of strays) {
      this.o.log.warn({ pid: stray.pid, cell: stray.cell, instance: stray.instance }, 'killing untracked instance process');
      signalStray(stray.pid, 'SIGKILL');
    }
    return { adopted, gone, strays: strays.length + killed };
  }

  // ---------------------------------------------------------------- the loop

  requestTick(): void {
    if (this.tickQueued) return;
    this.tickQueued = true;
    queueMicrotask(() => {
      this.tickQueued = false;
      this.tick();
    });
  }

  private tick(): void {
    if (this.halted) return;
    const now = this.o.clock.now();
    const { actions, wakeAt } = reconcile(this.desired, this.records, now);
    // Scheduled before the actions run: a record they change may bring a deadline of its own
    // forward (wakeBy, from updateAll).
    this.scheduleWake(wakeAt);
    const starts: StartAction[] = [];
    for (const action of actions) {
      if (action.type !== 'start') this.execute(action);
      else if (this.startGate(action.cell)) starts.push(action);
    }
    this.startInstances(starts);
  }

  private scheduleWake(at: number | null): void {
    this.cancelWake?.();
    this.cancelWake = null;
    this.wakeAt = at;
    if (at === null) return;
    this.cancelWake = this.o.clock.setTimer(Math.max(0, at - this.o.clock.now()), () => {
      this.cancelWake = null;
      this.wakeAt = null;
      this.requestTick();
    });
  }

  /**
   * Makes the reconciler run again by `at`. For deadlines that begin outside a tick: a launching
   * instance's grace counts once its pid is stored, which happens after the spawn, long after the
   * tick that claimed it; without this its grace ran out only when some other change woke the loop.
   */
  private wakeBy(at: number): void {
    if (this.halted || (this.wakeAt !== null && this.wakeAt <= at)) return;
    this.scheduleWake(at);
  }

  private execute(action: Action): void {
    const key = instanceKey(action.cell, action.index);
    switch (action.type) {
      case 'start':
        this.startInstances([action]);
        break;
      case 'stop':
        // Not held once stopped: the reconciler forgets it, or starts it again if the cell was
        // scaled back up while it drained.
        void this.stopInstance(action.cell, action.index, action.reason, { hold: false });
        break;
      case 'kill-unhealthy':
        this.killUnhealthy(key, action.reason);
        break;
      case 'pause': {
        const rec = this.records.get(key)!;
        this.stopProbing(key);
        this.deregister(rec);
        if (rec.pid !== null) this.o.driver.signalGroup(rec.pid, 'SIGSTOP');
        this.update(pausedFor(rec, action.reason, this.o.clock.now()), action.reason);
        break;
      }
      case 'resume': {
        const rec = this.records.get(key)!;
        if (rec.pid !== null) this.o.driver.signalGroup(rec.pid, 'SIGCONT');
        this.update(resumed(rec, this.o.clock.now()), 'dependencies healthy again');
        this.startProbing(key, 0);
        break;
      }
      case 'forget':
        this.forget(key);
        break;
    }
  }

  // ---------------------------------------------------------------- start

  /**
   * Claims the instances (state `launching`, all in one commit) before any await, so that no
   * other tick starts one a second time, then starts each.
   */
  private startInstances(actions: StartAction[]): void {
    const now = this.o.clock.now();
    const claims: { next: InstanceRecord; reason: string; desired: DesiredCell }[] = [];
    for (const { cell, index, isRestart } of actions) {
      const desired = this.desired.cells.get(cell);
      if (!desired) continue;
      const rec = this.records.get(instanceKey(cell, index)) ?? newInstanceRecord(cell, index, 0, desired.version, now);
      const next = { ...launched(rec, { pid: 0, startTicks: 0, version: desired.version, isRestart }, now), pid: null, startTicks: null };
      claims.push({ next, reason: isRestart ? 'restart' : 'start', desired });
    }
    this.updateAll(claims);
    for (const { next, desired } of claims) {
      // Settled either way: a start that throws (its store closed under it) must not fail stopAll.
      const start = this.startInstance(next, desired).then(
        () => undefined,
        (err) => this.o.log.error({ cell: next.cell, instance: next.index, err: String(err) }, 'start failed'),
      );
      this.startsInFlight.add(start);
      void start.finally(() => this.startsInFlight.delete(start));
    }
  }

  /**
   * Whether the launch claimed for `key` still stands: a stop (`cell down`, a scale-down, a restart)
   * may have taken the instance while its spawn waited its turn.
   */
  private stillLaunching(key: string): boolean {
    const current = this.records.get(key);
    return !this.halted && current !== undefined && current.state === 'launching' && current.pid === null;
  }

  private async startInstance(rec: InstanceRecord, desired: DesiredCell): Promise<void> {
    const { cell, index } = rec;
    const key = instanceKey(cell, index);
    const spec = desired.spec;
    try {
      // The instance's own port (kept across restarts), else the next of the range. Either is
      // checked in the spawn turn below, just before the spawn: another program (another mesh's
      // daemon) may take a port while its instance is down, and a restart on it would crash-loop
      // on EADDRINUSE; checking new ones here, 100 before the first spawn of a cold start, would
      // hold that spawn back.
      let port = rec.port || this.ports.candidate(this.usedPorts) || (await this.ports.allocate(this.usedPorts));
      this.usedPorts.add(port);
      const version = this.o.versionFor ? await this.o.versionFor(desired) : desired.version;
      const socket = this.o.socketOf(cell, index);
      // A socket file left by the previous run would make the new one fail to listen. (Looked
      // for first: rmSync of a missing file builds an ENOENT error with its stack, ~0.1 ms, at
      // every start.)
      if (existsSync(socket)) rmSync(socket, { force: true });
      // Shown at once (`cell ps`), stored with the pid below: until there is a process, a daemon
      // that dies loses nothing by not having them on disk (the next one starts the instance anew).
      this.updateInMemory({ ...this.records.get(key)!, version, port, socket, sdk: false });
      const handle = await this.spawnInTurn(async () => {
        if (!this.stillLaunching(key)) return null;
        if (!(await this.ports.isFree(port))) {
          const taken = port;
          this.usedPorts.delete(taken);
          port = await this.ports.allocate(this.usedPorts);
          this.usedPorts.add(port);
          this.o.log.warn({ cell, instance: index, port: taken, instead: port }, 'port taken by another program: the instance moves to another');
          if (!this.stillLaunching(key)) return null;
          this.updateInMemory({ ...this.records.get(key)!, port });
        }
        return this.o.driver.spawn({
          cell,
          instance: index,
          command: spec.run,
          cwd: spec.cwd,
          env: this.instanceEnv(spec, index, port),
          logFile: this.o.logFileOf(cell, index),
          afterFailure: rec.failures > 0 && spec.restart.warm !== false,
        });
      });
      if (!handle) {
        this.o.log.info({ cell, instance: index }, 'start cancelled: stopped before its spawn');
        const current = this.records.get(key);
        // Detached (the daemon is leaving the cells to the next one): left `launching` without a
        // pid, which the next daemon starts again (readopt).
        if (!this.detached && current?.state === 'launching' && current.pid === null) this.update(stoppedOnRequest(current, 'stopped before it started', this.o.clock.now()));
        return;
      }
      if (!this.stillLaunching(key)) {
        // Stopped (or the daemon detached) while the spawn ran: the stop saw no pid, so this
        // process is the start's to end; a detached daemon's successor starts the instance anew.
        this.o.log.info({ cell, instance: index, pid: handle.pid }, 'start cancelled: stopped during its spawn');
        this.o.driver.signalGroup(handle.pid, 'SIGKILL');
        return;
      }
      const current = this.records.get(key)!;
      this.update({ ...current, pid: handle.pid, startTicks: handle.startTicks });
      this.attach(key, handle);
      this.o.log.info({ cell, instance: index, pid: handle.pid, port, ...(handle.warm ? { warm: true } : {}) }, 'started instance');
      this.startProbing(key, FIRST_READY_PROBE_MS);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      this.o.log.error({ cell, instance: index, err: detail }, 'could not start instance');
      this.update(spawnFailed(this.records.get(key)!, detail, spec, this.o.clock.now()), `spawn failed: ${detail}`);
      this.requestTick();
    }
  }

  /**
   * Spawns one at a time, each in its own event-loop turn. A fork blocks the daemon (tens of ms
   * once earlier children load the CPUs); in a burst of 100 starts, API calls and probes get
   * their turn between two spawns instead of waiting for the whole burst.
   */
  private spawnInTurn<T>(spawn: () => Promise<T>): Promise<T> {
    const turn = this.spawnChain.then(() => new Promise<void>((r) => setImmediate(r))).then(spawn);
    this.spawnChain = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  instanceEnv(spec: CellSpec, index: number, port: number): Record<string, string> {
    return {
      ...this.o.baseEnv,
      ...spec.env,
      PORT: String(port),
      CELL_NAME: spec.name,
      CELL_INSTANCE: String(index),
      CELL_HOME: this.o.home,
      CELL_SOCKET: this.o.socketOf(spec.name, index),
      CELL_SECRET: this.o.secret,
    };
  }

  private attach(key: string, handle: ProcessHandle): void {
    this.handles.set(key, handle);
    void handle.exited.then((exit) => this.onExit(key, handle, exit));
  }

  // ---------------------------------------------------------------- exit

  private onExit(key: string, handle: ProcessHandle, exit: ExitInfo): void {
    if (this.detached) return;
    if (this.handles.get(key) === handle) this.handles.delete(key);
    const rec = this.records.get(key);
    // A stop in progress owns the group and the transition to `stopped`: the leader of a shell
    // line (`cd app && node server.js`) dies of the stop signal at once, while the program it
    // started finishes its shutdown (runStop waits for the whole group).
    const stopping = rec !== undefined && rec.pid === handle.pid && (rec.state === 'draining' || this.stopsInFlight.has(key));
    // The instance is its process group: what its leader leaves behind (a shell's background
    // job, a forked worker holding the old port) dies with it, as a container's processes die
    // with its main one, instead of living on unsupervised beside the restarted instance. Done at
    // once: while any member lives, the kernel keeps the group's id from being reused. An adopted
    // leader's exit is seen late, by polling: its group must still be ours.
    if (!stopping && (!handle.adopted || (this.o.driver.groupAlive(handle.pid) && isGroupOfHome(handle.pid, this.o.home)))) this.o.driver.signalGroup(handle.pid, 'SIGKILL');
    if (!rec || rec.pid !== handle.pid || stopping) return;
    this.sweepEscapees(rec, handle.startTicks);
    this.stopProbing(key);
    this.deregister(rec);
    const spec = this.desired.cells.get(rec.cell)?.spec;
    const now = this.o.clock.now();
    if (!spec) {
      this.update(stoppedOnRequest(rec, 'exited (no longer in the manifest)', now));
      return;
    }
    const next = exitedUnexpectedly(rec, exit as ExitEvent, spec, now);
    if (next.state === 'failed') this.o.log.error({ cell: rec.cell, instance: rec.index, reason: next.reason }, 'ALERT: instance failed (crash loop), manual intervention needed');
    else this.o.log.warn({ cell: rec.cell, instance: rec.index, exit, retryAt: next.retryAt }, 'instance exited');
    this.update(next, next.reason);
    this.requestTick();
  }

  // ---------------------------------------------------------------- health

  /**
   * Launching instances are probed on their own fast timers (readiness should be seen at once);
   * a ready instance joins the shared round of its check interval instead.
   */
  private startProbing(key: string, delayMs: number): void {
    this.stopProbing(key);
    this.probeFailures.set(key, 0);
    const rec = this.records.get(key);
    if (rec?.state === 'ready') this.joinRound(key);
    else this.scheduleProbe(key, delayMs, FIRST_READY_PROBE_MS);
  }

  /**
   * Runs the readiness probe of a launching instance now, instead of at its next ramp step: for an
   * instance known to have just come up. The probe still decides.
   */
  probeNow(cell: string, index: number): void {
    const key = instanceKey(cell, index);
    const rec = this.records.get(key);
    if (rec?.state !== 'launching' || rec.pid === null || this.probesInFlight.has(key)) return;
    this.cancelProbeTimer(key);
    void this.runProbe(key, FIRST_READY_PROBE_MS);
  }

  private stopProbing(key: string): void {
    this.cancelProbeTimer(key);
    this.leaveRound(key);
  }

  /**
   * Ready instances with the same check interval are probed together, from one timer: on a VM a
   * timer wake-up costs more than the probe it runs, and 100 cells at 1 s would otherwise mean
   * 100 wake-ups a second. A probe still in flight at the next round is not started twice, and
   * a member probed less than half an interval ago waits for the next round.
   */
  private joinRound(key: string): void {
    const rec = this.records.get(key);
    const interval = rec ? this.desired.cells.get(rec.cell)?.spec.health.intervalMs : undefined;
    if (interval === undefined) return;
    let round = this.rounds.get(interval);
    if (!round) {
      const created = { members: new Set<string>(), cancel: () => {} };
      const tick = () => {
        created.cancel = this.o.clock.setTimer(interval, () => {
          const now = this.o.clock.now();
          for (const member of created.members) {
            if (this.probesInFlight.has(member)) continue;
            // Probed a moment ago (its readiness probe came just before this round): checking it
            // again now would double the check's rate, and in a cold start of 100 cells that is
            // 100 requests more for processes still busy starting.
            const last = this.lastProbes.get(member);
            if (last && now - last.at < interval / 2) continue;
            this.runRoundProbe(member);
          }
          if (created.members.size > 0) tick();
          else this.rounds.delete(interval);
        });
      };
      round = created;
      this.rounds.set(interval, round);
      tick();
    }
    round.members.add(key);
    this.roundOf.set(key, interval);
  }

  private leaveRound(key: string): void {
    const interval = this.roundOf.get(key);
    if (interval === undefined) return;
    this.roundOf.delete(key);
    this.rounds.get(interval)?.members.delete(key);
  }

  /** Cancels the launching probe `key` has pending, if any. */
  private cancelProbeTimer(key: string): void {
    this.probeTimers.get(key)?.();
    this.probeTimers.delete(key);
  }

  private scheduleProbe(key: string, delayMs: number, ramp: number): void {
    this.cancelProbeTimer(key);
    const now = this.o.clock.now();
    const at = Math.ceil((now + delayMs) / LAUNCH_PROBE_GRID_MS) * LAUNCH_PROBE_GRID_MS;
    let slot = this.launchProbeSlots.get(at);
    if (!slot) {
      const created = { ramps: new Map<string, number>(), cancel: () => {} };
      created.cancel = this.o.clock.setTimer(at - now, () => {
        this.launchProbeSlots.delete(at);
        for (const [due, dueRamp] of created.ramps) {
          this.probeTimers.delete(due);
          void this.runProbe(due, dueRamp);
        }
      });
      slot = created;
      this.launchProbeSlots.set(at, slot);
    }
    const own = slot;
    own.ramps.set(key, ramp);
    this.probeTimers.set(key, () => {
      own.ramps.delete(key);
      if (own.ramps.size > 0 || this.launchProbeSlots.get(at) !== own) return;
      own.cancel();
      this.launchProbeSlots.delete(at);
    });
  }

  /**
   * Probes the ready instances of `cell` now, with its check as it is now (an apply changed it):
   * what `cell up` reports is then what the new check says, not the old one's last word.
   */
  async probeReadyNow(cell: string): Promise<void> {
    const keys = [...this.records.values()].filter((r) => r.cell === cell && r.state === 'ready' && r.pid !== null).map((r) => instanceKey(r.cell, r.index));
    // Out of the round of the old interval: the probe's result puts each in the new one's.
    for (const key of keys) this.leaveRound(key);
    await Promise.all(
      keys.map((key) => {
        if (!this.probesInFlight.has(key)) return this.runProbe(key, 0);
        // A probe of the old check is in flight: its result takes it back into a round.
        return Promise.resolve();
      }),
    );
  }

  private async runProbe(key: string, ramp: number): Promise<void> {
    const target = this.probeTarget(key);
    if (!target) return;
    const { rec, spec, pid } = target;
    this.probesInFlight.add(key);
    try {
      // A cell that announced itself through the SDK is checked with the protocol ping by default.
      const check = spec.health.kind === 'process' && rec.sdk ? { ...spec.health, kind: 'ping' as const } : spec.health;
      let result: ProbeResult =
        check.kind === 'process'
          ? { ok: this.isRunning(rec), level: 'process', durationMs: 0 }
          : await probe({ spec: check, port: rec.port, cwd: spec.cwd, env: check.kind === 'exec' ? this.instanceEnv(spec, rec.index, rec.port) : {}, socket: rec.socket, secret: this.o.secret });
      if (result.ok && rec.state === 'launching' && (check.kind === 'http' || check.kind === 'tcp') && check.port === '$PORT') {
        result = this.checkPortHolder(rec, pid, result);
      }
      this.applyProbe(key, pid, spec, result, ramp);
    } finally {
      this.probesInFlight.delete(key);
    }
  }

  /**
   * A passing check of a launching instance on its own port counts only if the instance holds the
   * port's listener: another program that took the port meanwhile would answer it (port-holder.ts).
   * Not ready then; its grace runs out, and the restart finds the port taken and picks another.
   */
  private checkPortHolder(rec: InstanceRecord, pid: number, result: ProbeResult): ProbeResult {
    const holder = this.o.driver.portHolder?.(pid, rec.port);
    if (holder?.kind !== 'other') return result;
    const detail = portHolderDetail(rec.port, holder);
    if (rec.healthDetail !== detail) this.o.log.warn({ cell: rec.cell, instance: rec.index, port: rec.port, holder: holder.pid }, 'check answered by another program');
    return { ok: false, level: 'socket', durationMs: result.durationMs, detail };
  }

  /**
   * The steady case of a round, an http check of a ready instance, without promises: a round of
   * 100 such checks a second is most of what an idle daemon does (see health/http-probe.ts).
   */
  private runRoundProbe(key: string): void {
    const target = this.probeTarget(key);
    if (!target) return;
    const { rec, spec, pid } = target;
    const check = spec.health;
    if (check.kind !== 'http' || rec.state !== 'ready') {
      void this.runProbe(key, 0);
      return;
    }
    this.probesInFlight.add(key);
    probeHttpThen(check, rec.port, (result) => {
      this.probesInFlight.delete(key);
      // Called from a socket's read: a throw here (the store failing a write) would be uncaught.
      try {
        this.applyProbe(key, pid, spec, result, 0);
      } catch (err) {
        this.o.log.error({ cell: rec.cell, instance: rec.index, err: (err as Error).message }, 'could not take a probe result');
      }
    });
  }

  /** The instance to probe now, or undefined (and its probing stopped) when there is none. */
  private probeTarget(key: string): { rec: InstanceRecord; spec: CellSpec; pid: number } | undefined {
    const rec = this.records.get(key);
    // An orphan (its cell left the manifest) that was launching is still probed until it is ready,
    // with its last spec: it runs on until `cell prune`, and never got ready otherwise. A ready
    // orphan is not probed, as before.
    const spec = rec ? (this.desired.cells.get(rec.cell)?.spec ?? (rec.state === 'launching' ? this.removedSpecs.get(rec.cell) : undefined)) : undefined;
    if (!rec || !spec || rec.pid === null || (rec.state !== 'launching' && rec.state !== 'ready')) {
      this.probeTimers.delete(key);
      this.leaveRound(key);
      return undefined;
    }
    return { rec, spec, pid: rec.pid };
  }

  /** Takes a probe result of the process `pid`: readiness, health, lease, restart, next probe. */
  private applyProbe(key: string, pid: number, spec: CellSpec, result: ProbeResult, ramp: number): void {
    const now = this.o.clock.now();
    const current = this.records.get(key);
    // The instance changed under the probe (exited, stopped, restarted): this result is stale.
    if (!current || current.pid !== pid || (current.state !== 'launching' && current.state !== 'ready')) return;
    // Being stopped for its health: a probe that meets it dying (refused) must not replace why.
    if (current.killedForHealth) return;
    this.lastProbes.set(key, { at: now, result });
    if (result.ok) {
      this.probeFailures.set(key, 0);
      if (current.state === 'launching') {
        // Ready and registered (routable) in one commit.
        this.updateAll([{ next: probePassed(current, now), reason: 'healthy', ops: [this.o.registry.registration(this.endpointOf(current), now)] }]);
        this.requestTick();
      } else {
        if (current.health !== 'passing') this.update(probePassed(current, now));
        this.tolerateStoreFailure(() => this.o.registry.heartbeat(current.cell, current.index, () => this.endpointOf(current), now));
      }
    } else if (current.state === 'ready') {
      const failures = (this.probeFailures.get(key) ?? 0) + 1;
      this.probeFailures.set(key, failures);
      this.update(probeFailed(current, result.detail ?? 'probe failed'));
      if (failures >= spec.health.retries) {
        this.killUnhealthy(key, `${failures} failed probes: ${result.detail ?? 'probe failed'}`);
        return;
      }
    } else if (current.healthDetail !== (result.detail ?? null)) {
      // Why a launching instance is not ready yet (`cell status`): stored with its next change, a
      // commit per instance less in a cold start; a daemon that dies meanwhile probes it anew.
      this.updateInMemory({ ...probeFailed(current, result.detail ?? 'probe failed'), health: 'unknown' });
    }
    const next = this.records.get(key)!;
    if (next.state === 'launching') {
      const delay = Math.min(ramp, spec.health.intervalMs);
      this.scheduleProbe(key, delay, Math.ceil(ramp * 1.5));
    } else if (next.state === 'ready' && !this.roundOf.has(key)) {
      this.cancelProbeTimer(key);
      this.joinRound(key);
    }
  }

  private endpointOf(rec: InstanceRecord) {
    return {
      cell: rec.cell,
      instance: rec.index,
      url: `http://127.0.0.1:${rec.port}`,
      port: rec.port,
      socket: rec.sdk ? (rec.socket ?? null) : null,
      pid: rec.pid,
      version: rec.version,
    };
  }

  /**
   * The ready signal (the seed's Cytokinesis): an SDK cell listening on its socket says so. A
   * launching instance becomes ready at once, and from then on is pinged over the protocol.
   * Ignored unless `pid` is the instance's current process. Returns whether it was taken.
   */
  announceReady(cell: string, index: number, pid: number, socket: string): boolean {
    const key = instanceKey(cell, index);
    const rec = this.records.get(key);
    if (!rec || rec.pid !== pid || (rec.state !== 'launching' && rec.state !== 'ready')) return false;
    const wasLaunching = rec.state === 'launching';
    const next = announcedReady(rec, socket, this.o.clock.now());
    this.updateAll([{ next, reason: wasLaunching ? 'ready signal' : null, ops: [this.o.registry.registration(this.endpointOf(next), this.o.clock.now())] }]);
    if (wasLaunching) {
      this.startProbing(key, this.desired.cells.get(cell)?.spec.health.intervalMs ?? 1000);
      this.requestTick();
    }
    return true;
  }

  private killUnhealthy(key: string, reason: string): void {
    const rec = this.records.get(key);
    if (!rec) return;
    this.stopProbing(key);
    this.deregister(rec);
    this.o.log.warn({ cell: rec.cell, instance: rec.index, reason }, 'killing unhealthy instance');
    this.update({ ...rec, killedForHealth: true, health: 'failing', healthDetail: reason });
    if (rec.pid === null) return;
    // Stopped as `cell restart` would stop it (stop signal, `timeout`, SIGTERM, `kill_after`,
    // SIGKILL), as Kubernetes ends a container whose liveness probe fails: a program that merely
    // hangs on its health endpoint may still have requests or writes to finish. Its exit, whenever
    // it comes, is an unexpected exit like a crash (restart, backoff, crash loop).
    const pid = rec.pid;
    const stop = this.desired.cells.get(rec.cell)?.spec.stop ?? { signal: 'SIGTERM' as const, timeoutMs: 5000, killAfterMs: 2000 };
    const stillThere = () => {
      const current = this.records.get(key);
      return current !== undefined && current.pid === pid && current.killedForHealth && this.handles.has(key);
    };
    const send = (signal: NodeJS.Signals) => {
      if (!stillThere()) return false;
      this.o.driver.signalGroup(pid, signal);
      this.o.driver.signalGroup(pid, 'SIGCONT');
      return true;
    };
    send(stop.signal);
    this.o.clock.setTimer(stop.timeoutMs, () => {
      if (send('SIGTERM')) this.o.clock.setTimer(stop.killAfterMs, () => void send('SIGKILL'));
    });
  }

  // ---------------------------------------------------------------- stop

  /**
   * Stops one instance gracefully: stop signal, `timeout`, SIGTERM, `kill_after`, SIGKILL to the
   * whole process group. Idempotent: a second call joins the stop in progress. The stopped
   * instance is held (left alone by the reconciler until released) unless `hold` is false.
   */
  stopInstance(cell: string, index: number, reason: string, options: { hold?: boolean; endsRun?: boolean } = {}): Promise<void> {
    const key = instanceKey(cell, index);
    const inFlight = this.stopsInFlight.get(key);
    if (inFlight) return inFlight;
    const done = this.runStop(key, reason, options.hold ?? true, options.endsRun ?? false).finally(() => this.stopsInFlight.delete(key));
    this.stopsInFlight.set(key, done);
    return done;
  }

  private async runStop(key: string, reason: string, hold: boolean, endsRun: boolean): Promise<void> {
    const rec = this.records.get(key);
    if (!rec) return;
    this.stopProbing(key);
    this.deregister(rec);
    const now = this.o.clock.now();
    if (rec.pid === null) {
      this.update({ ...stoppedOnRequest(rec, reason, now, hold), runEnded: endsRun }, reason);
      this.requestTick();
      return;
    }
    const pid = rec.pid;
    this.update(draining(rec, reason, now), reason);
    if (rec.state === 'ready' && this.o.drain) await this.o.drain(rec.cell, rec.index);
    const stop = this.desired.cells.get(rec.cell)?.spec.stop ?? { signal: 'SIGTERM' as const, timeoutMs: 5000, killAfterMs: 2000 };
    const handle = this.handles.get(key);
    const exited = handle ? handle.exited.then(() => true) : Promise.resolve(!this.isRunning(rec));
    const exitedWithin = (ms: number) => Promise.race([exited, sleep(this.o.clock, ms).then(() => false)]);
    // A stage of the stop ends when the whole group is gone, not its leader alone: the program
    // of a shell line outlives the shell that leads its group, finishing its own shutdown.
    const stoppedWithin = async (ms: number): Promise<boolean> => {
      const deadline = this.o.clock.now() + ms;
      if (!(await exitedWithin(ms))) return false;
      while (this.o.driver.groupAlive(pid)) {
        const left = deadline - this.o.clock.now();
        if (left <= 0) return false;
        await sleep(this.o.clock, Math.min(GROUP_EXIT_POLL_MS, left));
      }
      return true;
    };
    const send = (signal: NodeJS.Signals) => {
      this.o.driver.signalGroup(pid, signal);
      // A paused (SIGSTOPped) group only acts on its signals once continued.
      this.o.driver.signalGroup(pid, 'SIGCONT');
    };
    let gone = false;
    if (rec.sdk && rec.socket) {
      // The seed's OPS::Shutdown first: the cell stops accepting, finishes calls in flight, exits.
      try {
        const { shutdownCell } = await import('../sdk/index.js');
        await shutdownCell(rec.socket, { secret: this.o.secret, timeoutMs: stop.timeoutMs });
      } catch (err) {
        this.o.log.warn({ cell: rec.cell, instance: rec.index, err: String(err) }, 'shutdown op failed, signalling');
      }
      gone = await stoppedWithin(Math.min(stop.timeoutMs, 1000));
    }
    if (!gone) {
      send(stop.signal);
      gone = await stoppedWithin(stop.timeoutMs);
    }
    if (!gone) {
      this.o.log.warn({ cell: rec.cell, instance: rec.index, pid }, `no exit within ${stop.timeoutMs}ms of ${stop.signal}, sending SIGTERM`);
      send('SIGTERM');
      gone = await stoppedWithin(stop.killAfterMs);
    }
    if (!gone) {
      this.o.log.warn({ cell: rec.cell, instance: rec.index, pid }, `no exit within ${stop.killAfterMs}ms of SIGTERM, sending SIGKILL`);
      this.o.driver.signalGroup(pid, 'SIGKILL');
      await exitedWithin(5000);
    }
    // Leftover children of the group (a shell's background jobs, workers) go with their leader.
    for (let i = 0; i < 50 && this.o.driver.groupAlive(pid); i++) {
      this.o.driver.signalGroup(pid, 'SIGKILL');
      await sleep(this.o.clock, 20);
    }
    this.sweepEscapees(rec, rec.startTicks);
    const current = this.records.get(key)!;
    this.update({ ...stoppedOnRequest(current, reason, this.o.clock.now(), hold), runEnded: endsRun }, reason);
    // A stopped instance may be due to be forgotten (scale down) or restarted (released).
    this.requestTick();
  }

  /** Stops every instance, level by level (each level's instances in parallel). Halts the reconciler first. */
  async stopAll(levels: string[][], reason: string, options: { endsRun?: boolean; rerunsJobs?: boolean } = {}): Promise<void> {
    this.halted = true;
    this.scheduleWake(null);
    // A start still waiting for its spawn sees the halt and gives up; one spawning now ends its
    // own process. Either way no process comes up after the stop has gone past its instance.
    await Promise.all(this.startsInFlight);
    for (const level of levels) {
      const names = new Set(level);
      const batch = [...this.records.values()].filter((r) => names.has(r.cell) && r.state !== 'stopped' && r.state !== 'failed');
      await Promise.all(batch.map((r) => this.stopInstance(r.cell, r.index, reason, { endsRun: options.endsRun })));
      if (options.endsRun) {
        for (const r of [...this.records.values()].filter((x) => names.has(x.cell) && !x.runEnded && (x.state === 'stopped' || x.state === 'failed'))) this.update({ ...r, runEnded: true, completed: false });
      } else if (options.rerunsJobs) {
        // A restart of everything runs one-shot jobs again too, as `cell restart <job>` does: no
        // longer done, they are started by the release that follows, dependents after them.
        for (const r of [...this.records.values()].filter((x) => names.has(x.cell) && x.completed)) this.update({ ...r, completed: false });
      }
    }
  }

  /**
   * Ends what a stop of everything could not reach: processes that carry this home's CELL_HOME
   * and a cell's name but belong to no tracked instance's group (a cell's child that left its
   * process group with `setsid`, so the group's signals missed it). SIGTERM, then SIGKILL after
   * `graceMs`. Returns how many there were.
   */
  async endStrays(graceMs = 1000): Promise<number> {
    const strays = this.strays();
    for (const stray of strays) {
      this.o.log.warn({ pid: stray.pid, cell: stray.cell, instance: stray.instance }, 'stopping a process that left its instance\'s process group');
      signalStray(stray.pid, 'SIGTERM');
    }
    let alive = strays.filter((s) => signalStray(s.pid, 0));
    for (let waited = 0; alive.length > 0 && waited < graceMs; waited += 50) {
      await sleep(this.o.clock, 50);
      alive = alive.filter((s) => signalStray(s.pid, 0));
    }
    for (const stray of alive) signalStray(stray.pid, 'SIGKILL');
    return strays.length;
  }

  /** Processes of this home's cells outside every tracked instance's process group. */
  private strays(): ReturnType<typeof findStrayInstances> {
    const tracked = new Set([...this.records.values()].map((r) => r.pid).filter((p): p is number => p !== null));
    return findStrayInstances(this.o.home, tracked);
  }

  /** Lets the reconciler act again after `stopAll`, releasing everything it stopped. */
  resumeReconciling(cells: Iterable<string>): void {
    this.halted = false;
    this.release(cells);
  }

  /**
   * Lets go of every process without touching it (daemon detach or exit): probes and timers stop,
   * exits are no longer acted on. The processes keep running for the next daemon to readopt.
   */
  detach(): void {
    this.halted = true;
    this.detached = true;
    this.scheduleWake(null);
    for (const key of [...this.probeTimers.keys(), ...this.roundOf.keys()]) this.stopProbing(key);
    this.cancelStoreRetry?.();
    this.cancelStoreRetry = null;
  }

  /** Instances whose cell is no longer desired (prune removes them). */
  orphans(): InstanceRecord[] {
    return this.instances().filter((r) => !this.desired.cells.has(r.cell));
  }

  /**
   * Forgets the orphans that run no process (stopped or failed, e.g. after `cell down`): there
   * is nothing of them to stop, so no prune is needed for them to go. Returns their cells.
   */
  forgetIdleOrphans(): string[] {
    const cells = new Set<string>();
    for (const rec of this.orphans()) {
      if (rec.pid !== null || (rec.state !== 'stopped' && rec.state !== 'failed')) continue;
      this.forget(instanceKey(rec.cell, rec.index));
      cells.add(rec.cell);
    }
    return [...cells];
  }

  /** Stops and forgets every orphan, in `levels` (cells, leaves first). Returns what it pruned. */
  async prune(levels: string[][] = []): Promise<InstanceRecord[]> {
    const victims = this.orphans();
    // Level by level (each level's instances in parallel); cells no level names go last.
    const named = new Set(levels.flat());
    for (const level of [...levels, [...new Set(victims.map((r) => r.cell).filter((c) => !named.has(c)))]]) {
      const cells = new Set(level);
      await Promise.all(victims.filter((r) => cells.has(r.cell)).map((r) => this.stopInstance(r.cell, r.index, 'pruned')));
    }
    for (const r of victims) this.forget(instanceKey(r.cell, r.index));
    return victims;
  }

  private forget(key: string): void {
    const rec = this.records.get(key);
    this.stopProbing(key);
    this.records.delete(key);
    this.lastProbes.delete(key);
    if (rec) this.usedPorts.delete(rec.port);
    this.o.store.delete(`${RECORD_PREFIX}${key}`);
    this.o.onChange?.();
  }

  // ---------------------------------------------------------------- persistence

  private update(next: InstanceRecord, reason?: string | null): void {
    this.updateAll([{ next, reason }]);
  }

  /** Stores new records (and the transitions to them, and any `ops` that go with them) in one commit. */
  private updateAll(changes: { next: InstanceRecord; reason?: string | null; ops?: TxnOp[] }[]): void {
    if (changes.length === 0) return;
    const now = this.o.clock.now();
    const entries = changes.map(({ next, reason, ops: own = [] }) => {
      const key = instanceKey(next.cell, next.index);
      const prev = this.records.get(key);
      this.records.set(key, next);
      this.wakeForGrace(next);
      const ops: TxnOp[] = [{ op: 'put', key: `${RECORD_PREFIX}${key}`, value: next }, ...own];
      if (prev && prev.state === next.state) return { ops };
      // At the transition's own time (the record's stateSince), not this write's: the two differ
      // by whatever ran in between, and a backoff measured from the events must match the timer.
      return { event: { at: next.stateSince, cell: next.cell, instance: next.index, from: prev?.state ?? null, to: next.state, reason: reason ?? next.reason, pid: next.pid }, ops };
    });
    try {
      this.o.events.appendAll(entries, now);
    } catch (err) {
      this.storeFailed(err);
    }
    this.o.onChange?.();
  }

  /**
   * A commit failed (the disk is full, the store's file went away): the instances are supervised
   * on from memory, which holds every change already, and their records are written again, all
   * of them, once the store takes writes. What is lost meanwhile is the events of the changes
   * and what a daemon dying before then would readopt from (the last records stored). Throwing
   * instead would end the daemon from inside an exit or a probe, and no cell would be watched.
   */
  private storeFailed(err: unknown): void {
    const first = this.storeError === null;
    this.storeError = err instanceof Error ? err.message : String(err);
    if (first) this.o.log.error({ err: this.storeError }, 'cannot write the state store; supervising from memory, writing every record again each second');
    if (this.cancelStoreRetry || this.detached) return;
    this.cancelStoreRetry = this.o.clock.setTimer(STORE_RETRY_MS, () => {
      this.cancelStoreRetry = null;
      this.writeAllRecords();
    });
  }

  /** Writes every record again (after the store refused writes); false if it still refuses. */
  private writeAllRecords(): boolean {
    const ops: TxnOp[] = [...this.records.entries()].map(([key, value]) => ({ op: 'put', key: `${RECORD_PREFIX}${key}`, value }));
    try {
      this.o.store.txn([], ops, this.o.clock.now());
    } catch (again) {
      this.storeFailed(again);
      return false;
    }
    this.storeError = null;
    this.o.log.info({ records: ops.length }, 'the state store takes writes again: every record written');
    return true;
  }

  /**
   * For a daemon about to close its store: the records written once more if the store refused
   * writes; the store's error if it still does (the records stored are then older than these).
   */
  finalStoreError(): string | null {
    this.cancelStoreRetry?.();
    this.cancelStoreRetry = null;
    if (this.storeError !== null && !this.writeAllRecords()) return this.storeError;
    return null;
  }

  /**
   * Kills what the instance `rec`, just ended, left running outside its process group: a child
   * that called setsid(), or the program itself if it daemonized (forked, and let its foreground
   * process exit). Such a process would live on unsupervised beside the instance's next process,
   * holding its port or its files, until `cell down`, as QA found after restarts of both kinds.
   * A container's or a systemd unit's processes end with it; so do an instance's. The sweep runs
   * 3 s later, off the path of a restart, with every instance ended meanwhile in one pass over
   * /proc that reads the environment only of processes started since the oldest of them; the
   * next process of the instance, and anything it starts, is spared.
   */
  private sweepEscapees(rec: InstanceRecord, startedTicks: number | null): void {
    if (this.detached) return;
    try {
      this.endedInstances.set(instanceKey(rec.cell, rec.index), { cell: rec.cell, instance: rec.index, startedTicks: startedTicks ?? 0, endedTicks: ticksSinceBoot() });
    } catch {
      return; // No /proc/uptime: not Linux.
    }
    if (this.sweepDue) return;
    this.sweepDue = true;
    this.o.clock.setTimer(ESCAPEE_SWEEP_DELAY_MS, () => {
      this.sweepDue = false;
      if (this.detached || this.endedInstances.size === 0) return;
      const ended = [...this.endedInstances].map(([key, e]) => ({ ...e, sparedGroup: this.records.get(key)?.pid ?? null }));
      this.endedInstances.clear();
      for (const escapee of findEscapees(this.o.home, ended)) {
        if (!signalStray(escapee.pid, 'SIGKILL')) continue;
        this.o.log.warn(
          { cell: escapee.cell, instance: escapee.instance, pid: escapee.pid },
          'killed a process the instance left running outside its process group after it ended (it called setsid, or the program daemonized itself: cell runs programs in the foreground)',
        );
      }
    });
  }

  /**
   * Takes `rec` out of discovery. A store that refuses the write leaves its endpoint until its
   * lease runs out (the gateway then meets a closed port, and holds or retries the request): an
   * exit or a stop must go on regardless.
   */
  private deregister(rec: InstanceRecord): void {
    this.tolerateStoreFailure(() => this.o.registry.deregister(rec.cell, rec.index));
  }

  /** Runs a registry write; a store refusing it is reported as storeFailed does, and the caller goes on. */
  private tolerateStoreFailure(write: () => void): void {
    try {
      write();
    } catch (err) {
      this.storeFailed(err);
    }
  }

  /** A launching instance with a process is killed once its grace is over (reconcile): wake by then. */
  private wakeForGrace(rec: InstanceRecord): void {
    if (rec.state !== 'launching' || rec.pid === null || rec.killedForHealth) return;
    const spec = this.desired.cells.get(rec.cell)?.spec;
    if (spec) this.wakeBy(rec.stateSince + spec.health.graceMs);
  }

  /** A change of the record that is not its state, kept until the next `update` stores it. */
  private updateInMemory(next: InstanceRecord): void {
    const key = instanceKey(next.cell, next.index);
    if (this.records.get(key)?.state !== next.state) throw new Error(`updateInMemory cannot change the state of ${key}`);
    this.records.set(key, next);
    this.o.onChange?.();
  }
}

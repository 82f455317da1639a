import { mkdirSync, chmodSync, readFileSync, existsSync, writeFileSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism, hostname } from 'node:os';
import type { Clock } from '../clock/index.js';
import type { CellSpec, HealthSpec, MeshSpec } from '../manifest/index.js';
import type { ManifestParser } from './parse-manifest.js';
import pino from 'pino';
import { DependencyGraph, renderGraph, type GraphFormat } from '../graph/index.js';
import { computeVersion, runBuild, sourceFileCount } from '../builder/index.js';
import { openSqliteStore, type Store, type TxnOp } from '../store/index.js';
import { Registry, type Endpoint } from '../registry/index.js';
import { EventLog, readProcessUsage } from '../observer/index.js';
import { ChildProcessDriver, RotationSchedule, Supervisor, rotateIfLarger, type ProcessDriver } from '../supervisor/index.js';
import { instanceKey, type DesiredCell, type InstanceRecord } from '../reconciler/index.js';
import { cellBaseEnv, cellHomePaths, instanceLogFile, instanceLogFilesOnDisk, packageVersion, socketPathTooLong } from '../api/index.js';
import type { ApplyResult, CellHomePaths, CellView, DaemonView, DiscoverView, EventView, HealthView, InstanceView, NucleusView, StatusView } from '../api/index.js';
import { KERNEL_CELLS, gatewayCellSpec, isKernelCell, requireFreeGatewayPort, type KernelCellName } from './kernel.js';
import { ControlPlaneFile } from './control-plane-file.js';
import { BadRequestError, KernelCellError, UnknownCellError } from './errors.js';

export interface DaemonOptions {
  home: string;
  clock: Clock;
  /** Fixed gateway port (manifest `gateway.port`); 0 picks a free one. */
  gatewayPort: number;
  driver?: ProcessDriver;
  /**
   * The manifest parser, already begun (ManifestParser.begin: parsing the manifest `cell up` is
   * about to apply, or warm): the background daemon's entry point starts it before it loads the
   * daemon's code, so that it works while the kernel boots.
   */
  manifests: ManifestParser;
}

interface KernelState {
  state: 'launching' | 'ready' | 'stopped';
  since: number;
}

const DESIRED_PREFIX = 'desired/cells/';
const LATEST_PREFIX = 'builder/latest/';
const BUILT_PREFIX = 'builder/built/';
const LKG_PREFIX = 'discovery/lkg/';
/** The dependencies of a cell the manifest no longer has, kept until `prune` stops it (dependents first). */
const REMOVED_PREFIX = 'desired/removed/';
/** The least time between two answers of the gateway's long poll while endpoints keep changing. */
const ENDPOINT_ANSWER_INTERVAL_MS = 200;
/** The longest a stopping instance waits for the gateway to stop routing to it (see gatewayCaughtUp). */
const GATEWAY_DRAIN_MAX_MS = 1000;


/**
 * 32 bytes from the kernel's CSPRNG. Read from /dev/urandom rather than through node:crypto,
 * which would load and initialise OpenSSL (~2 MB resident) in a daemon that needs it for nothing else.
 */
function randomSecret(): string {
  const bytes = Buffer.alloc(32);
  const fd = openSync('/dev/urandom', 'r');
  try {
    if (readSync(fd, bytes, 0, 32, null) !== 32) throw new Error('short read from /dev/urandom');
  } finally {
    closeSync(fd);
  }
  return bytes.toString('hex');
}

function loadOrCreateSecret(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomSecret();
  writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  return secret;
}

/** `fn` over `items`, at most `limit` at once; results in the order of `items`. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}

/** A health check as `cell health` names it (`-` for an instance no longer in the manifest). */
/**
 * A manifest's `logs` settings, or before any manifest the manifest's defaults (DEFAULTS in
 * manifest/schema.ts, not imported: that module would bring zod into the daemon).
 */
function logSettings(logs: MeshSpec['logs'] | undefined): MeshSpec['logs'] {
  return logs ?? { maxBytes: 10 * 1024 * 1024, keep: 3 };
}

function describeCheck(spec: HealthSpec | undefined): string {
  if (!spec) return '-';
  // The port only when it is not the instance's own ($PORT, the default).
  const port = 'port' in spec && typeof spec.port === 'number' ? ` port ${spec.port}` : '';
  if (spec.kind === 'http') return `http ${spec.path}${port}`;
  if (spec.kind === 'exec') return `exec ${spec.command}`;
  return `${spec.kind}${port}`;
}

/**
 * The control plane: the only place that knows every part. It boots the kernel cells in order,
 * turns API calls into changes of desired state, and leaves the rest to the reconciler loop of
 * the supervisor. It never spawns or probes anything itself.
 */
export class Daemon {
  readonly paths: CellHomePaths;
  readonly startedAt: number;
  readonly version = packageVersion();
  readonly log: pino.Logger;
  store!: Store;
  supervisor!: Supervisor;
  /** Starts, signals and watches the processes; it keeps a warm spare of its own (closed with the daemon). */
  private driver!: ProcessDriver;
  registry!: Registry;
  events!: EventLog;
  private controlPlane!: ControlPlaneFile;
  private readonly kernel = new Map<KernelCellName, KernelState>();
  private manifest: MeshSpec | null = null;
  private manifestFile: string | null = null;
  private latestVersions = new Map<string, string>();
  private timers: (() => void)[] = [];
  private versionTimerCancel: (() => void) | null = null;
  private readonly logRotation = new RotationSchedule();
  shuttingDown = false;
  /** The per-mesh secret cells prove in the SDK handshake (keys/mesh.secret, 0600). */
  private secret = '';
  private endpointWaiters = new Set<() => void>();
  /** The endpoint revision the gateway last said it has (its long poll's `after`), and when. */
  private gatewaySeenRevision = -1;
  private gatewayPolledAt = -Infinity;
  private readonly gatewayCatchUpWaiters = new Set<() => void>();
  /** Cells a restart has stopped and not yet brought back: the gateway holds their requests. */
  private readonly restarting = new Set<string>();
  /** The build running for a cell, if any (see buildIfChanged). */
  private readonly builds = new Map<string, Promise<string>>();
  /** Aborted when the daemon closes: builds in progress are stopped with it. */
  private readonly buildsAbort = new AbortController();
  /** The cells last told to the gateway as starting (see startingCells), joined. */
  private startingKey = '';
  private lastEndpointsAnswerAt = -Infinity;
  /** `cell up` waiting for the mesh to settle (waitSettled). */
  private settleWaiters = new Set<() => void>();
  private settleCheckQueued = false;
  /** Cells whose last-known-good endpoints are to be written (rememberEndpoints). */
  private readonly lkgDue = new Set<string>();
  /** Conditions on the instances someone awaits (waitFor), checked at each change of them. */
  private changeWaiters = new Set<() => void>();
  private readonly manifests: ManifestParser;
  endpointsRevision = 0;

  constructor(private readonly o: DaemonOptions) {
    this.paths = cellHomePaths(o.home);
    this.manifests = o.manifests;
    this.startedAt = o.clock.now();
    for (const dir of [this.paths.home, this.paths.logs, this.paths.repo, this.paths.keys]) mkdirSync(dir, { recursive: true });
    mkdirSync(this.paths.run, { recursive: true, mode: 0o700 });
    chmodSync(this.paths.run, 0o700);
    // A full disk must not end the daemon through its own log: a failed write is dropped (and the
    // buffer held for the next one is capped), and the daemon goes on supervising.
    const logFile = pino.destination({ dest: this.paths.daemonLog, sync: true, mkdir: true, maxLength: 1024 * 1024 });
    logFile.on('error', () => {});
    this.log = pino({ base: { pid: process.pid } }, logFile);
    for (const name of KERNEL_CELLS) this.kernel.set(name, { state: 'stopped', since: this.startedAt });
  }

  private now(): number {
    return this.o.clock.now();
  }

  private kernelReady(name: KernelCellName): void {
    const now = this.now();
    this.kernel.set(name, { state: 'ready', since: now });
    // The gateway is a supervised process: its own launching -> ready transition is the signal.
    if (name !== 'gateway') this.events.append({ at: now, cell: name, instance: 0, from: 'launching', to: 'ready', reason: 'kernel cell ready', pid: process.pid });
    this.log.info({ kernel: name }, 'kernel cell ready');
  }

  /**
   * Boots the kernel cells in the seed's order, each after the previous one is ready: this half
   * runs builder, supervisor (which readopts what an earlier daemon left), registry and graph;
   * `bootEdge` runs gateway and observer.
   */
  async boot(): Promise<void> {
    this.secret = loadOrCreateSecret(join(this.paths.keys, 'mesh.secret'));
    this.store = openSqliteStore(this.paths.stateDb);
    this.events = new EventLog(this.store);
    this.controlPlane = new ControlPlaneFile(this.paths.controlPlane, this.o.clock, undefined, (err) => {
      if (err) this.log.error({ err: err.message }, 'cannot write control-plane.json; trying again every second');
      else this.log.info('control-plane.json written again');
    });

    // 1. builder: versions are computed on apply and by the version loop.
    this.kernelReady('builder');

    // 2. supervisor: desired state from the store, then readopt what still runs.
    this.registry = new Registry(this.store, 15_000);
    this.driver = this.o.driver ?? new ChildProcessDriver({ log: (level, fields, message) => this.log[level](fields, message) });
    this.supervisor = new Supervisor({
      driver: this.driver,
      store: this.store,
      clock: this.o.clock,
      registry: this.registry,
      events: this.events,
      log: this.log,
      home: this.paths.home,
      baseEnv: cellBaseEnv(process.env),
      logFileOf: (cell, index) => instanceLogFile(this.paths, cell, index),
      socketOf: (cell, index) => join(this.paths.run, `${cell}.${index}.sock`),
      secret: this.secret,
      drain: (cell) => this.gatewayCaughtUp(cell),
      onChange: () => {
        this.controlPlane.schedule(() => this.controlPlaneSnapshot());
        if (this.settleWaiters.size > 0) this.checkSettled();
        for (const check of [...this.changeWaiters]) check();
        this.noteStarting();
      },
      // A cell with a build runs its last build's output, whatever its sources say by now.
      versionFor: async (cell) => {
        const latest = await this.latestVersion(cell);
        return cell.spec.build ? (this.store.get<string>(`${BUILT_PREFIX}${cell.spec.name}`, this.now())?.value ?? cell.version) : latest;
      },
    });
    const desired = this.loadDesired();
    // Application cells wait for the whole kernel; readopted ones keep running meanwhile.
    this.supervisor.setStartGate(isKernelCell);
    this.supervisor.setDesired({ cells: desired });
    const readopted = this.supervisor.readopt();
    this.log.info(readopted, 'readoption done');
    this.kernelReady('supervisor');

    // 3. registry: drop endpoints whose leases ran out while the daemon was away.
    this.store.sweepExpired(this.now());
    this.registry.watch((event) => {
      this.endpointsChanged();
      // Last-known-good endpoints (discovery's fallback), written by the observer's one-second
      // tick: one commit for a burst of changes (a cold start) instead of one per instance.
      if (event.type === 'put') this.lkgDue.add(event.key.split('/')[2]);
    });
    this.kernelReady('registry');

    // 4. graph
    this.kernelReady('graph');

    // The gateway's fixed port, when another program holds it, fails the boot (and `cell up`)
    // with that reason, here, before the API answers anyone (unless it is our own gateway,
    // readopted): its port check would pass on the other program's listener.
    if (this.o.gatewayPort > 0 && !this.supervisor.instances().some((r) => r.cell === 'gateway' && r.pid !== null)) await requireFreeGatewayPort(this.o.gatewayPort);
  }

  /**
   * The rest of the kernel: the gateway (a process, ~0.2 s to come up) and the observer. The API
   * may already serve meanwhile (runDaemon opens it between the two halves), so an apply can be
   * parsed while the gateway boots; application cells still start only once the kernel is up.
   */
  async bootEdge(): Promise<void> {
    // 5. gateway: its own process, supervised like any cell.
    this.kernel.set('gateway', { state: 'launching', since: this.now() });
    const cells = new Map(this.supervisor.desiredCells);
    cells.set('gateway', { spec: gatewayCellSpec(this.paths.home, this.o.gatewayPort), version: this.version });
    this.supervisor.setDesired({ cells });
    // The kernel runs whenever the daemon does: a gateway an earlier `cell down` stopped (held,
    // so that the reconciler would not restart it then) starts again now.
    this.supervisor.release(['gateway']);
    // A `cell down` may come while the gateway boots (the API serves already): it stops the
    // gateway too, so stop waiting then, and start no timer on a store that is closing.
    await this.waitFor(() => this.shuttingDown || this.supervisor.readyCount('gateway') > 0, 15_000);
    if (this.shuttingDown) return;
    this.kernelReady('gateway');

    // 6. observer: periodic work (expiry sweeps, log rotation, version loop, last_health).
    this.every(1000, () => {
      this.registry.flushRenewals(this.now());
      this.rememberEndpoints();
      this.store.sweepExpired(this.now());
    });
    this.repeat(() => this.rotateLogs(), 1000);
    // Any change of state is written at once (debounced); this only refreshes last_health.
    this.every(15_000, () => this.controlPlane.schedule(() => this.controlPlaneSnapshot()));
    this.scheduleVersionLoop();
    this.kernelReady('observer');
    // Written now, not at the next change: a file left corrupt or missing while the daemon was
    // away is what `cell down` reads if this daemon dies too.
    this.controlPlane.schedule(() => this.controlPlaneSnapshot());
    this.supervisor.setStartGate(() => true);
  }

  private every(ms: number, fn: () => void): void {
    this.repeat(() => {
      fn();
      return ms;
    }, ms);
  }

  /** Runs `fn` after `firstMs`, then again after the delay it returns each time, until close. */
  private repeat(fn: () => number, firstMs: number): void {
    const slot = { cancel: () => {} };
    const run = (ms: number) => {
      slot.cancel = this.o.clock.setTimer(ms, () => {
        let next = firstMs;
        try {
          next = fn();
        } catch (err) {
          this.log.error({ err }, 'periodic task failed');
        }
        run(next);
      });
    };
    run(firstMs);
    this.timers.push(() => slot.cancel());
  }

  /**
   * Resolves true once `cond` holds, checked now and at every change of the instances (the
   * gateway's readiness gates every application cell: a poll would add its period to each boot),
   * or false after `timeoutMs`.
   */
  private waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const settle = (held: boolean) => {
        this.changeWaiters.delete(check);
        cancel();
        resolve(held);
      };
      const check = () => {
        if (cond()) settle(true);
      };
      const cancel = this.o.clock.setTimer(timeoutMs, () => settle(cond()));
      this.changeWaiters.add(check);
    });
  }

  private loadDesired(): Map<string, DesiredCell> {
    const now = this.now();
    const cells = new Map<string, DesiredCell>();
    for (const entry of this.store.list<DesiredCell>(DESIRED_PREFIX, now)) cells.set(entry.value.spec.name, entry.value);
    for (const entry of this.store.list<string>(LATEST_PREFIX, now)) this.latestVersions.set(entry.key.slice(LATEST_PREFIX.length), entry.value);
    const meta = this.store.get<{ file: string; spec: MeshSpec }>('desired/manifest', now);
    if (meta) {
      this.manifestFile = meta.value.file;
      this.manifest = meta.value.spec;
    }
    return cells;
  }

  // ---------------------------------------------------------------- apply

  /**
   * Makes `file` the desired state: validates it (a bad manifest throws and changes nothing),
   * computes versions, runs builds whose version changed, then hands the cells to the reconciler.
   * Cells in the store but not in the manifest keep running until `prune`.
   */
  async apply(file: string): Promise<ApplyResult> {
    const mesh = await this.manifests.parse(file);
    for (const spec of mesh.cells) this.checkSocketPaths(spec.name, spec.instances);
    const graph = new DependencyGraph(mesh.cells);
    const now = this.now();
    const next = new Map<string, DesiredCell>();
    // Builds run side by side (a slow build holds the others back no longer than itself), a few
    // at a time; the first to fail fails the apply, which then changes nothing.
    const versions = await mapLimit(mesh.cells, availableParallelism(), (spec) => this.buildIfChanged(spec, mesh.logs));
    for (const [i, spec] of mesh.cells.entries()) {
      const version = versions[i]!;
      const previous = this.supervisor.desiredCells.get(spec.name);
      next.set(spec.name, spec.lazy ? { spec, version, activated: previous?.activated === true } : { spec, version });
    }
    const removed = [...this.supervisor.desiredCells.values()].filter((d) => !isKernelCell(d.spec.name) && !next.has(d.spec.name));
    const ops = [
      ...removed.map((d) => ({ op: 'delete' as const, key: `${DESIRED_PREFIX}${d.spec.name}` })),
      ...removed.map((d) => ({ op: 'put' as const, key: `${REMOVED_PREFIX}${d.spec.name}`, value: d.spec.dependsOn })),
      ...this.store.list(REMOVED_PREFIX, now).filter((e) => next.has(e.key.slice(REMOVED_PREFIX.length))).map((e) => ({ op: 'delete' as const, key: e.key })),
      ...[...next.values()].map((d) => ({ op: 'put' as const, key: `${DESIRED_PREFIX}${d.spec.name}`, value: d })),
      ...[...next.values()].map((d) => ({ op: 'put' as const, key: `${LATEST_PREFIX}${d.spec.name}`, value: d.version })),
      { op: 'put' as const, key: 'desired/manifest', value: { file: mesh.file, spec: mesh } },
    ];
    this.store.txn([], ops, now);
    for (const d of next.values()) this.latestVersions.set(d.spec.name, d.version);
    const holdChanged = this.manifest?.gateway.holdMs !== mesh.gateway.holdMs;
    // Cells whose check changed (and nothing else: a new version is restarted anyway).
    const recheck = [...next.values()]
      .filter((d) => {
        const before = this.supervisor.desiredCells.get(d.spec.name);
        return before !== undefined && before.version === d.version && JSON.stringify(before.spec.health) !== JSON.stringify(d.spec.health);
      })
      .map((d) => d.spec.name);
    this.manifest = mesh;
    this.manifestFile = mesh.file;
    // The gateway takes its hold from the endpoints' answer: a new one is news for it now.
    if (holdChanged) this.endpointsChanged();
    this.setAppCells(next);
    // Cells the manifest dropped that run nothing (a `cell down` stopped them) just go; those
    // still running stay until `cell prune` stops them.
    const left = new Set(this.supervisor.instances().map((r) => r.cell));
    const gone = this.supervisor.forgetIdleOrphans().filter((cell) => !left.has(cell));
    if (gone.length > 0) this.store.txn([], gone.map((cell) => ({ op: 'delete' as const, key: `${REMOVED_PREFIX}${cell}` })), this.now());
    const released = this.supervisor.release(graph.topoOrder());
    this.scheduleVersionLoop();
    await Promise.all(recheck.map((name) => this.supervisor.probeReadyNow(name)));
    // `up` applies the manifest and the code on disk: a cell whose `run`, `env`, `build` or
    // sources changed runs its new version, as compose recreates a changed service. Its running
    // instances are replaced (the reconciler starts the new ones in dependency order).
    const updated = graph.topoOrder().filter((name) => this.supervisor.instances().some((r) => r.cell === name && r.pid !== null && r.version !== next.get(name)!.version));
    await Promise.all(updated.map((name) => this.rollingRestart(name, 'new version (manifest or sources changed)', next.get(name)!.version)));
    const notes: string[] = [];
    // The gateway's port is the daemon's from its start (the gateway runs on it, and may be
    // readopted on it): a new one takes a new daemon.
    if (mesh.gateway.port !== this.o.gatewayPort) {
      notes.push(`gateway.port ${mesh.gateway.port === 0 ? '0 (any free port)' : mesh.gateway.port} applies from the next start of the daemon: the gateway stays on ${this.gatewayUrl() ?? `port ${this.o.gatewayPort}`} until \`cell down\` and \`cell up\``);
    }
    // A typo in a glob would otherwise go unnoticed: the version then never changes with the code.
    for (const spec of mesh.cells) {
      if (spec.source.length > 0 && sourceFileCount(spec) === 0) notes.push(`cell ${spec.name}: source ${JSON.stringify(spec.source)} matches no file in ${spec.cwd}: its version follows run, env and build only`);
    }
    return {
      cells: graph.topoOrder().filter((n) => this.isAwaited(n)),
      lazy: graph.topoOrder().filter((n) => !this.isAwaited(n)),
      released,
      updated,
      gateway: this.gatewayUrl(),
      ...(notes.length > 0 ? { notes } : {}),
    };
  }

  /**
   * Replaces the instances of `name` one at a time when it has several: stop one, let the
   * reconciler start it again (on the version the cell has now), wait until it is ready, then the
   * next, so the others serve meanwhile (a restart of all at once left the gateway no instance to
   * send to). A single instance is stopped and started. A replacement not ready within its grace
   * ends the roll: the instances not replaced yet keep running, and `cell up`/`cell restart`
   * report the cell as not healthy.
   *
   * With `version`, only the instances on another version are replaced: after a daemon died
   * mid-roll, the next `cell up` replaces what is left, and leaves alone an instance that is on
   * the new version already (stopping it too left the cell nothing to serve with). Before each
   * stop another instance must be ready, so the cell never has none while it rolls.
   */
  private async rollingRestart(name: string, reason: string, version?: string): Promise<void> {
    const spec = this.supervisor.desiredCells.get(name)?.spec;
    const recs = this.supervisor.instances().filter((r) => r.cell === name);
    const running = recs.filter((r) => r.pid !== null && r.state !== 'paused' && r.index < (spec?.instances ?? 0));
    // A cell of several instances rolls even when one runs now (the other was mid-replacement
    // when a daemon died): stopping the one left would leave nothing to serve with.
    if (!spec || spec.instances <= 1 || running.length === 0) {
      // Nothing serves meanwhile: the gateway holds the cell's requests until it is back.
      this.restarting.add(name);
      this.noteStarting();
      await Promise.all(recs.map((r) => this.supervisor.stopInstance(r.cell, r.index, reason)));
      this.supervisor.release([name]);
      this.endRestartsWhenBack([name]);
      return;
    }
    // What does not run is simply started again; the running ones are replaced in turn.
    const idle = recs.filter((r) => !running.includes(r));
    await Promise.all(idle.map((r) => this.supervisor.stopInstance(r.cell, r.index, reason)));
    this.supervisor.release([name]);
    const isReady = (index: number) => this.supervisor.instances().some((r) => r.cell === name && r.index === index && r.state === 'ready');
    const anotherReady = (index: number) => this.supervisor.instances().some((r) => r.cell === name && r.index !== index && r.state === 'ready');
    // A scale-down during the roll takes instances out of it: the reconciler stops those.
    const scaledAway = (index: number) => index >= (this.supervisor.desiredCells.get(name)?.spec.instances ?? 0);
    const replaced = running.filter((r) => version === undefined || r.version !== version).sort((a, b) => a.index - b.index);
    for (const rec of replaced) {
      if (!(await this.waitFor(() => this.shuttingDown || scaledAway(rec.index) || anotherReady(rec.index), spec.health.graceMs + 5000))) {
        this.log.warn({ cell: name, instance: rec.index }, 'rolling restart stopped: no other instance is ready to serve meanwhile');
        return;
      }
      if (this.shuttingDown) return;
      if (scaledAway(rec.index)) continue;
      await this.supervisor.stopInstance(name, rec.index, reason);
      this.supervisor.release([name]);
      if (this.shuttingDown) return;
      if (!(await this.waitFor(() => this.shuttingDown || scaledAway(rec.index) || isReady(rec.index), spec.health.graceMs + 5000))) {
        this.log.warn({ cell: name, instance: rec.index }, 'rolling restart stopped: the replacement is not ready');
        return;
      }
    }
  }

  /**
   * Each instance gets a unix socket under `run/` (CELL_SOCKET): a path past the kernel's limit
   * would be cut short, silently, so such a cell is refused before anything changes.
   */
  private checkSocketPaths(cell: string, instances: number): void {
    if (instances === 0) return;
    const tooLong = socketPathTooLong(join(this.paths.run, `${cell}.${instances - 1}.sock`));
    if (tooLong) throw new BadRequestError(`cell ${cell}: its instance ${tooLong}; use a shorter CELL_HOME or cell name`, 'cells');
  }

  /**
   * The version of `spec` as it is on disk now, built first when it has a `build` command and
   * that version was not built yet. A failing build throws `BuildError` and changes nothing.
   */
  private async buildIfChanged(spec: CellSpec, logs = this.manifest?.logs): Promise<string> {
    // One build of a cell at a time (two `cell up`, or a restart during an apply's build): the
    // later one waits, then builds only if the sources changed again meanwhile.
    const running = this.builds.get(spec.name);
    const mine = (running ?? Promise.resolve()).catch(() => undefined).then(() => this.buildNow(spec, logs));
    const settled = mine.finally(() => {
      if (this.builds.get(spec.name) === settled) this.builds.delete(spec.name);
    });
    this.builds.set(spec.name, settled);
    return settled;
  }

  private async buildNow(spec: CellSpec, logsConfig: MeshSpec['logs'] | undefined): Promise<string> {
    const version = await computeVersion(spec);
    const built = this.store.get<string>(`${BUILT_PREFIX}${spec.name}`, this.now())?.value;
    if (spec.build && built !== version) {
      this.log.info({ cell: spec.name, version }, 'building');
      const logFile = join(this.paths.logs, `${spec.name}.build.log`);
      // The settings of the manifest being applied, not the last one's.
      const logs = logSettings(logsConfig);
      try {
        rotateIfLarger(logFile, logs.maxBytes, logs.keep);
      } catch (err) {
        // A log that cannot be rotated (a full disk) is no reason not to build.
        this.log.warn({ cell: spec.name, file: logFile, err: String(err) }, 'could not rotate the build log');
      }
      // Not an instance (no CELL_INSTANCE, nor an instance's socket and secret): the sweeps for
      // processes an instance left behind must not take a build that runs while the cell's
      // instances end and start.
      const { CELL_INSTANCE: _instance, CELL_SOCKET: _socket, CELL_SECRET: _secret, ...env } = this.supervisor.instanceEnv(spec, 0, 0);
      await runBuild(spec, logFile, env, this.buildsAbort.signal);
      this.store.put(`${BUILT_PREFIX}${spec.name}`, version, { now: this.now() });
    }
    return version;
  }

  private setAppCells(app: Map<string, DesiredCell>): void {
    const cells = new Map(app);
    const gateway = this.supervisor.desiredCells.get('gateway');
    if (gateway) cells.set('gateway', gateway);
    this.supervisor.setDesired({ cells });
  }

  /** Persists one changed desired cell and hands the whole desired state to the reconciler. */
  private replaceAppCell(updated: DesiredCell): void {
    const name = updated.spec.name;
    this.store.put(`${DESIRED_PREFIX}${name}`, updated, { now: this.now() });
    this.setAppCells(new Map(this.appCells().map((d) => [d.spec.name, d.spec.name === name ? updated : d])));
  }

  private appCells(): DesiredCell[] {
    return [...this.supervisor.desiredCells.values()].filter((d) => !isKernelCell(d.spec.name));
  }

  private graph(): DependencyGraph {
    return new DependencyGraph(this.appCells().map((d) => d.spec));
  }

  /**
   * The application cell `name`, for a command that changes it. A kernel cell is refused with
   * `kernelReason` (why that command does not apply to it), so the user is not told it is unknown
   * when `cell ps` lists it.
   */
  requireCell(name: string, kernelReason = 'the manifest\'s commands do not apply to it'): DesiredCell {
    if (isKernelCell(name)) throw new KernelCellError(name, kernelReason);
    const cell = this.supervisor.desiredCells.get(name);
    if (!cell) throw this.unknownCell(name);
    return cell;
  }

  /** Read commands (health, logs, events) take kernel cells and cells left over from an earlier manifest too. */
  private requireReadableCell(name: string): void {
    if (isKernelCell(name) || this.supervisor.desiredCells.has(name) || this.supervisor.instances().some((r) => r.cell === name)) return;
    throw this.unknownCell(name);
  }

  private unknownCell(name: string): UnknownCellError {
    return new UnknownCellError(name, this.appCells().map((d) => d.spec.name).sort());
  }

  // ---------------------------------------------------------------- commands

  async scale(name: string, instances: number): Promise<{ cell: string; instances: number }> {
    if (!Number.isInteger(instances) || instances < 0 || instances > 1000) {
      throw new BadRequestError(`instances must be an integer from 0 to 1000, got ${JSON.stringify(instances)}`, 'instances');
    }
    const cell = this.requireCell(name, 'it cannot be scaled');
    this.checkSocketPaths(name, instances);
    this.replaceAppCell({ ...cell, spec: { ...cell.spec, instances } });
    // Asked for n running instances: a failed one among those kept gets another try, as with
    // `cell up` (it made `cell scale` fail at once, naming the old failure).
    if (instances > 0) this.supervisor.release([name]);
    return { cell: name, instances };
  }

  /**
   * Restarts one cell (its instances stop, then start again) or the whole mesh in dependency
   * order. `awaited`: the restarted cells that come up by themselves, which `cell restart` waits
   * for (a lazy cell not yet activated starts only on its first discovery).
   */
  async restart(name?: string, options: { waitForRoll?: boolean } = {}): Promise<{ restarted: string[]; awaited: string[] }> {
    let restarted: string[];
    if (name) this.requireCell(name, 'it cannot be restarted on its own');
    // A restart runs the code on disk: built first where it changed (a failing build throws
    // before anything is stopped), so VERSION never names a version that was not built.
    for (const cell of this.appCells().filter((d) => !name || d.spec.name === name)) {
      const version = await this.buildIfChanged(cell.spec);
      if (version !== cell.version) this.replaceAppCell({ ...cell, version });
    }
    if (name) {
      const roll = this.rollingRestart(name, 'restart requested');
      if (options.waitForRoll === false) roll.catch((err: unknown) => this.log.error({ cell: name, err: String(err) }, 'rolling restart failed'));
      else await roll;
      restarted = [name];
    } else {
      const graph = this.graph();
      restarted = graph.topoOrder();
      // Those that come back by themselves (not a lazy cell not yet activated, nor one scaled to 0).
      const returning = restarted.filter((n) => this.isAwaited(n) && (this.supervisor.desiredCells.get(n)?.spec.instances ?? 0) > 0);
      for (const cell of returning) this.restarting.add(cell);
      this.noteStarting();
      await this.supervisor.stopAll(graph.levels().reverse(), 'restart requested', { rerunsJobs: true });
      this.supervisor.resumeReconciling(restarted);
      this.endRestartsWhenBack(returning);
    }
    return { restarted, awaited: restarted.filter((n) => this.isAwaited(n)) };
  }

  /** Whether `cell up` and `cell restart` wait for `name`: every cell but a lazy one not yet activated. */
  private isAwaited(name: string): boolean {
    const cell = this.supervisor.desiredCells.get(name);
    return cell !== undefined && (!cell.spec.lazy || cell.activated === true);
  }

  async prune(dryRun: boolean): Promise<InstanceRecord[]> {
    if (dryRun) {
      // In the order a prune stops them (dependents first), as it will say.
      const order = this.pruneLevels().flat();
      return this.supervisor.orphans().sort((a, b) => order.indexOf(a.cell) - order.indexOf(b.cell) || a.index - b.index);
    }
    const pruned = await this.supervisor.prune(this.pruneLevels());
    this.store.txn([], [...new Set(pruned.map((r) => r.cell))].map((cell) => ({ op: 'delete' as const, key: `${REMOVED_PREFIX}${cell}` })), this.now());
    return pruned;
  }

  /**
   * The cells `prune` stops, leaves first, by the dependencies they had when the manifest still
   * named them: a removed cell stops before a removed cell it depended on, as in `cell down`.
   */
  private pruneLevels(): string[][] {
    const now = this.now();
    const orphans = new Set(this.supervisor.orphans().map((r) => r.cell));
    const graph = new DependencyGraph(
      [...orphans].map((name) => ({
        name,
        // Only edges between the cells pruned now: the others are kept, or pruned already.
        dependsOn: (this.store.get<string[]>(`${REMOVED_PREFIX}${name}`, now)?.value ?? []).filter((dep) => orphans.has(dep)),
      })),
    );
    // Cells removed by different applies could in theory close a cycle: stop those together.
    return graph.findCycle() ? [[...orphans]] : graph.levels().reverse();
  }

  /**
   * `cell down`: reverse topological order (leaves first, each level in parallel), the kernel's
   * gateway last; every record ends `stopped` and control-plane.json says so before we exit.
   */
  async shutdown(): Promise<{ stopped: string[]; sequence: { cell: string; instance: number; to: string; at: string }[]; warnings: string[] }> {
    this.shuttingDown = true;
    const since = this.now();
    const graph = this.graph();
    const levels = graph.levels().reverse();
    const order = levels.flat();
    const orphanCells = [...new Set(this.supervisor.orphans().map((r) => r.cell))];
    // The warm spare first: it would be taken for a stray below, and nothing restarts now.
    this.driver.close?.();
    await this.supervisor.stopAll([...levels, orphanCells, ['gateway']], 'cell down', { endsRun: true });
    // No orphan left: not even a cell's child that left its instance's process group.
    await this.supervisor.endStrays();
    for (const name of [...KERNEL_CELLS].reverse()) this.kernel.set(name, { state: 'stopped', since: this.now() });
    // What `cell down --json` shows: every instance's draining and stopped moments, in order.
    const sequence = this.events
      .list(this.now(), { since })
      .filter((e) => e.to === 'draining' || e.to === 'stopped')
      .map((e) => ({ cell: e.cell, instance: e.instance, to: e.to, at: new Date(e.at).toISOString() }));
    const warnings = await this.close();
    return { stopped: [...order, ...orphanCells], sequence, warnings };
  }

  /** Detaches and closes the store; returns what could not be written on the way (a full disk). */
  async close(): Promise<string[]> {
    this.buildsAbort.abort();
    this.manifests.close();
    this.supervisor.detach();
    this.driver?.close?.();
    for (const cancel of this.timers) cancel();
    this.versionTimerCancel?.();
    const warnings: string[] = [];
    const failed = await this.controlPlane.writeFinal(this.controlPlaneSnapshot());
    if (failed) warnings.push(`${failed.message}: ${this.paths.controlPlane} still shows the mesh as it was before this stop`);
    const storeError = this.supervisor.finalStoreError();
    if (storeError) warnings.push(`the state store ${this.paths.stateDb} refused the last writes (${storeError}): it still holds the instances as they were before`);
    for (const wake of this.endpointWaiters) wake();
    this.store.close();
    return warnings;
  }

  // ---------------------------------------------------------------- loops

  private scheduleVersionLoop(): void {
    this.versionTimerCancel?.();
    const interval = this.manifest?.versionCheckIntervalMs ?? 60_000;
    this.versionTimerCancel = this.o.clock.setTimer(interval, () => {
      void this.checkVersions().finally(() => this.scheduleVersionLoop());
    });
  }

  /**
   * The version of a cell's code as it is on disk now (kernel cells: the daemon's own). Records
   * a change as "update available" so `cell status` can tell which running instances are outdated.
   */
  private async latestVersion(cell: DesiredCell): Promise<string> {
    const name = cell.spec.name;
    if (isKernelCell(name) || cell.spec.source.length === 0) return this.latestVersions.get(name) ?? cell.version;
    const latest = await computeVersion(cell.spec);
    if (this.latestVersions.get(name) !== latest) {
      this.log.warn({ cell: name, version: cell.version, latest }, 'update available');
      this.latestVersions.set(name, latest);
      if (!this.shuttingDown) this.store.put(`${LATEST_PREFIX}${name}`, latest, { now: this.now() });
    }
    return latest;
  }

  /** The seed's version loop: recompute source hashes and notice cells whose code changed. */
  async checkVersions(): Promise<void> {
    for (const cell of this.appCells()) {
      try {
        await this.latestVersion(cell);
      } catch (err) {
        this.log.error({ cell: cell.spec.name, err: String(err) }, 'version check failed');
      }
    }
  }

  /** Rotates the instance logs that are due (see RotationSchedule); returns the delay to the next check. */
  private rotateLogs(): number {
    const logs = logSettings(this.manifest?.logs);
    const now = this.now();
    const files = this.supervisor.instances().map((rec) => instanceLogFile(this.paths, rec.cell, rec.index));
    return Math.max(RotationSchedule.MIN_MS, this.logRotation.run(files, now, logs.maxBytes, logs.keep) - now);
  }

  // ---------------------------------------------------------------- endpoints (gateway watch)

  /**
   * The application cells with no instance to route to but one on its way (a first start, a
   * restart after a crash, a `cell restart`): the gateway holds their requests a while rather
   * than answering 503 at once.
   */
  startingCells(): string[] {
    const starting = this.supervisor.startingCells();
    for (const cell of this.restarting) if (this.supervisor.readyCount(cell) === 0) starting.add(cell);
    // A cell scaled to 0 (or removed) meanwhile is not on its way: its held requests get a 503 now.
    return [...starting].filter((cell) => !isKernelCell(cell) && (this.supervisor.desiredCells.get(cell)?.spec.instances ?? 0) > 0).sort();
  }

  /** The manifest's `gateway.hold`; undefined before a manifest (the gateway keeps its default, the same). */
  gatewayHoldMs(): number | undefined {
    return this.manifest?.gateway.holdMs;
  }

  /** A change of the starting cells is news for the gateway, like a change of endpoints. */
  private noteStarting(): void {
    if (!this.supervisor) return;
    const key = this.startingCells().join('\n');
    if (key === this.startingKey) return;
    this.startingKey = key;
    this.endpointsChanged();
  }

  /**
   * Ends the restart of each of `cells` once it is back (an instance ready), failed, paused, done
   * (a one-shot job), gone from the manifest, or after a minute: until then it counts as starting
   * even while no instance of it is launching yet (stopped, waiting for its dependencies to come
   * back first). One waiter for all of them: a restart of the whole mesh is one pass over the
   * instances per change, not one per cell.
   */
  private endRestartsWhenBack(cells: string[]): void {
    const pending = new Set(cells);
    const allBack = () => {
      const back = new Set<string>();
      for (const r of this.supervisor.instances()) {
        if (pending.has(r.cell) && (r.state === 'ready' || r.state === 'failed' || r.state === 'paused' || r.completed)) back.add(r.cell);
      }
      for (const cell of pending) {
        if (this.shuttingDown || back.has(cell) || !this.supervisor.desiredCells.has(cell)) {
          pending.delete(cell);
          this.restarting.delete(cell);
        }
      }
      return pending.size === 0;
    };
    void this.waitFor(allBack, 60_000).then(() => {
      for (const cell of pending) this.restarting.delete(cell);
      this.noteStarting();
    });
  }

  private endpointsChanged(): void {
    this.endpointsRevision++;
    for (const wake of this.endpointWaiters) wake();
    this.endpointWaiters.clear();
  }

  /**
   * Someone follows the endpoints. The gateway starts doing so the moment it listens, so while
   * it is launching this is its ready signal: its probe runs now, not at its next ramp step
   * (the whole kernel, and so every application cell, waits for the gateway).
   */
  endpointsFollowed(seenRevision: number): void {
    this.supervisor?.probeNow('gateway', 0);
    this.gatewayPolledAt = this.now();
    if (seenRevision <= this.gatewaySeenRevision) return;
    this.gatewaySeenRevision = seenRevision;
    for (const wake of [...this.gatewayCatchUpWaiters]) wake();
  }

  /**
   * Resolves once the gateway has the routing table without the instance just deregistered (it
   * asks for the next one with `after` at or past the revision of that change), at most
   * GATEWAY_DRAIN_MAX_MS later; at once while the mesh shuts down, for the gateway itself, and
   * when no gateway follows the endpoints. Until then a stopping instance still gets requests
   * the gateway routed before it knew, on kept-alive connections the instance is about to close.
   */
  gatewayCaughtUp(cell: string): Promise<void> {
    const target = this.endpointsRevision;
    if (this.shuttingDown || isKernelCell(cell) || this.gatewaySeenRevision >= target || this.now() - this.gatewayPolledAt > 60_000) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.gatewayCatchUpWaiters.delete(check);
        cancel();
        resolve();
      };
      const check = () => {
        if (this.gatewaySeenRevision >= target || this.shuttingDown) done();
      };
      const cancel = this.o.clock.setTimer(GATEWAY_DRAIN_MAX_MS, done);
      this.gatewayCatchUpWaiters.add(check);
    });
  }

  /**
   * Long-poll: resolves when the endpoint revision passes `after`, or after `waitMs`. A change
   * is answered at once (a timer of 0: the other changes of the same turn come along) unless the
   * last answer to a change was less than ENDPOINT_ANSWER_INTERVAL_MS ago; then when that much
   * has passed. So a lone change (a restarted instance) reaches the gateway at once, and a burst
   * (100 instances becoming ready in a cold start) as a few full lists a second rather than one
   * per instance.
   */
  waitEndpoints(after: number, waitMs: number): Promise<void> {
    if (this.endpointsRevision > after || this.shuttingDown) return Promise.resolve();
    return new Promise((resolve) => {
      const cancel = this.o.clock.setTimer(waitMs, () => {
        this.endpointWaiters.delete(wake);
        resolve();
      });
      const answer = () => {
        this.lastEndpointsAnswerAt = this.now();
        resolve();
      };
      const wake = () => {
        cancel();
        if (this.shuttingDown) resolve();
        else this.o.clock.setTimer(Math.max(0, this.lastEndpointsAnswerAt + ENDPOINT_ANSWER_INTERVAL_MS - this.now()), answer);
      };
      this.endpointWaiters.add(wake);
    });
  }

  // ---------------------------------------------------------------- settling (cell up)

  /**
   * Whether the applied mesh has settled: every cell `cell up` waits for (all but lazy cells not
   * yet activated) has all its instances ready, or one of them has failed.
   */
  isSettled(): boolean {
    if (this.supervisor.hasFailedInstance((cell) => !isKernelCell(cell))) return true;
    const jobs = this.awaitedToComplete();
    return this.appCells().every((d) => (d.spec.lazy && !d.activated) || (jobs.has(d.spec.name) ? this.supervisor.isCompleted(d.spec.name) : this.isCellHealthy(d.spec.name)));
  }

  /**
   * Long-poll for `cell up`: resolves once the mesh has settled (isSettled), or after `waitMs`
   * so that the caller can show progress. Checked once per event-loop turn of state changes, not
   * per change: a cold start of 100 cells makes ~300.
   */
  waitSettled(waitMs: number): Promise<void> {
    if (this.shuttingDown || this.isSettled()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        this.settleWaiters.delete(done);
        resolve();
      };
      const cancel = this.o.clock.setTimer(waitMs, done);
      this.settleWaiters.add(done);
    });
  }

  private checkSettled(): void {
    if (this.settleCheckQueued) return;
    this.settleCheckQueued = true;
    setImmediate(() => {
      this.settleCheckQueued = false;
      if (!this.shuttingDown && !this.isSettled()) return;
      for (const done of [...this.settleWaiters]) done();
    });
  }

  // ---------------------------------------------------------------- discovery

  /** Writes the last-known-good endpoints of the cells whose endpoints changed, in one commit. */
  private rememberEndpoints(): void {
    if (this.shuttingDown || this.lkgDue.size === 0) return;
    const now = this.now();
    const ops: TxnOp[] = [];
    for (const cell of this.lkgDue) {
      const endpoints = this.registry.endpoints(now, cell);
      if (endpoints.length > 0) ops.push({ op: 'put', key: `${LKG_PREFIX}${cell}`, value: endpoints });
    }
    this.lkgDue.clear();
    if (ops.length > 0) this.store.txn([], ops, now);
  }

  /**
   * Resolves a cell name the seed's way, and says how: control-plane state (a ready instance
   * whose pid is alive), then the registry (live leases), then the last-known-good endpoints, then
   * spawning it (a lazy cell is activated; the call waits until an instance is ready).
   */
  async discover(name: string, opts: { spawn: boolean; timeoutMs: number }): Promise<DiscoverView> {
    const cell = this.requireCell(name, 'discovery resolves application cells only');
    const steps: DiscoverView['steps'] = [];
    const now = this.now();
    const view = (resolvedBy: DiscoverView['resolved_by'], endpoints: Endpoint[]): DiscoverView => ({
      cell: name,
      resolved_by: resolvedBy,
      endpoints: endpoints.map((e) => ({ instance: e.instance, socket: e.socket, url: e.url, version: e.version })),
      steps,
    });

    const live = this.supervisor
      .instances()
      .filter((r) => r.cell === name && r.state === 'ready' && this.supervisor.isRunning(r))
      .map((r) => ({ cell: r.cell, instance: r.index, url: `http://127.0.0.1:${r.port}`, port: r.port, socket: r.sdk && r.socket && existsSync(r.socket) ? r.socket : null, pid: r.pid, version: r.version }));
    steps.push({ step: 'control-plane', found: live.length, detail: `${live.length} ready instance(s) with a live pid` });
    if (live.length > 0) return view('control-plane', live);

    const registered = this.registry.endpoints(now, name);
    steps.push({ step: 'registry', found: registered.length, detail: `${registered.length} registered endpoint(s) with a live lease` });
    if (registered.length > 0) return view('registry', registered);

    const lkg = (this.store.get<Endpoint[]>(`${LKG_PREFIX}${name}`, now)?.value ?? []).filter((e) => (e.socket ? existsSync(e.socket) : false));
    steps.push({ step: 'last-known-good', found: lkg.length, detail: `${lkg.length} last-known-good endpoint(s) whose socket still exists` });
    if (lkg.length > 0) return view('last-known-good', lkg);

    if (!opts.spawn) {
      steps.push({ step: 'spawn', found: 0, detail: 'not attempted (--no-spawn)' });
      return view('unresolved', []);
    }
    if (cell.spec.lazy && !cell.activated) this.activate(name);
    else this.supervisor.release([name]);
    const ready = await this.waitFor(() => this.supervisor.instances().some((r) => r.cell === name && r.state === 'ready'), opts.timeoutMs);
    const spawned = this.supervisor
      .instances()
      .filter((r) => r.cell === name && r.state === 'ready')
      .map((r) => this.registry.endpoints(this.now(), name).find((e) => e.instance === r.index) ?? { cell: name, instance: r.index, url: `http://127.0.0.1:${r.port}`, port: r.port, socket: r.sdk ? (r.socket ?? null) : null, pid: r.pid, version: r.version });
    steps.push({ step: 'spawn', found: spawned.length, detail: ready ? `started ${name}, ${spawned.length} instance(s) ready` : `started ${name}, none ready within ${opts.timeoutMs}ms` });
    return view(ready ? 'spawned' : 'unresolved', spawned);
  }

  /** Activates a lazy cell: from now on the reconciler starts and keeps it like any other. */
  private activate(name: string): void {
    this.replaceAppCell({ ...this.requireCell(name), activated: true });
    this.log.info({ cell: name }, 'lazy cell activated by discovery');
  }

  /** `cell nucleus`: every instance's registration, lease and health, per cell. */
  nucleus(): NucleusView {
    const now = this.now();
    const leases = new Map(this.store.list<Endpoint>('registry/endpoints/', now).map((e) => [`${e.value.cell}/${e.value.instance}`, e]));
    const cells = this.appCells().map((d) => {
      const recs = this.supervisor.instances().filter((r) => r.cell === d.spec.name);
      const instances = recs.map((r) => {
        const lease = leases.get(instanceKey(r.cell, r.index));
        const last = this.supervisor.lastProbe(r.cell, r.index);
        return {
          instance: r.index,
          state: r.state,
          health: r.health,
          registered: lease !== undefined,
          endpoint: lease ? (lease.value.socket ?? lease.value.url) : null,
          version: r.version,
          sdk: r.sdk === true,
          last_heartbeat: last?.result.ok ? new Date(last.at).toISOString() : null,
          lease_expires_at: lease?.expiresAt ? new Date(lease.expiresAt).toISOString() : null,
        };
      });
      return {
        cell: d.spec.name,
        healthy: instances.filter((i) => i.state === 'ready').length,
        instances: d.spec.instances,
        lazy: d.spec.lazy === true,
        activated: d.activated === true,
        registered: instances.filter((i) => i.registered).length,
        instance_list: instances,
      };
    });
    return { revision: this.endpointsRevision, cells };
  }

  // ---------------------------------------------------------------- views

  gatewayUrl(): string | null {
    const rec = this.supervisor?.instances().find((r) => r.cell === 'gateway');
    const port = this.o.gatewayPort || rec?.port;
    return port ? `http://127.0.0.1:${port}` : null;
  }

  daemonView(): DaemonView {
    return {
      pid: process.pid,
      version: this.version,
      uptime: Math.round((this.now() - this.startedAt) / 1000),
      home: this.paths.home,
      started_at: new Date(this.startedAt).toISOString(),
      manifest: this.manifestFile,
      gateway: this.gatewayUrl(),
      shutting_down: this.shuttingDown,
      memory: (({ rss, heapUsed, heapTotal, external }) => ({ rss, heap_used: heapUsed, heap_total: heapTotal, external }))(process.memoryUsage()),
    };
  }

  /**
   * An instance's health as the read commands show it. The record keeps `unknown` while an
   * instance launches (or after it failed); what its last probe found is what a user asks:
   * failing, until one passes.
   */
  private healthOf(rec: InstanceRecord): InstanceRecord['health'] {
    if (rec.state !== 'launching' && rec.state !== 'failed' && rec.state !== 'backoff') return rec.health;
    const last = this.supervisor.lastProbe(rec.cell, rec.index);
    return last !== undefined && !last.result.ok ? 'failing' : rec.health;
  }

  instanceView(rec: InstanceRecord): InstanceView {
    return {
      cell: rec.cell,
      instance: rec.index,
      kind: isKernelCell(rec.cell) ? 'kernel' : 'cell',
      pid: rec.pid,
      port: rec.port || null,
      state: rec.state,
      health: this.healthOf(rec),
      // A run ended by `cell down` counts from zero at its next start: not the old count until then.
      restarts: rec.runEnded ? 0 : rec.restarts,
      version: rec.version,
      started_at: rec.startedAt === null ? null : new Date(rec.startedAt).toISOString(),
      reason: rec.reason,
      health_detail: rec.healthDetail,
      completed: rec.completed === true,
    };
  }

  /** Instances; with `usage`, each carries its CPU time and RSS from /proc (for `cell top`). */
  ps(usage = false): (InstanceView & { cpu_ms?: number | null; rss_bytes?: number | null })[] {
    return this.supervisor.instances().map((r) => {
      const view = this.instanceView(r);
      if (!usage) return view;
      const u = r.pid !== null ? readProcessUsage(r.pid) : undefined;
      return { ...view, cpu_ms: u?.cpuMs ?? null, rss_bytes: u?.rssBytes ?? null };
    });
  }

  status(verbose = false): StatusView {
    const records = this.supervisor.instances();
    const byCell = new Map<string, InstanceRecord[]>();
    for (const r of records) {
      const list = byCell.get(r.cell);
      if (list) list.push(r);
      else byCell.set(r.cell, [r]);
    }
    const recordsOf = (cell: string) => byCell.get(cell) ?? [];
    const cells: CellView[] = [];
    for (const name of KERNEL_CELLS) {
      if (name === 'gateway') {
        const recs = recordsOf('gateway');
        cells.push(this.cellView('gateway', 'kernel', recs, 1, [], this.version, this.version, verbose));
        continue;
      }
      const k = this.kernel.get(name)!;
      cells.push({
        name,
        kind: 'kernel',
        state: k.state,
        instances: 1,
        ready: k.state === 'ready' ? 1 : 0,
        completed: false,
        pids: [process.pid],
        version: this.version,
        latest_version: this.version,
        outdated: false,
        depends_on: [],
        restarts: 0,
        reason: null,
      });
    }
    let order: string[];
    try {
      order = this.graph().topoOrder();
    } catch {
      order = this.appCells().map((d) => d.spec.name);
    }
    const jobs = this.awaitedToComplete();
    for (const name of order) {
      const d = this.supervisor.desiredCells.get(name)!;
      const recs = recordsOf(name);
      const view = this.cellView(name, 'cell', recs, d.spec.instances, d.spec.dependsOn, d.version, this.latestVersions.get(name) ?? d.version, verbose);
      cells.push(jobs.has(name) ? { ...view, runs_to_completion: true } : view);
    }
    const orphanNames = [...new Set(this.supervisor.orphans().map((r) => r.cell))].filter((n) => !isKernelCell(n));
    for (const name of orphanNames) {
      const recs = recordsOf(name);
      const view = this.cellView(name, 'cell', recs, 0, [], recs[0]?.version ?? '', recs[0]?.version ?? '', verbose);
      cells.push({ ...view, orphan: true, reason: 'not in the manifest (cell prune stops it)' });
    }
    return { daemon: this.daemonView(), cells };
  }

  private cellView(
    name: string,
    kind: 'kernel' | 'cell',
    recs: InstanceRecord[],
    wanted: number,
    dependsOn: string[],
    version: string,
    latest: string,
    verbose: boolean,
  ): CellView {
    const live = recs.filter((r) => r.index < Math.max(wanted, 1) || r.state !== 'stopped');
    const ready = live.filter((r) => r.state === 'ready').length;
    const failing = live.filter((r) => r.state === 'ready' && r.health === 'failing').length;
    const severity = ['failed', 'backoff', 'paused', 'launching', 'draining', 'stopped', 'ready'] as const;
    let state: CellView['state'] = 'waiting';
    if (live.length > 0) state = severity.find((s) => live.some((r) => r.state === s)) ?? 'ready';
    if (ready >= wanted && wanted > 0 && live.length > 0) state = 'ready';
    const worst = live.find((r) => r.state === state && r.reason);
    let reason = worst?.reason ?? null;
    const desired = this.supervisor.desiredCells.get(name);
    if (state === 'waiting' && wanted === 0) {
      // Scaled to nothing: not waiting for anything to start.
      state = 'stopped';
      reason = 'scaled to 0 instances';
    } else if (state === 'waiting' && desired?.spec.lazy && !desired.activated) {
      reason = 'lazy: starts on its first discovery';
    } else if (state === 'waiting' || (state === 'stopped' && desired && live.every((r) => r.state !== 'stopped' || (!r.hold && !r.completed)))) {
      // Nothing ran yet, or what ran stopped and starts again by itself (a restart, a new run
      // after `cell down`): what it waits for now, not why it stopped last.
      // Only a desired cell has dependencies here (kernel and left-over cells are given none).
      const waitingOn = desired ? dependsOn.filter((d) => !this.supervisor.dependencyMet(desired.spec, d)) : [];
      const awaited = (d: string) =>
        desired?.spec.awaitsCompletionOf?.includes(d) ? `${d} (to complete)` : this.supervisor.desiredCells.get(d)?.spec.instances === 0 ? `${d} (scaled to 0 instances)` : d;
      if (waitingOn.length > 0) reason = `waiting for ${waitingOn.map(awaited).join(', ')}`;
      else if (state === 'waiting') reason = 'starting';
    }
    const running = live.filter((r) => r.version);
    const completed = wanted > 0 && live.filter((r) => r.index < wanted && r.state === 'stopped' && r.completed).length >= wanted;
    return {
      name,
      kind,
      state,
      instances: wanted,
      ready,
      ...(failing > 0 ? { failing } : {}),
      completed,
      pids: live.map((r) => r.pid).filter((p): p is number => p !== null),
      // What serves: in a roll that stalled (a new version that never gets ready), the ready
      // instances' version, not the failing replacement's.
      version: (running.find((r) => r.state === 'ready') ?? running[0])?.version ?? version,
      latest_version: latest,
      outdated: running.some((r) => r.version !== latest),
      depends_on: dependsOn,
      restarts: live.reduce((sum, r) => sum + (r.runEnded ? 0 : r.restarts), 0),
      reason,
      ...(verbose ? { instance_list: live.map((r) => this.instanceView(r)) } : {}),
    };
  }

  /** The cells some cell waits to see complete (one-shot jobs). */
  private awaitedToComplete(): Set<string> {
    const jobs = new Set<string>();
    for (const d of this.supervisor.desiredCells.values()) for (const job of d.spec.awaitsCompletionOf ?? []) jobs.add(job);
    return jobs;
  }

  isCellHealthy(name: string): boolean {
    const d = this.supervisor.desiredCells.get(name);
    return d !== undefined && d.spec.instances > 0 && this.supervisor.servingCount(name) >= d.spec.instances;
  }

  health(cell?: string): HealthView[] {
    if (cell) this.requireReadableCell(cell);
    if (cell && isKernelCell(cell) && cell !== 'gateway') {
      // Inside the daemon: it has no probe of its own, it is as alive as the daemon answering this.
      const k = this.kernel.get(cell)!;
      return [{ cell, instance: 0, state: k.state, health: k.state === 'ready' ? 'passing' : 'unknown', check: 'process', level: 'process', detail: `inside the daemon (pid ${process.pid})`, checked_at: null }];
    }
    return this.supervisor
      .instances()
      .filter((r) => (cell ? r.cell === cell : true))
      .map((r) => {
        const last = this.supervisor.lastProbe(r.cell, r.index);
        const spec = this.supervisor.desiredCells.get(r.cell)?.spec.health;
        return {
          cell: r.cell,
          instance: r.index,
          state: r.state,
          health: this.healthOf(r),
          check: describeCheck(spec),
          level: last?.result.level ?? 'process',
          detail: last?.result.detail ?? r.healthDetail,
          checked_at: last ? new Date(last.at).toISOString() : null,
        };
      });
  }

  eventsView(cell?: string, since?: number): EventView[] {
    const list = this.events.list(this.now(), { cell, since });
    // A cell removed from the manifest keeps its history until the events expire.
    if (cell && list.length === 0) this.requireReadableCell(cell);
    return list.map((e) => ({ ...e, at: new Date(e.at).toISOString() }));
  }

  /** The graph as data: each cell (kernel cells aside) and each dependency, with its condition. */
  graphData(): { nodes: { cell: string; instances: number }[]; edges: { from: string; to: string; condition: 'healthy' | 'completed' }[] } {
    const graph = this.graph();
    const nodes = graph.names.map((cell) => ({ cell, instances: this.supervisor.desiredCells.get(cell)?.spec.instances ?? 0 }));
    const edges = graph.names.flatMap((from) => graph.dependenciesOf(from).map((to) => ({ from, to, condition: this.awaitsCompletion(from, to) ? ('completed' as const) : ('healthy' as const) })));
    return { nodes, edges };
  }

  renderGraph(format: GraphFormat): string {
    return renderGraph(this.graph(), format, (dependent, dep) => (this.awaitsCompletion(dependent, dep) ? 'completed' : undefined));
  }

  /** Whether `dependent` waits for `dep`'s one-shot run to complete, not for it to be healthy. */
  private awaitsCompletion(dependent: string, dep: string): boolean {
    return this.supervisor.desiredCells.get(dependent)?.spec.awaitsCompletionOf?.includes(dep) === true;
  }

  instanceLogFiles(cell: string): { instance: number; file: string }[] {
    this.requireReadableCell(cell);
    if (isKernelCell(cell) && cell !== 'gateway') throw new KernelCellError(cell, `its lines are in the daemon's log, ${this.paths.daemonLog}`);
    const wanted = this.supervisor.desiredCells.get(cell)?.spec.instances ?? 0;
    const indexes = new Set<number>();
    for (let i = 0; i < wanted; i++) indexes.add(i);
    for (const r of this.supervisor.instances()) if (r.cell === cell) indexes.add(r.index);
    // Scaled to 0 (or stopped and pruned): what its instances wrote is still what `cell logs`
    // should show, as it does with no daemon running.
    if (indexes.size === 0) return instanceLogFilesOnDisk(this.paths, cell);
    return [...indexes].sort((a, b) => a - b).map((i) => ({ instance: i, file: instanceLogFile(this.paths, cell, i) }));
  }

  /** The seed's control-plane.json shape, from the live records. */
  controlPlaneSnapshot(): object {
    const processes: Record<string, object> = {};
    const lastHealth: Record<string, number> = {};
    for (const r of this.supervisor.instances()) {
      const key = instanceKey(r.cell, r.index);
      processes[key] = {
        pid: r.pid,
        socket_path: r.sdk ? (r.socket ?? null) : null,
        port: r.port,
        version_hash: r.version,
        start_time: r.startedAt === null ? null : Math.floor(r.startedAt / 1000),
        start_ticks: r.startTicks,
        restart_count: r.restarts,
        state: r.state,
      };
      const last = this.supervisor.lastProbe(r.cell, r.index);
      if (last?.result.ok) lastHealth[key] = Math.floor(last.at / 1000);
    }
    const dependencies: Record<string, string[]> = {};
    const versions: Record<string, string> = {};
    for (const d of this.appCells()) {
      dependencies[d.spec.name] = d.spec.dependsOn;
      versions[d.spec.name] = d.version;
    }
    return {
      daemon: { pid: process.pid, host: hostname(), started_at: Math.floor(this.startedAt / 1000), manifest: this.manifestFile },
      processes,
      dependencies,
      versions,
      last_health: lastHealth,
    };
  }
}

export type { CellSpec };

/**
 * The daemon API's data, as the CLI and other clients see it (JSON over HTTP on the unix socket
 * `$CELL_HOME/run/daemon.sock`). Field names are the wire names.
 */
import type { InstanceState, HealthStatus } from '../reconciler/index.js';
import type { MeshSpec } from '../manifest/index.js';

export type { InstanceState, HealthStatus };

/**
 * The `go` line `cell up` writes to the stdin of a daemon it started (cli/daemon-control.ts,
 * daemon/main.ts): the gateway port, and the manifest as the command validated it, which the
 * daemon's first apply takes if the file still has that text.
 */
export interface DaemonGo {
  gatewayPort: number;
  parsed?: ParsedManifest;
}

/**
 * The exit code of a daemon that found another one holding CELL_HOME's lock: the `cell up` that
 * started it lost a race with another start, and uses the daemon that won instead.
 */
export const DAEMON_EXIT_ALREADY_RUNNING = 75;

/**
 * The kernel cells in the seed's boot order. Here rather than in the daemon because the gateway,
 * a process of its own, must know them too: they are never routed.
 */
export const KERNEL_CELLS = ['builder', 'supervisor', 'registry', 'graph', 'gateway', 'observer'] as const;

export interface ParsedManifest {
  file: string;
  text: string;
  mesh: MeshSpec;
}

export interface DaemonView {
  pid: number;
  version: string;
  uptime: number;
  home: string;
  started_at: string;
  manifest: string | null;
  gateway: string | null;
  shutting_down: boolean;
  /** The daemon's own memory, in bytes (process.memoryUsage()). */
  memory: { rss: number; heap_used: number; heap_total: number; external: number };
}

/** One row of `cell ps`. */
export interface InstanceView {
  cell: string;
  instance: number;
  kind: 'kernel' | 'cell';
  pid: number | null;
  port: number | null;
  state: InstanceState;
  health: HealthStatus;
  restarts: number;
  version: string;
  started_at: string | null;
  reason: string | null;
  health_detail: string | null;
  /** Its run completed (a one-shot job that exited cleanly under restart policy on-failure or never). */
  completed: boolean;
}

/** One row of `cell status`. */
export interface CellView {
  name: string;
  kind: 'kernel' | 'cell';
  /** Not in the manifest (a later apply removed it): its instances run on until `cell prune`. */
  orphan?: boolean;
  state: InstanceState | 'waiting';
  instances: number;
  ready: number;
  /** Of the ready instances, those whose last probe failed (still ready until `retries` failures in a row). */
  failing?: number;
  /** Every instance completed its run (a one-shot job that exited cleanly): done, as good as ready. */
  completed: boolean;
  /**
   * A cell waits for this one's run to complete (`depends_on: {<it>: {condition: completed}}`):
   * a one-shot job, done only once `completed`, not while it runs (ready).
   */
  runs_to_completion?: boolean;
  pids: number[];
  version: string;
  latest_version: string;
  outdated: boolean;
  depends_on: string[];
  restarts: number;
  reason: string | null;
  instance_list?: InstanceView[];
}

export interface StatusView {
  daemon: DaemonView;
  cells: CellView[];
}

export interface EventView {
  at: string;
  cell: string;
  instance: number;
  from: InstanceState | null;
  to: InstanceState;
  reason: string | null;
  pid: number | null;
}

export interface EndpointView {
  cell: string;
  instance: number;
  url: string;
  port: number;
  version: string;
}

export interface EndpointsView {
  revision: number;
  endpoints: EndpointView[];
  /** Every cell of the mesh, ready or not: the gateway answers 404 for others, 503 for these. */
  cells?: string[];
  /** A short digest of `cells`: the long poll answers at once when the set of cells changes. */
  cells_digest?: string;
  /**
   * The cells with no ready instance but one on its way (launching, restarting after a crash or
   * a `cell restart`): the gateway holds their requests for a while instead of answering 503.
   */
  starting?: string[];
  /** How long the gateway holds such a request (the manifest's `gateway.hold`). */
  hold_ms?: number;
}

export interface ApplyResult {
  /** Cells `up` waits for (dependency order). */
  cells: string[];
  /** Lazy cells, started on their first discovery. */
  lazy: string[];
  released: number;
  /** Running cells restarted on a new version (their manifest entry or sources changed). */
  updated: string[];
  gateway: string | null;
  /** What the apply could not do now, one line each (a changed gateway.port needs a new daemon). */
  notes?: string[];
}

export interface HealthView {
  cell: string;
  instance: number;
  state: InstanceState;
  health: HealthStatus;
  /** The check the manifest configures: `http /path`, `tcp`, `exec <command>`, `ping`, `process`. */
  check: string;
  /** The highest level the last probe reached (a failing http check that connected: `socket`). */
  level: string;
  detail: string | null;
  checked_at: string | null;
}

export interface PruneResult {
  dry_run: boolean;
  instances: { cell: string; instance: number; pid: number | null }[];
}

/** An error as the API returns it: `{ error: { name, message, ...fields } }` with a 4xx/5xx status. */
export interface ApiErrorBody {
  error: { name: string; message: string; [field: string]: unknown };
}

/** How `cell discover` / the SDK's `connect` resolved a name, step by step. */
export interface DiscoverView {
  cell: string;
  resolved_by: 'control-plane' | 'registry' | 'last-known-good' | 'spawned' | 'unresolved';
  endpoints: { instance: number; socket: string | null; url: string; version: string }[];
  steps: { step: 'control-plane' | 'registry' | 'last-known-good' | 'spawn'; found: number; detail: string }[];
}

/** `cell nucleus`: the registry, per cell. */
export interface NucleusView {
  revision: number;
  cells: {
    cell: string;
    healthy: number;
    instances: number;
    lazy: boolean;
    activated: boolean;
    registered: number;
    instance_list: {
      instance: number;
      state: InstanceState;
      health: HealthStatus;
      registered: boolean;
      endpoint: string | null;
      version: string;
      sdk: boolean;
      last_heartbeat: string | null;
      lease_expires_at: string | null;
    }[];
  }[];
}

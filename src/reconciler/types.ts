import type { CellSpec } from '../manifest/index.js';

/** The seed's lifecycle: Idle → Launching → Ready → Draining → Stopped, plus Failed, Backoff, Paused. */
export type InstanceState = 'launching' | 'ready' | 'draining' | 'stopped' | 'failed' | 'backoff' | 'paused';

export type HealthStatus = 'unknown' | 'passing' | 'failing';

/** Desired state of one cell: what the manifest asks for, with its computed version. */
export interface DesiredCell {
  spec: CellSpec;
  /** BLAKE3 of the cell's source files (or of its spec when it has none). */
  version: string;
  /** A `lazy` cell starts only once activated (its first discovery); others ignore this. */
  activated?: boolean;
}

export interface Desired {
  cells: Map<string, DesiredCell>;
}

/**
 * Observed state of one instance. The supervisor owns these records; every change goes through
 * the pure transition functions of this module so that the rules live in one place.
 */
export interface InstanceRecord {
  cell: string;
  index: number;
  state: InstanceState;
  pid: number | null;
  /** /proc start time of `pid`, to tell our process from a reused pid. */
  startTicks: number | null;
  port: number;
  health: HealthStatus;
  healthDetail: string | null;
  /** How many times this instance was started again after its first start. */
  restarts: number;
  /** Consecutive failures (exit or unhealthy) since the last stable run. */
  failures: number;
  version: string;
  startedAt: number | null;
  readyAt: number | null;
  stateSince: number;
  /** In `backoff`: when the next start is due. */
  retryAt: number | null;
  /** Why the instance is in its state (last exit, crash loop, waiting dependency...). */
  reason: string | null;
  /**
   * When true the reconciler leaves the instance alone (exited under policy never/on-failure,
   * stopped by request, or failed). `cell up` and `cell restart` release it.
   */
  hold: boolean;
  /** Set when the supervisor kills the instance for failing health: its exit counts as a failure. */
  killedForHealth: boolean;
  /**
   * Stopped by `cell down`: the mesh's run ended, so its next start is a first start of a new
   * run (restart and failure counters from zero), not a restart.
   */
  runEnded?: boolean;
  /**
   * Its run completed: a clean exit under restart policy `on-failure` or `never` (a one-shot job
   * such as a migration). It serves its dependents as a ready instance does, and `cell up` leaves
   * it done until its version changes; a stop on request (`cell restart`, `cell down`) clears it.
   */
  completed?: boolean;
  /** The unix socket handed to the instance as CELL_SOCKET (where an SDK cell listens). */
  socket?: string | null;
  /** The instance announced itself through the SDK (ready signal): it speaks the cell protocol. */
  sdk?: boolean;
}

export type Action =
  | { type: 'start'; cell: string; index: number; isRestart: boolean }
  /** Graceful stop (draining), e.g. scale down. */
  | { type: 'stop'; cell: string; index: number; reason: string }
  /** Kill an instance that is not healthy; its exit is then counted as a failure. */
  | { type: 'kill-unhealthy'; cell: string; index: number; reason: string }
  | { type: 'pause'; cell: string; index: number; reason: string }
  | { type: 'resume'; cell: string; index: number }
  /** Forget a stopped instance that the manifest no longer asks for (index beyond `instances`). */
  | { type: 'forget'; cell: string; index: number };

export interface ReconcileResult {
  actions: Action[];
  /** Earliest time at which the reconciler should run again even if nothing changes (null: none). */
  wakeAt: number | null;
}

export interface ExitEvent {
  code: number | null;
  signal: string | null;
}

/** A transition as recorded in the event log. */
export interface TransitionEvent {
  at: number;
  cell: string;
  instance: number;
  from: InstanceState | null;
  to: InstanceState;
  reason: string | null;
  pid: number | null;
}

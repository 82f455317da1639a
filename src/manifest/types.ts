/**
 * The normalized, validated form of `cell.yaml`. Durations are milliseconds; paths are absolute.
 * Everything downstream (graph, reconciler, supervisor) reads these types, never raw YAML.
 */

/** `port` of a check: a number, or the instance's own `$PORT` (the default). */
export type CheckPort = number | '$PORT';

export interface CheckTiming {
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failed probes of a ready instance before it counts as unhealthy. */
  retries: number;
  /** How long a launching instance may take to pass its first probe before it counts as failed. */
  graceMs: number;
}

export type HealthSpec =
  | ({ kind: 'http'; path: string; port: CheckPort } & CheckTiming)
  | ({ kind: 'tcp'; port: CheckPort } & CheckTiming)
  | ({ kind: 'exec'; command: string } & CheckTiming)
  /** The SDK's protocol ping on the instance's unix socket (the seed's level 3, "Protocol Valid"). */
  | ({ kind: 'ping' } & CheckTiming)
  /** No check configured: the instance is ready once its process is alive (level 1). */
  | ({ kind: 'process' } & CheckTiming);

export type RestartPolicy = 'always' | 'on-failure' | 'never';

export interface RestartSpec {
  policy: RestartPolicy;
  /** First delayed retry; doubles each failure after that (the first restart is immediate). */
  backoffMs: number;
  maxBackoffMs: number;
  /** Consecutive failures after which the instance is marked `failed` (crash loop). */
  maxRetries: number;
  /** Time an instance must stay ready for its failure count to reset. */
  resetAfterMs: number;
  /**
   * A failure restart of a node program may start from a warm spare (supervisor/warm-node.ts);
   * false: always cold. Unset counts as true.
   */
  warm?: boolean;
}

export interface StopSpec {
  /** First signal sent (after the graceful shutdown op, for SDK cells). */
  signal: NodeJS.Signals;
  /** Wait after `signal` before SIGTERM. */
  timeoutMs: number;
  /** Wait after SIGTERM before SIGKILL to the whole process group. */
  killAfterMs: number;
}

export interface CellSpec {
  name: string;
  /** Command line, run as `/bin/sh -c "exec <run>"`. */
  run: string;
  cwd: string;
  env: Record<string, string>;
  dependsOn: string[];
  /**
   * The dependencies (among `dependsOn`) whose run must have completed (a one-shot job's clean
   * exit, e.g. a migration) before this cell starts, not merely be healthy. Absent in a spec an
   * older daemon stored: none.
   */
  awaitsCompletionOf?: string[];
  instances: number;
  health: HealthSpec;
  restart: RestartSpec;
  stop: StopSpec;
  /** Globs (relative to cwd) hashed into the cell's version. */
  source: string[];
  build?: string;
  /** A build that runs longer is stopped (its process group) and fails. */
  buildTimeoutMs?: number;
  /**
   * Not started by `cell up`: the first discovery of the cell (an SDK `connect`) starts it and
   * waits for it, like socket activation.
   */
  lazy?: boolean;
}

export interface MeshSpec {
  /** Absolute path of the manifest file. */
  file: string;
  /** Directory of the manifest; relative `cwd`s resolve against it. */
  dir: string;
  cells: CellSpec[];
  /** `holdMs`: how long a request may wait for a cell with no ready instance but one on its way (0: not at all). */
  gateway: { port: number; holdMs: number };
  /** Seed: the version loop runs every 60 s. */
  versionCheckIntervalMs: number;
  logs: { maxBytes: number; keep: number };
}

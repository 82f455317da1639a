/**
 * The daemon API's data, as the CLI and other clients see it (JSON over HTTP on the unix socket
 * `$CELL_HOME/run/daemon.sock`). Field names are the wire names.
 */
import type { InstanceState, HealthStatus } from '../reconciler/index.js';

export type { InstanceState, HealthStatus };

export interface DaemonView {
  pid: number;
  version: string;
  uptime: number;
  home: string;
  started_at: string;
  manifest: string | null;
  gateway: string | null;
  shutting_down: boolean;
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
}

/** One row of `cell status`. */
export interface CellView {
  name: string;
  kind: 'kernel' | 'cell';
  state: InstanceState | 'waiting';
  instances: number;
  ready: number;
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
}

export interface ApplyResult {
  cells: string[];
  released: number;
  gateway: string | null;
}

export interface HealthView {
  cell: string;
  instance: number;
  state: InstanceState;
  health: HealthStatus;
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

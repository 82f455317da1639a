import type { HealthSpec } from '../manifest/index.js';

export interface ProbeTarget {
  spec: HealthSpec;
  /** The instance's own port, substituted for `$PORT`. */
  port: number;
  /** Working directory and environment for exec checks. */
  cwd: string;
  env: Record<string, string>;
  /** For ping checks: the instance's CELL_SOCKET and the mesh secret for the handshake. */
  socket?: string | null;
  secret?: string;
}

export interface ProbeResult {
  ok: boolean;
  /**
   * Highest level reached: 'process' (pid alive), 'socket' (port accepts), 'http' (2xx), 'exec'
   * (exit 0), 'protocol' (answers the SDK's ping). A failed check reports the level below it that held: an http check answered 503
   * reports 'socket', one refused reports 'process'.
   */
  level: 'process' | 'socket' | 'http' | 'exec' | 'protocol';
  /** Why it failed, one line (e.g. "GET /health -> 503", "connect ECONNREFUSED 127.0.0.1:4100"). */
  detail?: string;
  durationMs: number;
}

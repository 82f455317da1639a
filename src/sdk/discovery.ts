import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { meshHome, meshSecret, postToDaemon } from './mesh-env.js';

export interface ResolvedEndpoints {
  sockets: string[];
  secret?: string;
  /** Which step of the resolution order found them. */
  resolvedBy: 'control-plane' | 'registry' | 'last-known-good' | 'spawned';
}

/** A cell name that resolves to no instance (unknown cell, daemon away, none ready in time). */
export class DiscoveryError extends Error {
  override name = 'DiscoveryError';
  constructor(
    readonly cell: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell };
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Resolves a cell name to the unix sockets of its instances, in the seed's order:
 * 1. control-plane state: control-plane.json lists a ready instance whose pid is alive and whose
 *    socket exists (a file read, no round trip);
 * 2.–4. the daemon: its registry, then the last-known-good endpoints, then spawning the cell
 *    (a `lazy` cell starts now; the call waits until an instance is ready).
 */
export async function resolveEndpoints(cell: string, opts: { timeoutMs?: number } = {}): Promise<ResolvedEndpoints> {
  const home = meshHome();
  const secret = meshSecret(home);
  try {
    const state = JSON.parse(readFileSync(join(home, 'control-plane.json'), 'utf8')) as {
      processes?: Record<string, { pid: number | null; socket_path: string | null; state?: string }>;
    };
    const sockets = Object.entries(state.processes ?? {})
      .filter(([key, p]) => key.startsWith(`${cell}/`) && p.state === 'ready' && p.pid !== null && p.socket_path && alive(p.pid) && existsSync(p.socket_path))
      .map(([, p]) => p.socket_path!);
    if (sockets.length > 0) return { sockets, secret, resolvedBy: 'control-plane' };
  } catch {
    // No state file yet, or being replaced: ask the daemon.
  }
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let view: { resolved_by: string; endpoints: { socket: string | null }[] };
  try {
    view = await postToDaemon('/v1/discover', { cell, spawn: true, timeout_ms: timeoutMs }, timeoutMs + 5000, home);
  } catch (err) {
    throw new DiscoveryError(cell, `cannot resolve cell "${cell}": ${(err as Error).message}`, { cause: err });
  }
  const sockets = view.endpoints.map((e) => e.socket).filter((s): s is string => typeof s === 'string');
  if (sockets.length === 0) {
    throw new DiscoveryError(cell, `cell "${cell}" has no instance serving the cell protocol (${view.resolved_by})`);
  }
  return { sockets, secret, resolvedBy: view.resolved_by as ResolvedEndpoints['resolvedBy'] };
}

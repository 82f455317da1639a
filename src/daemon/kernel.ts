import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { DAEMON_ENV_TUNING, KERNEL_CELLS } from '../api/index.js';
import type { CellSpec } from '../manifest/index.js';
import { GatewayPortInUseError } from './errors.js';

/**
 * The kernel cells (KERNEL_CELLS, from src/api) boot in the seed's order, each after the previous
 * one is ready. All but the gateway live inside the daemon; the gateway runs as its own supervised
 * process so that proxy load never stalls the control plane and a gateway crash is restarted like
 * any cell.
 */
export { KERNEL_CELLS };
export type KernelCellName = (typeof KERNEL_CELLS)[number];

export function isKernelCell(name: string): name is KernelCellName {
  return (KERNEL_CELLS as readonly string[]).includes(name);
}

/**
 * Throws GatewayPortInUseError when something listens on 127.0.0.1:`port` already. Its health
 * check (the port accepts connections) would pass on another program's listener while the
 * gateway itself fails to bind, so the gateway is not started at all then.
 */
export function requireFreeGatewayPort(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new GatewayPortInUseError(port, { cause: err }) : err));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/** The gateway's own entry point, beside this file in the compiled tree. */
export function gatewayEntry(): string {
  return fileURLToPath(new URL('../gateway/main.js', import.meta.url));
}

/** The gateway as a cell the supervisor runs: a fixed port when asked for one, else `$PORT`. */
export function gatewayCellSpec(home: string, fixedPort: number): CellSpec {
  const port = fixedPort > 0 ? fixedPort : '$PORT';
  // Quoted only when a path needs it: an unquoted line is started without a shell (see the
  // supervisor's directArgv), one exec less on the path of every boot.
  const word = (path: string) => (/^[A-Za-z0-9_\-./]+$/.test(path) ? path : `"${path}"`);
  return {
    name: 'gateway',
    run: `${word(process.execPath)} ${word(gatewayEntry())}`,
    cwd: home,
    // The gateway is ours: it runs with the daemon's tuning (api/paths.ts).
    env: { ...DAEMON_ENV_TUNING, ...(fixedPort > 0 ? { GATEWAY_PORT: String(fixedPort) } : {}) },
    dependsOn: [],
    instances: 1,
    health: { kind: 'tcp', port, intervalMs: 2000, timeoutMs: 1000, retries: 3, graceMs: 10_000 },
    // The kernel never gives up on its gateway: a crash loop keeps retrying, slowly.
    restart: { policy: 'always', backoffMs: 500, maxBackoffMs: 10_000, maxRetries: 1_000_000, resetAfterMs: 10_000 },
    stop: { signal: 'SIGTERM', timeoutMs: 2000, killAfterMs: 1000 },
    source: [],
  };
}

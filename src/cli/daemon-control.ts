import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ApiClient, DaemonNotRunningError, cellHomePaths, daemonEnv, type StatusView } from '../api/index.js';

export function daemonEntry(): string {
  return fileURLToPath(new URL('../daemon/main.js', import.meta.url));
}

async function isUp(api: ApiClient): Promise<boolean> {
  try {
    await api.get<StatusView>('/v1/status', { timeoutMs: 2000 });
    return true;
  } catch (err) {
    if (err instanceof DaemonNotRunningError) return false;
    throw err;
  }
}

/**
 * Starts the background daemon for `home` unless one answers already. The daemon is detached
 * (its own session) with its output in logs/daemon.out, so it outlives this command. `manifest`
 * is the file about to be applied: the daemon parses it while it boots.
 */
export async function ensureDaemon(home: string, gatewayPort: number, onProgress: (line: string) => void, manifest?: string): Promise<{ started: boolean }> {
  const paths = cellHomePaths(home);
  const api = new ApiClient(paths.socket);
  if (await isUp(api)) return { started: false };
  mkdirSync(paths.logs, { recursive: true });
  onProgress(`starting the cell daemon for ${home}`);
  const out = openSync(paths.daemonOut, 'a');
  // A small young generation: the daemon makes little garbage, and the default semi-spaces
  // (16 MB each) would mostly be resident memory for nothing.
  // --single-threaded: no V8 worker threads (concurrent GC and compilation), ~4 MB less resident
  // memory; the daemon's heap is small enough that marking it on the main thread costs nothing.
  // --no-opt: no optimizing compiler (TurboFan). The daemon spends its time in syscalls, SQLite
  // and short callbacks; TurboFan's own code and what it emits cost ~5 MB resident, for no CPU
  // measurably saved (100-cell cold start: daemon CPU 0.92-0.94 s with it off, 0.96-1.01 s on;
  // idle with 100 HTTP checks a second: 0.75-0.85 % vs 0.65-1.05 % of a core).
  const child = spawn(process.execPath, ['--max-semi-space-size=1', '--single-threaded', '--no-opt', daemonEntry(), '--home', home, '--gateway-port', String(gatewayPort), ...(manifest ? ['--manifest', manifest] : [])], {
    detached: true,
    stdio: ['ignore', out, out],
    // Tuned for the daemon (api/paths.ts); the cells get the user's values back.
    env: { ...daemonEnv(process.env), CELL_HOME: home },
  });
  closeSync(out);
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (existsSync(paths.socket) && (await isUp(api))) return { started: true };
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const tail = existsSync(paths.daemonOut) ? readFileSync(paths.daemonOut, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
  throw new Error(`the cell daemon did not start${exited !== null ? ` (exit code ${exited})` : ' within 30s'}${tail ? `: ${tail}` : ''}; see ${paths.daemonLog}`);
}

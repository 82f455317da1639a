import { resolve } from 'node:path';
import { ApiClient, ApiError, CellHomeError, DaemonNotRunningError, cellHomePaths, resolveCellHome } from '../api/index.js';
import { UP_TIMEOUT, timeoutMs } from './duration.js';
import { runPs, runStatus } from './read-commands.js';
import { printable } from './table.js';

const FLAGS: Record<string, Set<string>> = {
  status: new Set(['--json', '-v', '--verbose']),
  ps: new Set(['--json']),
};

/**
 * Runs `cell status` / `cell ps` (with only their own flags, or `--home DIR`) and a plain
 * `cell up` (see plainUp) without loading commander and the rest of the CLI: status is budgeted
 * at 150 ms, most of which is node's own start-up on small machines, and `up` is on the path of
 * every cold start. Returns false for anything else, which then goes to the full CLI.
 */
export async function runQuick(argv: string[]): Promise<boolean> {
  const up = plainUp(argv);
  if (up) {
    // Without commander (~20 ms of loading on the path of every cold start: the daemon waits for
    // this command's validation of the manifest).
    const [{ runUp }, { reportError }] = await Promise.all([import('./up.js'), import('./output.js')]);
    await runUp({ home: resolveCellHome(up.home), file: resolve(up.file ?? 'cell.yaml'), foreground: false, wait: up.wait, timeoutMs: up.timeoutMs }).catch(reportError);
    return true;
  }
  let home: string | undefined;
  const args = [...argv];
  if (args[0] === '--home' && args.length >= 2) {
    home = args[1];
    args.splice(0, 2);
  }
  const [command, ...flags] = args;
  const allowed = command ? FLAGS[command] : undefined;
  if (!allowed || !flags.every((f) => allowed.has(f))) return false;
  const api = new ApiClient(cellHomePaths(resolveCellHome(home)).socket);
  const json = flags.includes('--json');
  try {
    if (command === 'status') await runStatus(api, { json, verbose: flags.includes('-v') || flags.includes('--verbose') });
    else await runPs(api, { json });
  } catch (err) {
    process.stderr.write(`cell: ${printable((err as Error).message)}\n`);
    process.exitCode = err instanceof DaemonNotRunningError ? 3 : (err instanceof ApiError && err.status < 500) || err instanceof CellHomeError ? 2 : 1;
  }
  return true;
}

/**
 * The options of a `cell up` that starts a background daemon, when the command line is made of
 * nothing but `up`, `--home DIR`, `-f/--file FILE`, `--no-wait` and a valid `--timeout T`; else
 * null (`--foreground`, `--help`, anything unknown or bad: the full CLI decides and reports).
 */
export function plainUp(argv: string[]): { home?: string; file?: string; wait: boolean; timeoutMs: number } | null {
  const found: { home?: string; file?: string; wait: boolean; timeoutMs: number } = { wait: true, timeoutMs: timeoutMs(UP_TIMEOUT)! };
  let command = false;
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].startsWith('--') ? argv[i].indexOf('=') : -1;
    const flag = eq < 0 ? argv[i] : argv[i].slice(0, eq);
    const value = eq < 0 ? argv[i + 1] : argv[i].slice(eq + 1);
    if (eq < 0 && ['--home', '-f', '--file', '--timeout'].includes(flag)) i++;
    if (flag === 'up' && !command) command = true;
    else if (flag === '--no-wait' && command && eq < 0) found.wait = false;
    else if (value === undefined) return null;
    else if (flag === '--home') found.home = value;
    else if (flag === '-f' || flag === '--file') found.file = value;
    else if (flag === '--timeout' && command) {
      const ms = timeoutMs(value);
      if (ms === null) return null;
      found.timeoutMs = ms;
    } else return null;
  }
  return command ? found : null;
}

import { ApiClient, ApiError, DaemonNotRunningError, cellHomePaths, resolveCellHome } from '../api/index.js';
import { resolve } from 'node:path';
import { timeoutMs } from './duration.js';
import { runPs, runStatus } from './read-commands.js';

const FLAGS: Record<string, Set<string>> = {
  status: new Set(['--json', '-v', '--verbose']),
  ps: new Set(['--json']),
};

/**
 * Runs `cell status` / `cell ps` (with only their own flags, or `--home DIR`) without loading
 * commander and the rest of the CLI: these are budgeted at 150 ms, most of which is node's own
 * start-up on small machines. Returns false for anything else, which then goes to the full CLI.
 */
export async function runQuick(argv: string[]): Promise<boolean> {
  const up = plainUp(argv);
  if (up) {
    // The full CLI does the rest; its load (~30 ms) and the daemon's boot overlap.
    const { startDaemonEarly } = await import('./daemon-control.js');
    startDaemonEarly(resolveCellHome(up.home), resolve(up.file ?? 'cell.yaml'));
    return false;
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
    process.stderr.write(`cell: ${(err as Error).message}\n`);
    process.exitCode = err instanceof DaemonNotRunningError ? 3 : err instanceof ApiError && err.status < 500 ? 2 : 1;
  }
  return true;
}

/**
 * The home and manifest of a `cell up` that starts a background daemon, when the command line is
 * made of nothing but `up`, `--home DIR`, `-f/--file FILE`, `--no-wait` and a valid `--timeout T`; else
 * null (`--foreground`, `--help`, anything unknown: the full CLI alone decides).
 */
export function plainUp(argv: string[]): { home?: string; file?: string } | null {
  const found: { home?: string; file?: string } = {};
  let command = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === 'up' && !command) command = true;
    else if (flag === '--home') found.home = value();
    else if (flag === '-f' || flag === '--file') found.file = value();
    else if (flag === '--timeout' && command) {
      // A bad one is the full CLI's to report, before any daemon starts.
      const given = value();
      if (given === undefined || timeoutMs(given) === null) return null;
    }
    else if (flag === '--no-wait' && command && inline === undefined) continue;
    else return null;
    if (found.home === undefined && flag === '--home') return null;
    if (found.file === undefined && (flag === '-f' || flag === '--file')) return null;
  }
  return command ? found : null;
}

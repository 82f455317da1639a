import { ApiClient, ApiError, DaemonNotRunningError, cellHomePaths, resolveCellHome } from '../api/index.js';
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

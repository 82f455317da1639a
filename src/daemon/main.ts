/**
 * Entry point of the background daemon, started by `cell up`:
 *   node dist/daemon/main.js --home <CELL_HOME> [--gateway-port N] [--manifest FILE]
 */
import { resolveCellHome } from '../api/index.js';
import { ManifestParser } from './parse-manifest.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const home = resolveCellHome(arg('--home'));
const gatewayPort = Number(arg('--gateway-port') ?? '0');
const manifestHint = arg('--manifest');

// The manifest parser (a child process) starts before this process loads the daemon's own code:
// it boots and parses on the other core meanwhile, and the fork is cheaper from a smaller process.
const manifests = new ManifestParser();
manifests.begin(manifestHint);

const { runDaemon } = await import('./index.js');
runDaemon({ home, gatewayPort, manifests })
  .then(({ stopped }) => stopped.then(() => process.exit(0)))
  .catch((err) => {
    process.stderr.write(`cell daemon: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });

/**
 * Entry point of the background daemon, started by `cell up`:
 *   node --v8-pool-size=1 dist/daemon/main.js --home <CELL_HOME> [--gateway-port N] [--manifest FILE] [--await-go]
 *
 * With --await-go it loads its code, then waits for one line on stdin, `{"gatewayPort": N,
 * "parsed": {file, text, mesh}}` (api DaemonGo), before it touches CELL_HOME: `cell up` validates
 * the manifest meanwhile and sends that line only if it is good (cli/daemon-control.ts); the
 * daemon's first apply takes that parse while FILE keeps its text. Without a line (stdin closed),
 * the daemon exits. Without --await-go it starts parsing FILE in a parser process at once.
 */
// Every builtin the daemon uses, loaded before the V8 flags below change: node compiles its
// builtins from a code cache that V8 accepts only while the flags are the ones it was built
// with. Any V8 flag on the command line (--max-semi-space-size, --no-opt, …) makes V8 reject that
// cache, and compiling the builtins from source cost the daemon ~40 ms of its boot, on the path
// of every cold start. A builtin missing here still works; it is only compiled without the cache.
import 'node:assert';
import 'node:buffer';
import 'node:child_process';
import 'node:diagnostics_channel';
import 'node:events';
import 'node:fs';
import 'node:fs/promises';
import 'node:http';
import 'node:module';
import 'node:net';
import 'node:os';
import 'node:path';
import 'node:perf_hooks';
import 'node:string_decoder';
import 'node:url';
import 'node:util';
import 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { DAEMON_EXIT_ALREADY_RUNNING, checkCellHome, resolveCellHome, type DaemonGo } from '../api/index.js';
import { ManifestParser } from './parse-manifest.js';

// The daemon makes little garbage and spends its time in syscalls, SQLite and short callbacks:
// - --no-opt: no optimizing compiler (TurboFan). Its code and what it emits cost ~5 MB resident
//   for no CPU measurably saved (100-cell cold start: daemon CPU 0.92-0.94 s with it off,
//   0.96-1.01 s on; idle with 100 HTTP checks a second: 0.75-0.85 % vs 0.65-1.05 % of a core).
// - --semi-space-growth-factor=1: the young generation keeps its initial size instead of growing
//   to 16 MB semi-spaces that would mostly be resident memory for nothing (~3 MB).
// Set here rather than on the command line for the code cache (above). `--v8-pool-size=1` (a
// node option, not a V8 flag) keeps V8 to one worker thread.
setFlagsFromString('--no-opt');
setFlagsFromString('--semi-space-growth-factor=1');

/** The `go` line of `cell up`, or null when stdin closed without one. */
function goAhead(): Promise<DaemonGo | null> {
  return new Promise((resolve) => {
    let text = '';
    const done = (go: DaemonGo | null) => {
      process.stdin.removeAllListeners('data').removeAllListeners('end');
      process.stdin.destroy();
      resolve(go);
    };
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      text += chunk;
      const newline = text.indexOf('\n');
      if (newline < 0) return;
      let go: Partial<DaemonGo> = {};
      try {
        go = JSON.parse(text.slice(0, newline)) as Partial<DaemonGo>;
      } catch {
        // Reported below with what came.
      }
      const port = go?.gatewayPort;
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
        process.stderr.write(`cell daemon: expected {"gatewayPort": N, ...} on stdin, got ${JSON.stringify(text.slice(0, 100))}\n`);
        done(null);
        return;
      }
      const parsed = go.parsed;
      const usable = typeof parsed?.file === 'string' && typeof parsed.text === 'string' && typeof parsed.mesh === 'object' && parsed.mesh !== null;
      done({ gatewayPort: port, parsed: usable ? parsed : undefined });
    });
    process.stdin.on('end', () => done(null));
    process.stdin.on('error', () => done(null));
  });
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const home = resolveCellHome(arg('--home'));
// A home whose socket path is too long: refused before anything is created in it (`cell up`
// checks this before it starts a daemon; this is for a daemon started some other way).
try {
  checkCellHome(home);
} catch (err) {
  process.stderr.write(`cell daemon: ${(err as Error).message}\n`);
  process.exit(2);
}
const gatewayPort = Number(arg('--gateway-port') ?? '0');
const manifestHint = arg('--manifest');

const awaitGo = process.argv.includes('--await-go');
// `cell up` parses the manifest itself and hands it over with its `go`: no parser process then
// (runDaemon takes it). Otherwise the parser (a child process) starts before this process loads
// the daemon's own code: it boots and parses on the other core meanwhile, and the fork is cheaper
// from a smaller process.
let manifests: ManifestParser | undefined;
if (!awaitGo) {
  manifests = new ManifestParser();
  manifests.begin(manifestHint);
}

const { runDaemon, DaemonAlreadyRunningError } = await import('./index.js');
const go = awaitGo ? await goAhead() : { gatewayPort };
// No `go`: `cell up` found the manifest bad (or died).
if (!go) process.exit(0);
runDaemon({ home, gatewayPort: go.gatewayPort, manifestHint, parsed: go.parsed, manifests })
  .then(({ stopped }) => stopped.then(() => process.exit(0)))
  .catch(async (err) => {
    process.stderr.write(`cell daemon: ${await describeFailure(err)}\n`);
    process.exit(err instanceof DaemonAlreadyRunningError ? DAEMON_EXIT_ALREADY_RUNNING : 1);
  });

/** The one line `cell up` shows for a daemon that could not start: what went wrong, and what to do. */
async function describeFailure(err: unknown): Promise<string> {
  const { StoreOpenError } = await import('../store/index.js');
  if (err instanceof StoreOpenError) {
    const file = err.path;
    if (!err.isCorrupt) return `cannot open the state store ${file}: ${err.reason}`;
    // A daemon with a new, empty store finds the processes the old one left running by their
    // CELL_HOME (strays) and kills them at boot (test/e2e/homes.test.ts checks it).
    return (
      `cannot open the state store ${file}: ${err.reason} (corrupt?); move it aside (mv ${file} ${file}.bad) and run the command again: ` +
      'a new store starts empty, and the cells still running are found and killed (cell up then starts them afresh)'
    );
  }
  return err instanceof Error ? err.message : String(err);
}

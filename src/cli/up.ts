import { ApiClient, cellHomePaths, type ApplyResult, type CellView, type InstanceView, type StatusView } from '../api/index.js';
import { CliError, endProgress, progress } from './output.js';

export interface UpOptions {
  home: string;
  /** The manifest, an absolute path. */
  file: string;
  /** Run the daemon in this process (Ctrl-C stops the mesh). */
  foreground: boolean;
  /** Wait until every applied cell is healthy (else return once the manifest is applied). */
  wait: boolean;
  timeoutMs: number;
}

/**
 * `cell up`: starts the daemon if needed, applies the manifest and waits until every cell is
 * healthy. Run by the full CLI and, for a plain command line, by quick.ts without loading it.
 */
export async function runUp(o: UpOptions): Promise<void> {
  const t0 = Date.now();
  const control = await import('./daemon-control.js');
  // A foreground daemon runs in this process: the home is checked before it creates anything
  // there (startDaemon checks it for a background one).
  if (o.foreground) control.requireUsableHome(o.home);
  // A daemon to start boots meanwhile, up to the point where it would touch CELL_HOME.
  const pending = o.foreground ? null : await control.startDaemon(o.home, o.file);
  // Validated here: a bad manifest starts no daemon (the pending one is ended), and the error names the line.
  const { parseManifest, readManifestText } = await import('../manifest/index.js');
  let mesh;
  let text;
  try {
    text = readManifestText(o.file);
    mesh = parseManifest(text, o.file);
  } catch (err) {
    await pending?.abandon();
    throw new CliError((err as Error).message, 2);
  }
  let stopped: Promise<void> | null = null;
  if (o.foreground) {
    const { runDaemon } = await import('../daemon/index.js');
    const running = await runDaemon({ home: o.home, gatewayPort: mesh.gateway.port, foreground: true, manifestHint: o.file, parsed: { file: o.file, text, mesh } });
    stopped = running.stopped;
  } else if (pending) {
    progress(`starting the cell daemon for ${o.home}`);
    await pending.go(mesh.gateway.port, { file: o.file, text, mesh });
  }
  const client = new ApiClient(cellHomePaths(o.home).socket);
  // Builds run inside the apply, before anything starts: say so, they can take long.
  const builds = mesh.cells.filter((c) => c.build).map((c) => c.name);
  progress(`applying ${o.file}${builds.length > 0 ? ` (cells with a build step are built first if their sources changed: ${builds.join(', ')}; output in logs/<cell>.build.log)` : ''}`);
  // Builds and rolling restarts of changed cells run inside the apply: give it time.
  const applied = await client.post<ApplyResult>('/v1/apply', { file: o.file }, { timeoutMs: 600_000 });
  if (o.wait) await waitHealthy(client, applied.cells, o.timeoutMs);
  endProgress();
  const status = await client.get<StatusView>('/v1/status');
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  process.stdout.write(
    `mesh up: ${applied.cells.length} cell${applied.cells.length === 1 ? '' : 's'} ${o.wait ? 'healthy' : 'applied'} in ${seconds}s` +
      (status.daemon.gateway ? `; gateway ${status.daemon.gateway}` : '') +
      '\n' +
      (applied.updated.length > 0 ? `restarted on a new version (manifest or sources changed): ${applied.updated.join(', ')}\n` : ''),
  );
  for (const note of applied.notes ?? []) process.stderr.write(`cell: note: ${note}\n`);
  if (stopped) {
    process.stdout.write('running in the foreground; Ctrl-C stops the mesh\n');
    await stopped;
    process.exit(0);
  }
}

/**
 * Waits until every cell of `cells` has all its instances ready (or, a one-shot job, its run
 * completed; those are returned), with a progress line; throws a
 * `CliError` naming the cells that are not once one has failed, or at the timeout.
 */
export async function waitHealthy(client: ApiClient, cells: string[], timeoutMs: number): Promise<{ completed: string[] }> {
  const deadline = Date.now() + timeoutMs;
  const wanted = new Set(cells);
  for (;;) {
    const asked = Date.now();
    // The daemon answers as soon as the mesh settles, else after half a second (for the progress line).
    const status = await client.get<StatusView>('/v1/status?wait_settled=500');
    const app = status.cells.filter((c) => wanted.has(c.name));
    // Another apply meanwhile (a second `cell up` with another manifest): what it left out is
    // not coming, whatever this command waits.
    const removed = [...wanted].filter((name) => !app.some((c) => c.name === name && !c.orphan));
    if (removed.length > 0) {
      endProgress();
      throw new CliError(`no longer in the mesh: ${removed.join(', ')} (a later \`cell up\` applied a manifest without ${removed.length === 1 ? 'it' : 'them'}; \`cell prune\` stops what still runs)`);
    }
    // A job some cell waits to see complete is done once it has, not while it runs.
    // Ready but failing its check (a check an apply changed, say) is not healthy: wait for it to
    // pass again, or to be restarted.
    // A cell scaled to 0 (before or during this command) has nothing to wait for.
    const notReady = app.filter((c) => c.instances > 0 && !c.completed && (c.runs_to_completion || !(c.state === 'ready' && c.ready >= c.instances && !c.failing)));
    // Done: which of them are one-shot jobs whose run completed (not "healthy": they run no more).
    if (notReady.length === 0) return { completed: app.filter((c) => c.completed).map((c) => c.name) };
    const failed = notReady.filter((c) => c.state === 'failed');
    const stateOf = (c: CellView) => (c.failing ? `${c.state}, ${c.failing} failing ${c.failing === 1 ? 'its' : 'their'} check` : c.state);
    const describe = (c: CellView) => `${c.name} (${stateOf(c)}${c.reason ? `: ${c.reason}` : ''})`;
    if (failed.length > 0) {
      endProgress();
      // Giving up before the timeout: the cells still on their way are not healthy either.
      const pending = notReady.filter((c) => c.state !== 'failed');
      throw new CliError(
        `cells failed: ${failed.map((c) => `${c.name} (${c.reason ?? 'failed'})`).join('; ')}` +
          (pending.length > 0 ? `; not healthy yet: ${pending.map(describe).join('; ')}` : '') +
          '; see `cell logs <cell>`',
      );
    }
    const summary = notReady.slice(0, 4).map((c) => `${c.name} ${stateOf(c)}${c.reason && c.state !== 'launching' ? ` (${c.reason})` : ''}`);
    progress(`waiting: ${app.length - notReady.length}/${app.length} cells healthy; ${summary.join(', ')}${notReady.length > 4 ? ', ...' : ''}`);
    if (Date.now() >= deadline) {
      endProgress();
      throw new CliError(`not healthy after ${Math.round(timeoutMs / 1000)}s: ${notReady.map(describe).join('; ')}`);
    }
    // Settled on something this command does not wait for (a cell it did not apply failed):
    // the daemon answers at once then, so pace the loop.
    const elapsed = Date.now() - asked;
    if (elapsed < 100) await new Promise((r) => setTimeout(r, 100 - elapsed));
  }
}

/**
 * Waits until no instance of `cell` from index `count` up is running (a scale-down's extras
 * drain, then stop), with a progress line. Throws a `CliError` naming those still running at
 * the timeout.
 */
export async function waitScaledDown(client: ApiClient, cell: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const extras = (await client.get<InstanceView[]>('/v1/ps')).filter((r) => r.cell === cell && r.instance >= count);
    const running = extras.filter((r) => r.state !== 'stopped' && r.state !== 'failed' && r.pid !== null);
    if (running.length === 0) return;
    const names = running.map((r) => `${cell}.${r.instance} (${r.state}, pid ${r.pid})`);
    progress(`waiting for ${running.length} instance${running.length === 1 ? '' : 's'} of ${cell} to stop: ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}`);
    if (Date.now() >= deadline) {
      endProgress();
      throw new CliError(`still running after ${Math.round(timeoutMs / 1000)}s: ${names.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

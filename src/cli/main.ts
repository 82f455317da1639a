import { Command, Option } from 'commander';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ApiClient, CellHomeError, DaemonNotRunningError, cellHomePaths, checkCellHome, instanceLogFilesOnDisk, packageVersion, readLastLines, resolveCellHome } from '../api/index.js';
import type { DiscoverView, EventView, HealthView, InstanceView, NucleusView, PruneResult, StatusView } from '../api/index.js';
import { renderTable, fitTerminal, formatAge, formatBytes, printable } from './table.js';
import { UP_TIMEOUT, timeoutMs } from './duration.js';
import { CliError, endProgress, progress, progressIfSlow, reportError } from './output.js';
import { runUp, waitHealthy, waitScaledDown } from './up.js';
import { STATE_MARK, printJson, runPs, runStatus } from './read-commands.js';

interface GlobalOptions {
  file?: string;
  home?: string;
}

const program = new Command();
program
  .name('cell')
  .description('Run a mesh of services (cells): dependency-ordered start, health checks, restarts, graceful stop.')
  .version(packageVersion(), '-V, --version', 'print the version of cell')
  .option('-f, --file <path>', 'manifest file (default ./cell.yaml)')
  .option('--home <dir>', 'state directory (default $CELL_HOME or ~/.cell)')
  // A usage error is one line and exit 2, like every other bad input the CLI reports; commander
  // would print two or three lines (error, "Did you mean", the help hint) and exit 1.
  .configureOutput({ outputError: (text, write) => write(`cell: ${oneLineUsageError(text)}\n`) })
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

// An empty cell name is an unset variable (`cell restart "$CELL"`): never "every cell".
program.hook('preAction', (_program, command) => {
  if (command.registeredArguments[0]?.name() === 'cell' && command.args[0] === '') throw new CliError('the cell name is empty (an unset variable?)', 2);
});

function oneLineUsageError(text: string): string {
  const lines = text.trim().replace(/^error: /, '').split('\n').map((l) => l.trim()).filter(Boolean);
  const meant = lines.find((l) => l.startsWith('(Did you mean'));
  // Commander's own sentences end in a period: not before our "; see".
  const message = lines.filter((l) => l !== meant).join(' ').replace(/\.$/, '');
  return `${message}${meant ? ` (did you mean ${meant.slice('(Did you mean '.length)}` : ''}; see \`cell --help\``;
}

function globals(): GlobalOptions {
  return program.opts<GlobalOptions>();
}

function home(): string {
  return resolveCellHome(globals().home);
}

function api(): ApiClient {
  return new ApiClient(cellHomePaths(home()).socket);
}

function manifestPath(): string {
  return resolve(globals().file ?? 'cell.yaml');
}


function parsePositiveInt(name: string) {
  return (value: string): number => {
    // Digits only: Number('') is 0 (an unset $N scaled a cell to nothing), and 1e1 or 0x2 are no counts.
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new CliError(`${name} must be a non-negative integer, got "${value}"`, 2);
    return n;
  };
}

/** How long `top --once` measures CPU over. */
const TOP_ONCE_WINDOW_MS = 300;

/** One instance in `cell top`; also what `top --json` prints. */
interface TopRow {
  cell: string;
  instance: number;
  pid: number | null;
  state: string;
  health: string;
  /** Share of one core since the previous sample; null on the first sample or without a process. */
  cpu_percent: number | null;
  rss_bytes: number | null;
  restarts: number;
  started_at: string | null;
}

/** `top --interval`: a duration, or a bare number of milliseconds; 100 ms at least (`1` meant a snapshot every millisecond). */
function parseRefreshInterval(value: string): number {
  const ms = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : timeoutMs(value);
  if (ms === null) throw new CliError(`--interval must be a duration like 500ms or 2s, got "${value}"`, 2);
  if (ms < MIN_REFRESH_MS) throw new CliError(`--interval must be at least ${MIN_REFRESH_MS}ms, got "${value}" (a bare number is milliseconds)`, 2);
  return ms;
}

const MIN_REFRESH_MS = 100;

function parseDurationMs(value: string): number {
  const ms = timeoutMs(value);
  if (ms === null) throw new CliError(`--timeout must be a duration like 30s or 2m, got "${value}"`, 2);
  return ms;
}

// ------------------------------------------------------------------ lifecycle

program
  .command('init')
  .description('write a commented starter cell.yaml in this folder')
  .option('--force', 'overwrite an existing file')
  .action(async (opts: { force?: boolean }) => {
    const file = manifestPath();
    if (existsSync(file) && statSync(file).isDirectory()) throw new CliError(`${file} is a directory: init writes a file there (use -f to name another)`, 2);
    if (existsSync(file) && !opts.force) throw new CliError(`${file} already exists (use --force to overwrite)`, 2);
    const { STARTER_MANIFEST } = await import('./starter.js');
    writeFileSync(file, STARTER_MANIFEST);
    process.stdout.write(`wrote ${file}; start it with \`cell up\`\n`);
  });

program
  .command('up')
  .description('start the daemon if needed, apply the manifest, and wait until every cell is healthy')
  .option('--foreground', 'run the daemon in this process (Ctrl-C stops the mesh)')
  .option('--timeout <duration>', 'how long to wait for every cell to be healthy', UP_TIMEOUT)
  .option('--no-wait', 'return once the manifest is applied')
  .action(async (opts: { foreground?: boolean; timeout: string; wait: boolean }) => {
    await runUp({ home: home(), file: manifestPath(), foreground: opts.foreground === true, wait: opts.wait, timeoutMs: parseDurationMs(opts.timeout) });
  });

program
  .command('down')
  .description('stop every cell (dependents first, kernel last) and the daemon')
  .option('--json', 'print JSON: {stopped: [cells], sequence: [{cell, instance, to, at}], warnings: [text]}')
  .action(async (opts: { json?: boolean }) => {
    // No daemon can run for a home too long for its socket: say that, before "stopping".
    checkCellHome(home());
    const client = api();
    const down = () => client.post<{ stopped: string[]; sequence: unknown[]; pid: number; warnings?: string[] }>('/v1/down', {}, { timeoutMs: 600_000 });
    // Not said when no daemon listens: "stopping" and then "already down" read as a contradiction.
    if (existsSync(cellHomePaths(home()).socket)) progress('stopping the mesh (dependents first)');
    let result: Awaited<ReturnType<typeof down>>;
    try {
      result = await down();
    } catch (err) {
      endProgress();
      if (!(err instanceof DaemonNotRunningError)) throw err;
      // The daemon is gone, but a daemon's death leaves its cells running (on purpose): a new
      // one readopts them, then stops them like any `down`.
      const { instancesLeftRunning, takeOverDaemon } = await import('./daemon-control.js');
      const left = instancesLeftRunning(home());
      if (left.length === 0) {
        if (opts.json) printJson({ stopped: [], sequence: [] });
        else process.stdout.write('mesh already down (no daemon running)\n');
        return;
      }
      progress(`no daemon runs, but ${left.length} process${left.length === 1 ? '' : 'es'} of its mesh may: starting one to take them over and stop them`);
      await takeOverDaemon(home(), manifestPath());
      progress('stopping the mesh (dependents first)');
      result = await down();
    }
    // The daemon exits right after answering: `down` is done once it is gone (its socket goes
    // first, so waiting for that alone let a check right after see the daemon still there).
    for (let i = 0; i < 250 && isRunning(result.pid); i++) await new Promise((r) => setTimeout(r, 20));
    endProgress();
    if (opts.json) printJson({ stopped: result.stopped, sequence: result.sequence, warnings: result.warnings ?? [] });
    else process.stdout.write(`mesh down: stopped ${result.stopped.length} cell${result.stopped.length === 1 ? '' : 's'} and the daemon\n`);
    // Every process is stopped, but the state on disk may not say so (a full disk).
    for (const warning of result.warnings ?? []) process.stderr.write(`cell: warning: ${printable(warning)}\n`);
  });

/** Whether process `pid` still runs (a zombie has ended; its parent has yet to reap it). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat[stat.lastIndexOf(')') + 2]);
  } catch {
    return false;
  }
}

program
  .command('restart [cell]')
  .description('restart one cell, or every cell in dependency order (state and counters are kept), and wait until they are healthy')
  .option('--timeout <duration>', 'how long to wait for the restarted cells to be healthy', UP_TIMEOUT)
  .option('--no-wait', 'return once they are restarting')
  .action(async (cell: string | undefined, opts: { timeout: string; wait: boolean }) => {
    const timeoutMs = parseDurationMs(opts.timeout);
    const client = api();
    // Stopping takes up to each cell's stop timeout and kill_after: say what is going on.
    const result = await progressIfSlow(
      cell ? `restarting ${cell} (building first if its sources changed)` : 'restarting every cell (building first where the sources changed; stopping dependents first)',
      client.post<{ restarted: string[]; awaited: string[] }>('/v1/restart', { ...(cell ? { cell } : {}), wait: opts.wait }, { timeoutMs: 600_000 }),
    );
    const done = opts.wait ? (await waitHealthy(client, result.awaited, timeoutMs)).completed : [];
    endProgress();
    const healthy = result.awaited.filter((c) => !done.includes(c));
    const outcome = [healthy.length > 0 ? `healthy: ${healthy.join(', ')}` : '', done.length > 0 ? `completed: ${done.join(', ')}` : ''].filter(Boolean).join('; ');
    // Without the wait the new processes may not have started yet: say what was set going.
    process.stdout.write(`${opts.wait ? 'restarted' : 'restarting'}: ${result.restarted.join(', ') || 'nothing'}${opts.wait && outcome ? ` (${outcome})` : ''}\n`);
  });

program
  .command('scale <cell> <instances>')
  .description('set the number of instances of a cell, and wait until they are all healthy (scaling down: until the extra ones have drained and stopped)')
  .option('--timeout <duration>', 'how long to wait for the instances to be healthy or stopped', UP_TIMEOUT)
  .option('--no-wait', 'return once the new count is set')
  .action(async (cell: string, instances: string, opts: { timeout: string; wait: boolean }) => {
    const n = parsePositiveInt('instances')(instances);
    const timeoutMs = parseDurationMs(opts.timeout);
    const client = api();
    await client.post('/v1/scale', { cell, instances: n });
    if (opts.wait && n > 0) await waitHealthy(client, [cell], timeoutMs);
    // A scale-down is done when its extra instances have drained and stopped (their ports free).
    if (opts.wait) await waitScaledDown(client, cell, n, timeoutMs);
    endProgress();
    // A `cell up` or another scale meanwhile wins (the last change does); this one must not then
    // claim its count.
    const now = (await client.get<StatusView>('/v1/status')).cells.find((c) => c.name === cell);
    if (now && now.instances !== n) {
      throw new CliError(`the scale of ${cell} to ${n} was replaced by a later change: it now has ${now.instances} instance${now.instances === 1 ? '' : 's'}`);
    }
    process.stdout.write(`${cell} scaled to ${n} instance${n === 1 ? '' : 's'}${opts.wait && n > 0 ? ', all healthy' : ''}\n`);
  });

program
  .command('prune')
  .description('stop instances of cells that are no longer in the manifest')
  .option('--dry-run', 'only show what would be stopped')
  .option('--json', 'print JSON')
  .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
    const request = api().post<PruneResult>('/v1/prune', { dry_run: opts.dryRun === true }, { timeoutMs: 600_000 });
    const result = opts.dryRun || opts.json ? await request : await progressIfSlow('stopping the instances of cells no longer in the manifest (dependents first)', request);
    endProgress();
    if (opts.json) return printJson(result);
    if (result.instances.length === 0) return void process.stdout.write('nothing to prune\n');
    // An instance with no process has nothing to stop: it is only forgotten.
    const verb = (running: boolean) => (result.dry_run ? (running ? 'would stop' : 'would forget') : running ? 'stopped' : 'forgot');
    for (const i of result.instances) process.stdout.write(`${verb(i.pid !== null)} ${i.cell}.${i.instance}${i.pid ? ` (pid ${i.pid})` : ''}\n`);
  });

// ------------------------------------------------------------------ reading


program
  .command('status')
  .description('show every cell: state, instances, pids, version and whether it is outdated')
  .option('-v, --verbose', 'show each instance and the reason for its state')
  .option('--json', 'print JSON: {daemon: {pid, version, uptime}, cells: [...]}')
  .action((opts: { verbose?: boolean; json?: boolean }) => runStatus(api(), opts));

program
  .command('ps')
  .description('list every instance: pid, port, state, health, restarts')
  .option('--json', 'print JSON: [{cell, instance, pid, port, state, health, restarts, version, started_at}]')
  .action((opts: { json?: boolean }) => runPs(api(), opts));

program
  .command('health [cell]')
  .description('show the last health check of every instance (or of one cell, or one instance: <cell>.<i>); exits 1 when one is failing, failed or waiting to restart')
  .option('--json', 'print JSON')
  .action(async (target: string | undefined, opts: { json?: boolean }) => {
    // `api.1` is instance 1 of api, as for `cell logs` (a cell name has no dots).
    const instanceOf = target ? /^(.+)\.(\d+)$/.exec(target) : null;
    const cell = instanceOf ? instanceOf[1] : target;
    let list = await api().get<HealthView[]>(`/v1/health${cell ? `?cell=${encodeURIComponent(cell)}` : ''}`);
    if (instanceOf) {
      const index = Number(instanceOf[2]);
      const known = list.map((h) => h.instance);
      list = list.filter((h) => h.instance === index);
      if (list.length === 0) throw new CliError(`cell "${cell}" has no instance ${index} (instances: ${known.map((i) => `${cell}.${i}`).join(', ') || 'none'})`, 2);
    }
    // Exit 1 when something is unhealthy, with --json too (a script checks one or the other):
    // a failing check, a crash loop given up, or an instance down waiting out its restart backoff.
    if (list.some((h) => h.health === 'failing' || h.state === 'failed' || h.state === 'backoff')) process.exitCode = 1;
    if (opts.json) return printJson(list);
    const rows = list.map((h) => [`${h.cell}.${h.instance}`, h.state, h.health, h.check, h.level, h.checked_at ? formatAge(h.checked_at) + ' ago' : '-', h.detail ?? '']);
    process.stdout.write(renderTable(['INSTANCE', 'STATE', 'HEALTH', 'CHECK', 'REACHED', 'CHECKED', 'DETAIL'], rows) + '\n');
  });

program
  .command('events [cell]')
  .description('show the recorded state transitions (oldest first)')
  .option('--json', 'print JSON')
  .action(async (cell: string | undefined, opts: { json?: boolean }) => {
    const list = await api().get<EventView[]>(`/v1/events${cell ? `?cell=${encodeURIComponent(cell)}` : ''}`);
    if (opts.json) return printJson(list);
    for (const e of list) process.stdout.write(`${e.at}  ${e.cell}.${e.instance}  ${e.from ?? '-'} -> ${e.to}${e.pid ? `  pid ${e.pid}` : ''}${e.reason ? `  ${printable(e.reason)}` : ''}\n`);
  });

program
  .command('logs <cell>')
  .description("print a cell's logs (every instance, prefixed when more than one; <cell>.<i> for one instance)")
  .option('-n, --lines <n>', 'lines from the end of each instance log (rotated files included)', '50')
  .option('--follow', 'keep printing new lines')
  .option('--json', 'print JSON: [{cell, instance, line}]; with --follow one such object a line (NDJSON)')
  .action(async (target: string, opts: { lines: string; follow?: boolean; json?: boolean }) => {
    const n = parsePositiveInt('-n')(opts.lines);
    // `chat.1` is instance 1 of chat: a cell name has no dots (CELL_NAME_PATTERN in manifest/schema.ts).
    const instanceOf = /^(.+)\.(\d+)$/.exec(target);
    const cell = instanceOf ? instanceOf[1] : target;
    const abort = new AbortController();
    process.on('SIGINT', () => abort.abort());
    const path = `/v1/logs?cell=${encodeURIComponent(cell)}${instanceOf ? `&instance=${Number(instanceOf[2])}` : ''}&n=${n}${opts.follow ? '&follow=1' : ''}${opts.json ? '&format=json' : ''}`;
    try {
      // The daemon sends NDJSON for --json: passed through as it comes when following, else one array.
      if (!opts.json || opts.follow) return await api().stream(path, (text) => process.stdout.write(text), abort.signal);
      let text = '';
      await api().stream(path, (chunk) => (text += chunk), abort.signal);
      printJson(text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as unknown));
    } catch (err) {
      // No daemon (the mesh is down, or its daemon died): the logs are on disk still, and that is
      // when they are wanted most.
      if (!(err instanceof DaemonNotRunningError) || opts.follow) throw err;
      printLogsFromDisk(cell, instanceOf ? Number(instanceOf[2]) : undefined, n, opts.json === true);
    }
  });

/** `cell logs` without a daemon: the last `n` lines of each `logs/<cell>.<i>.log` of the home, as the daemon prints them. */
function printLogsFromDisk(cell: string, instance: number | undefined, n: number, json: boolean): void {
  const paths = cellHomePaths(home());
  const dir = paths.logs;
  const files = instanceLogFilesOnDisk(paths, cell).filter((f) => instance === undefined || f.instance === instance);
  const what = instance === undefined ? cell : `${cell}.${instance}`;
  if (files.length === 0) throw new CliError(`no logs of ${what} in ${dir}, and the cell daemon is not running; start it with \`cell up\``, 3);
  process.stderr.write(`cell: the daemon is not running: the logs of ${what} as they are on disk (${dir})\n`);
  const lines: { cell: string; instance: number; line: string }[] = [];
  for (const f of files) {
    for (const line of readLastLines(f.file, n)) {
      if (json) lines.push({ cell, instance: f.instance, line });
      else process.stdout.write(`${files.length > 1 ? `[${cell}.${f.instance}] ` : ''}${line}\n`);
    }
  }
  if (json) printJson(lines);
}

program
  .command('graph')
  .description('show the dependency graph')
  .addOption(new Option('--format <format>', 'text, dot or mermaid').choices(['text', 'dot', 'mermaid']).default('text'))
  .option('--json', 'print JSON: {format, graph (the rendering), nodes: [{cell, instances}], edges: [{from, to, condition}]} (from depends on to)')
  .action(async (opts: { format: string; json?: boolean }) => {
    const result = await api().get<{ format: string; graph: string }>(`/v1/graph?format=${opts.format}`);
    if (opts.json) return printJson(result);
    process.stdout.write(result.graph.endsWith('\n') ? result.graph : result.graph + '\n');
  });

program
  .command('nucleus')
  .description('show the registry (the Nucleus): every instance, its endpoint, version, lease and health')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const view = await api().get<NucleusView>('/v1/nucleus');
    if (opts.json) return printJson(view);
    const rows: (string | number)[][] = [];
    for (const c of view.cells) {
      const tag = c.lazy && !c.activated ? ' (lazy, not started)' : '';
      rows.push([c.cell + tag, `${c.healthy}/${c.instances} healthy`, `${c.registered} registered`, '', '', '']);
      for (const i of c.instance_list) {
        rows.push([`  ${c.cell}.${i.instance}`, i.state, i.registered ? 'registered' : '-', i.endpoint ?? '-', i.version.slice(0, 12), i.last_heartbeat ? `${formatAge(i.last_heartbeat)} ago` : '-']);
      }
    }
    process.stdout.write(renderTable(['CELL', 'HEALTH', 'REGISTRATION', 'ENDPOINT', 'VERSION', 'HEARTBEAT'], rows) + '\n');
  });

program
  .command('discover <cell>')
  .description('resolve a cell name the way a client does, and show each step of the resolution')
  .option('--no-spawn', 'do not start the cell if nothing else resolves it')
  .option('--timeout <duration>', 'how long a spawn may take', '30s')
  .option('--json', 'print JSON')
  .action(async (cell: string, opts: { spawn: boolean; timeout: string; json?: boolean }) => {
    const timeoutMs = parseDurationMs(opts.timeout);
    const view = await api().post<DiscoverView>('/v1/discover', { cell, spawn: opts.spawn, timeout_ms: timeoutMs }, { timeoutMs: timeoutMs + 5000 });
    if (opts.json) return printJson(view);
    view.steps.forEach((s, i) => process.stdout.write(`${i + 1}. ${s.step.padEnd(16)} ${s.found > 0 ? '✓' : '✗'} ${s.detail}\n`));
    process.stdout.write(`${cell}: ${view.resolved_by === 'unresolved' ? 'unresolved' : `resolved by ${view.resolved_by}`}\n`);
    for (const e of view.endpoints) process.stdout.write(`  ${cell}.${e.instance}  ${e.socket ?? e.url}  ${e.version.slice(0, 12)}\n`);
    if (view.resolved_by === 'unresolved') process.exitCode = 1;
  });

program
  .command('top')
  .description('live view of every instance: state, CPU, memory, restarts (q or Ctrl-C quits); plain snapshots when stdout is not a terminal')
  .option('--interval <duration>', 'refresh interval: 500ms, 2s (a bare number is milliseconds; at least 100ms)', '1s')
  .option('--once', 'print one snapshot and exit')
  .option('--json', 'print one snapshot as JSON and exit: [{cell, instance, pid, state, health, cpu_percent, rss_bytes, restarts, started_at}]')
  .action(async (opts: { interval: string; once?: boolean; json?: boolean }) => {
    const interval = parseRefreshInterval(opts.interval);
    const client = api();
    let previous = new Map<string, { cpuMs: number; at: number }>();
    const sample = async (): Promise<{ at: number; rows: TopRow[] }> => {
      const list = await client.get<(InstanceView & { cpu_ms: number | null; rss_bytes: number | null })[]>('/v1/ps?usage=1');
      const now = Date.now();
      const next = new Map<string, { cpuMs: number; at: number }>();
      const rows = list.map((i): TopRow => {
        const key = `${i.cell}.${i.instance}`;
        let cpu: number | null = null;
        if (i.cpu_ms !== null) {
          next.set(key, { cpuMs: i.cpu_ms, at: now });
          const prev = previous.get(key);
          if (prev && now > prev.at) cpu = Math.round(((i.cpu_ms - prev.cpuMs) / (now - prev.at)) * 1000) / 10;
        }
        return { cell: i.cell, instance: i.instance, pid: i.pid, state: i.state, health: i.health, cpu_percent: cpu, rss_bytes: i.rss_bytes, restarts: i.restarts, started_at: i.started_at };
      });
      previous = next;
      return { at: now, rows };
    };
    const render = ({ at, rows }: { at: number; rows: TopRow[] }, hint: string): string => {
      const table = rows.map((r) => [
        `${r.cell}.${r.instance}`,
        r.pid ?? '-',
        `${STATE_MARK[r.state] ?? ' '} ${r.state}`,
        r.health,
        r.cpu_percent === null ? '-' : `${r.cpu_percent.toFixed(1)}%`,
        r.rss_bytes === null ? '-' : formatBytes(r.rss_bytes),
        r.restarts,
        formatAge(r.started_at, at),
      ]);
      return `cell top — ${new Date(at).toLocaleTimeString()} — ${rows.length} instances${hint}\n\n` + renderTable(['INSTANCE', 'PID', 'STATE', 'HEALTH', 'CPU', 'MEM', 'RESTARTS', 'UPTIME'], table) + '\n';
    };
    if (opts.once || opts.json) {
      // CPU is a rate: a single sample has none, so measure over a short window.
      await sample();
      await new Promise((r) => setTimeout(r, TOP_ONCE_WINDOW_MS));
      const snapshot = await sample();
      return opts.json ? printJson(snapshot.rows) : void process.stdout.write(render(snapshot, ''));
    }
    const out = process.stdout;
    // Not a terminal (a pipe, a file) or one without cursor control (TERM=dumb): snapshots one
    // after another, like `top -b`, no escapes.
    const isTerminal = out.isTTY === true && process.env.TERM !== 'dumb';
    const readsKeys = isTerminal && process.stdin.isTTY === true;
    if (isTerminal) out.write('\x1b[?25l');
    let running = true;
    const quit = () => {
      running = false;
      if (isTerminal) out.write('\x1b[?25h\n');
      process.exit(0);
    };
    process.on('SIGINT', quit);
    process.on('SIGTERM', quit);
    if (readsKeys) {
      process.stdin.setRawMode(true);
      process.stdin.on('data', (d) => (d.toString() === 'q' || d[0] === 3 ? quit() : undefined));
    }
    let first = true;
    while (running) {
      const text = await sample()
        .then((s) => render(s, readsKeys ? ' (q quits)' : ''))
        .catch((err: Error) => {
          // No daemon (none started, or it went away, or none can run for this home): nothing
          // to watch, as `top --once` says.
          if (!(err instanceof DaemonNotRunningError || err instanceof CellHomeError)) return `cell top: ${err.message}\n`;
          if (isTerminal) out.write('\x1b[?25h\n');
          return reportError(err);
        });
      out.write(isTerminal ? `\x1b[H\x1b[2J${fitTerminal(text, out.columns, out.rows)}` : `${first ? '' : '\n'}${text}`);
      first = false;
      await new Promise((r) => setTimeout(r, interval));
    }
  });

// ------------------------------------------------------------------ run

program.parseAsync(process.argv).catch(reportError);

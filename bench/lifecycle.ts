/**
 * Lifecycle benchmark: cell against PM2 on the same work, in one run.
 *
 *   npm run bench                                  # 100 cells, both tools
 *   node --import tsx bench/lifecycle.ts --cells 20 --only cell
 *
 * For each tool, one after the other (never both loaded at once), on a fresh temp state dir:
 *   1. cold start: from invoking the start command (daemon not running) until every port answers 200;
 *   2. idle daemon cost: RSS and CPU of the daemon over a 10 s window with every cell up;
 *   3. `cell status` / `pm2 ls` wall time, median of 10 runs;
 *   4. crash recovery: kill -9 one cell's process, time until its port answers 200 from a new pid
 *      (10 different cells, median).
 * Prints a table with the ratios cell/PM2 and the targets, and writes bench/results/lifecycle-<date>.json.
 * See bench/README.md for what is measured and how fair it is.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, machineBusyPercent, median, now, numberArg, round, sleep, waitQuiet } from './common.js';

// ------------------------------------------------------------------ options

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const FIXTURE = join(BENCH_DIR, 'fixtures', 'small-http.mjs');
const CELL_BIN = join(ROOT, 'bin', 'cell.js');
const PM2_BIN = join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');

interface Options {
  cells: number;
  crashes: number;
  idleSeconds: number;
  settleSeconds: number;
  statusRuns: number;
  pollMs: number;
  pollBudget: number;
  only: 'cell' | 'pm2' | null;
  keep: boolean;
  keepEnv: boolean;
  noBare: boolean;
  budgetSeconds: number;
  /** Cold starts per tool (the figure is their median), interleaved between the tools. */
  startRounds: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    cells: 100,
    crashes: 10,
    idleSeconds: 20,
    settleSeconds: 15,
    statusRuns: 10,
    pollMs: 10,
    pollBudget: 1500,
    only: null,
    keep: false,
    keepEnv: false,
    noBare: false,
    budgetSeconds: 600,
    startRounds: 5,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--cells': o.cells = Math.floor(numberArg(a, next(), 1)); break;
      case '--crashes': o.crashes = Math.floor(numberArg(a, next(), 1)); break;
      case '--idle-seconds': o.idleSeconds = numberArg(a, next(), 1); break;
      case '--settle-seconds': o.settleSeconds = numberArg(a, next(), 0); break;
      case '--status-runs': o.statusRuns = Math.floor(numberArg(a, next(), 1)); break;
      case '--poll-ms': o.pollMs = numberArg(a, next(), 1); break;
      case '--poll-budget': o.pollBudget = numberArg(a, next(), 100); break;
      case '--budget-seconds': o.budgetSeconds = numberArg(a, next(), 30); break;
      case '--start-rounds': o.startRounds = Math.floor(numberArg(a, next(), 1)); break;
      case '--only': {
        const v = next();
        if (v !== 'cell' && v !== 'pm2') throw new Error(`--only takes cell or pm2, got ${JSON.stringify(v)}`);
        o.only = v;
        break;
      }
      case '--keep': o.keep = true; break;
      case '--keep-env': o.keepEnv = true; break;
      case '--no-bare': o.noBare = true; break;
      case '-h':
      case '--help':
        process.stdout.write(
          'usage: node --import tsx bench/lifecycle.ts [--cells 100] [--crashes 10] [--idle-seconds 20] [--settle-seconds 15]\n' +
            '         [--status-runs 10] [--poll-ms 10] [--poll-budget 1500] [--only cell|pm2] [--no-bare] [--keep] [--keep-env]\n' +
            '         [--start-rounds 5] [--budget-seconds 600]\n',
        );
        process.exit(0);
      default:
        throw new Error(`unknown argument ${a} (see --help)`);
    }
  }
  return o;
}

// ------------------------------------------------------------------ small helpers


function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(message)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}



class BenchAborted extends Error {
  override name = 'BenchAborted';
}

/** Set by the watchdog or a signal; long loops check it and give up. */
let aborted: string | null = null;
function checkAborted(): void {
  if (aborted) throw new BenchAborted(aborted);
}

// ------------------------------------------------------------------ /proc

let clkTck = 100;
try {
  const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  if (Number.isInteger(n) && n > 0) clkTck = n;
} catch {
  // 100 on every common Linux.
}

interface ProcStat {
  cpuTicks: number;
  startTicks: number;
  state: string;
}

function procStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3; field N is rest[N - 3].
    return { state: rest[0], cpuTicks: Number(rest[11]) + Number(rest[12]), startTicks: Number(rest[19]) };
  } catch {
    return null;
  }
}

function rssBytes(pid: number): number | null {
  return memory(pid)?.rss ?? null;
}

/** VmRSS and its split: anonymous (heap, stacks) and file-backed (mostly the node binary's pages). */
function memory(pid: number): { rss: number; anon: number; file: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    return Number.isNaN(rss) ? null : { rss, anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
  } catch {
    return null;
  }
}


function alive(pid: number, startTicks?: number): boolean {
  const s = procStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X' && (startTicks === undefined || s.startTicks === startTicks);
}

/** Pids this run started, with their start time, so a recycled pid is never killed. */
const tracked = new Map<number, number>();
function track(pid: number | null | undefined): void {
  if (!pid || tracked.has(pid)) return;
  const s = procStat(pid);
  if (s) tracked.set(pid, s.startTicks);
}

/** Processes whose environment holds `NAME=value` exactly (our unique temp dirs): only ours. */
function processesWithEnv(name: string, value: string): number[] {
  const needle = Buffer.from(`${name}=${value}\0`);
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${pid}/environ`);
      if (env.indexOf(needle) === 0 || env.indexOf(Buffer.concat([Buffer.from([0]), needle])) >= 0) pids.push(pid);
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

function killPid(pid: number, startTicks?: number): boolean {
  if (!alive(pid, startTicks)) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ child processes

interface RunResult {
  code: number | null;
  ms: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], o: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const t0 = now();
    const child = spawn(cmd, args, { env: o.env, cwd: o.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('error', (e) => err.push(Buffer.from(String(e))));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, ms: now() - t0, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

function runOk(cmd: string, args: string[], o: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number }): Promise<RunResult> {
  return run(cmd, args, o).then((r) => {
    if (r.code !== 0) throw new Error(`${[cmd, ...args].join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
    return r;
  });
}

// ------------------------------------------------------------------ probing ports

/**
 * One readiness check of a port: a TCP connect first (a refusal is cheap: this is what almost every
 * attempt during a start is), then a real HTTP GET on a fresh connection. Returns the body of a 200
 * (the fixture's pid) or null.
 */
function checkPort(port: number, timeoutMs = 250): Promise<string | null> {
  return new Promise((resolveCheck) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (v: string | null) => {
      sock.destroy();
      resolveCheck(v);
    };
    sock.setTimeout(timeoutMs, () => done(null));
    sock.once('error', () => done(null));
    sock.once('connect', () => {
      sock.destroy();
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolveCheck(res.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : null));
        res.on('error', () => resolveCheck(null));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolveCheck(null));
    });
  });
}

/**
 * Polls ports until each answers 200 (and `accept(body)`). Each pending port is tried every
 * `pollMs`, stretched so that all pending ports together stay under `budget` attempts a second
 * (polling 100 closed ports every 10 ms would itself eat a core of this 2-core box during the very
 * start being measured). The tail, when few ports are pending, is polled at the full `pollMs`.
 * Ports can be added while it runs (cell hands them out as it starts instances).
 */
class PortWatcher {
  private readonly pending = new Set<number>();
  readonly answeredAt = new Map<number, { at: number; body: string }>();
  private loops: Promise<void>[] = [];
  private stopped = false;

  constructor(
    private readonly pollMs: number,
    private readonly budget: number,
    private readonly accept: (port: number, body: string) => boolean = () => true,
  ) {}

  add(port: number): void {
    if (this.pending.has(port) || this.answeredAt.has(port)) return;
    this.pending.add(port);
    this.loops.push(this.loop(port));
  }

  private period(): number {
    return Math.max(this.pollMs, (this.pending.size * 1000) / this.budget);
  }

  private async loop(port: number): Promise<void> {
    // Spread the first attempts so the ports are not all tried in the same tick.
    await sleep(Math.random() * this.period());
    while (!this.stopped) {
      const started = now();
      const body = await checkPort(port);
      if (body !== null && this.accept(port, body)) {
        this.answeredAt.set(port, { at: now(), body });
        this.pending.delete(port);
        return;
      }
      const wait = this.period() - (now() - started);
      if (wait > 0) await sleep(wait);
    }
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  stop(): Promise<void> {
    this.stopped = true;
    return Promise.all(this.loops).then(() => undefined);
  }
}

/** Resolves when `n` ports were added and all answered; rejects at the deadline. */
async function waitAnswered(w: PortWatcher, n: number, deadline: number, what: string): Promise<number> {
  while (w.answeredAt.size < n) {
    checkAborted();
    if (now() > deadline) throw new Error(`${what}: only ${w.answeredAt.size}/${n} ports answered 200 in time`);
    await sleep(2);
  }
  return Math.max(...[...w.answeredAt.values()].map((a) => a.at));
}

/** Picks `n` ports from 20000-29999 (below the ephemeral range cell allocates from) that are free now. */
async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  const base = 20000 + Math.floor(Math.random() * 4000);
  for (let p = base; p < 30000 && ports.length < n; p++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.createServer();
      s.once('error', () => r(false));
      s.listen(p, '127.0.0.1', () => s.close(() => r(true)));
    });
    if (ok) ports.push(p);
  }
  if (ports.length < n) throw new Error(`found only ${ports.length} free ports`);
  return ports;
}

// ------------------------------------------------------------------ the tools

interface Instance {
  name: string;
  port: number;
  pid: number;
}

interface ToolDriver {
  readonly name: 'cell' | 'pm2';
  readonly dir: string;
  /** Starts everything; resolves with the CLI's own duration. Ports go to `w` as they are known. */
  start(w: PortWatcher, t0Wall: number): Promise<{ cliMs: number; discoveryDone: Promise<void> }>;
  daemonPid(): Promise<number>;
  /** Extra processes of the tool reported separately (cell's gateway). */
  extraPids(): Promise<Record<string, number>>;
  statusCommand(): { cmd: string; args: string[]; env: NodeJS.ProcessEnv };
  /** Every started instance with its port (pids from the fixture itself). */
  instances(): Instance[];
  /** Diagnostics after the cold start (cell: timeline of its events). */
  startBreakdown(t0Wall: number, allUpWall: number): Promise<Record<string, number | null> | null>;
  stop(): Promise<void>;
  /** Last resort: every process carrying our temp state dir in its environment. */
  strays(): number[];
}

/**
 * Variables of the machine's environment that tax every node start the same way, whoever starts
 * it: NODE_EXTRA_CA_CERTS makes node 20 parse the CA bundle before running any code (~70 ms of CPU
 * per process here, where the sandbox exports it for its package proxy). Left in, 100 cold starts
 * would measure OpenSSL's PEM parser, for every tool alike. Removed for every tool, every CLI call
 * and the bare floor; `--keep-env` measures with the environment as it is.
 */
const MACHINE_ENV_TAX = ['NODE_EXTRA_CA_CERTS'];
let keepMachineEnv = false;

function fixtureEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // Never reuse the user's own state dirs.
  for (const k of Object.keys(env)) if ((k === 'CELL_HOME' || k === 'PM2_HOME') && !(k in extra)) delete env[k];
  if (!keepMachineEnv) for (const k of MACHINE_ENV_TAX) delete env[k];
  return env;
}

function cellName(i: number): string {
  return `c${String(i + 1).padStart(3, '0')}`;
}

class CellDriver implements ToolDriver {
  readonly name = 'cell' as const;
  readonly dir = mkdtempSync(join(tmpdir(), 'bench-cell-'));
  readonly home = join(this.dir, 'home');
  readonly manifest = join(this.dir, 'cell.yaml');
  readonly env = fixtureEnv({ CELL_HOME: this.home });
  private ports = new Map<number, string>();
  private socket = join(this.home, 'run', 'daemon.sock');
  private discoveryStopped = false;

  constructor(private readonly n: number) {
    const lines = ['cells:'];
    for (let i = 0; i < n; i++) {
      lines.push(
        `  ${cellName(i)}:`,
        `    run: node ${FIXTURE}`,
        '    health: { http: { path: / }, interval: 1s }',
        '    restart: { policy: always }',
      );
    }
    writeFileSync(this.manifest, lines.join('\n') + '\n');
  }

  /** GET on the daemon API over its unix socket: what `cell ps --json` prints, without a node start per call. */
  private api<T>(path: string, timeoutMs = 2000): Promise<T> {
    return new Promise((res, rej) => {
      const req = http.get({ socketPath: this.socket, path, timeout: timeoutMs }, (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => {
          try {
            if ((r.statusCode ?? 500) >= 400) throw new Error(`HTTP ${r.statusCode} on ${path}`);
            res(JSON.parse(Buffer.concat(chunks).toString('utf8')) as T);
          } catch (e) {
            rej(e);
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`timeout on ${path}`)));
      req.on('error', rej);
    });
  }

  async start(w: PortWatcher): Promise<{ cliMs: number; discoveryDone: Promise<void> }> {
    const cli = runOk(process.execPath, [CELL_BIN, '-f', this.manifest, 'up', '--no-wait'], { env: this.env, timeoutMs: 90_000 });
    const discoveryDone = (async () => {
      // Ports are handed out by the daemon as it starts instances: read them from its API.
      while (this.ports.size < this.n && !this.discoveryStopped) {
        checkAborted();
        try {
          const ps = await this.api<{ cell: string; port: number | null; pid: number | null }[]>('/v1/ps', 1000);
          for (const r of ps) {
            track(r.pid);
            if (r.cell === 'gateway' || !r.port || this.ports.has(r.port)) continue;
            this.ports.set(r.port, r.cell);
            w.add(r.port);
          }
        } catch {
          // Daemon not listening yet.
        }
        if (this.ports.size < this.n) await sleep(50);
      }
    })();
    discoveryDone.catch(() => {});
    try {
      const r = await cli;
      return { cliMs: r.ms, discoveryDone };
    } catch (e) {
      this.discoveryStopped = true;
      throw e;
    }
  }

  async daemonPid(): Promise<number> {
    const r = await runOk(process.execPath, [CELL_BIN, 'status', '--json'], { env: this.env });
    const pid = Number(JSON.parse(r.stdout).daemon.pid);
    track(pid);
    return pid;
  }

  async extraPids(): Promise<Record<string, number>> {
    const r = await runOk(process.execPath, [CELL_BIN, 'ps', '--json'], { env: this.env });
    const gw = (JSON.parse(r.stdout) as { cell: string; pid: number | null }[]).find((x) => x.cell === 'gateway');
    if (!gw?.pid) return {};
    track(gw.pid);
    return { gateway: gw.pid };
  }

  statusCommand() {
    return { cmd: process.execPath, args: [CELL_BIN, 'status'], env: this.env };
  }

  instances(): Instance[] {
    return [...this.ports].map(([port, name]) => ({ name, port, pid: 0 })).sort((a, b) => a.name.localeCompare(b.name));
  }

  async startBreakdown(t0Wall: number, allUpWall: number): Promise<Record<string, number | null>> {
    const status = await this.api<{ daemon: { started_at: string } }>('/v1/status');
    const events = await this.api<{ at: string; cell: string; to: string; from: string | null }[]>('/v1/events');
    const rel = (iso: string | undefined) => (iso ? Math.round(Date.parse(iso) - t0Wall) : null);
    const app = events.filter((e) => /^c\d+$/.test(e.cell));
    const first = (pred: (e: (typeof events)[number]) => boolean) => events.find(pred)?.at;
    const last = (list: typeof events) => list.at(-1)?.at;
    return {
      daemon_started_ms: rel(status.daemon.started_at),
      gateway_launching_ms: rel(first((e) => e.cell === 'gateway' && e.to === 'launching')),
      gateway_ready_ms: rel(first((e) => e.cell === 'gateway' && e.to === 'ready')),
      kernel_observer_ready_ms: rel(first((e) => e.cell === 'observer' && e.to === 'ready')),
      first_cell_launching_ms: rel(first((e) => /^c\d+$/.test(e.cell) && e.to === 'launching')),
      last_cell_launching_ms: rel(last(app.filter((e) => e.to === 'launching'))),
      first_cell_ready_ms: rel(first((e) => /^c\d+$/.test(e.cell) && e.to === 'ready')),
      last_cell_ready_ms: rel(last(app.filter((e) => e.to === 'ready'))),
      all_ports_answered_ms: Math.round(allUpWall - t0Wall),
    };
  }

  async stop(): Promise<void> {
    this.discoveryStopped = true;
    const r = await run(process.execPath, [CELL_BIN, 'down'], { env: this.env, timeoutMs: 60_000 });
    if (r.code !== 0) log(`cell down exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
  }

  strays(): number[] {
    return processesWithEnv('CELL_HOME', this.home);
  }
}

class Pm2Driver implements ToolDriver {
  readonly name = 'pm2' as const;
  readonly dir = mkdtempSync(join(tmpdir(), 'bench-pm2-'));
  readonly home = join(this.dir, 'pm2home');
  readonly env = fixtureEnv({ PM2_HOME: this.home });
  private apps: { name: string; port: number }[] = [];

  constructor(private readonly n: number) {}

  async prepare(): Promise<void> {
    const ports = await freePorts(this.n);
    this.apps = ports.map((port, i) => ({ name: cellName(i), port }));
    const apps = this.apps.map((a) => ({
      name: a.name,
      script: FIXTURE,
      exec_mode: 'fork',
      instances: 1,
      autorestart: true,
      env: { PORT: String(a.port) },
    }));
    writeFileSync(join(this.dir, 'ecosystem.config.cjs'), `module.exports = ${JSON.stringify({ apps }, null, 2)};\n`);
  }

  async start(w: PortWatcher): Promise<{ cliMs: number; discoveryDone: Promise<void> }> {
    // Ports are fixed in the ecosystem file: poll them all from the first moment.
    for (const a of this.apps) w.add(a.port);
    const r = await runOk(process.execPath, [PM2_BIN, 'start', 'ecosystem.config.cjs'], { env: this.env, cwd: this.dir, timeoutMs: 90_000 });
    return { cliMs: r.ms, discoveryDone: Promise.resolve() };
  }

  async daemonPid(): Promise<number> {
    const pid = Number(readFileSync(join(this.home, 'pm2.pid'), 'utf8').trim());
    track(pid);
    return pid;
  }

  async extraPids(): Promise<Record<string, number>> {
    return {};
  }

  statusCommand() {
    return { cmd: process.execPath, args: [PM2_BIN, 'ls'], env: this.env };
  }

  instances(): Instance[] {
    return this.apps.map((a) => ({ ...a, pid: 0 }));
  }

  async startBreakdown(): Promise<null> {
    return null;
  }

  async stop(): Promise<void> {
    if (!existsSync(this.home)) return;
    const r = await run(process.execPath, [PM2_BIN, 'kill'], { env: this.env, cwd: this.dir, timeoutMs: 60_000 });
    if (r.code !== 0) log(`pm2 kill exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
  }

  strays(): number[] {
    return processesWithEnv('PM2_HOME', this.home);
  }
}

// ------------------------------------------------------------------ one tool's phases

interface ToolResult {
  tool: 'cell' | 'pm2';
  cells: number;
  /** Median of the rounds. */
  cold_start_ms: number;
  /** Every round, in order; the last is the one the timeline, CPU and later phases belong to. */
  cold_start_rounds_ms: number[];
  cli_return_ms: number;
  /** CPU seconds the daemon used from its start to the end of the cold start. */
  daemon_cpu_during_start_s: number | null;
  start_breakdown: Record<string, number | null> | null;
  crash_recovery_ms: number[];
  crash_recovery_median_ms: number;
  daemon: { pid: number; rss_bytes: number; rss_anon_bytes: number; rss_file_bytes: number; cpu_percent_of_core: number; window_s: number };
  extra_processes: Record<string, { pid: number; rss_bytes: number | null; cpu_percent_of_core: number | null }>;
  instances_rss_bytes_total: number;
  status_command: string;
  status_ms: number[];
  status_median_ms: number;
}

async function cpuWindow(pids: number[], seconds: number): Promise<Map<number, number | null>> {
  const before = new Map(pids.map((p) => [p, procStat(p)?.cpuTicks ?? null]));
  const t0 = now();
  const end = t0 + seconds * 1000;
  while (now() < end) {
    checkAborted();
    await sleep(Math.min(250, end - now()));
  }
  const elapsedS = (now() - t0) / 1000;
  const out = new Map<number, number | null>();
  for (const p of pids) {
    const a = before.get(p);
    const b = procStat(p)?.cpuTicks;
    out.set(p, a === null || a === undefined || b === undefined ? null : round(((b - a) / clkTck / elapsedS) * 100, 2));
  }
  return out;
}

interface ColdStart {
  ms: number;
  cliMs: number;
  t0Wall: number;
  answeredAt: PortWatcher['answeredAt'];
}

/** One cold start of `o.cells` cells: from the start command until every port answers. */
async function coldStart(d: ToolDriver, o: Options): Promise<ColdStart> {
  log(`${d.name}: cold start of ${o.cells} cells (state in ${d.dir})`);
  const w = new PortWatcher(o.pollMs, o.pollBudget);
  const t0Wall = Date.now();
  const t0 = now();
  let cliMs: number;
  let allUp: number;
  try {
    const started = await d.start(w, t0Wall);
    cliMs = started.cliMs;
    await withTimeout(started.discoveryDone, 60_000, `${d.name}: the ports of all ${o.cells} cells were not known after 60 s`);
    allUp = await waitAnswered(w, o.cells, t0 + 90_000, `${d.name} cold start`);
  } finally {
    await w.stop();
  }
  log(`${d.name}: all ${o.cells} ports answered after ${Math.round(allUp - t0)} ms (CLI returned after ${Math.round(cliMs)} ms)`);
  return { ms: allUp - t0, cliMs, t0Wall, answeredAt: w.answeredAt };
}

/**
 * Every phase for one tool. `earlierStarts` are the cold starts of the earlier rounds (each in a
 * fresh state dir, torn down): the reported cold start is the median of those and this one.
 */
async function benchTool(d: ToolDriver, o: Options, earlierStarts: number[]): Promise<ToolResult> {
  // 1. cold start
  const start = await coldStart(d, o);
  const coldStartMs = start.ms;
  const cliMs = start.cliMs;
  const t0Wall = start.t0Wall;
  const starts = [...earlierStarts, coldStartMs];
  const instances = d.instances().map((i) => ({ ...i, pid: Number(start.answeredAt.get(i.port)?.body) }));
  for (const i of instances) track(i.pid);
  const breakdown = await d.startBreakdown(t0Wall, t0Wall + coldStartMs).catch((e) => {
    log(`${d.name}: no start breakdown: ${e}`);
    return null;
  });

  const daemonPid = await d.daemonPid();
  const extras = await d.extraPids();
  // All the daemon did since it started (it started with this cold start): the CPU it took from
  // the cells booting on the same cores.
  const startCpuTicks = procStat(daemonPid)?.cpuTicks;
  const daemonStartCpuS = startCpuTicks === undefined ? null : round(startCpuTicks / clkTck, 2);
  log(`${d.name}: daemon CPU so far ${daemonStartCpuS ?? '?'} s`);

  // 2. idle cost
  log(`${d.name}: settling ${o.settleSeconds} s, then idle window of ${o.idleSeconds} s`);
  await sleep(o.settleSeconds * 1000);
  const watched = [daemonPid, ...Object.values(extras)];
  const cpu = await cpuWindow(watched, o.idleSeconds);
  const daemonMem = memory(daemonPid);
  if (daemonMem === null) throw new Error(`${d.name}: daemon pid ${daemonPid} is gone`);
  const extraOut: ToolResult['extra_processes'] = {};
  for (const [name, pid] of Object.entries(extras)) extraOut[name] = { pid, rss_bytes: rssBytes(pid), cpu_percent_of_core: cpu.get(pid) ?? null };
  const instancesRss = instances.reduce((sum, i) => sum + (rssBytes(i.pid) ?? 0), 0);

  // 3. status wall time
  const sc = d.statusCommand();
  const statusLabel = d.name === 'cell' ? 'cell status' : 'pm2 ls';
  log(`${d.name}: \`${statusLabel}\` x ${o.statusRuns} (+1 warm-up)`);
  await runOk(sc.cmd, sc.args, { env: sc.env });
  const statusMs: number[] = [];
  for (let i = 0; i < o.statusRuns; i++) {
    checkAborted();
    statusMs.push((await runOk(sc.cmd, sc.args, { env: sc.env })).ms);
  }

  // 4. crash recovery
  log(`${d.name}: crash recovery x ${o.crashes}`);
  const crashMs: number[] = [];
  const victims = Array.from({ length: Math.min(o.crashes, instances.length) }, (_, k) => instances[Math.floor(((k + 0.5) * instances.length) / Math.min(o.crashes, instances.length))]);
  for (const v of victims) {
    checkAborted();
    const before = await checkPort(v.port, 1000);
    const oldPid = Number(before);
    if (!before || !Number.isInteger(oldPid) || oldPid <= 1) throw new Error(`${d.name}: ${v.name} on port ${v.port} did not answer before the kill`);
    const cw = new PortWatcher(o.pollMs, o.pollBudget, (_p, body) => body !== before);
    const tk = now();
    process.kill(oldPid, 'SIGKILL');
    cw.add(v.port);
    try {
      const at = await waitAnswered(cw, 1, tk + 20_000, `${d.name} crash recovery of ${v.name}`);
      crashMs.push(at - tk);
      track(Number(cw.answeredAt.get(v.port)?.body));
    } finally {
      await cw.stop();
    }
    await sleep(300);
  }
  log(`${d.name}: crash recovery ${crashMs.map((x) => Math.round(x)).join(', ')} ms`);

  return {
    tool: d.name,
    cells: o.cells,
    cold_start_ms: round(median(starts)),
    cold_start_rounds_ms: starts.map((x) => round(x)),
    cli_return_ms: round(cliMs),
    daemon_cpu_during_start_s: daemonStartCpuS,
    start_breakdown: breakdown,
    crash_recovery_ms: crashMs.map((x) => round(x)),
    crash_recovery_median_ms: round(median(crashMs)),
    daemon: { pid: daemonPid, rss_bytes: daemonMem.rss, rss_anon_bytes: daemonMem.anon, rss_file_bytes: daemonMem.file, cpu_percent_of_core: cpu.get(daemonPid) ?? NaN, window_s: o.idleSeconds },
    extra_processes: extraOut,
    instances_rss_bytes_total: instancesRss,
    status_command: statusLabel,
    status_ms: statusMs.map((x) => round(x)),
    status_median_ms: round(median(statusMs)),
  };
}

// ------------------------------------------------------------------ the bare floor

interface FloorResult {
  cells: number;
  cold_start_ms: number;
  crash_recovery_ms: number[];
  crash_recovery_median_ms: number;
}

/**
 * What no process manager can beat on this machine: the bench itself spawns the N fixtures
 * (child_process.spawn of node, no shell, no state, no probes) and respawns a killed one from its
 * 'exit' event at once. Same poller, same ports check, same kills as for the tools.
 */
async function benchFloor(o: Options): Promise<FloorResult> {
  log(`bare: cold start of ${o.cells} fixtures spawned by the bench itself (no manager)`);
  const ports = await freePorts(o.cells);
  const children = new Map<number, ChildProcess>();
  const start = (port: number) => {
    const child = spawn(process.execPath, [FIXTURE], { env: fixtureEnv({ PORT: String(port) }), stdio: 'ignore', detached: true });
    child.on('error', () => {});
    child.unref();
    track(child.pid);
    children.set(port, child);
    return child;
  };
  const w = new PortWatcher(o.pollMs, o.pollBudget);
  const t0 = now();
  try {
    for (const port of ports) {
      start(port);
      w.add(port);
      // Let the poller run between spawns, as a daemon's event loop would.
      await new Promise((r) => setImmediate(r));
    }
    const allUp = await waitAnswered(w, o.cells, t0 + 90_000, 'bare cold start');
    log(`bare: all ${o.cells} ports answered after ${Math.round(allUp - t0)} ms`);
    await sleep(1000);
    const crashMs: number[] = [];
    const k = Math.min(o.crashes, ports.length);
    for (let i = 0; i < k; i++) {
      checkAborted();
      const port = ports[Math.floor(((i + 0.5) * ports.length) / k)];
      const before = await checkPort(port, 1000);
      const child = children.get(port)!;
      if (!before) throw new Error(`bare: port ${port} did not answer before the kill`);
      const cw = new PortWatcher(o.pollMs, o.pollBudget, (_p, body) => body !== before);
      child.once('exit', () => start(port));
      const tk = now();
      process.kill(Number(before), 'SIGKILL');
      cw.add(port);
      try {
        crashMs.push((await waitAnswered(cw, 1, tk + 20_000, `bare crash recovery on port ${port}`)) - tk);
      } finally {
        await cw.stop();
      }
      await sleep(300);
    }
    log(`bare: crash recovery ${crashMs.map((x) => Math.round(x)).join(', ')} ms`);
    return { cells: o.cells, cold_start_ms: round(allUp - t0), crash_recovery_ms: crashMs.map((x) => round(x)), crash_recovery_median_ms: round(median(crashMs)) };
  } finally {
    await w.stop();
    for (const c of children.values()) if (c.pid && alive(c.pid)) c.kill('SIGTERM');
    for (let i = 0; i < 30 && [...tracked].some(([p, st]) => alive(p, st)); i++) await sleep(100);
    for (const [p, st] of tracked) killPid(p, st);
    tracked.clear();
  }
}

// ------------------------------------------------------------------ cleanup

async function cleanup(d: ToolDriver, keep: boolean): Promise<void> {
  log(`${d.name}: cleaning up`);
  try {
    await d.stop();
  } catch (e) {
    log(`${d.name}: stop failed: ${e}`);
  }
  // Whatever survived the tool's own stop: tracked pids (same start time only), then anything
  // carrying our temp state dir in its environment.
  for (let i = 0; i < 50; i++) {
    const left = [...tracked].filter(([p, st]) => alive(p, st));
    const strays = d.strays().filter((p) => alive(p));
    if (left.length === 0 && strays.length === 0) break;
    if (i === 10) log(`${d.name}: killing ${left.length} tracked and ${strays.length} stray processes left after stop`);
    if (i >= 10) {
      for (const [p, st] of left) killPid(p, st);
      for (const p of strays) killPid(p);
    }
    await sleep(100);
  }
  tracked.clear();
  if (!keep) rmSync(d.dir, { recursive: true, force: true });
  else log(`${d.name}: kept ${d.dir}`);
}

// ------------------------------------------------------------------ report

interface Row {
  metric: string;
  unit: string;
  cell: number | null;
  pm2: number | null;
  ratio: number | null;
  /** The bare floor (no manager), for the rows where it exists. */
  bare: number | null;
  /** (cell - bare) / (pm2 - bare): what each manager adds on top of the workload itself. */
  overhead_ratio: number | null;
  target: string;
  pass: boolean | null;
}

function buildRows(c: ToolResult | null, p: ToolResult | null, f: FloorResult | null): Row[] {
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? null : round(a / b, 3));
  const mib = (b: number | undefined) => (b === undefined ? undefined : round(b / 1048576, 1));
  const rows: Row[] = [];
  const add = (
    metric: string,
    unit: string,
    cv: number | undefined,
    pv: number | undefined,
    target: string,
    // On the measured values, not the rounded ratio: 75.2 / 149.6 shows as 0.5 but is above it.
    pass: (cv: number, pv: number | undefined) => boolean | null,
    bare?: number,
  ) => {
    const r = ratio(cv, pv);
    const over = bare === undefined || cv === undefined || pv === undefined ? null : ratio(cv - bare, pv - bare);
    rows.push({ metric, unit, cell: cv ?? null, pm2: pv ?? null, ratio: r, bare: bare ?? null, overhead_ratio: over, target, pass: cv === undefined ? null : pass(cv, pv) });
  };
  add(`cold start, ${c?.cells ?? p?.cells} cells (median)`, 'ms', c?.cold_start_ms, p?.cold_start_ms, 'ratio <= 0.5', (v, pv) => (pv ? v <= 0.5 * pv : null), f?.cold_start_ms);
  add('crash recovery (median)', 'ms', c?.crash_recovery_median_ms, p?.crash_recovery_median_ms, 'ratio <= 0.5', (v, pv) => (pv ? v <= 0.5 * pv : null), f?.crash_recovery_median_ms);
  add('daemon RSS', 'MiB', mib(c?.daemon.rss_bytes), mib(p?.daemon.rss_bytes), "<= PM2's", (v, pv) => (pv ? v <= pv : null));
  add('idle daemon CPU', '% core', c?.daemon.cpu_percent_of_core, p?.daemon.cpu_percent_of_core, '< 1 %', (v) => v < 1);
  add('status wall time (median)', 'ms', c?.status_median_ms, p?.status_median_ms, 'cell < 150 ms', (v) => v < 150);
  return rows;
}

function printTable(rows: Row[], c: ToolResult | null, p: ToolResult | null, f: FloorResult | null): void {
  const fmt = (v: number | null) => (v === null ? '-' : String(v));
  const head = ['metric', 'unit', 'cell', 'pm2', 'cell/pm2', 'target', 'ok', 'bare', '(cell-bare)/(pm2-bare)'];
  const body = rows.map((r) => [r.metric, r.unit, fmt(r.cell), fmt(r.pm2), fmt(r.ratio), r.target, r.pass === null ? '?' : r.pass ? 'yes' : 'NO', fmt(r.bare), fmt(r.overhead_ratio)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const right = new Set([2, 3, 4, 7, 8]);
  const line = (cols: string[]) => cols.map((x, i) => (right.has(i) ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const extra: string[] = [];
  if (f) {
    extra.push(
      `bare = no manager: the bench spawns node on the fixture itself and respawns it on 'exit' (the floor for this workload on this machine); ` +
        `crash ${Math.min(...f.crash_recovery_ms)}-${Math.max(...f.crash_recovery_ms)} ms`,
    );
  }
  const mem = (t: ToolResult) => `${round(t.daemon.rss_anon_bytes / 1048576, 1)} MiB anon + ${round(t.daemon.rss_file_bytes / 1048576, 1)} MiB file`;
  if (c && p) extra.push(`daemon RSS split: cell ${mem(c)}; pm2 ${mem(p)}`);
  if (c) {
    for (const [name, x] of Object.entries(c.extra_processes)) {
      extra.push(`cell ${name} (kernel cell, not the daemon): RSS ${x.rss_bytes === null ? '?' : round(x.rss_bytes / 1048576, 1)} MiB, idle CPU ${x.cpu_percent_of_core ?? '?'} % of a core`);
    }
  }
  for (const t of [c, p]) {
    if (!t) continue;
    extra.push(
      `${t.tool}: cold starts ${t.cold_start_rounds_ms.map((x) => Math.round(x)).join(', ')} ms; start command returned after ${Math.round(t.cli_return_ms)} ms; daemon CPU during the start ${t.daemon_cpu_during_start_s ?? '?'} s; crash recovery ${Math.min(...t.crash_recovery_ms)}-${Math.max(...t.crash_recovery_ms)} ms; ` +
        `${t.status_command} ${Math.min(...t.status_ms)}-${Math.max(...t.status_ms)} ms; RSS of the ${t.cells} instances ${round(t.instances_rss_bytes_total / 1048576)} MiB`,
    );
  }
  if (c?.start_breakdown) {
    extra.push('cell cold start timeline (ms after `cell up` was invoked): ' + Object.entries(c.start_breakdown).map(([k, v]) => `${k.replace(/_ms$/, '')}=${v}`).join(' '));
  }
  extra.push('PM2 runs no health checks; cell probes every instance over HTTP every 1 s (included in its idle CPU).');
  process.stdout.write('\n' + out.join('\n') + '\n\n' + extra.map((x) => `  ${x}`).join('\n') + '\n');
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  keepMachineEnv = o.keepEnv;
  const removedEnv = o.keepEnv ? [] : MACHINE_ENV_TAX.filter((k) => process.env[k] !== undefined);
  if (removedEnv.length > 0) log(`environment: ${removedEnv.join(', ')} removed for every tool and the bare floor (--keep-env keeps it)`);
  if (process.platform !== 'linux') throw new Error('this bench reads /proc: Linux only');
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  if (!existsSync(PM2_BIN)) throw new Error(`pm2 is not installed (${PM2_BIN})`);

  const startedAt = new Date();
  const load: Record<string, number[]> = { start: loadavg().map((x) => round(x, 2)) };
  if (load.start[0] > cpus().length * 0.5) {
    log(`WARNING: the machine is busy (load average ${load.start.join(' ')} on ${cpus().length} CPUs): figures will be noisy`);
  }
  let current: ToolDriver | null = null;
  const abort = (why: string) => {
    if (aborted) return;
    aborted = why;
    log(`aborting: ${why}`);
  };
  // The whole run is bounded; a stuck phase aborts, and its tool is still cleaned up.
  const watchdog = setTimeout(() => abort(`time budget of ${o.budgetSeconds} s exceeded`), o.budgetSeconds * 1000);
  // After the budget plus a grace for cleanup, give up on everything but the last-resort kill.
  const hardStop = setTimeout(() => {
    log('cleanup is taking too long: killing what is left and exiting');
    if (current) for (const p of current.strays()) killPid(p);
    for (const [p, st] of tracked) killPid(p, st);
    process.exit(1);
  }, (o.budgetSeconds + 60) * 1000);
  hardStop.unref();
  // While a phase runs, a signal only aborts it: the phase's own cleanup then runs.
  let phaseRunning = false;
  const onSignal = (sig: NodeJS.Signals) => {
    abort(`received ${sig}`);
    if (!phaseRunning) {
      for (const [p, st] of tracked) killPid(p, st);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const background: Record<string, number> = {};
  const results: { cell: ToolResult | null; pm2: ToolResult | null } = { cell: null, pm2: null };
  let failure: unknown = null;
  let floor: FloorResult | null = null;
  if (!o.only && !o.noBare) {
    background.bare = await machineBusyPercent(1000);
    phaseRunning = true;
    try {
      floor = await benchFloor(o);
    } catch (e) {
      failure = e;
      log(`bare: FAILED: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      phaseRunning = false;
    }
    await waitQuiet();
  }
  // Cold starts are the noisiest figure (a busy neighbour on the VM moves them by a second):
  // earlier rounds, interleaved and in alternating order, so that the median of each tool's
  // rounds compares the tools on the same stretch of the machine's time.
  const earlierStarts: Record<'cell' | 'pm2', number[]> = { cell: [], pm2: [] };
  /**
   * Runs `phase` on a fresh driver of `tool` (its own temp state dir), then stops and cleans the
   * tool up whatever happened; a failure is recorded in `failure` and ends the run.
   */
  const withTool = async (tool: 'cell' | 'pm2', keep: boolean, phase: (d: ToolDriver) => Promise<void>, beforeStart?: () => Promise<void>) => {
    const d: ToolDriver = tool === 'cell' ? new CellDriver(o.cells) : new Pm2Driver(o.cells);
    current = d;
    phaseRunning = true;
    await beforeStart?.();
    try {
      if (d instanceof Pm2Driver) await d.prepare();
      await phase(d);
    } catch (e) {
      failure = e;
      log(`${tool}: FAILED: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await cleanup(d, keep);
      current = null;
      phaseRunning = false;
    }
  };
  for (let r = 0; r < o.startRounds - 1 && !aborted && !failure; r++) {
    for (const tool of r % 2 === 0 ? (['pm2', 'cell'] as const) : (['cell', 'pm2'] as const)) {
      if (o.only && o.only !== tool) continue;
      await withTool(tool, false, async (d) => void earlierStarts[tool].push((await coldStart(d, o)).ms));
      if (failure || aborted) break;
      await waitQuiet();
    }
  }
  for (const tool of ['cell', 'pm2'] as const) {
    if (o.only && o.only !== tool) continue;
    if (aborted || failure) break;
    await withTool(
      tool,
      o.keep,
      async (d) => void (results[tool] = await benchTool(d, o, earlierStarts[tool])),
      // Other work on the machine skews every figure: measured, recorded, warned about.
      async () => {
        const busy = await machineBusyPercent(1000);
        background[tool] = busy;
        if (busy > 15) log(`WARNING: the machine is ${busy} % busy before the ${tool} phase (other processes): figures will be noisy`);
      },
    );
    load[`after_${tool}`] = loadavg().map((x) => round(x, 2));
    if (failure) break;
    // Let the machine go quiet before the next tool.
    await waitQuiet();
  }
  clearTimeout(watchdog);

  const rows = buildRows(results.cell, results.pm2, floor);
  if (results.cell || results.pm2) printTable(rows, results.cell, results.pm2, floor);
  const report = {
    bench: 'lifecycle',
    date: startedAt.toISOString(),
    host: { node: process.version, cpus: cpus().length, cpu_model: cpus()[0]?.model ?? null, kernel: release(), clk_tck: clkTck, loadavg: load, busy_percent_before: background },
    env_removed: removedEnv,
    pm2_version: JSON.parse(readFileSync(join(ROOT, 'node_modules', 'pm2', 'package.json'), 'utf8')).version,
    cell_version: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
    options: o,
    rows,
    bare: floor,
    cell: results.cell,
    pm2: results.pm2,
    error: failure ? String(failure instanceof Error ? failure.message : failure) : null,
  };
  const outDir = join(BENCH_DIR, 'results');
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, `lifecycle-${startedAt.toISOString().slice(0, 10)}.json`);
  writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`\nresults: ${outFile}\n`);
  return failure ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);

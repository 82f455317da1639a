/**
 * RPC benchmark: cell's SDK against a raw unix-socket echo (the floor), @grpc/grpc-js and NATS, in one run.
 *
 *   npm run build && npm run bench:rpc            # all four systems, 3 rounds (~2.5 min)
 *   node --import tsx bench/rpc.ts --only cell,raw --rounds 1
 *
 * For each system, one after the other (never two loaded at once; the sequence is repeated --rounds
 * times and the median is reported), a server process (or, for NATS,
 * nats-server plus a responder process) and a separate client process, all children of this one:
 *   1. latency: one call in flight (sequential), 1 s warm-up then 3 s of round trips: p50 / p99;
 *   2. throughput: 64 calls in flight (64 closed loops), 1 s warm-up then 5 s: calls/s.
 * Every call carries { n: number, s: 16-character string } and gets it back. The client measures;
 * this process only starts, watches and stops the others. Prints a table with the ratios and the
 * targets (cell p50 <= 1.5x raw p50; cell calls/s >= 3x grpc-js and >= 250,000) and writes
 * bench/results/rpc-<date>.json. See bench/README.md for what each peer does per call.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { log, machineBusyPercent, median, now, numberArg, round, sleep } from './common.js';

// ------------------------------------------------------------------ options

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const FIX = join(BENCH_DIR, 'rpc');
const SYSTEMS = ['raw', 'cell', 'grpc', 'nats'] as const;
type System = (typeof SYSTEMS)[number];
const LABEL: Record<System, string> = { cell: 'cell (SDK)', raw: 'raw unix echo', grpc: 'grpc-js (unix)', nats: 'NATS req/reply' };

interface Options {
  only: System[];
  rounds: number;
  latencyWarmupMs: number;
  latencyMs: number;
  throughputWarmupMs: number;
  throughputMs: number;
  inFlight: number;
  budgetSeconds: number;
  /** Run the cell server and client with --cpu-prof, profiles in this dir (the figures then include the profiler). */
  cpuProf: string | null;
  natsServer: string | null;
  /** Raw echo client: also cut a burst of writes every N frames (0: one write per burst). */
  rawFlushFrames: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    only: [...SYSTEMS],
    rounds: 3,
    latencyWarmupMs: 1000,
    latencyMs: 3000,
    throughputWarmupMs: 1000,
    throughputMs: 5000,
    inFlight: 64,
    budgetSeconds: 180,
    cpuProf: null,
    natsServer: null,
    rawFlushFrames: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--only': {
        const list = (next() ?? '').split(',').map((s) => s.trim()).filter(Boolean);
        const bad = list.filter((s) => !(SYSTEMS as readonly string[]).includes(s));
        if (list.length === 0 || bad.length > 0) throw new Error(`--only takes a comma-separated list of ${SYSTEMS.join(', ')}; got ${JSON.stringify(list)}`);
        o.only = SYSTEMS.filter((s) => list.includes(s));
        break;
      }
      case '--rounds': o.rounds = Math.floor(numberArg(a, next(), 1)); break;
      case '--latency-seconds': o.latencyMs = numberArg(a, next(), 0.1) * 1000; break;
      case '--throughput-seconds': o.throughputMs = numberArg(a, next(), 0.1) * 1000; break;
      case '--warmup-seconds': o.latencyWarmupMs = o.throughputWarmupMs = numberArg(a, next(), 0) * 1000; break;
      case '--in-flight': o.inFlight = Math.floor(numberArg(a, next(), 1)); break;
      case '--budget-seconds': o.budgetSeconds = numberArg(a, next(), 10); break;
      case '--cpu-prof': o.cpuProf = resolve(next() ?? ''); break;
      case '--nats-server': o.natsServer = next() ?? null; break;
      case '--raw-flush-frames': o.rawFlushFrames = Math.floor(numberArg(a, next(), 0)); break;
      case '-h':
      case '--help':
        process.stdout.write(
          'usage: node --import tsx bench/rpc.ts [--only raw,cell,grpc,nats] [--rounds 3] [--latency-seconds 3] [--throughput-seconds 5]\n' +
            '         [--warmup-seconds 1] [--in-flight 64] [--budget-seconds 180] [--cpu-prof DIR] [--nats-server PATH] [--raw-flush-frames 0]\n',
        );
        process.exit(0);
      default:
        throw new Error(`unknown argument ${a} (see --help)`);
    }
  }
  if (o.inFlight > 1000) throw new Error('--in-flight is at most 1000');
  return o;
}

// ------------------------------------------------------------------ small helpers




let clkTck = 100;
try {
  const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  if (Number.isInteger(n) && n > 0) clkTck = n;
} catch {
  // 100 on every common Linux.
}

function startTicks(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return null;
    return Number(rest[19]);
  } catch {
    return null;
  }
}


/** A free loopback TCP port (for nats-server): bound, read, released. */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

// ------------------------------------------------------------------ child processes

/**
 * Every process this run started, with its start time (a recycled pid is never signalled). Children
 * are never detached: fixtures also exit by themselves when their stdin (a pipe from us) closes.
 */
interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  startTicks: number | null;
  stderr: string[];
  stdoutLines: string[];
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}
const children = new Set<Child>();

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Never let a fixture find a mesh of the user's (serve() would send its ready signal to a daemon).
  for (const k of Object.keys(env)) if (k.startsWith('CELL_') || k.startsWith('NODE_OPTIONS')) delete env[k];
  return { ...env, ...extra };
}

function startChild(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(cmd, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const c: Child = {
    name,
    proc,
    pid: proc.pid ?? 0,
    startTicks: proc.pid ? startTicks(proc.pid) : null,
    stderr: [],
    stdoutLines: [],
    exitCode: undefined,
    exited: new Promise((res) => {
      proc.on('exit', (code, signal) => {
        c.exitCode = code ?? (signal ? -1 : null);
        res(code);
      });
      proc.on('error', (e) => {
        c.stderr.push(String(e));
        c.exitCode = -1;
        res(-1);
      });
    }),
  };
  children.add(c);
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      c.stdoutLines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    c.stderr.push(d);
    if (c.stderr.length > 200) c.stderr.splice(0, 100);
  });
  proc.stdin!.on('error', () => {});
  return c;
}

function tail(c: Child): string {
  return c.stderr.join('').trim().split('\n').slice(-12).join('\n');
}

/** Waits for a stdout line starting with `prefix`; fails if the child exits first or on the deadline. */
async function waitLine(c: Child, prefix: string, timeoutMs: number): Promise<string> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const line = c.stdoutLines.find((l) => l.startsWith(prefix));
    if (line !== undefined) return line;
    if (c.exitCode !== undefined) throw new Error(`${c.name} exited (${c.exitCode}) before "${prefix.trim()}":\n${tail(c)}`);
    if (aborted) throw new Error(aborted);
    if (now() > deadline) throw new Error(`${c.name}: no "${prefix.trim()}" within ${timeoutMs} ms:\n${tail(c)}`);
    await sleep(10);
  }
}

function isOurs(c: Child): boolean {
  return c.exitCode === undefined && c.pid > 0 && c.startTicks !== null && startTicks(c.pid) === c.startTicks;
}

/** SIGTERM (and the closed stdin), then SIGKILL after `graceMs`. */
async function stopChild(c: Child, graceMs = 3000): Promise<void> {
  if (isOurs(c)) {
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {
      // Gone.
    }
  }
  c.proc.stdin?.end();
  const done = await Promise.race([c.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done && isOurs(c)) {
    log(`${c.name} (pid ${c.pid}) did not exit after SIGTERM: SIGKILL`);
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // Gone.
    }
    await Promise.race([c.exited, sleep(1000)]);
  }
  children.delete(c);
}

/** Processes we did not spawn ourselves but must not leave behind (nats-server under its wrapper). */
const extras = new Map<number, number | null>();
function trackExtra(pid: number): void {
  if (pid > 0) extras.set(pid, startTicks(pid));
}

function killExtras(): void {
  for (const [pid, st] of extras) {
    if (st !== null && startTicks(pid) === st) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }
  extras.clear();
}

function killAllNow(): void {
  killExtras();
  for (const c of children) {
    if (isOurs(c)) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }
}

// ------------------------------------------------------------------ nats-server

function findNatsServer(explicit: string | null): string | null {
  if (explicit) return existsSync(explicit) ? explicit : null;
  for (const p of ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) if (existsSync(p)) return p;
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  const p = which.stdout.trim();
  return which.status === 0 && p ? p : null;
}

/** The Debian package, installed only when missing, saying so. */
function ensureNatsServer(explicit: string | null): string {
  const found = findNatsServer(explicit);
  if (found) return found;
  if (explicit) throw new Error(`--nats-server ${explicit}: no such file`);
  log('nats-server is not installed: running `apt-get install -y nats-server` (Debian package) for the NATS phase');
  const r = spawnSync('apt-get', ['install', '-y', 'nats-server'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120_000 });
  const after = findNatsServer(null);
  if (r.status !== 0 || !after) {
    throw new Error('nats-server is missing and `apt-get install -y nats-server` failed (run it as root, or pass --nats-server PATH, or --only raw,cell,grpc)');
  }
  return after;
}

function natsVersion(bin: string): string | null {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// ------------------------------------------------------------------ one system

interface LatencyResult {
  calls: number;
  seconds: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  min_us: number;
  max_us: number;
  mean_us: number;
  cpu_us_per_call: Record<string, number | null>;
  syscalls_per_call: Record<string, { reads: number; writes: number } | null>;
  cpu_split_us_per_call: Record<string, { user: number; sys: number } | null>;
  machine: MachineUse;
}
/** CPU of the whole machine over a measured window, in cores; `others` is what our processes did not use. */
interface MachineUse {
  cpus: number;
  busy_cores: number;
  ours_cores: number;
  others_cores: number;
  /** Hypervisor steal (a VM's CPUs not run while they had work), in cores. */
  steal_cores: number;
}
interface ThroughputResult {
  in_flight: number;
  calls: number;
  seconds: number;
  calls_per_s: number;
  cpu_us_per_call: Record<string, number | null>;
  syscalls_per_call: Record<string, { reads: number; writes: number } | null>;
  cpu_split_us_per_call: Record<string, { user: number; sys: number } | null>;
  machine: MachineUse;
}
interface RunResult {
  system: System;
  round: number;
  busy_percent_before: number;
  loadavg_before: number[];
  processes: Record<string, number>;
  latency: LatencyResult | null;
  throughput: ThroughputResult | null;
  error: string | null;
}

let aborted: string | null = null;

async function runSystem(sys: System, roundNo: number, o: Options, dir: string, natsBin: string | null, natsMissing: string | null): Promise<RunResult> {
  const busy = await machineBusyPercent(1000);
  const load = loadavg().map((x) => round2(x));
  const result: RunResult = { system: sys, round: roundNo, busy_percent_before: busy, loadavg_before: load, processes: {}, latency: null, throughput: null, error: null };
  log(`${LABEL[sys]}${o.rounds > 1 ? ` (round ${roundNo})` : ''}: machine ${busy} % busy over 1 s before the phase, load average ${load.join(' ')}`);
  if (busy > 15) log(`WARNING: the machine is ${busy} % busy before the ${sys} phase (other processes): figures will be noisy; rerun on a quiet machine`);
  const started: Child[] = [];
  const node = process.execPath;
  const prof = (tag: string) => (o.cpuProf && sys === 'cell' ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProf, '--cpu-prof-name', `${tag}-${roundNo}-${Date.now()}.cpuprofile`] : []);
  const socket = join(dir, `${sys}-${roundNo}.sock`);
  const secret = randomBytes(24).toString('hex');
  const clientCfg: Record<string, unknown> = {
    system: sys,
    clkTck,
    rawFlushFrames: o.rawFlushFrames,
    latency: { warmupMs: o.latencyWarmupMs, ms: o.latencyMs },
    throughput: { warmupMs: o.throughputWarmupMs, ms: o.throughputMs, inFlight: o.inFlight },
    watch: {} as Record<string, number>,
  };
  const watch = clientCfg.watch as Record<string, number>;
  try {
    // The server side.
    if (sys === 'nats') {
      if (!natsBin) throw new Error(`nats-server is not available: ${natsMissing ?? 'not found'}`);
      const port = await freePort();
      // nats-server runs under a small node wrapper that stops it when we go away (see nats-server.mjs).
      const ns = startChild('nats-server', node, [join(FIX, 'nats-server.mjs')], childEnv({ BENCH_NATS_BIN: natsBin, BENCH_NATS_PORT: String(port), BENCH_NATS_DIR: dir }));
      started.push(ns);
      const natsPid = Number((await waitLine(ns, 'READY', 15_000)).split(' ')[1]);
      trackExtra(natsPid);
      const url = `nats://127.0.0.1:${port}`;
      const resp = startChild('nats responder', node, [join(FIX, 'nats-responder.mjs')], childEnv({ BENCH_NATS: url }));
      started.push(resp);
      await waitLine(resp, 'READY', 15_000);
      watch['nats-server'] = natsPid;
      watch.responder = resp.pid;
      clientCfg.nats = url;
    } else {
      const script = { cell: 'cell-server.mjs', raw: 'raw-server.mjs', grpc: 'grpc-server.mjs' }[sys];
      const env = childEnv(sys === 'cell' ? { BENCH_SOCKET: socket, BENCH_SECRET: secret } : { BENCH_SOCKET: socket });
      const srv = startChild(`${sys} server`, node, [...prof('server'), join(FIX, script)], env);
      started.push(srv);
      await waitLine(srv, 'READY', 15_000);
      watch.server = srv.pid;
      clientCfg.socket = socket;
    }
    // The client: a separate process that measures.
    const env = childEnv({ BENCH_RPC_CONFIG: JSON.stringify(clientCfg), ...(sys === 'cell' ? { BENCH_SECRET: secret } : {}) });
    const client = startChild(`${sys} client`, node, [...prof('client'), join(FIX, 'client.mjs')], env);
    started.push(client);
    result.processes = { client: client.pid, ...watch };
    const expectedMs = o.latencyWarmupMs + o.latencyMs + o.throughputWarmupMs + o.throughputMs;
    const line = await waitLine(client, 'RESULT ', expectedMs + 30_000);
    const r = JSON.parse(line.slice('RESULT '.length)) as { latency?: LatencyResult; throughput?: ThroughputResult };
    result.latency = r.latency ?? null;
    result.throughput = r.throughput ?? null;
    await Promise.race([client.exited, sleep(5000)]);
    log(
      `${LABEL[sys]}: p50 ${result.latency?.p50_us} µs, p99 ${result.latency?.p99_us} µs (${result.latency?.calls} calls); ` +
        `${result.throughput?.calls_per_s.toLocaleString('en')} calls/s at ${o.inFlight} in flight; ` +
        `other processes used ${result.latency?.machine?.others_cores} / ${result.throughput?.machine?.others_cores} cores during the windows ` +
        `(steal ${result.latency?.machine?.steal_cores} / ${result.throughput?.machine?.steal_cores})`,
    );
    const others = Math.max(result.latency?.machine?.others_cores ?? 0, result.throughput?.machine?.others_cores ?? 0);
    if (others > 0.15) log(`WARNING: other processes used up to ${others} cores during the ${sys} windows: figures are noisy`);
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
    log(`${LABEL[sys]}: FAILED: ${result.error}`);
  } finally {
    // Clients first, then the responder, then nats-server.
    for (const c of started.reverse()) await stopChild(c);
    killExtras();
  }
  return result;
}

const round2 = (x: number) => round(x, 2);

// ------------------------------------------------------------------ report

interface Summary {
  system: System;
  label: string;
  rounds: number;
  p50_us: number | null;
  p99_us: number | null;
  calls_per_s: number | null;
  lat_cpu: Record<string, number | null> | null;
  tput_cpu: Record<string, number | null> | null;
  /** write(2)-class syscalls per call at `inFlight`, per process. */
  tput_writes: Record<string, number | null> | null;
  /** Most CPU other processes used during any measured window of this system, in cores. */
  others_cores_max: number | null;
  error: string | null;
}

/** Median over the rounds that succeeded (one round: its figures). */
function summarize(sys: System, runs: RunResult[]): Summary {
  const ok = runs.filter((r) => r.system === sys && r.error === null && r.latency && r.throughput);
  const med = (f: (r: RunResult) => number) => (ok.length === 0 ? null : round(median(ok.map(f))));
  const cpu = (f: (r: RunResult) => Record<string, number | null> | undefined) => {
    if (ok.length === 0) return null;
    const keys = Object.keys(f(ok[0]) ?? {});
    return Object.fromEntries(keys.map((k) => [k, round(median(ok.map((r) => f(r)?.[k] ?? NaN)), 2)]));
  };
  const errors = runs.filter((r) => r.system === sys && r.error !== null).map((r) => r.error!);
  if (!runs.some((r) => r.system === sys)) errors.push('not run (the run was aborted)');
  return {
    system: sys,
    label: LABEL[sys],
    rounds: ok.length,
    p50_us: med((r) => r.latency!.p50_us),
    p99_us: med((r) => r.latency!.p99_us),
    calls_per_s: ok.length === 0 ? null : Math.round(median(ok.map((r) => r.throughput!.calls_per_s))),
    lat_cpu: cpu((r) => r.latency?.cpu_us_per_call),
    tput_cpu: cpu((r) => r.throughput?.cpu_us_per_call),
    tput_writes: cpu((r) => Object.fromEntries(Object.entries(r.throughput?.syscalls_per_call ?? {}).map(([k, v]) => [k, v?.writes ?? null]))),
    others_cores_max: ok.length === 0 ? null : Math.max(...ok.flatMap((r) => [r.latency!.machine?.others_cores ?? 0, r.throughput!.machine?.others_cores ?? 0])),
    error: errors.length > 0 ? errors[0] : null,
  };
}

interface Row {
  metric: string;
  unit: string;
  cell: number | null;
  peer: string;
  peer_value: number | null;
  ratio: number | null;
  target: string;
  pass: boolean | null;
}

function buildRows(s: Partial<Record<System, Summary>>): Row[] {
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || !b ? null : round(a / b, 2));
  const rows: Row[] = [];
  const cell = s.cell;
  const r1 = ratio(cell?.p50_us, s.raw?.p50_us);
  rows.push({ metric: 'p50 round trip, 1 in flight', unit: 'µs', cell: cell?.p50_us ?? null, peer: 'raw echo', peer_value: s.raw?.p50_us ?? null, ratio: r1, target: 'cell/raw <= 1.5', pass: r1 === null ? null : r1 <= 1.5 });
  const r2 = ratio(cell?.calls_per_s, s.grpc?.calls_per_s);
  rows.push({ metric: 'calls/s, 64 in flight', unit: 'calls/s', cell: cell?.calls_per_s ?? null, peer: 'grpc-js', peer_value: s.grpc?.calls_per_s ?? null, ratio: r2, target: 'cell/grpc >= 3', pass: r2 === null ? null : r2 >= 3 });
  const c = cell?.calls_per_s ?? null;
  rows.push({ metric: 'calls/s, 64 in flight', unit: 'calls/s', cell: c, peer: '-', peer_value: null, ratio: null, target: 'cell >= 250,000', pass: c === null ? null : c >= 250_000 });
  // For information: cell against the floor's throughput and NATS.
  const r3 = ratio(cell?.calls_per_s, s.raw?.calls_per_s);
  rows.push({ metric: 'calls/s, 64 in flight', unit: 'calls/s', cell: c, peer: 'raw echo', peer_value: s.raw?.calls_per_s ?? null, ratio: r3, target: '(info)', pass: null });
  const r4 = ratio(cell?.calls_per_s, s.nats?.calls_per_s);
  rows.push({ metric: 'calls/s, 64 in flight', unit: 'calls/s', cell: c, peer: 'NATS', peer_value: s.nats?.calls_per_s ?? null, ratio: r4, target: '(info)', pass: null });
  const r5 = ratio(cell?.p50_us, s.grpc?.p50_us);
  rows.push({ metric: 'p50 round trip, 1 in flight', unit: 'µs', cell: cell?.p50_us ?? null, peer: 'grpc-js', peer_value: s.grpc?.p50_us ?? null, ratio: r5, target: '(info)', pass: null });
  return rows;
}

function table(head: string[], body: string[][], right: Set<number>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cols: string[]) => cols.map((x, i) => (right.has(i) ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function printReport(summaries: Summary[], rows: Row[], runs: RunResult[], o: Options): void {
  const fmt = (v: number | null | undefined) => (v == null || Number.isNaN(v) ? '-' : v >= 10000 ? Math.round(v).toLocaleString('en') : String(v));
  const cpuStr = (c: Record<string, number | null> | null) =>
    c === null ? '-' : Object.entries(c).map(([k, v]) => `${k === 'client' ? 'cli' : k === 'server' ? 'srv' : k === 'nats-server' ? 'nats' : 'resp'} ${v ?? '?'}`).join(' / ');
  const head1 = ['system', 'p50 µs', 'p99 µs', `calls/s @${o.inFlight}`, 'CPU µs/call @1', `CPU µs/call @${o.inFlight}`, `writes/call @${o.inFlight}`, 'busy before', 'others during'];
  const body1 = summaries.map((s) => {
    const busy = runs.filter((r) => r.system === s.system).map((r) => `${r.busy_percent_before}%`).join(',');
    return s.rounds === 0
      ? [s.label, busy === '' ? 'not run' : 'FAILED', '', '', (s.error ?? '').split('\n')[0].slice(0, 60), '', '', busy, '']
      : [s.label, fmt(s.p50_us), fmt(s.p99_us), fmt(s.calls_per_s), cpuStr(s.lat_cpu), cpuStr(s.tput_cpu), cpuStr(s.tput_writes), busy, `${s.others_cores_max} cores`];
  });
  const head2 = ['metric', 'unit', 'cell', 'peer', 'peer value', 'cell/peer', 'target', 'ok'];
  const body2 = rows.map((r) => [r.metric, r.unit, fmt(r.cell), r.peer, fmt(r.peer_value), fmt(r.ratio), r.target, r.pass === null ? (r.target === '(info)' ? '' : '?') : r.pass ? 'yes' : 'NO']);
  const notes = [
    `${o.rounds > 1 ? `median of ${o.rounds} rounds; ` : ''}latency: ${o.latencyWarmupMs / 1000} s warm-up + ${o.latencyMs / 1000} s of sequential calls; throughput: ${o.throughputWarmupMs / 1000} s warm-up + ${o.throughputMs / 1000} s with ${o.inFlight} calls in flight.`,
    'client and server(s) are separate processes, spawned by the bench; the client measures. CPU µs/call = CPU time of each process over the window / calls (cli = client, srv = server, nats = nats-server, resp = responder).',
    'writes/call = write(2)-class syscalls per call (/proc/<pid>/io syscw): batching, i.e. how many calls share one write.',
    'with one core per process, calls/s cannot exceed 1e6 / max(CPU µs/call of one process): on a loaded machine the CPU figures are steadier than the rates.',
    'NATS goes client -> nats-server -> responder -> nats-server -> client over loopback TCP: three processes on this machine\'s ' + cpus().length + ' CPUs.',
  ];
  if (o.cpuProf) notes.push(`cell ran under --cpu-prof (profiles in ${o.cpuProf}): its figures include the profiler's cost.`);
  notes.push(
    'busy before = whole machine over 1 s before the phase, nothing of ours running; others during = CPU used by other processes during the measured windows (machine busy minus our processes), the most of any window.',
  );
  const busiest = Math.max(...runs.map((r) => r.busy_percent_before));
  const others = Math.max(0, ...summaries.map((s) => s.others_cores_max ?? 0));
  if (busiest > 15 || others > 0.15) {
    notes.push(`WARNING: other processes were running (up to ${busiest} % busy before a phase, up to ${others} cores during one): figures are noisy and not comparable; rerun on a quiet machine.`);
  }
  const steal = Math.max(0, ...runs.flatMap((r) => [r.latency?.machine?.steal_cores ?? 0, r.throughput?.machine?.steal_cores ?? 0]));
  if (steal > 0.25) {
    notes.push(`the hypervisor withheld up to ${steal} cores during a window (steal time in /proc/stat): on this VM the rates (and the p50 at 1 in flight) vary from round to round more than the CPU per call does.`);
  }
  if (o.rounds > 1) {
    const per = (sys: System) => runs.filter((r) => r.system === sys && r.error === null && r.latency && r.throughput);
    const raw = per('raw');
    const cell = per('cell');
    const grpc = per('grpc');
    const p50 = cell.map((c, i) => (raw[i] ? round(c.latency!.p50_us / raw[i].latency!.p50_us, 2) : null));
    const vsGrpc = cell.map((c, i) => (grpc[i] ? round(c.throughput!.calls_per_s / grpc[i].throughput!.calls_per_s, 1) : null));
    notes.push(
      `per round: cell p50/raw p50 ${p50.join(', ')}; cell calls/s ${cell.map((c) => c.throughput!.calls_per_s.toLocaleString('en')).join(', ')}; ` +
        `raw calls/s ${raw.map((c) => c.throughput!.calls_per_s.toLocaleString('en')).join(', ')}; cell/grpc ${vsGrpc.join(', ')}`,
    );
  }
  process.stdout.write('\n' + table(head1, body1, new Set([1, 2, 3, 7, 8])) + '\n\n' + table(head2, body2, new Set([2, 4, 5])) + '\n\n' + notes.map((n) => `  ${n}`).join('\n') + '\n');
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.platform !== 'linux') throw new Error('this bench reads /proc: Linux only');
  if (!existsSync(join(ROOT, 'dist', 'sdk', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (the cell fixtures import cellmesh/sdk = dist/sdk)');
  for (const m of ['@grpc/grpc-js', '@grpc/proto-loader', 'nats']) {
    if (!existsSync(join(ROOT, 'node_modules', ...m.split('/')))) throw new Error(`${m} is not installed (npm install)`);
  }
  if (o.cpuProf) mkdirSync(o.cpuProf, { recursive: true });
  let natsBin: string | null = null;
  let natsMissing: string | null = null;
  if (o.only.includes('nats')) {
    try {
      natsBin = ensureNatsServer(o.natsServer);
    } catch (e) {
      // The other systems still run; the NATS row says why it is empty.
      natsMissing = e instanceof Error ? e.message : String(e);
      log(`NATS phase skipped: ${natsMissing}`);
    }
  }

  const startedAt = new Date();
  const dir = mkdtempSync(join(tmpdir(), 'rpc-bench-'));
  const t0 = now();
  const load0 = loadavg().map(round2);
  if (load0[0] > cpus().length * 0.5) log(`WARNING: the machine is busy (load average ${load0.join(' ')} on ${cpus().length} CPUs): figures will be noisy`);

  const watchdog = setTimeout(() => {
    aborted = `time budget of ${o.budgetSeconds} s exceeded`;
    log(`aborting: ${aborted}`);
    killAllNow();
  }, o.budgetSeconds * 1000);
  const onSignal = (sig: NodeJS.Signals) => {
    log(`received ${sig}: stopping every child and exiting`);
    killAllNow();
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const runs: RunResult[] = [];
  try {
    for (let r = 1; r <= o.rounds; r++) {
      for (const sys of o.only) {
        if (aborted) break;
        runs.push(await runSystem(sys, r, o, dir, natsBin, natsMissing));
      }
    }
  } finally {
    clearTimeout(watchdog);
    for (const c of [...children]) await stopChild(c, 1000);
    killExtras();
    rmSync(dir, { recursive: true, force: true });
  }

  const summaries = o.only.map((s) => summarize(s, runs));
  const bySys = Object.fromEntries(summaries.map((s) => [s.system, s])) as Partial<Record<System, Summary>>;
  const rows = buildRows(bySys);
  printReport(summaries, rows, runs, o);

  const pkg = (name: string) => {
    try {
      return JSON.parse(readFileSync(join(ROOT, 'node_modules', ...name.split('/'), 'package.json'), 'utf8')).version as string;
    } catch {
      return null;
    }
  };
  const report = {
    bench: 'rpc',
    date: startedAt.toISOString(),
    wall_seconds: round((now() - t0) / 1000),
    host: { node: process.version, cpus: cpus().length, cpu_model: cpus()[0]?.model ?? null, kernel: release(), clk_tck: clkTck, loadavg_start: load0, loadavg_end: loadavg().map(round2) },
    versions: {
      cell: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
      '@grpc/grpc-js': pkg('@grpc/grpc-js'),
      '@grpc/proto-loader': pkg('@grpc/proto-loader'),
      nats: pkg('nats'),
      'nats-server': natsBin ? natsVersion(natsBin) : null,
    },
    options: o,
    payload: { input: '{ n: number, s: string of 16 characters }', raw_frame_body_bytes: 36 },
    summary: summaries,
    rows,
    runs,
    aborted,
  };
  // A profiled run is not a result: its JSON goes next to the profiles.
  const outDir = o.cpuProf ?? join(BENCH_DIR, 'results');
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, `rpc-${startedAt.toISOString().slice(0, 10)}.json`);
  writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`\nresults: ${outFile} (${report.wall_seconds} s)\n`);
  return aborted || runs.some((r) => r.error !== null) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    killAllNow();
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);

/**
 * A local measurement, not a test (CI never runs it): calls/s at 64 calls in flight and p50 round
 * trip at 1 in flight, against the Greeter in a child process and against a raw unix-socket echo.
 *
 *   node --import tsx test/sdk/perf-probe.ts [seconds per round = 2] [rounds = 5]
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { connect } from '../../src/sdk/index.js';
import { Greeter } from '../fixtures/sdk/cells.js';
import { socketDir, startFixture, startGreeter } from './harness.js';

const seconds = Number(process.argv[2] ?? 2);
const IN_FLIGHT = 64;
const LATENCY_SAMPLES = 5000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** CPU seconds used so far by `pid` (utime + stime from /proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface FloodResult {
  rate: number;
  /** CPU µs per call in this process and in the server process. */
  clientCpu: number;
  serverCpu: number;
}

/**
 * Calls `once` with up to IN_FLIGHT outstanding for `ms`. Besides the rate it measures CPU per call
 * on both sides: on a loaded machine that is steadier than the rate, and with one core per
 * process the rate can not exceed 1 / max(client, server).
 */
async function flood(ms: number, once: () => Promise<unknown>, serverPid: number): Promise<FloodResult> {
  let count = 0;
  const cpu0 = process.cpuUsage();
  const server0 = cpuSeconds(serverPid);
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await once();
        count++;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    rate: count / elapsed,
    clientCpu: (cpu.user + cpu.system) / count,
    serverCpu: ((cpuSeconds(serverPid) - server0) * 1e6) / count,
  };
}

/**
 * p50 of sequential round trips, in µs, for two kinds taken turn about (a, b, a, b, ...), so both
 * see the same machine: on a shared machine that matters more than the number of samples.
 */
async function latencyPair(samples: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < samples; i++) {
    let t = performance.now();
    await a();
    ta.push(performance.now() - t);
    t = performance.now();
    await b();
    tb.push(performance.now() - t);
  }
  return [median(ta) * 1000, median(tb) * 1000];
}

/**
 * A raw echo client: one 32-byte message per round trip, messages matched in order. A lone
 * message is written at once (the plain baseline); while many are in flight, the writes of one
 * turn are coalesced as the SDK does, so the throughput comparison is like for like.
 */
async function rawEchoClient(socket: string): Promise<{ roundTrip: () => Promise<void>; lone: () => Promise<void>; close: () => void }> {
  const MSG = Buffer.alloc(32, 7);
  const sock = net.connect(socket);
  await new Promise((resolve) => sock.once('connect', resolve));
  const waiters: Array<() => void> = [];
  let head = 0;
  let leftover = 0;
  sock.on('data', (chunk: Buffer) => {
    const bytes = leftover + chunk.length;
    const k = Math.floor(bytes / MSG.length);
    leftover = bytes % MSG.length;
    for (let i = 0; i < k; i++) waiters[head++]();
    if (head > 4096) {
      waiters.splice(0, head);
      head = 0;
    }
  });
  let queued = 0;
  const flush = () => {
    const n = queued;
    queued = 0;
    if (n > 0) sock.write(n === 1 ? MSG : Buffer.concat(Array.from({ length: n }, () => MSG)));
  };
  return {
    roundTrip: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        if (queued++ === 0) setImmediate(flush);
      }),
    lone: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        sock.write(MSG);
      }),
    close: () => sock.destroy(),
  };
}

const rounds = Number(process.argv[3] ?? 5);
using dir = socketDir();
await using echoServer = await startFixture('echo-server.ts', { ECHO_SOCKET: dir.socket('echo') });
await using greeterServer = await startGreeter(dir.socket('greeter'));
void echoServer;
void greeterServer;
const echo = await rawEchoClient(dir.socket('echo'));
const client = await connect(Greeter, { sockets: [dir.socket('greeter')] });
const input = { name: 'World' };
const sdkCall = () => client.greet(input);

// Warm up both processes' JITs.
await flood(1000, echo.roundTrip, echoServer.pid);
await flood(1000, sdkCall, greeterServer.pid);
await latencyPair(5000, echo.lone, sdkCall);

// Throughput: short windows taken turn about, so both see the same load from the rest of the machine.
const results = { echo: [] as FloodResult[], sdk: [] as FloodResult[], echoP50: [] as number[], sdkP50: [] as number[] };
for (let r = 0; r < rounds; r++) {
  results.echo.push(await flood(seconds * 1000, echo.roundTrip, echoServer.pid));
  results.sdk.push(await flood(seconds * 1000, sdkCall, greeterServer.pid));
  const [echoP50, sdkP50] = await latencyPair(LATENCY_SAMPLES, echo.lone, sdkCall);
  results.echoP50.push(echoP50);
  results.sdkP50.push(sdkP50);
}
echo.close();
await client.close();
const fmt = (n: number) => Math.round(n).toLocaleString('en');
console.log(`rounds: ${rounds} × ${seconds}s (median shown; load ${(await import('node:os')).loadavg()[0].toFixed(2)})`);
for (const [name, runs] of [['raw echo   ', results.echo], ['sdk greeter', results.sdk]] as const) {
  const client = median(runs.map((r) => r.clientCpu));
  const server = median(runs.map((r) => r.serverCpu));
  console.log(
    `${name}: ${fmt(median(runs.map((r) => r.rate)))} calls/s at ${IN_FLIGHT} in flight; CPU per call: client ${client.toFixed(2)} µs, server ${server.toFixed(2)} µs ` +
      `(ceiling with a core each: ${fmt(1e6 / Math.max(client, server))} calls/s)`,
  );
}
console.log(`p50 at 1 in flight: raw echo ${median(results.echoP50).toFixed(1)} µs, sdk ${median(results.sdkP50).toFixed(1)} µs`);
console.log(`p50 ratio sdk/echo: ${(median(results.sdkP50) / median(results.echoP50)).toFixed(2)} (per round: ${results.sdkP50.map((v, i) => (v / results.echoP50[i]).toFixed(2)).join(' ')})`);

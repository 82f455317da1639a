// The measuring client of bench/rpc.ts, one process per system (plain node, no tsx). It connects to
// the server the bench started, checks one echo, then measures:
//   1. latency: calls one at a time (the next starts when the previous answered), a warm-up, then
//      every round trip of the window recorded (performance.now() around the awaited call);
//   2. throughput: `inFlight` loops, each awaiting its call before starting the next (so exactly
//      `inFlight` calls are outstanding at any time), a warm-up, then the calls completed in the window.
// The same loops drive every system; only `call(n)` differs. It also reads the CPU time its own
// process and the server's processes (/proc/<pid>/stat) used in each window, and their read/write
// syscalls (/proc/<pid>/io), per call.
// Prints one line `RESULT <json>` on stdout.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { PAYLOAD_S, RAW_BODY, exitWithParent } from './common.mjs';

const cfg = JSON.parse(process.env.BENCH_RPC_CONFIG ?? 'null');
if (cfg === null) {
  process.stderr.write('BENCH_RPC_CONFIG is not set (this client is started by bench/rpc.ts)\n');
  process.exit(2);
}
exitWithParent(() => process.exit(1));

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ one driver per system

/** Each returns { call(n): Promise<echoed value>, check(value, n): boolean, close(): Promise<void> }. */
const drivers = {
  async cell() {
    const { connect } = await import('cellmesh/sdk');
    const { EchoCell } = await import('./cell-def.mjs');
    const client = await connect(EchoCell, { sockets: [cfg.socket], secret: process.env.BENCH_SECRET });
    return {
      call: (n) => client.echo({ n, s: PAYLOAD_S }),
      check: (v, n) => v?.n === n && v?.s === PAYLOAD_S,
      close: () => client.close(),
    };
  },

  async raw() {
    const sock = net.connect(cfg.socket);
    await new Promise((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.on('error', (e) => fail(`raw socket: ${e.message}`));
    const frame = Buffer.allocUnsafe(4 + RAW_BODY.length);
    frame.writeUInt32BE(RAW_BODY.length, 0);
    RAW_BODY.copy(frame, 4);
    // Replies come back in order: a FIFO of resolvers (a ring, no ids needed).
    let waiters = new Array(1024);
    let head = 0;
    let tail = 0;
    let rest = null;
    sock.on('data', (chunk) => {
      let buf = rest === null ? chunk : Buffer.concat([rest, chunk]);
      rest = null;
      let off = 0;
      while (buf.length - off >= 4) {
        const end = off + 4 + buf.readUInt32BE(off);
        if (end > buf.length) break;
        const resolve = waiters[head];
        waiters[head] = undefined;
        head = (head + 1) & (waiters.length - 1);
        resolve(buf.subarray(off + 4, end));
        off = end;
      }
      if (off < buf.length) rest = Buffer.from(buf.subarray(off));
    });
    // Writes of one turn go out together (one write per burst, flushed in a microtask: a lone call is
    // written at once, 64 calls started by the same chunk of replies share one write).
    // With cfg.rawFlushFrames > 0, a burst is also cut every that many frames (the SDK's FrameWriter policy).
    const cut = cfg.rawFlushFrames > 0 ? cfg.rawFlushFrames : Infinity;
    let queued = 0;
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      const k = queued;
      queued = 0;
      if (k > 0) sock.write(k === 1 ? frame : Buffer.concat(Array.from({ length: k }, () => frame), k * frame.length));
    };
    return {
      call: () =>
        new Promise((resolve) => {
          waiters[tail] = resolve;
          tail = (tail + 1) & (waiters.length - 1);
          if (tail === head) throw new Error('raw client: more than 1023 calls in flight');
          if (++queued >= cut) flush();
          else if (!scheduled) {
            scheduled = true;
            queueMicrotask(flush);
          }
        }),
      check: (v) => Buffer.isBuffer(v) && v.equals(RAW_BODY),
      close: async () => sock.destroy(),
    };
  },

  async grpc() {
    const { EchoService, grpc } = await import('./grpc-def.mjs');
    const client = new EchoService(`unix://${cfg.socket}`, grpc.credentials.createInsecure());
    await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10_000, (e) => (e ? reject(e) : resolve())));
    return {
      call: (n) =>
        new Promise((resolve, reject) => {
          client.Echo({ n, s: PAYLOAD_S }, (error, reply) => (error ? reject(error) : resolve(reply)));
        }),
      check: (v, n) => v?.n === n && v?.s === PAYLOAD_S,
      close: async () => client.close(),
    };
  },

  async nats() {
    const { connect, JSONCodec } = await import('nats');
    const jc = JSONCodec();
    const nc = await connect({ servers: cfg.nats, name: 'rpc-bench-requester' });
    return {
      call: (n) => nc.request('bench.echo', jc.encode({ n, s: PAYLOAD_S }), { timeout: 10_000 }).then((m) => jc.decode(m.data)),
      check: (v, n) => v?.n === n && v?.s === PAYLOAD_S,
      close: () => nc.close(),
    };
  },
};

function fail(message) {
  process.stderr.write(`client (${cfg.system}): ${message}\n`);
  process.exit(1);
}

// ------------------------------------------------------------------ CPU accounting

/** utime and stime of a process so far, in seconds (/proc/<pid>/stat). */
function procCpu(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / cfg.clkTck, sys: Number(f[12]) / cfg.clkTck };
  } catch {
    return { user: NaN, sys: NaN };
  }
}

/** read(2)/write(2)-class syscalls so far (/proc/<pid>/io syscr, syscw). */
function procIo(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    return { r: Number(/^syscr:\s*(\d+)/m.exec(text)[1]), w: Number(/^syscw:\s*(\d+)/m.exec(text)[1]) };
  } catch {
    return { r: NaN, w: NaN };
  }
}

/** Busy and total CPU time of the whole machine so far, in seconds (/proc/stat, all CPUs). */
function machineCpu() {
  // user nice system idle iowait irq softirq steal ...
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const busy = f[0] + f[1] + f[2] + (f[5] ?? 0) + (f[6] ?? 0);
  return { busy: busy / cfg.clkTck, steal: (f[7] ?? 0) / cfg.clkTck, total: total / cfg.clkTck };
}

function snapshot() {
  const u = process.cpuUsage();
  const cpu = { client: { user: u.user / 1e6, sys: u.system / 1e6 } };
  const io = { client: procIo(process.pid) };
  for (const [name, pid] of Object.entries(cfg.watch ?? {})) {
    cpu[name] = procCpu(pid);
    io[name] = procIo(pid);
  }
  return { t: now(), cpu, io, machine: machineCpu() };
}

/**
 * Over a window: per call, the CPU µs of each process (and its user/kernel split) and its read/write
 * syscalls; and the CPU the rest of the machine used meanwhile (other processes; steal apart), in cores.
 */
function perCall(a, b, calls) {
  const r2 = (x) => Math.round(x * 100) / 100;
  const cpu = {};
  const split = {};
  const syscalls = {};
  let ours = 0;
  for (const k of Object.keys(a.cpu)) {
    const user = b.cpu[k].user - a.cpu[k].user;
    const sys = b.cpu[k].sys - a.cpu[k].sys;
    ours += user + sys;
    cpu[k] = calls > 0 ? r2(((user + sys) * 1e6) / calls) : null;
    split[k] = calls > 0 ? { user: r2((user * 1e6) / calls), sys: r2((sys * 1e6) / calls) } : null;
    syscalls[k] = calls > 0 ? { reads: r2((b.io[k].r - a.io[k].r) / calls), writes: r2((b.io[k].w - a.io[k].w) / calls) } : null;
  }
  const seconds = (b.t - a.t) / 1000;
  const machineBusy = b.machine.busy - a.machine.busy;
  const cores = (b.machine.total - a.machine.total) / seconds;
  return {
    cpu_us_per_call: cpu,
    cpu_split_us_per_call: split,
    syscalls_per_call: syscalls,
    machine: {
      cpus: r2(cores),
      busy_cores: r2(machineBusy / seconds),
      ours_cores: r2(ours / seconds),
      // Clamped: tick rounding can make it slightly negative.
      others_cores: r2(Math.max(0, (machineBusy - ours) / seconds)),
      // Time the hypervisor did not run this VM's CPUs when they had work (a VM's own noise).
      steal_cores: r2((b.machine.steal - a.machine.steal) / seconds),
    },
  };
}

// ------------------------------------------------------------------ the two loads

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function latency(call, warmupMs, ms) {
  let n = 0;
  let end = now() + warmupMs;
  while (now() < end) await call(n++);
  const samples = [];
  const snap0 = snapshot();
  const t0 = now();
  end = t0 + ms;
  let t = t0;
  while (t < end) {
    await call(n++);
    const t2 = now();
    samples.push(t2 - t);
    t = t2;
  }
  const elapsed = now() - t0;
  const use = perCall(snap0, snapshot(), samples.length);
  const sorted = Float64Array.from(samples).sort();
  const us = (x) => Math.round(x * 1000 * 10) / 10;
  return {
    calls: samples.length,
    seconds: Math.round(elapsed) / 1000,
    p50_us: us(percentile(sorted, 50)),
    p90_us: us(percentile(sorted, 90)),
    p99_us: us(percentile(sorted, 99)),
    p999_us: us(percentile(sorted, 99.9)),
    min_us: us(sorted[0]),
    max_us: us(sorted[sorted.length - 1]),
    mean_us: us(samples.reduce((a, b) => a + b, 0) / samples.length),
    ...use,
  };
}

async function throughput(call, inFlight, warmupMs, ms) {
  let done = 0;
  let stop = false;
  let failure = null;
  const loop = async (k) => {
    let n = k * 1e9;
    while (!stop) {
      await call(n++);
      done++;
    }
  };
  const loops = Array.from({ length: inFlight }, (_, k) =>
    loop(k).catch((e) => {
      failure ??= e;
      stop = true;
    }),
  );
  await sleep(warmupMs);
  const c0 = done;
  const snap0 = snapshot();
  const t0 = now();
  await sleep(ms);
  const c1 = done;
  const t1 = now();
  const snap1 = snapshot();
  stop = true;
  await Promise.all(loops);
  if (failure) throw failure;
  const calls = c1 - c0;
  return {
    in_flight: inFlight,
    calls,
    seconds: Math.round(t1 - t0) / 1000,
    calls_per_s: Math.round((calls * 1000) / (t1 - t0)),
    ...perCall(snap0, snap1, calls),
  };
}

// ------------------------------------------------------------------ main

try {
  const driver = await drivers[cfg.system]();
  const probe = await driver.call(42);
  if (!driver.check(probe, 42)) fail(`the echo came back wrong: ${JSON.stringify(probe)}`);
  const result = { system: cfg.system, pid: process.pid };
  if (cfg.latency) result.latency = await latency(driver.call, cfg.latency.warmupMs, cfg.latency.ms);
  if (cfg.throughput) result.throughput = await throughput(driver.call, cfg.throughput.inFlight, cfg.throughput.warmupMs, cfg.throughput.ms);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  await Promise.race([driver.close(), sleep(2000)]);
  process.exit(0);
} catch (e) {
  fail(e?.stack ?? String(e));
}

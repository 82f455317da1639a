import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { ManualClock } from '../../src/clock/index.js';
import { openSqliteStore, type Store } from '../../src/store/index.js';
import { Registry } from '../../src/registry/index.js';
import { EventLog } from '../../src/observer/index.js';
import { PortAllocator, Supervisor } from '../../src/supervisor/index.js';
import type { CellSpec } from '../../src/manifest/index.js';
import type { InstanceRecord } from '../../src/reconciler/index.js';
import { FakeProcessDriver } from '../support/fake-driver.js';
import { fake } from '../support/fake.js';

type TestLog = { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void };
const silent: TestLog = { info() {}, warn() {}, error() {} };

/** A supervisor over a real SQLite store, the fake driver and a manual clock. */
class Harness implements Disposable {
  readonly dir = mkdtempSync(join(tmpdir(), 'cell-sup-'));
  readonly clock = new ManualClock();
  readonly driver = new FakeProcessDriver(this.clock);
  readonly store: Store = openSqliteStore(join(this.dir, 'state.db'));
  readonly events = new EventLog(this.store);
  supervisor = this.newSupervisor();

  newSupervisor(ports?: PortAllocator, log: TestLog = silent): Supervisor {
    return new Supervisor({
      ports,
      driver: this.driver,
      store: this.store,
      clock: this.clock,
      registry: new Registry(this.store, 10_000),
      events: this.events,
      log,
      home: join(this.dir, 'home'),
      baseEnv: {},
      logFileOf: (cell, i) => join(this.dir, `${cell}.${i}.log`),
      socketOf: (cell, i) => join(this.dir, `${cell}.${i}.sock`),
      secret: 'test-secret',
    });
  }

  /** Moves the clock in small steps, letting promises (spawns, stops) settle between them. */
  async advance(ms: number, step = 50): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      this.clock.advance(Math.min(step, ms - t));
      await flush();
    }
    await flush();
  }

  state(cell: string, i = 0): InstanceRecord | undefined {
    return this.supervisor.instances().find((r) => r.cell === cell && r.index === i);
  }

  [Symbol.dispose](): void {
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

/** A port nothing listens on (it was free a moment ago): a tcp check on it never passes. */
function closedPort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(port));
    });
  });
}

const processCheck = (over: Partial<CellSpec> = {}) =>
  fake.cell(over.name ?? 'svc', { health: { kind: 'process', intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 5000 }, ...over });

test('supervisor - starts, probes to ready and registers the endpoint', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'svc', instances: 2 })));
  await h.advance(100);
  assert.equal(h.driver.spawns.length, 2);
  assert.deepEqual(h.supervisor.instances().map((r) => r.state), ['ready', 'ready']);
  const spawn = h.driver.spawns[0];
  assert.equal(spawn.env.CELL_NAME, 'svc');
  assert.equal(spawn.env.CELL_INSTANCE, '0');
  assert.equal(spawn.env.PORT, String(h.state('svc')!.port));
  assert.notEqual(h.state('svc', 0)!.port, h.state('svc', 1)!.port);
});

test('supervisor - stop sequence: stop signal, timeout, SIGTERM, kill_after, SIGKILL to the group', async () => {
  using h = new Harness();
  h.driver.script('stubborn', { ignoreSigterm: true, leavesOrphans: true });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'stubborn', stop: { signal: 'SIGINT', timeoutMs: 3000, killAfterMs: 1000 } })));
  await h.advance(100);
  const pid = h.state('stubborn')!.pid!;
  const t0 = h.clock.now();
  const stopped = h.supervisor.stopInstance('stubborn', 0, 'test');
  await h.advance(6000);
  await stopped;
  const sent = h.driver.signals.filter((s) => s.pid === pid && s.signal !== 'SIGCONT').map((s) => `${s.signal}@${s.at - t0}`);
  // SIGINT is fatal to the fake unless ignored: script ignores SIGTERM only, so it exits on SIGINT.
  assert.equal(sent[0], 'SIGINT@0');
  assert.equal(h.state('stubborn')!.state, 'stopped');
});

test('supervisor - a process ignoring SIGTERM is killed after timeout + kill_after, group included', async () => {
  using h = new Harness();
  h.driver.script('stubborn', { ignoreSigterm: true, leavesOrphans: true });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'stubborn', stop: { signal: 'SIGTERM', timeoutMs: 3000, killAfterMs: 1000 } })));
  await h.advance(100);
  const pid = h.state('stubborn')!.pid!;
  const t0 = h.clock.now();
  const stopped = h.supervisor.stopInstance('stubborn', 0, 'test');
  await h.advance(5000);
  await stopped;
  const sent = h.driver.signals.filter((s) => s.pid === pid && s.signal !== 'SIGCONT').map((s) => `${s.signal}@${s.at - t0}`);
  assert.deepEqual(sent.slice(0, 3), ['SIGTERM@0', 'SIGTERM@3000', 'SIGKILL@4000']);
  assert.equal(h.driver.groupAlive(pid), false, 'no orphan left in the group');
  assert.equal(h.state('stubborn')!.state, 'stopped');
  assert.equal(h.state('stubborn')!.hold, true, 'stays stopped');
});

test('supervisor - crash loop: restarts at 0, 2s, 4s, 8s, 16s, then failed', async () => {
  using h = new Harness();
  h.driver.script('crashy', { runForMs: 10, exitCode: 1 });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'crashy' })));
  await h.advance(40_000, 10);
  const starts = h.driver.spawns.map((s) => s.at);
  const gaps = starts.slice(1).map((t, i) => t - starts[i] - 10);
  assert.equal(starts.length, 6);
  gaps.forEach((g, i) => assert.ok(Math.abs(g - [0, 2000, 4000, 8000, 16000][i]) <= 20, `gap ${i} = ${g} (${gaps})`));
  assert.equal(h.state('crashy')!.state, 'failed');
  assert.equal(h.state('crashy')!.restarts, 5);
  await h.advance(60_000, 1000);
  assert.equal(h.driver.spawns.length, 6, 'failed stays failed');
  h.supervisor.release(['crashy']);
  await h.advance(5, 5);
  assert.equal(h.driver.spawns.length, 7, 'released: started again');
});

test('supervisor - only restarts after a failure may start warm, and not for a cell with restart.warm false', async () => {
  using h = new Harness();
  h.driver.script('crashy', { runForMs: 10, exitCode: 1 });
  h.driver.script('cold', { runForMs: 10, exitCode: 1 });
  const cold = processCheck({ name: 'cold' });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'crashy' }), { ...cold, restart: { ...cold.restart, warm: false } }));
  await h.advance(3_000, 10);
  const asked = (cell: string) => h.driver.spawns.filter((s) => s.cell === cell).map((s) => s.afterFailure);
  assert.deepEqual(asked('crashy'), [false, true, true], 'the first start is no restart; each one after a crash is');
  assert.deepEqual(asked('cold'), [false, false, false]);
});

test('supervisor - a failed cell stopped and started again on request (cell restart) gets all its retries again', async () => {
  using h = new Harness();
  h.driver.script('crashy', { runForMs: 10, exitCode: 1 });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'crashy' })));
  await h.advance(40_000, 10);
  assert.equal(h.state('crashy')!.state, 'failed');
  assert.equal(h.state('crashy')!.failures, 6);
  // As `cell restart crashy` does: stop, then release.
  await h.supervisor.stopInstance('crashy', 0, 'restart requested');
  assert.equal(h.state('crashy')!.failures, 0, 'a stop asked for ends the streak');
  h.supervisor.release(['crashy']);
  await h.advance(5, 5);
  const spawned = h.driver.spawns.length;
  // Still broken: it crashes again, and is restarted (at once, then with backoff), not failed at once.
  await h.advance(2_100, 10);
  assert.equal(h.driver.spawns.length, spawned + 2, 'restarted at once, then after the 2 s backoff');
  assert.notEqual(h.state('crashy')!.state, 'failed');
});

test('supervisor - a launching instance that never gets ready is killed when its grace runs out, with nothing else going on', async () => {
  using h = new Harness();
  // A tcp check on a port nothing listens on: the instance runs but never becomes ready.
  const closed = await closedPort();
  h.supervisor.setDesired(
    fake.desired(fake.cell('stuck', { health: { kind: 'tcp', port: closed, intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 3000 } })),
  );
  await h.advance(100, 10);
  const first = h.state('stuck')!;
  assert.equal(first.state, 'launching');
  assert.ok(first.pid !== null);
  await h.advance(2800, 50);
  assert.equal(h.state('stuck')!.pid, first.pid, 'still within its grace');
  await h.advance(300, 50);
  assert.ok(h.driver.signalsTo(first.pid!).length > 0, 'signalled once the grace of 3 s ran out');
  const killed = h.events.list(h.clock.now(), { cell: 'stuck' }).find((e) => /not healthy within grace 3000ms/.test(e.reason ?? ''));
  assert.ok(killed, JSON.stringify(h.events.list(h.clock.now(), { cell: 'stuck' })));
  assert.ok(Math.abs(killed.at - (first.stateSince + 3000)) <= 60, `killed at ${killed.at - first.stateSince} ms into its grace`);
});

test('supervisor - a transition is logged at its own time, not at the time of its write', async () => {
  using h = new Harness();
  // Time moves while the supervisor works: every reading of the clock is 1 ms later.
  const base = h.clock.now.bind(h.clock);
  let drift = 0;
  h.clock.now = () => base() + drift++;
  h.driver.script('crashy', { runForMs: 10, exitCode: 1 });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'crashy' })));
  await h.advance(2_100, 10);
  const events = h.events.list(h.clock.now(), { cell: 'crashy' });
  assert.ok(events.filter((e) => e.to === 'backoff').length >= 1, JSON.stringify(events));
  const rec = h.state('crashy')!;
  const last = events.at(-1)!;
  assert.equal(last.to, rec.state);
  assert.equal(last.at, rec.stateSince, 'the event carries the transition time the record holds');
});

test('supervisor - a spawn error is a failure with its reason, retried with backoff', async () => {
  using h = new Harness();
  h.driver.script('broken', { startError: 'ENOENT: no such directory' });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'broken' })));
  await h.advance(100);
  const rec = h.state('broken')!;
  assert.equal(rec.state, 'backoff');
  assert.match(rec.reason!, /spawn failed: .*ENOENT/);
});

test('supervisor - readopts live processes by pid and start time, restarts dead ones, never duplicates', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' }), processCheck({ name: 'b' })));
  await h.advance(100);
  const a = h.state('a')!;
  const b = h.state('b')!;
  // The daemon dies (its supervisor lets go of everything); b's process dies meanwhile.
  h.supervisor.detach();
  h.driver.exitProcess(b.pid!, null, 'SIGKILL');
  const spawnsBefore = h.driver.spawns.length;
  h.supervisor = h.newSupervisor();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' }), processCheck({ name: 'b' })));
  const result = h.supervisor.readopt();
  assert.deepEqual(result, { adopted: 1, gone: 1, strays: 0 });
  await h.advance(200);
  assert.equal(h.state('a')!.pid, a.pid, 'a readopted as is');
  assert.equal(h.state('a')!.state, 'ready');
  assert.equal(h.driver.spawns.length, spawnsBefore + 1, 'only b started again');
  assert.equal(h.state('b')!.state, 'ready');
  assert.equal(h.state('b')!.restarts, 1);
});

test('supervisor - a stop of everything while spawns wait their turn: they never start, nothing outlives it', async () => {
  using h = new Harness();
  const names = ['a', 'b', 'c', 'd', 'e'];
  h.supervisor.setDesired(fake.desired(...names.map((name) => processCheck({ name }))));
  // The tick (a microtask) has claimed all five; their spawns are still queued.
  await Promise.resolve();
  assert.deepEqual(h.supervisor.instances().map((r) => r.state), ['launching', 'launching', 'launching', 'launching', 'launching']);
  await h.supervisor.stopAll([names], 'cell down');
  assert.deepEqual(h.driver.running(), [], 'no process runs once stopAll returns');
  await h.advance(1000);
  assert.equal(h.driver.spawns.length, 0);
  for (const r of h.supervisor.instances()) {
    assert.equal(r.state, 'stopped', r.cell);
    assert.equal(r.pid, null, r.cell);
  }
});

test('supervisor - an instance stopped while its spawn runs: the new process is killed, the record stays stopped', async () => {
  using h = new Harness();
  const spawn = h.driver.spawn.bind(h.driver);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  h.driver.spawn = async (req) => {
    const handle = await spawn(req);
    await gate;
    return handle;
  };
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'svc' })));
  for (let i = 0; i < 50 && h.driver.spawns.length === 0; i++) await flush();
  assert.equal(h.driver.spawns.length, 1, 'the spawn is under way');
  const pid = h.driver.spawns[0].pid;
  await h.supervisor.stopInstance('svc', 0, 'scaled down');
  release();
  await h.advance(100);
  assert.equal(h.driver.get(pid)!.isRunning, false);
  assert.ok(h.driver.signalsTo(pid).includes('SIGKILL'));
  assert.equal(h.state('svc')!.state, 'stopped');
  assert.equal(h.state('svc')!.pid, null);
});

test('supervisor - readoption kills a live process whose record says stopped, and starts one instance only', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' })));
  await h.advance(100);
  const old = h.state('a')!;
  h.supervisor.detach();
  // What an older daemon could leave: the record stopped, its process still running.
  h.store.put('instances/a/0', { ...old, state: 'stopped' }, { now: h.clock.now() });
  h.supervisor = h.newSupervisor();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' })));
  const result = h.supervisor.readopt();
  assert.deepEqual(result, { adopted: 0, gone: 0, strays: 1 });
  assert.equal(h.driver.get(old.pid!)!.isRunning, false, 'the leftover process is killed');
  await h.advance(200);
  assert.deepEqual(h.driver.running('a').map((p) => p.pid), [h.state('a')!.pid], 'one process of a runs, the recorded one');
  assert.notEqual(h.state('a')!.pid, old.pid);
  assert.equal(h.state('a')!.state, 'ready');
});

test('supervisor - probeNow runs a launching instance\'s readiness probe at once, not at its next ramp step', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'gw' })));
  for (let i = 0; i < 50 && h.state('gw')?.pid == null; i++) await flush();
  assert.equal(h.state('gw')!.state, 'launching', 'no probe yet: the clock has not moved');
  h.supervisor.probeNow('gw', 0);
  await flush();
  assert.equal(h.state('gw')!.state, 'ready');
  // Nothing to do for an instance that is not launching.
  h.supervisor.probeNow('gw', 0);
  h.supervisor.probeNow('nope', 0);
  assert.equal(h.state('gw')!.state, 'ready');
});

test('supervisor - a port handed out at the claim but taken by its spawn turn: the instance gets another', async () => {
  // Below the dynamic range, where no cell of a test running alongside listens.
  const range = { min: 17_000, max: 17_009 };
  using h = new Harness();
  h.supervisor = h.newSupervisor(new PortAllocator(range, () => 0));
  const other = net.createServer();
  await new Promise<void>((resolve) => other.listen(range.min, '127.0.0.1', resolve));
  try {
    h.supervisor.setDesired(fake.desired(processCheck({ name: 'svc', instances: 2 })));
    await Promise.resolve(); // the reconciler's tick: the claims, not yet the spawns
    // Handed out at once, unchecked (shown by `cell ps` from now on): 17000 though it is taken.
    assert.deepEqual(h.supervisor.instances().map((r) => [r.port, r.pid]), [[range.min, null], [range.min + 1, null]]);
    await h.advance(100);
    const spawned = h.driver.spawns.map((s) => ({ cell: s.cell, instance: s.instance, port: Number(s.env.PORT) }));
    assert.deepEqual(spawned, [
      { cell: 'svc', instance: 0, port: range.min + 2 },
      { cell: 'svc', instance: 1, port: range.min + 1 },
    ]);
    assert.deepEqual(h.supervisor.instances().map((r) => [r.port, r.state]), [[range.min + 2, 'ready'], [range.min + 1, 'ready']]);
  } finally {
    await new Promise((r) => other.close(r));
  }
});

test('supervisor - a restart whose port another program took while the instance was down moves to another port', async () => {
  const range = { min: 17_100, max: 17_109 };
  using h = new Harness();
  h.supervisor = h.newSupervisor(new PortAllocator(range, () => 0));
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'svc' })));
  await h.advance(100);
  const first = h.state('svc')!;
  assert.equal(first.port, range.min);
  // It dies; before its restart, something else listens on its port (another mesh's instance).
  const other = net.createServer();
  await new Promise<void>((resolve) => other.listen(range.min, '127.0.0.1', resolve));
  try {
    h.driver.exitProcess(first.pid!, 1);
    await h.advance(100);
    const again = h.state('svc')!;
    assert.equal(again.state, 'ready');
    assert.notEqual(again.pid, first.pid);
    assert.equal(again.port, range.min + 1, 'restarted on a free port');
    assert.equal(h.driver.spawns.at(-1)!.env.PORT, String(range.min + 1));
  } finally {
    await new Promise((r) => other.close(r));
  }
});

test('supervisor - launching instances started 8 ms apart are probed together, on the 20 ms grid', async () => {
  using h = new Harness();
  const t0 = h.clock.now();
  assert.equal(t0 % 20, 0, 'the manual clock starts on the grid');
  h.clock.advance(3);
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' })));
  await flush();
  assert.equal(h.state('a')!.startedAt, t0 + 3);
  h.clock.advance(8);
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' }), processCheck({ name: 'b' })));
  await flush();
  assert.equal(h.state('b')!.startedAt, t0 + 11);
  assert.equal(h.state('a')!.state, 'launching');
  // Their ramps say t0+23 and t0+31: both fall in the grid step ending at t0+40 (one wake-up).
  await h.advance(40, 1);
  assert.equal(h.supervisor.lastProbe('a', 0)?.at, t0 + 40, 'a, 37 ms after its spawn');
  assert.equal(h.supervisor.lastProbe('b', 0)?.at, t0 + 40, 'b, 29 ms after its spawn');
  assert.equal(h.state('a')!.state, 'ready');
  assert.equal(h.state('b')!.state, 'ready');
});

test('supervisor - a round skips a member probed less than half an interval ago (its readiness probe)', async () => {
  using h = new Harness();
  // Two real TCP listeners count the checks each gets; b listens only from t=1.9 s on.
  const hits = { a: 0, b: 0 };
  const servers = { a: net.createServer((c) => (hits.a++, c.destroy())), b: net.createServer((c) => (hits.b++, c.destroy())) };
  const freePort = () =>
    new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(port));
      });
    });
  const [portA, portB] = [await freePort(), await freePort()];
  const listen = (srv: net.Server, port: number) => new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', () => resolve()));
  await listen(servers.a, portA);
  try {
    const tcp = (port: number) => ({ kind: 'tcp' as const, port, intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 5000 });
    h.supervisor.setDesired(fake.desired(fake.cell('a', { health: tcp(portA) }), fake.cell('b', { health: tcp(portB) })));
    // a is ready at once; its round comes every second from then (t≈1.03 s, 2.03 s, 3.03 s).
    await h.advance(1890, 10);
    assert.equal(h.state('a')!.state, 'ready');
    assert.equal(hits.a, 2);
    await listen(servers.b, portB);
    await h.advance(110, 10);
    assert.equal(h.state('b')!.state, 'launching', 'b\'s ramp has no step between 1.9 s and 2 s');
    // b's readiness probe at t=2 s, 30 ms before a round.
    h.supervisor.probeNow('b', 0);
    await h.advance(10, 10);
    assert.equal(h.state('b')!.state, 'ready');
    assert.equal(hits.b, 1);
    await h.advance(500, 10);
    assert.equal(hits.a, 3, 'the round at ~2.03 s ran');
    assert.equal(hits.b, 1, 'and skipped b, probed 30 ms before');
    await h.advance(1000, 10);
    assert.equal(hits.a, 4);
    assert.equal(hits.b, 2, 'b is checked at the next round');
  } finally {
    servers.a.close();
    servers.b.close();
  }
});

test('supervisor - scaled down, then back up while the instance still drains: it starts again once stopped', async () => {
  using h = new Harness();
  h.driver.script('slow', { stopAfterMs: 1000 });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'slow' })));
  await h.advance(100);
  const first = h.state('slow')!;
  assert.equal(first.state, 'ready');
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'slow', instances: 0 })));
  await h.advance(200);
  assert.equal(h.state('slow')!.state, 'draining');
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'slow', instances: 1 })));
  await h.advance(1200);
  const again = h.state('slow')!;
  assert.equal(again.state, 'ready', JSON.stringify(again));
  assert.notEqual(again.pid, first.pid);
  assert.equal(h.driver.get(first.pid!)!.isRunning, false);
  // And a scale-down that is left alone ends with the instance gone, not held as stopped.
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'slow', instances: 0 })));
  await h.advance(1200);
  assert.equal(h.state('slow'), undefined);
});

test('supervisor - a dependency down pauses dependents with SIGSTOP and resumes them with SIGCONT', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'db' }), processCheck({ name: 'api', dependsOn: ['db'] })));
  await h.advance(200);
  const api = h.state('api')!;
  h.driver.exitProcess(h.state('db')!.pid!, 1);
  await flush();
  assert.equal(h.state('api')!.state, 'paused');
  assert.ok(h.driver.signalsTo(api.pid!).includes('SIGSTOP'));
  await h.advance(200);
  assert.equal(h.state('db')!.state, 'ready');
  assert.equal(h.state('api')!.state, 'ready');
  assert.ok(h.driver.signalsTo(api.pid!).includes('SIGCONT'));
  assert.equal(h.state('api')!.pid, api.pid);
});

test('supervisor - an instance killed for its health gets its stop signal, then SIGTERM after timeout, then SIGKILL after kill_after', async () => {
  using h = new Harness();
  const closed = await closedPort();
  // Its stop signal is one it ignores (SIGWINCH), and it ignores SIGTERM: only SIGKILL ends it.
  h.driver.script('hung', { ignoreSigterm: true });
  h.supervisor.setDesired(
    fake.desired(
      fake.cell('hung', {
        health: { kind: 'tcp', port: closed, intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 1000 },
        stop: { signal: 'SIGWINCH', timeoutMs: 3000, killAfterMs: 2000 },
      }),
    ),
  );
  await h.advance(100, 10);
  const first = h.state('hung')!;
  await h.advance(1000, 50);
  const killedAt = h.driver.signals.find((s) => s.pid === first.pid && s.signal === 'SIGWINCH')?.at;
  assert.ok(killedAt !== undefined, `the stop signal first: ${JSON.stringify(h.driver.signals)}`);
  assert.ok(!h.driver.signalsTo(first.pid!).includes('SIGKILL'), 'no SIGKILL before timeout + kill_after');
  await h.advance(3100, 50);
  const term = h.driver.signals.find((s) => s.pid === first.pid && s.signal === 'SIGTERM');
  assert.ok(term && Math.abs(term.at - (killedAt + 3000)) <= 60, `SIGTERM after the stop timeout: ${JSON.stringify(h.driver.signals)}`);
  assert.equal(h.state('hung')!.pid, first.pid, 'it still runs: it ignores SIGTERM');
  await h.advance(2000, 50);
  const kill = h.driver.signals.find((s) => s.pid === first.pid && s.signal === 'SIGKILL');
  assert.ok(kill && Math.abs(kill.at - (term.at + 2000)) <= 60, `SIGKILL after kill_after: ${JSON.stringify(h.driver.signals)}`);
  await h.advance(200, 10);
  assert.notEqual(h.state('hung')!.pid, first.pid, 'gone, and started again (or backing off)');
  assert.match(h.events.list(h.clock.now(), { cell: 'hung' }).map((e) => e.reason ?? '').join('\n'), /unhealthy: not healthy within grace 1000ms/);
});

test('supervisor - when an instance\'s process exits, what it left in its process group is killed before it starts again', async () => {
  using h = new Harness();
  h.driver.script('forker', { runForMs: 500, exitCode: 1, leavesOrphans: true });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'forker' })));
  await h.advance(100, 10);
  const first = h.state('forker')!;
  await h.advance(500, 10);
  assert.ok(h.driver.signalsTo(first.pid!).includes('SIGKILL'), `its group got SIGKILL: ${JSON.stringify(h.driver.signals)}`);
  assert.equal(h.driver.get(first.pid!)!.isGroupAlive, false, 'no orphan of the first run is left');
});

test('supervisor - a store that refuses writes (disk full): a crashed instance is restarted all the same, and its records are written once the store takes writes', async () => {
  using h = new Harness();
  const logged: string[] = [];
  const log: TestLog = { info: (_o, msg) => void logged.push(msg), warn() {}, error: (_o, msg) => void logged.push(msg) };
  h.supervisor = h.newSupervisor(undefined, log);
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' }), processCheck({ name: 'b', dependsOn: ['a'] })));
  await h.advance(300);
  assert.equal(h.state('a')!.state, 'ready');
  assert.equal(h.state('b')!.state, 'ready');
  const txn = h.store.txn.bind(h.store);
  const full = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  h.store.txn = () => {
    throw full;
  };
  const before = h.state('a')!;
  h.driver.exitProcess(before.pid!, null, 'SIGKILL');
  await h.advance(300);
  const after = h.state('a')!;
  assert.equal(after.state, 'ready', 'restarted from memory');
  assert.notEqual(after.pid, before.pid);
  assert.equal(after.restarts, 1);
  assert.equal(logged.filter((m) => m.startsWith('cannot write the state store')).length, 1, 'said once, not per write');
  const stored = () => h.store.get<InstanceRecord>('instances/a/0', h.clock.now())?.value;
  assert.equal(stored()?.pid, before.pid, 'the store still has the old process');
  h.store.txn = txn;
  await h.advance(1100);
  assert.equal(stored()?.pid, after.pid, 'written again once the store takes writes');
  assert.equal(stored()?.state, 'ready');
  assert.ok(logged.includes('the state store takes writes again: every record written'));
});

test('supervisor - before its store closes, a daemon is told whether the store refused the last records (written once more first)', async () => {
  using h = new Harness();
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'a' })));
  await h.advance(300);
  assert.equal(h.supervisor.finalStoreError(), null, 'nothing refused');
  const txn = h.store.txn.bind(h.store);
  h.store.txn = () => {
    throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  };
  const pid = h.state('a')!.pid!;
  h.driver.exitProcess(pid, null, 'SIGKILL');
  await h.advance(300);
  h.supervisor.detach();
  assert.equal(h.supervisor.finalStoreError(), 'database or disk is full');
  // Space freed: the last try writes the records of memory, and says nothing is wrong.
  h.store.txn = txn;
  assert.equal(h.supervisor.finalStoreError(), null);
  assert.equal(h.store.get<InstanceRecord>('instances/a/0', h.clock.now())?.value.pid, h.state('a')!.pid);
});

test('supervisor - a stop waits for the whole process group: a shell line\'s program finishes its shutdown after the shell leading it died of the stop signal', async () => {
  using h = new Harness();
  // `cd app && node server.js`: SIGTERM to the group ends the shell at once; the program exits
  // 1.5 s later, its shutdown done.
  h.driver.script('web', { groupStopsAfterMs: 1500 });
  h.supervisor.setDesired(fake.desired(processCheck({ name: 'web', stop: { signal: 'SIGTERM', timeoutMs: 5000, killAfterMs: 2000 } })));
  await h.advance(200);
  const pid = h.state('web')!.pid!;
  const stopped = h.supervisor.stopInstance('web', 0, 'test');
  await h.advance(1000, 50);
  assert.equal(h.driver.get(pid)!.isRunning, false, 'the shell died of SIGTERM');
  assert.equal(h.state('web')!.state, 'draining', 'the stop waits for the program');
  assert.ok(!h.driver.signalsTo(pid).includes('SIGKILL'), `no SIGKILL while the program shuts down: ${h.driver.signalsTo(pid).join(' ')}`);
  await h.advance(700, 50);
  await stopped;
  assert.equal(h.state('web')!.state, 'stopped');
  assert.deepEqual([...new Set(h.driver.signalsTo(pid))], ['SIGTERM', 'SIGCONT'], 'the stop signal alone');
  assert.equal(h.driver.groupAlive(pid), false);
});

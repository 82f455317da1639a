import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/clock/index.js';
import type { ExitInfo, SpawnRequest } from '../../src/supervisor/driver.js';
import { SpawnError } from '../../src/supervisor/errors.js';
import { FakeProcessDriver } from '../support/fake-driver.js';

function req(cell: string, command = `run-${cell}`, instance = 0): SpawnRequest {
  return { cell, instance, command, cwd: '/srv', env: {}, logFile: `/logs/${cell}.${instance}.log` };
}

/** The exit info if `p` has settled by now (after pending microtasks), else undefined. */
async function peek(p: Promise<ExitInfo>): Promise<ExitInfo | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setImmediate(() => r(undefined)))]);
}

test('fake driver - runForMs and exitCode play out on the clock', async () => {
  const clock = new ManualClock();
  const driver = new FakeProcessDriver(clock).script('api', { runForMs: 500, exitCode: 3 });
  const h = await driver.spawn(req('api'));
  assert.equal(h.pid, 10_000);
  assert.equal(driver.spawns[0].cell, 'api');
  assert.equal(driver.spawns[0].at, clock.now());
  clock.advance(499);
  assert.equal(await peek(h.exited), undefined);
  assert.equal(driver.isAlive(h.pid, h.startTicks), true);
  clock.advance(1);
  assert.deepEqual(await peek(h.exited), { code: 3, signal: null });
  assert.equal(driver.isAlive(h.pid, h.startTicks), false);
  assert.equal(driver.groupAlive(h.pid), false);
});

test('fake driver - unscripted processes run until signaled; signals are recorded', async () => {
  const driver = new FakeProcessDriver();
  const a = await driver.spawn(req('web', 'node web.js', 0));
  const b = await driver.spawn(req('web', 'node web.js', 1));
  assert.equal(b.pid, 10_001);
  assert.notEqual(a.startTicks, b.startTicks);
  assert.equal(driver.running('web').length, 2);
  driver.signalGroup(a.pid, 'SIGTERM');
  assert.deepEqual(await peek(a.exited), { code: null, signal: 'SIGTERM' });
  driver.signalGroup(a.pid, 'SIGKILL');
  driver.signalGroup(99, 'SIGTERM');
  assert.deepEqual(driver.signals.map((s) => [s.pid, s.signal]), [
    [a.pid, 'SIGTERM'],
    [a.pid, 'SIGKILL'],
    [99, 'SIGTERM'],
  ]);
  assert.deepEqual(driver.signalsTo(a.pid), ['SIGTERM', 'SIGKILL']);
  assert.equal(driver.running('web').length, 1);
});

test('fake driver - ignoreSigterm survives SIGTERM until SIGKILL', async () => {
  const driver = new FakeProcessDriver().scriptCommand('stubborn', { ignoreSigterm: true });
  const h = await driver.spawn(req('x', 'stubborn'));
  driver.signalGroup(h.pid, 'SIGTERM');
  assert.equal(await peek(h.exited), undefined);
  driver.signalGroup(h.pid, 'SIGKILL');
  assert.deepEqual(await peek(h.exited), { code: null, signal: 'SIGKILL' });
});

test('fake driver - graceful stop takes stopAfterMs and exits with signalExitCode', async () => {
  const clock = new ManualClock();
  const driver = new FakeProcessDriver(clock).script('api', { stopAfterMs: 200, signalExitCode: 0 });
  const h = await driver.spawn(req('api'));
  driver.signalGroup(h.pid, 'SIGTERM');
  clock.advance(199);
  assert.equal(await peek(h.exited), undefined);
  clock.advance(1);
  assert.deepEqual(await peek(h.exited), { code: 0, signal: null });
});

test('fake driver - startError rejects with a SpawnError and starts nothing', async () => {
  const driver = new FakeProcessDriver().script('db', { startError: 'ENOENT: no such file' });
  await assert.rejects(driver.spawn(req('db')), (err: unknown) => err instanceof SpawnError && err.cell === 'db');
  assert.equal(driver.spawns.length, 0);
  assert.equal(driver.failedSpawns.length, 1);
});

test('fake driver - exitProcess crashes one by hand; leavesOrphans keeps the group until SIGKILL', async () => {
  const driver = new FakeProcessDriver().script('spawner', { leavesOrphans: true });
  const h = await driver.spawn(req('spawner'));
  driver.exitProcess(h.pid, 137, null);
  assert.deepEqual(await peek(h.exited), { code: 137, signal: null });
  assert.equal(driver.groupAlive(h.pid), true);
  driver.signalGroup(h.pid, 'SIGKILL');
  assert.equal(driver.groupAlive(h.pid), false);
  assert.throws(() => driver.exitProcess(4, 1));
});

test('fake driver - adopt matches pid and start time', async () => {
  const driver = new FakeProcessDriver();
  driver.addOrphan(4321, 777);
  assert.equal(driver.adopt(4321, 778), undefined);
  const h = driver.adopt(4321, 777);
  assert.ok(h);
  driver.signalGroup(4321, 'SIGTERM');
  assert.deepEqual(await peek(h.exited), { code: null, signal: 'SIGTERM' });
  assert.equal(driver.adopt(4321, 777), undefined);
});

/**
 * The SDK against servers in child processes: crashes, restarts, several instances, and the
 * shutdown op and SIGTERM ending a real process.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CallTimeoutError, ConnectionLostError, connect, pingCell, shutdownCell } from '../../src/sdk/index.js';
import { Greeter } from '../fixtures/sdk/cells.js';
import { sleep, socketDir, startGreeter, startGreeters } from './harness.js';

test('sdk - a call in flight fails at once with ConnectionLostError when the server is SIGKILLed', async () => {
  using dir = socketDir();
  await using server = await startGreeter(dir.socket('greeter'));
  await using client = await connect(Greeter, { sockets: [dir.socket('greeter')], timeoutMs: 10_000 });
  assert.equal((await client.whoami({})).pid, server.pid);
  const inFlight = Array.from({ length: 5 }, () => client.sleep({ ms: 5000 }).catch((e: unknown) => e));
  await sleep(50);
  const killedAt = performance.now();
  server.kill('SIGKILL');
  const errors = await Promise.all(inFlight);
  const failedAfter = performance.now() - killedAt;
  for (const error of errors) {
    assert.ok(error instanceof ConnectionLostError, String(error));
    assert.equal(error.cell, 'greeter');
    assert.equal(error.method, 'sleep');
  }
  assert.ok(failedAfter < 2000, `failed ${failedAfter} ms after the kill`);
});

test('sdk - the client reconnects when the server comes back, and a call made while it is down waits for it', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  const first = await startGreeter(socket);
  await using client = await connect(Greeter, { sockets: [socket], timeoutMs: 15_000 });
  assert.equal((await client.whoami({})).pid, first.pid);
  first.kill('SIGKILL');
  await first.exited;
  // The exit can be seen here before the client sees its connection drop: this call either went to
  // the dying connection (ConnectionLostError) or waited in vain; either way the client knows now.
  const probe = await client.whoami({}, { timeoutMs: 300 }).catch((e: unknown) => e);
  assert.ok(probe instanceof ConnectionLostError || probe instanceof CallTimeoutError, String(probe));
  // Made while nothing is up: it waits for the reconnect (within its timeout).
  const waiting = client.whoami({});
  await sleep(200);
  await using second = await startGreeter(socket);
  assert.equal((await waiting).pid, second.pid);
  assert.equal((await client.greet({ name: 'back' })).greeting, 'Hello, back!');
});

test('sdk - calls are spread round-robin over 3 instances, and go to the others when one dies', async () => {
  using dir = socketDir();
  const sockets = ['a', 'b', 'c'].map((name) => dir.socket(name));
  await using servers = await startGreeters(['a', 'b', 'c'].map((instance, i) => ({ socket: sockets[i], instance })));
  const b = servers[1];
  await using client = await connect(Greeter, { sockets, timeoutMs: 10_000 });
  // connect resolves with the first instance; wait until every one has been seen.
  const deadline = Date.now() + 5000;
  for (;;) {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await client.whoami({})).instance);
    if (seen.size === 3) break;
    assert.ok(Date.now() < deadline, `only ${[...seen]} answered`);
    await sleep(20);
  }
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const { instance } = await client.whoami({});
    counts.set(instance, (counts.get(instance) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), ['a', 'b', 'c']);
  for (const [instance, count] of counts) assert.equal(count, 100, `${instance} got ${count} of 300`);
  // Pipelined calls spread too.
  const parallel = await Promise.all(Array.from({ length: 90 }, () => client.whoami({})));
  assert.equal(new Set(parallel.map((r) => r.instance)).size, 3);
  b.kill('SIGKILL');
  await b.exited;
  // Calls sent before the client saw b's connection drop fail with ConnectionLostError; later ones avoid b.
  await Promise.all(Array.from({ length: 3 }, () => client.whoami({}).catch((e: unknown) => assert.ok(e instanceof ConnectionLostError, String(e)))));
  const after = new Set<string>();
  for (let i = 0; i < 60; i++) after.add((await client.whoami({})).instance);
  assert.deepEqual([...after].sort(), ['a', 'c']);
});

test('sdk - the shutdown op lets a slow call finish, then the server acknowledges and exits 0', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  await using server = await startGreeter(socket, { secret: 'k' });
  await using client = await connect(Greeter, { sockets: [socket], secret: 'k' });
  const slow = client.sleep({ ms: 400, tag: 'slow' });
  await sleep(50);
  let acknowledged = false;
  const shutdown = shutdownCell(socket, { secret: 'k', timeoutMs: 5000 }).then(() => (acknowledged = true));
  const result = await slow;
  assert.equal(result.tag, 'slow');
  assert.equal(result.pid, server.pid);
  await shutdown;
  assert.ok(acknowledged);
  assert.equal(await server.exited, 0);
  await assert.rejects(pingCell(socket, { secret: 'k', timeoutMs: 500 }));
});

test('sdk - SIGTERM drains calls in flight before the process exits 0', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  await using server = await startGreeter(socket);
  await using client = await connect(Greeter, { sockets: [socket] });
  const slow = client.sleep({ ms: 300, tag: 'term' });
  await sleep(50);
  server.kill('SIGTERM');
  assert.equal((await slow).tag, 'term');
  assert.equal(await server.exited, 0);
});

test('sdk - a shutdown op with a wrong secret is refused and the server keeps serving', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  await using server = await startGreeter(socket, { secret: 'right' });
  void server;
  await assert.rejects(shutdownCell(socket, { secret: 'wrong', timeoutMs: 2000 }), /authentication failed/);
  assert.equal((await pingCell(socket, { secret: 'right', timeoutMs: 2000 })).cell, 'greeter');
});

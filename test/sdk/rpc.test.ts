/**
 * The SDK end to end with the server in this process: calls, errors, validation, timeouts,
 * cancellation, auth, admin ops, draining and backpressure.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AbortError,
  CallTimeoutError,
  type CallContext,
  ConnectionClosedError,
  ConnectionLostError,
  HandshakeError,
  RemoteError,
  type ServeOptions,
  connect,
  defineCell,
  fetchSchema,
  pingCell,
  serve,
  shutdownCell,
  z,
} from '../../src/sdk/index.js';
import { Op } from '../../src/sdk/protocol.js';
import { Greeter } from '../fixtures/sdk/cells.js';
import { sleep, socketDir } from './harness.js';
import { RawConnection } from './raw-client.js';

class NotFoundError extends Error {
  readonly code = 'NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

type GreeterHandlers = Parameters<typeof serve<typeof Greeter>>[1];

function handlers(overrides: Partial<GreeterHandlers> = {}): GreeterHandlers {
  return {
    greet: ({ name }) => ({ greeting: `Hello, ${name}!` }),
    sleep: async ({ ms, tag }) => {
      await sleep(ms);
      return { tag, pid: process.pid };
    },
    fail: ({ name, message, code }) => {
      const error = new Error(message) as Error & { code?: string };
      error.name = name;
      if (code !== undefined) error.code = code;
      throw error;
    },
    badOutput: () => ({ count: 'many' }) as unknown as { count: number },
    whoami: () => ({ pid: process.pid, instance: 'in-process' }),
    echo: (input) => input,
    ...overrides,
  };
}

/** A Greeter server in this process on a fresh socket; disposing closes it and removes the folder. */
async function setup(options: ServeOptions & { handlers?: Partial<GreeterHandlers> } = {}) {
  const dir = socketDir();
  const socket = options.socket ?? dir.socket('greeter');
  const server = await serve(Greeter, handlers(options.handlers), { handleSignals: false, ...options, socket });
  return {
    socket,
    server,
    async [Symbol.asyncDispose]() {
      await server.close();
      dir[Symbol.dispose]();
    },
  };
}

test('sdk - a typed call round-trips', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  assert.deepEqual(await client.greet({ name: 'World' }), { greeting: 'Hello, World!' });
  assert.deepEqual(await client.call('greet', { name: 'call' }), { greeting: 'Hello, call!' });
  assert.equal(env.server.inFlight, 0);
});

test('sdk - the untyped client calls by name and through its proxy', async () => {
  await using env = await setup();
  await using client = await connect('greeter', { sockets: [env.socket] });
  assert.deepEqual(await client.greet({ name: 'proxy' }), { greeting: 'Hello, proxy!' });
  assert.deepEqual(await client.call('greet', { name: 'call' }), { greeting: 'Hello, call!' });
  // Not thenable: awaiting the client must not call a remote `then`.
  assert.equal((client as Record<string, unknown>).then, undefined);
});

test('sdk - values survive msgpack: nested objects, binary, dates, big arrays', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const value = { a: [1, 2.5, -3, null, true, 'ü€𝄞'], bin: Buffer.from([0, 1, 2, 255]), nested: { deep: { list: Array.from({ length: 10_000 }, (_, i) => i) } } };
  const back = (await client.echo(value)) as typeof value;
  assert.deepEqual(back.a, value.a);
  assert.deepEqual(Buffer.from(back.bin), value.bin);
  assert.deepEqual(back.nested.deep.list.length, 10_000);
});

test('sdk - pipelined calls complete out of order, each with its own reply', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const order: string[] = [];
  const calls = [
    ['slow', 150],
    ['fast', 5],
    ['middle', 60],
  ].map(([tag, ms]) => client.sleep({ ms: ms as number, tag: tag as string }).then((r) => (order.push(r.tag!), r)));
  const results = await Promise.all(calls);
  assert.deepEqual(order, ['fast', 'middle', 'slow']);
  assert.deepEqual(
    results.map((r) => r.tag),
    ['slow', 'fast', 'middle'],
  );
  // Many at once on one connection.
  const many = await Promise.all(Array.from({ length: 2000 }, (_, i) => client.greet({ name: String(i) })));
  many.forEach((r, i) => assert.equal(r.greeting, `Hello, ${i}!`));
});

test('sdk - a handler error reaches the caller with its name, message, code, cell and method', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const error = await client.fail({ name: 'NotFoundError', message: 'no user 42', code: 'NOT_FOUND' }).catch((e: unknown) => e);
  assert.ok(error instanceof RemoteError);
  assert.equal(error.name, 'RemoteError');
  assert.equal(error.remoteName, 'NotFoundError');
  assert.equal(error.message, 'no user 42');
  assert.equal(error.code, 'NOT_FOUND');
  assert.equal(error.cell, 'greeter');
  assert.equal(error.method, 'fail');
  const plain = await client.fail({ name: 'TypeError', message: 'boom' }).catch((e: unknown) => e);
  assert.ok(plain instanceof RemoteError);
  assert.equal(plain.code, 'HANDLER_ERROR');
  assert.equal(plain.remoteName, 'TypeError');
});

test('sdk - handler errors of every shape: class instances, async throws, non-errors', async () => {
  await using env = await setup({
    handlers: {
      greet: async ({ name }) => {
        await sleep(1);
        if (name === 'class') throw new NotFoundError('gone');
        if (name === 'string') throw 'just a string';
        throw Object.assign(Object.create(null), { message: 42, code: 7 });
      },
    },
  });
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const a = (await client.greet({ name: 'class' }).catch((e: unknown) => e)) as RemoteError;
  assert.deepEqual([a.remoteName, a.code, a.message], ['NotFoundError', 'NOT_FOUND', 'gone']);
  const b = (await client.greet({ name: 'string' }).catch((e: unknown) => e)) as RemoteError;
  assert.deepEqual([b.remoteName, b.code, b.message], ['Error', 'HANDLER_ERROR', 'just a string']);
  const c = (await client.greet({ name: 'odd' }).catch((e: unknown) => e)) as RemoteError;
  assert.equal(c.code, 'HANDLER_ERROR');
  assert.equal(env.server.inFlight, 0);
});

test('sdk - invalid input is refused with INVALID_INPUT and the zod issue on one line', async () => {
  await using env = await setup();
  await using client = await connect('greeter', { sockets: [env.socket] });
  const error = (await client.greet({ name: 42 }).catch((e: unknown) => e)) as RemoteError;
  assert.ok(error instanceof RemoteError);
  assert.equal(error.code, 'INVALID_INPUT');
  assert.equal(error.method, 'greet');
  assert.match(error.message, /^invalid input for greeter\.greet: name: .*expected string, received number/);
  assert.doesNotMatch(error.message, /\n/);
  const missing = (await client.greet().catch((e: unknown) => e)) as RemoteError;
  assert.equal(missing.code, 'INVALID_INPUT');
});

test('sdk - output its schema rejects comes back as INVALID_OUTPUT', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const error = (await client.badOutput({}).catch((e: unknown) => e)) as RemoteError;
  assert.ok(error instanceof RemoteError);
  assert.equal(error.code, 'INVALID_OUTPUT');
  assert.match(error.message, /count/);
});

test('sdk - async schemas (refinements) are checked too', async () => {
  const Async = defineCell('async-cell', {
    check: { input: z.string().refine(async (s) => s.length > 2, 'too short'), output: z.string() },
  });
  using dir = socketDir();
  await using server = await serve(Async, { check: (s) => s.toUpperCase() }, { socket: dir.socket('a'), handleSignals: false });
  void server;
  await using client = await connect(Async, { sockets: [dir.socket('a')] });
  assert.equal(await client.check('long'), 'LONG');
  const error = (await client.check('ab').catch((e: unknown) => e)) as RemoteError;
  assert.equal(error.code, 'INVALID_INPUT');
  assert.match(error.message, /too short/);
});

test('sdk - an unknown method is refused with UNKNOWN_METHOD', async () => {
  await using env = await setup();
  await using client = await connect('greeter', { sockets: [env.socket] });
  const error = (await client.nope({}).catch((e: unknown) => e)) as RemoteError;
  assert.ok(error instanceof RemoteError);
  assert.equal(error.code, 'UNKNOWN_METHOD');
  assert.equal(error.cell, 'greeter');
  assert.equal(error.method, 'nope');
});

test('sdk - a call with no reply in time rejects with CallTimeoutError, and the client keeps working', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const started = performance.now();
  const error = await client.sleep({ ms: 400 }, { timeoutMs: 80 }).catch((e: unknown) => e);
  const elapsed = performance.now() - started;
  assert.ok(error instanceof CallTimeoutError, String(error));
  assert.equal(error.code, 'TIMEOUT');
  assert.equal(error.cell, 'greeter');
  assert.equal(error.method, 'sleep');
  assert.ok(elapsed >= 75 && elapsed < 1000, `timed out after ${elapsed} ms`);
  assert.deepEqual(await client.greet({ name: 'after' }), { greeting: 'Hello, after!' });
  // Mixed timeouts: each fires on its own.
  const short = client.sleep({ ms: 300, tag: 's' }, { timeoutMs: 30 }).catch((e: unknown) => e);
  const long = client.sleep({ ms: 20, tag: 'l' }, { timeoutMs: 5000 });
  assert.ok((await short) instanceof CallTimeoutError);
  assert.equal((await long).tag, 'l');
});

test('sdk - the client-wide timeoutMs applies to every call', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket], timeoutMs: 50 });
  await assert.rejects(client.sleep({ ms: 300 }), CallTimeoutError);
});

test('sdk - an aborted signal rejects the call with AbortError', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const controller = new AbortController();
  const pending = client.sleep({ ms: 300 }, { signal: controller.signal }).catch((e: unknown) => e);
  setTimeout(() => controller.abort(new Error('user gave up')), 20);
  const error = (await pending) as AbortError;
  assert.ok(error instanceof AbortError);
  assert.equal(error.name, 'AbortError');
  assert.equal((error.cause as Error).message, 'user gave up');
  const already = await client.greet({ name: 'x' }, { signal: AbortSignal.abort() }).catch((e: unknown) => e);
  assert.equal((already as Error).name, 'AbortError');
  // A signal that never fires does not disturb a normal call.
  assert.deepEqual(await client.greet({ name: 'ok' }, { signal: new AbortController().signal }), { greeting: 'Hello, ok!' });
});

test('sdk - one signal can guard many calls without a listener leak warning', async () => {
  await using env = await setup();
  await using client = await connect(Greeter, { sockets: [env.socket] });
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const controller = new AbortController();
    const calls = Array.from({ length: 50 }, () => client.sleep({ ms: 300 }, { signal: controller.signal }).catch((e: unknown) => e));
    // Calls that complete before the abort release the signal as well.
    await Promise.all(Array.from({ length: 50 }, () => client.greet({ name: 'x' }, { signal: controller.signal })));
    controller.abort();
    const errors = await Promise.all(calls);
    assert.ok(errors.every((e) => e instanceof AbortError));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.map((w) => w.message), []);
  } finally {
    process.off('warning', onWarning);
  }
});

test('sdk - close() rejects pending calls with ConnectionClosedError, and later calls too', async () => {
  await using env = await setup();
  const client = await connect(Greeter, { sockets: [env.socket] });
  const pending = client.sleep({ ms: 300 }).catch((e: unknown) => e);
  await sleep(10);
  await client.close();
  const error = await pending;
  assert.ok(error instanceof ConnectionClosedError, String(error));
  assert.equal(error.method, 'sleep');
  await assert.rejects(client.greet({ name: 'late' }), ConnectionClosedError);
  await client.close();
});

test('sdk - a wrong secret is refused with HandshakeError', async () => {
  await using env = await setup({ secret: 'right' });
  await assert.rejects(connect(Greeter, { sockets: [env.socket], secret: 'wrong' }), (error: unknown) => {
    assert.ok(error instanceof HandshakeError);
    assert.equal(error.code, 'HANDSHAKE_FAILED');
    assert.match(error.message, /authentication failed/);
    return true;
  });
  await assert.rejects(connect(Greeter, { sockets: [env.socket] }), HandshakeError);
  await assert.rejects(pingCell(env.socket, { secret: 'wrong', timeoutMs: 2000 }), HandshakeError);
  await using client = await connect(Greeter, { sockets: [env.socket], secret: 'right' });
  assert.deepEqual(await client.greet({ name: 'auth' }), { greeting: 'Hello, auth!' });
});

test('sdk - a socket that serves another cell is refused', async () => {
  await using env = await setup();
  const Other = defineCell('other', { greet: Greeter.methods.greet });
  await assert.rejects(connect(Other, { sockets: [env.socket] }), /serves cell "greeter", not "other"/);
});

test('sdk - connect fails when no instance can be reached', async () => {
  using dir = socketDir();
  await assert.rejects(connect(Greeter, { sockets: [dir.socket('nobody')] }), (error: unknown) => {
    assert.ok(error instanceof ConnectionLostError);
    assert.match(error.message, /nobody\.sock/);
    return true;
  });
});

test('sdk - pingCell, fetchSchema and the schema of every method', async () => {
  await using env = await setup({ secret: 's3' });
  const { rttMs, cell } = await pingCell(env.socket, { secret: 's3', timeoutMs: 2000 });
  assert.equal(cell, 'greeter');
  assert.ok(rttMs >= 0 && rttMs < 2000);
  const schema = await fetchSchema(env.socket, { secret: 's3', timeoutMs: 2000 });
  assert.equal(schema.cell, 'greeter');
  assert.equal(schema.protocol, 1);
  assert.deepEqual(Object.keys(schema.methods).sort(), Object.keys(Greeter.methods).sort());
  assert.deepEqual(schema.methods.greet.input.properties, { name: { type: 'string' } });
  assert.deepEqual(schema.methods.greet.input.required, ['name']);
  assert.equal((schema.methods.sleep.input.properties as Record<string, { type: string }>).ms.type, 'integer');
});

test('sdk - pingCell rejects for a socket nobody serves, and times out on one that never answers', async () => {
  using dir = socketDir();
  await assert.rejects(pingCell(dir.socket('none'), { timeoutMs: 1000 }), ConnectionLostError);
  const net = await import('node:net');
  const silent = net.createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(dir.socket('silent'), resolve));
  try {
    await assert.rejects(pingCell(dir.socket('silent'), { timeoutMs: 100 }), CallTimeoutError);
  } finally {
    silent.close();
  }
});

test('sdk - the shutdown op drains calls in flight, refuses new ones, acknowledges, then closes', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  const server = await serve(Greeter, handlers(), { socket, handleSignals: false });
  const client = await connect(Greeter, { sockets: [socket], timeoutMs: 3000 });
  const slow = client.sleep({ ms: 250, tag: 'slow' });
  const raw = await RawConnection.open(socket);
  await sleep(30);
  let acknowledgedAt = 0;
  const shutdown = shutdownCell(socket, { timeoutMs: 5000 }).then(() => (acknowledgedAt = performance.now()));
  await sleep(30);
  assert.equal(server.isDraining, true);
  // A call arriving while draining is refused with SHUTTING_DOWN; the GOAWAY came first.
  raw.send([Op.CALL, 7, 'greet', { name: 'late' }]);
  const refused = (await raw.next((m) => Array.isArray(m) && m[1] === 7)) as [number, number, { code: string }];
  assert.equal(refused[0], Op.ERROR);
  assert.equal(refused[2].code, 'SHUTTING_DOWN');
  assert.ok(raw.messages.some((m) => Array.isArray(m) && m[0] === Op.GOAWAY));
  const result = await slow;
  const completedAt = performance.now();
  assert.equal(result.tag, 'slow');
  await shutdown;
  assert.ok(acknowledgedAt >= completedAt, 'acknowledged only after the slow call completed');
  await server.closed;
  await raw.closed;
  await assert.rejects(pingCell(socket, { timeoutMs: 500 }));
  await client.close();
});

test('sdk - calls a draining instance refuses (SHUTTING_DOWN) go to another instance', async () => {
  using dir = socketDir();
  const instance = (name: string) => handlers({ whoami: () => ({ pid: process.pid, instance: name }) });
  const a = await serve(Greeter, instance('a'), { socket: dir.socket('a'), handleSignals: false });
  const b = await serve(Greeter, instance('b'), { socket: dir.socket('b'), handleSignals: false });
  await using client = await connect(Greeter, { sockets: [dir.socket('a'), dir.socket('b')] });
  while (new Set(await Promise.all(Array.from({ length: 4 }, () => client.whoami({}).then((r) => r.instance)))).size < 2) await sleep(10);
  const slow = client.sleep({ ms: 200 }).catch((e: unknown) => e);
  // Start draining a; calls sent in this same turn reach it before its GOAWAY reaches the client.
  const closing = a.close();
  const results = await Promise.all(Array.from({ length: 20 }, () => client.whoami({}).catch((e: unknown) => e)));
  assert.deepEqual(results.map((r) => (r as { instance?: string }).instance ?? String(r)), Array(20).fill('b'));
  await slow;
  await closing;
  await b.close();
});

test('sdk - a closed server can be replaced on the same socket path, and a stale socket file is taken over', async () => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  const first = await serve(Greeter, handlers(), { socket, handleSignals: false });
  await assert.rejects(serve(Greeter, handlers(), { socket, handleSignals: false }), /cannot listen/);
  await first.close();
  const net = await import('node:net');
  const fs = await import('node:fs');
  // A socket file nobody listens on (its owner died; libuv could not unlink it) is replaced.
  const leftover = net.createServer();
  await new Promise<void>((resolve) => leftover.listen(socket, resolve));
  fs.renameSync(socket, `${socket}.moved`);
  await new Promise((resolve) => leftover.close(resolve));
  fs.renameSync(`${socket}.moved`, socket);
  assert.ok(fs.existsSync(socket));
  const second = await serve(Greeter, handlers(), { socket, handleSignals: false });
  await using client = await connect(Greeter, { sockets: [socket] });
  assert.deepEqual(await client.greet({ name: 'again' }), { greeting: 'Hello, again!' });
  await client.close();
  await second.close();
});

test('sdk - serve needs a socket: it names CELL_SOCKET when neither the option nor the variable is set', async () => {
  const saved = process.env.CELL_SOCKET;
  delete process.env.CELL_SOCKET;
  try {
    await assert.rejects(serve(Greeter, handlers()), (error: unknown) => error instanceof TypeError && /CELL_SOCKET/.test(error.message));
  } finally {
    if (saved !== undefined) process.env.CELL_SOCKET = saved;
  }
});

test('sdk - serve checks its handlers and options, naming what is wrong', async () => {
  using dir = socketDir();
  const { greet: _greet, ...missing } = handlers();
  await assert.rejects(serve(Greeter, missing as GreeterHandlers, { socket: dir.socket('x') }), /handlers\.greet must be a function/);
  await assert.rejects(serve(Greeter, { ...handlers(), extra: () => 1 } as GreeterHandlers, { socket: dir.socket('x') }), /handlers\.extra has no method/);
  await assert.rejects(serve(Greeter, handlers(), { socket: dir.socket('x'), maxInFlightPerConnection: 0 }), /maxInFlightPerConnection must be a positive integer, got 0/);
});

test('sdk - defineCell validates the cell name and the methods', () => {
  assert.throws(() => defineCell('Bad_Name', {}), (e: unknown) => e instanceof TypeError && /"Bad_Name"/.test(e.message));
  assert.throws(() => defineCell('', {}), TypeError);
  assert.throws(() => defineCell('a'.repeat(64), {}), TypeError);
  assert.throws(() => defineCell('ok', { close: { input: z.string(), output: z.string() } }), /"close"/);
  assert.throws(() => defineCell('ok', { m: { input: 'string', output: z.string() } as never }), /methods\.m\.input must be a zod schema/);
  const def = defineCell('a-1', { m: { input: z.string(), output: z.string() } });
  assert.equal(def.name, 'a-1');
  assert.ok(Object.isFrozen(def));
});

test('sdk - the handler context carries the cell, the method, the id and a signal aborted when the caller goes away', async () => {
  let seen: { cell: string; method: string; id: number } | undefined;
  let aborted: Promise<unknown> | undefined;
  await using env = await setup({
    handlers: {
      sleep: async ({ ms }, ctx: CallContext) => {
        seen = { cell: ctx.cell, method: ctx.method, id: ctx.id };
        aborted = new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(ctx.signal.reason)));
        await sleep(ms);
        return { pid: process.pid };
      },
    },
  });
  const client = await connect(Greeter, { sockets: [env.socket] });
  const pending = client.sleep({ ms: 300 }).catch((e: unknown) => e);
  await sleep(30);
  assert.equal(seen?.cell, 'greeter');
  assert.equal(seen?.method, 'sleep');
  assert.ok(seen!.id > 0);
  await client.close();
  assert.ok((await pending) instanceof ConnectionClosedError);
  assert.match(String((await aborted) as Error), /connection closed/);
});

test('sdk - a connection over maxInFlightPerConnection is paused until calls finish', async () => {
  let running = 0;
  let peak = 0;
  await using env = await setup({
    maxInFlightPerConnection: 8,
    handlers: {
      sleep: async ({ ms }) => {
        running++;
        peak = Math.max(peak, running);
        await sleep(ms);
        running--;
        return { pid: process.pid };
      },
    },
  });
  await using client = await connect(Greeter, { sockets: [env.socket] });
  await Promise.all(Array.from({ length: 200 }, () => client.sleep({ ms: 5 })));
  // The reader stops at the frame that reaches the limit, even mid-chunk.
  assert.equal(peak, 8);
});

test('sdk - a duplicate request id in flight is refused with DUPLICATE_ID', async () => {
  await using env = await setup();
  const raw = await RawConnection.open(env.socket);
  raw.send([Op.CALL, 5, 'sleep', { ms: 100 }]);
  raw.send([Op.CALL, 5, 'sleep', { ms: 1 }]);
  const first = (await raw.next((m) => Array.isArray(m) && m[1] === 5)) as [number, number, { code: string }];
  assert.equal(first[0], Op.ERROR);
  assert.equal(first[2].code, 'DUPLICATE_ID');
  const reply = (await raw.next((m) => Array.isArray(m) && m[0] === Op.REPLY && m[1] === 5)) as [number, number, unknown];
  assert.ok(reply);
  raw.close();
});

test('sdk - a second server-side call on a closed client connection does not disturb the server', async () => {
  await using env = await setup();
  for (let i = 0; i < 20; i++) {
    const client = await connect(Greeter, { sockets: [env.socket] });
    void client.sleep({ ms: 50 }).catch(() => {});
    await client.close();
  }
  await sleep(80);
  assert.equal(env.server.inFlight, 0);
  await using client = await connect(Greeter, { sockets: [env.socket] });
  assert.deepEqual(await client.greet({ name: 'still' }), { greeting: 'Hello, still!' });
});

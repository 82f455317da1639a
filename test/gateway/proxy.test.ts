import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, KERNEL_CELLS, type GatewayOptions, type RouteEndpoint } from '../../src/gateway/index.js';
import { KERNEL_CELLS as DAEMON_KERNEL_CELLS } from '../../src/daemon/index.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An upstream instance on 127.0.0.1, closed (with its connections) after the test. */
async function instance(t: TestContext, cell: string, instanceIndex: number, handler: RequestListener): Promise<RouteEndpoint & { server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { cell, instance: instanceIndex, url: `http://127.0.0.1:${port}`, port, server };
}

async function gatewayOn(t: TestContext, options?: GatewayOptions): Promise<{ gateway: Gateway; port: number }> {
  const gateway = new Gateway(options);
  const port = await gateway.listen(0);
  t.after(() => gateway.close());
  return { gateway, port };
}

/** A request through the gateway; rejects on a reset or truncated answer, and after `limitMs` (a hang). */
function send(port: number, path: string, options: { method?: string; headers?: OutgoingHttpHeaders; body?: string[]; limitMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    const limit = setTimeout(() => {
      reject(new Error(`no complete answer nor error within ${options.limitMs ?? 3000} ms: the client hangs`));
      req.destroy();
    }, options.limitMs ?? 3000);
    req.on('close', () => clearTimeout(limit));
    req.on('error', reject);
    for (const chunk of options.body ?? []) req.write(chunk);
    req.end();
  });
}

const errorMessage = (answer: Answer) => (JSON.parse(answer.body) as { error: { message: string } }).error.message;

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => resolve(body));
  });

test('gateway - an instance that dies mid-answer cuts the client off at once (content-length and chunked)', async (t) => {
  const web = await instance(t, 'web', 0, (req, res) => {
    if (req.url === '/length') res.writeHead(200, { 'content-length': 1000 });
    else res.writeHead(200); // chunked
    res.write('x'.repeat(100));
    setTimeout(() => res.socket?.destroy(), 30);
  });
  const { gateway, port } = await gatewayOn(t);
  gateway.setEndpoints([web], ['web']);
  for (const path of ['/web/length', '/web/chunked']) {
    const started = Date.now();
    await assert.rejects(send(port, path), (err: NodeJS.ErrnoException) => {
      assert.doesNotMatch(err.message, /hangs/, path);
      return true;
    });
    assert.ok(Date.now() - started < 1000, `${path}: cut off after ${Date.now() - started} ms`);
  }
  // A whole answer still goes through after that.
  gateway.setEndpoints([await instance(t, 'web', 1, (_req, res) => res.end('whole'))]);
  assert.equal((await send(port, '/web/')).body, 'whole');
});

test('gateway - an instance that never answers is a 504 after the headers timeout', async (t) => {
  const silent = await instance(t, 'silent', 0, () => {});
  const { gateway, port } = await gatewayOn(t, { headersTimeoutMs: 150 });
  gateway.setEndpoints([silent], ['silent']);
  const answer = await send(port, '/silent/');
  assert.equal(answer.status, 504);
  assert.equal(errorMessage(answer), 'silent.0 sent no response within 0.15 s');
  assert.throws(() => new Gateway({ headersTimeoutMs: 0 }), /option headersTimeoutMs must be a positive number of milliseconds, got 0/);
});

test('gateway - an upload that stops half-way is a 408 (the client\'s doing), not a 504 naming the instance', async (t) => {
  const waiting = await instance(t, 'up', 0, (req, res) => req.on('end', () => res.end('got it')).resume());
  const { gateway, port } = await gatewayOn(t, { headersTimeoutMs: 150 });
  gateway.setEndpoints([waiting], ['up']);
  const answer = await new Promise<Answer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/up/', method: 'POST', headers: { 'content-length': 100 }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.write('abc');
    setTimeout(() => req.destroy(), 3000);
  });
  assert.equal(answer.status, 408);
  assert.equal(errorMessage(answer), 'the request body stopped coming: nothing for 0.15 s');
});

test('gateway - a client that goes away aborts its upstream request', async (t) => {
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((r) => (upstreamClosed = r));
  let arrived!: () => void;
  const hasArrived = new Promise<void>((r) => (arrived = r));
  const slow = await instance(t, 'slow', 0, (req) => {
    req.socket.on('close', upstreamClosed);
    arrived();
  });
  const { gateway, port } = await gatewayOn(t);
  gateway.setEndpoints([slow], ['slow']);
  const client = request({ host: '127.0.0.1', port, path: '/slow/', agent: false });
  client.on('error', () => {});
  client.end();
  await hasArrived;
  client.destroy();
  const limit = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the upstream request outlived its client')), 2000).unref());
  await Promise.race([closed, limit]);
});

test('gateway - a GET sent on a kept-alive socket to a dead instance is tried on the next; a POST is a 502', async (t) => {
  /** An instance that answers its first request and then "dies" with the next one on its hands. */
  const dying = (t: TestContext, cell: string) => {
    let served = 0;
    return instance(t, cell, 0, (req, res) => {
      if (served++ === 0) res.end(`${cell} dying`);
      else req.socket.destroy();
    });
  };
  const { gateway, port } = await gatewayOn(t, { holdTimeoutMs: 300 });
  const alive = await instance(t, 'web', 1, async (req, res) => res.end(`alive ${req.method} ${await readBody(req)}`));

  for (const method of ['GET', 'HEAD', 'OPTIONS', 'POST', 'DELETE']) {
    const cell = `web-${method.toLowerCase()}`;
    const dead = await dying(t, cell);
    gateway.setEndpoints([dead], [cell]);
    assert.equal((await send(port, `/${cell}/`)).status, 200, `${method}: the first GET pools a socket to ${cell}.0`);
    // The round-robin counter is at 1: the dying instance comes second.
    gateway.setEndpoints([{ ...alive, cell }, dead], [cell]);
    const answer = await send(port, `/${cell}/`, { method });
    if (method === 'POST' || method === 'DELETE') {
      assert.equal(answer.status, 502, method);
      assert.equal(errorMessage(answer), `${cell}.0: socket hang up`);
    } else {
      assert.equal(answer.status, 200, method);
      if (method !== 'HEAD') assert.equal(answer.body, `alive ${method} `);
    }
  }

  // A reset on a fresh connection (the instance took it, then died): a GET is tried on the next
  // instance too, a POST is not (the instance may have acted on it).
  const resetting = await instance(t, 'rst', 0, (req) => req.socket.destroy());
  gateway.setEndpoints([resetting, { ...alive, cell: 'rst' }], ['rst']);
  assert.equal((await send(port, '/rst/')).body, 'alive GET ');
  gateway.setEndpoints([{ ...resetting, cell: 'rst-post' }, { ...alive, cell: 'rst-post' }], ['rst-post']);
  const post = await send(port, '/rst-post/', { method: 'POST', body: ['order'] });
  assert.deepEqual([post.status, errorMessage(post)], [502, 'rst-post.0: socket hang up']);

  // A refused connection is tried on the next instance too; with none left, a 502 once the
  // request has waited its hold out for a new routing table.
  const refused = await instance(t, 'gone', 0, () => {});
  refused.server.close();
  gateway.setEndpoints([refused, { ...alive, cell: 'gone' }], ['gone']);
  assert.equal((await send(port, '/gone/', { method: 'OPTIONS' })).body, 'alive OPTIONS ');
  gateway.setEndpoints([refused], ['gone']);
  assert.deepEqual(errorMessage(await send(port, '/gone/')), 'no instance of gone answered (waited 0.3 s)');
  // A refused connection leaves the body unread: a request with one is tried on the next
  // instance whatever its method (a fresh cell: its round-robin starts with the refusing one).
  for (const method of ['GET', 'POST', 'PUT']) {
    const cell = `fresh-${method.toLowerCase()}`;
    gateway.setEndpoints([{ ...refused, cell }, { ...alive, cell }], [cell]);
    const withBody = await send(port, `/${cell}/`, { method, headers: { 'content-length': 7 }, body: ['payload'] });
    assert.deepEqual([withBody.status, withBody.body], [200, `alive ${method} payload`], method);
    // Node's client frames a GET's body only when told to.
    const chunked = await send(port, `/${cell}/`, { method, headers: { 'transfer-encoding': 'chunked' }, body: ['pay', 'load'] });
    assert.deepEqual([chunked.status, chunked.body], [200, `alive ${method} payload`], `${method} chunked`);
  }
});

test('gateway - a request waits for a cell on its way back, up to its hold timeout', async (t) => {
  const { gateway, port } = await gatewayOn(t, { holdTimeoutMs: 800 });
  const back = await instance(t, 'web', 0, async (req, res) => res.end(`back ${req.method} ${await readBody(req)}`));
  const down = { ...back, port: 1, url: 'http://127.0.0.1:1' };

  // The only instance died; the daemon's word of it has not come yet: the refused request waits
  // for the next table, which has the instance back.
  gateway.setEndpoints([down], ['web', 'db']);
  const started = Date.now();
  const pending = send(port, '/web/', { method: 'POST', body: ['order 1'] });
  setTimeout(() => gateway.setEndpoints([], ['web', 'db'], ['web']), 50);
  setTimeout(() => gateway.setEndpoints([back], ['web', 'db']), 150);
  assert.deepEqual(await pending.then((a) => [a.status, a.body]), [200, 'back POST order 1']);
  assert.ok(Date.now() - started >= 140, `answered after ${Date.now() - started} ms, before the instance was back`);

  // A cell with no ready instance and none on its way is a 503 at once; one on its way, a 503
  // after the hold timeout if it does not come.
  gateway.setEndpoints([], ['web', 'db'], ['web']);
  const t0 = Date.now();
  assert.deepEqual(errorMessage(await send(port, '/db/')), 'no ready instance of cell db');
  assert.ok(Date.now() - t0 < 300, `db answered after ${Date.now() - t0} ms`);
  const t1 = Date.now();
  assert.deepEqual(errorMessage(await send(port, '/web/')), 'no ready instance of cell web (waited 0.8 s)');
  assert.ok(Date.now() - t1 >= 750, `web answered after ${Date.now() - t1} ms`);

  // A new table that still has no instance keeps the request waiting; a cell that is no longer
  // starting (its instance failed) ends the wait at once; an unknown cell is a 404.
  const waiting = send(port, '/web/');
  setTimeout(() => gateway.setEndpoints([], ['web', 'db'], ['web']), 50);
  setTimeout(() => gateway.setEndpoints([], ['web', 'db'], []), 150);
  const t2 = Date.now();
  assert.deepEqual(errorMessage(await waiting), 'no ready instance of cell web');
  assert.ok(Date.now() - t2 < 700, `web answered after ${Date.now() - t2} ms`);
  gateway.setEndpoints([], ['web', 'db'], ['web']);
  const renamed = send(port, '/web/');
  setTimeout(() => gateway.setEndpoints([], ['db'], []), 50);
  assert.equal((await renamed).status, 404);

  // A client that leaves while its request waits is forgotten; the gateway's stop answers the rest.
  gateway.setEndpoints([], ['web'], ['web']);
  const leaving = request({ host: '127.0.0.1', port, path: '/web/', agent: false });
  leaving.on('error', () => {});
  leaving.end();
  const last = send(port, '/web/');
  await new Promise((r) => setTimeout(r, 50));
  leaving.destroy();
  await gateway.close();
  assert.deepEqual(await last.then((a) => [a.status, errorMessage(a)]), [503, 'no ready instance of cell web (the gateway is stopping)']);
});

test('gateway - X-Forwarded-For is appended to, X-Forwarded-Host and -Proto are set', async (t) => {
  const echo = await instance(t, 'echo', 0, (req, res) => res.end(JSON.stringify(req.headers)));
  const { gateway, port } = await gatewayOn(t);
  gateway.setEndpoints([echo], ['echo']);
  const seen = async (headers: OutgoingHttpHeaders) => JSON.parse((await send(port, '/echo/', { headers })).body) as IncomingHttpHeaders;

  const plain = await seen({ host: 'shop.example:8080' });
  assert.equal(plain['x-forwarded-for'], '127.0.0.1');
  assert.equal(plain['x-forwarded-host'], 'shop.example:8080');
  assert.equal(plain['x-forwarded-proto'], 'http');
  assert.equal(plain.host, 'shop.example:8080');

  const proxied = await seen({ host: 'shop.example', 'x-forwarded-for': '203.0.113.7, 10.0.0.2', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed' });
  assert.equal(proxied['x-forwarded-for'], '203.0.113.7, 10.0.0.2, 127.0.0.1');
  assert.equal(proxied['x-forwarded-host'], 'shop.example');
  assert.equal(proxied['x-forwarded-proto'], 'http');
});

test('gateway - hop-by-hop headers are not forwarded either way, bodies are framed again', async (t) => {
  const echo = await instance(t, 'echo', 0, async (req, res) => {
    const body = await readBody(req);
    res.writeHead(200, { connection: 'keep-alive, x-upstream-hop', 'x-upstream-hop': '1', 'x-kept': 'yes', trailer: 'x-sum', upgrade: 'h2c', 'content-type': 'application/json' });
    res.write(JSON.stringify({ method: req.method, headers: req.headers, body }).slice(0, 5)); // chunked
    res.end(JSON.stringify({ method: req.method, headers: req.headers, body }).slice(5));
  });
  echo.server.keepAliveTimeout = 60_000; // node then sends `keep-alive: timeout=60`
  const { gateway, port } = await gatewayOn(t);
  gateway.setEndpoints([echo], ['echo']);

  const answer = await send(port, '/echo/', {
    method: 'POST',
    headers: { connection: 'x-client-hop', 'x-client-hop': '1', 'keep-alive': 'timeout=30', 'proxy-connection': 'keep-alive', te: 'trailers', upgrade: 'websocket', 'x-kept': 'yes' },
    body: ['chunked ', 'upload'],
  });
  assert.equal(answer.status, 200);
  for (const name of ['x-upstream-hop', 'trailer', 'upgrade']) assert.equal(answer.headers[name], undefined, `${name} reached the client`);
  assert.doesNotMatch(String(answer.headers['keep-alive']), /60/, "the upstream's keep-alive reached the client");
  assert.doesNotMatch(String(answer.headers.connection), /x-upstream-hop/);
  assert.equal(answer.headers['x-kept'], 'yes');
  const seen = JSON.parse(answer.body) as { method: string; headers: IncomingHttpHeaders; body: string };
  assert.equal(seen.body, 'chunked upload');
  for (const name of ['x-client-hop', 'keep-alive', 'proxy-connection', 'te', 'upgrade']) assert.equal(seen.headers[name], undefined, `${name} reached the instance`);
  assert.doesNotMatch(String(seen.headers.connection), /x-client-hop/);
  assert.equal(seen.headers['x-kept'], 'yes');

  // A chunked body on a method node does not chunk by default still arrives whole.
  for (const method of ['DELETE', 'OPTIONS']) {
    const r = JSON.parse((await send(port, '/echo/', { method, headers: { 'transfer-encoding': 'chunked' }, body: ['a', 'b'] })).body) as { body: string };
    assert.equal(r.body, 'ab', method);
  }
  const sized = JSON.parse((await send(port, '/echo/', { method: 'PUT', headers: { 'content-length': 5 }, body: ['sized'] })).body) as { headers: IncomingHttpHeaders; body: string };
  assert.deepEqual([sized.body, sized.headers['content-length'], sized.headers['transfer-encoding']], ['sized', '5', undefined]);
});

test('gateway - kernel cells are not routable, the gateway least of all', async (t) => {
  assert.deepEqual([...KERNEL_CELLS].sort(), [...DAEMON_KERNEL_CELLS].sort(), "the gateway's kernel cells are the daemon's");
  const { gateway, port } = await gatewayOn(t);
  // The daemon lists the kernel cells among the mesh's, and the gateway has an endpoint of its own.
  const self = { cell: 'gateway', instance: 0, url: `http://127.0.0.1:${port}`, port };
  const observer = await instance(t, 'observer', 0, (_req, res) => res.end('observer'));
  gateway.setEndpoints([self, observer], [...DAEMON_KERNEL_CELLS, 'web']);
  for (const cell of DAEMON_KERNEL_CELLS) {
    const answer = await send(port, `/${cell}/v1/x`, { limitMs: 2000 });
    assert.deepEqual([answer.status, errorMessage(answer)], [404, `no cell named "${cell}"`]);
  }
  gateway.setEndpoints([self], null);
  assert.equal((await send(port, '/gateway')).status, 404);
});

test('gateway - an upload cut off by its instance closes the client connection, so the next request on it is not stuck', async (t) => {
  const { gateway, port } = await gatewayOn(t);
  const web = await instance(t, 'web', 0, (req, res) => {
    if (req.url === '/reset') req.once('data', () => req.socket.destroy());
    else res.end('ok');
  });
  gateway.setEndpoints([web], ['web']);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const call = (method: string, path: string, body?: Buffer) =>
    new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
      });
      req.setTimeout(3000, () => req.destroy(new Error(`${method} ${path} hangs`)));
      req.on('error', reject);
      req.end(body);
    });
  for (let round = 0; round < 3; round++) {
    const cut = await call('POST', '/web/reset', Buffer.alloc(3 * 1024 * 1024, 120)).catch((err: Error) => ({ status: 0, connection: err.message }));
    // A 502 that closes the connection (or, when the client was still sending, a reset of it).
    if (cut.status !== 0) assert.deepEqual(cut, { status: 502, connection: 'close' });
    assert.equal((await call('GET', '/web/next')).status, 200, `round ${round}: the next request on the client's connection`);
  }
});

test('gateway - a request whose instance dies after longer than the hold still gets its whole hold', async (t) => {
  const { gateway, port } = await gatewayOn(t, { holdTimeoutMs: 400 });
  const dying = await instance(t, 'web', 0, (req) => setTimeout(() => req.socket.destroy(), 600));
  const back = await instance(t, 'web', 0, (_req, res) => res.end('back'));
  gateway.setEndpoints([dying], ['web']);
  const pending = send(port, '/web/slow');
  // The instance dies 600 ms in (past the 400 ms hold), the replacement is there 200 ms later.
  setTimeout(() => gateway.setEndpoints([back], ['web']), 800);
  assert.deepEqual(await pending.then((a) => [a.status, a.body]), [200, 'back']);
});

test('gateway - kept-alive sockets to an instance that left the routing table are closed', async (t) => {
  const { gateway, port } = await gatewayOn(t);
  const web = await instance(t, 'web', 0, (_req, res) => res.end('ok'));
  const other = await instance(t, 'web', 1, (_req, res) => res.end('other'));
  gateway.setEndpoints([web], ['web']);
  assert.equal((await send(port, '/web/')).body, 'ok');
  const connections = () => new Promise<number>((resolve) => web.server.getConnections((_err, n) => resolve(n)));
  assert.equal(await connections(), 1, 'the gateway keeps its socket to the instance');
  // The instance is deregistered (it is about to stop): its idle socket goes at once.
  gateway.setEndpoints([other], ['web']);
  for (let i = 0; i < 50 && (await connections()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await connections(), 0);
  assert.equal((await send(port, '/web/')).body, 'other');
});

test('gateway - a socket to an instance that left the table while serving is not pooled after its answer', async (t) => {
  const { gateway, port } = await gatewayOn(t);
  const web = await instance(t, 'web', 0, (_req, res) => setTimeout(() => res.end('slow'), 200));
  const other = await instance(t, 'web', 1, (_req, res) => res.end('other'));
  gateway.setEndpoints([web], ['web']);
  const pending = send(port, '/web/');
  await new Promise((r) => setTimeout(r, 50));
  // The instance is deregistered while it serves the request (it is about to stop).
  gateway.setEndpoints([other], ['web']);
  assert.equal((await pending).body, 'slow');
  const connections = () => new Promise<number>((resolve) => web.server.getConnections((_err, n) => resolve(n)));
  for (let i = 0; i < 50 && (await connections()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await connections(), 0, 'the gateway closed its socket once the answer was in, rather than pooling it');
});

test('gateway - an instance that left the table is drained: drained() waits for the requests it still serves, and no longer than asked', async (t) => {
  const { gateway, port } = await gatewayOn(t);
  let answer: () => void = () => {};
  const web = await instance(t, 'web', 0, (_req, res) => (answer = () => res.end('slow')));
  const other = await instance(t, 'web', 1, (_req, res) => res.end('other'));
  gateway.setEndpoints([web, other], ['web']);
  // Round-robin: the first request goes to web (it answers when told), the second to other.
  const slow = send(port, '/web/');
  assert.equal((await send(port, '/web/')).body, 'other');
  const gone = gateway.setEndpoints([other], ['web']);
  assert.deepEqual([...gone], [web.port]);
  let drained = false;
  const draining = gateway.drained(gone, 5000).then(() => (drained = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(drained, false, 'web still serves a request of ours');
  answer();
  assert.equal((await slow).body, 'slow');
  await draining;
  // Nothing in flight: at once. A request that never ends: after maxMs.
  await gateway.drained(new Set([other.port]), 0);
  const stuck = await instance(t, 'stuck', 0, () => {});
  gateway.setEndpoints([other, stuck], ['web', 'stuck']);
  void send(port, '/stuck/', { limitMs: 5000 }).catch(() => {});
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await gateway.drained(gateway.setEndpoints([other], ['web', 'stuck']), 200);
  assert.ok(Date.now() - started >= 190, 'waited up to its bound');
});

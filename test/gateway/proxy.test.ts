import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type RequestListener, type Server } from 'node:http';
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
  const { gateway, port } = await gatewayOn(t);
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

  // A refused connection is tried on the next instance too; with none left, a 502.
  const refused = await instance(t, 'gone', 0, () => {});
  refused.server.close();
  gateway.setEndpoints([refused, { ...alive, cell: 'gone' }], ['gone']);
  assert.equal((await send(port, '/gone/', { method: 'OPTIONS' })).body, 'alive OPTIONS ');
  gateway.setEndpoints([refused], ['gone']);
  assert.deepEqual(errorMessage(await send(port, '/gone/')), 'no instance of gone answered');
  // A GET with a body is not sent twice (a fresh cell: its round-robin starts with the first).
  gateway.setEndpoints([{ ...refused, cell: 'fresh' }, { ...alive, cell: 'fresh' }], ['fresh']);
  const withBody = await send(port, '/fresh/', { headers: { 'content-length': 7 }, body: ['payload'] });
  assert.equal(withBody.status, 502);
  assert.match(errorMessage(withBody), /^fresh\.0: connect ECONNREFUSED/);
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

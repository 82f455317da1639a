import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createServer } from 'node:http';
import { checkHttpThen, closeHttpProbeConnections, type HttpCheckResult } from '../../src/health/http-probe.js';

function checkHttp(port: number, path: string, timeoutMs: number): Promise<HttpCheckResult> {
  return new Promise((resolve) => checkHttpThen(port, path, timeoutMs, resolve));
}

/** A raw TCP server answering each request with `reply` (so framing edge cases can be scripted). */
async function rawServer(reply: (n: number) => string): Promise<{ port: number; connections: () => number; close: () => void }> {
  let connections = 0;
  let requests = 0;
  const server = net.createServer((socket) => {
    connections++;
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        const text = reply(requests++);
        socket.write(text);
        if (/connection: close/i.test(text) || text.startsWith('HTTP/1.0')) socket.end();
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { port, connections: () => connections, close: () => server.close() };
}

test('http probe - reuses one kept-alive connection across checks', async (t) => {
  let connections = 0;
  const server = createServer((_q, s) => s.end('ok'));
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    closeHttpProbeConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  for (let i = 0; i < 20; i++) assert.equal((await checkHttp(port, '/health', 1000)).status, 200);
  assert.equal(connections, 1);
});

test('http probe - chunked, content-length split over packets, 204, HTTP/1.0 and Connection: close', async (t) => {
  const replies = [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown',
    'HTTP/1.1 204 No Content\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok',
    'HTTP/1.0 200 OK\r\n\r\nold server',
  ];
  const srv = await rawServer((n) => replies[n]);
  t.after(() => {
    closeHttpProbeConnections();
    srv.close();
  });
  const statuses = [];
  for (let i = 0; i < replies.length; i++) statuses.push((await checkHttp(srv.port, '/', 1000)).status);
  assert.deepEqual(statuses, [200, 503, 204, 200, 200]);
  assert.equal(srv.connections(), 2, 'a new connection only after Connection: close');
});

test('http probe - refused, garbage and a hung server fail with a reason', async (t) => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const freePort = (closed.address() as net.AddressInfo).port;
  closed.close();
  const refused = await checkHttp(freePort, '/', 500);
  assert.equal(refused.status, 0);
  assert.equal(refused.connected, false);
  assert.match(refused.error!, /ECONNREFUSED/);

  const garbage = await rawServer(() => 'SSH-2.0-OpenSSH\r\n\r\n');
  const hung = net.createServer(() => {});
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.after(() => {
    closeHttpProbeConnections();
    garbage.close();
    hung.close();
  });
  const bad = await checkHttp(garbage.port, '/', 500);
  assert.match(bad.error!, /not an HTTP response/);
  const t0 = Date.now();
  const slow = await checkHttp((hung.address() as net.AddressInfo).port, '/', 200);
  assert.match(slow.error!, /timed out after 200ms/);
  assert.ok(Date.now() - t0 < 1000);
});

test('http probe - a response dribbled byte by byte, head and body split anywhere', async (t) => {
  const responses = ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', 'HTTP/1.1 503 Nope\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'];
  let n = 0;
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('data', async () => {
      const text = responses[n++ % responses.length];
      for (const ch of text) {
        socket.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    closeHttpProbeConnections();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await checkHttp(port, '/', 5000)).status);
  assert.deepEqual(statuses, [200, 503, 200, 503], 'each response ends where its framing says, on the same socket');
});

test('http probe - checks in flight share deadlines: a hung server times out, the others answer', async (t) => {
  const hung = net.createServer(() => {});
  const fine = createServer((_q, s) => s.end('ok'));
  await Promise.all([hung, fine].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  t.after(() => {
    closeHttpProbeConnections();
    hung.close();
    fine.close();
  });
  const hungPort = (hung.address() as net.AddressInfo).port;
  const finePort = (fine.address() as net.AddressInfo).port;
  const t0 = Date.now();
  const [slow, quick, later] = await Promise.all([checkHttp(hungPort, '/', 300), checkHttp(finePort, '/', 300), checkHttp(finePort, '/b', 2000)]);
  assert.match(slow.error!, /timed out after 300ms/);
  assert.equal(quick.status, 200);
  assert.equal(later.status, 200);
  assert.ok(Date.now() - t0 < 1500, 'the timeout fired near its deadline');
  // The next round on the hung server times out again, on its own deadline.
  const again = await checkHttp(hungPort, '/', 100);
  assert.match(again.error!, /timed out after 100ms/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway } from '../../src/gateway/index.js';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('gateway - an unknown cell is a 404, a known cell without a ready instance a 503', async (t) => {
  const upstream = createServer((req, res) => res.end(`web got ${req.url}`));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const gateway = new Gateway();
  const port = await gateway.listen(0);
  t.after(async () => {
    await gateway.close();
    upstream.close();
  });
  const web = { cell: 'web', instance: 0, url: `http://127.0.0.1:${upstreamPort}`, port: upstreamPort };
  const error = async (path: string) => {
    const r = await get(port, path);
    return [r.status, (JSON.parse(r.body) as { error: { message: string } }).error.message];
  };

  // Before the daemon has named its cells (or from one that does not): every name may exist.
  gateway.setEndpoints([web]);
  assert.deepEqual(await error('/nope/'), [503, 'no ready instance of cell nope']);

  gateway.setEndpoints([web], ['web', 'db', 'gateway']);
  assert.deepEqual(await get(port, '/web/x?y=1'), { status: 200, body: 'web got /x?y=1' });
  assert.deepEqual(await error('/nope/'), [404, 'no cell named "nope"']);
  assert.deepEqual(await error('/nope'), [404, 'no cell named "nope"']);
  assert.deepEqual(await error('/db/'), [503, 'no ready instance of cell db']);
  assert.deepEqual(await error('/'), [404, 'no cell in path "/": use /{cell}/...']);

  // An update of the endpoints alone keeps the cells known before.
  gateway.setEndpoints([]);
  assert.deepEqual(await error('/web/'), [503, 'no ready instance of cell web']);
  assert.deepEqual(await error('/nope/'), [404, 'no cell named "nope"']);
  // A cell with endpoints is routed even if the list of cells lags behind.
  gateway.setEndpoints([{ ...web, cell: 'fresh' }], ['web']);
  assert.deepEqual(await get(port, '/fresh/'), { status: 200, body: 'web got /' });
  // null: the daemon no longer says, so nothing is called unknown.
  gateway.setEndpoints([], null);
  assert.deepEqual(await error('/nope/'), [503, 'no ready instance of cell nope']);
});

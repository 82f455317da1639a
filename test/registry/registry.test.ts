import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, type Endpoint } from '../../src/registry/index.js';
import { openSqliteStore } from '../../src/store/index.js';

const endpoint = (instance: number): Endpoint => ({ cell: 'api', instance, url: 'http://127.0.0.1:1', port: 1, socket: null, pid: 10 + instance, version: 'v1' });

test('registry - heartbeats renew leases in one batch, without events; a lapsed lease is registered again', () => {
  const store = openSqliteStore(':memory:');
  const registry = new Registry(store, 10_000);
  const events: string[] = [];
  registry.watch((e) => events.push(`${e.type} ${e.key}`));
  registry.register(endpoint(0), 0);
  registry.register(endpoint(1), 0);
  assert.equal(events.length, 2);
  const revision = store.revision();

  let built = 0;
  const lazy = (i: number) => () => (built++, endpoint(i));
  registry.heartbeat('api', 0, lazy(0), 4_000);
  registry.flushRenewals(4_000);
  assert.equal(store.get('registry/endpoints/api/0', 4_000)?.expiresAt, 10_000, 'before half its TTL a lease is left alone');

  registry.heartbeat('api', 0, lazy(0), 6_000);
  registry.heartbeat('api', 1, lazy(1), 6_000);
  assert.equal(store.get('registry/endpoints/api/0', 6_000)?.expiresAt, 10_000, 'renewals wait for the flush');
  registry.flushRenewals(6_500);
  assert.equal(store.get('registry/endpoints/api/0', 6_500)?.expiresAt, 16_500);
  assert.equal(store.get('registry/endpoints/api/1', 6_500)?.expiresAt, 16_500);
  assert.equal(store.revision(), revision, 'a keep-alive is not a change');
  assert.equal(built, 0, 'no endpoint was rebuilt for a renewal');
  assert.equal(events.length, 2);

  // Instance 1 stops answering; its lease runs out and is swept. A later heartbeat re-registers it.
  registry.heartbeat('api', 0, lazy(0), 12_000);
  registry.flushRenewals(12_000);
  store.sweepExpired(17_000);
  assert.deepEqual(registry.endpoints(17_000).map((e) => e.instance), [0]);
  registry.heartbeat('api', 1, lazy(1), 17_500);
  registry.flushRenewals(17_500);
  assert.deepEqual(registry.endpoints(17_500).map((e) => e.instance), [0, 1]);
  assert.equal(built, 1);
  assert.deepEqual(events.slice(2), ['delete registry/endpoints/api/1', 'put registry/endpoints/api/1']);
  store.close();
});

test('registry - the endpoint list follows every change, expiry (swept or not) and renewal', () => {
  const store = openSqliteStore(':memory:');
  const registry = new Registry(store, 10_000);
  const other = { ...endpoint(0), cell: 'web' };
  const list = (now: number, cell?: string) => registry.endpoints(now, cell).map((e) => `${e.cell}/${e.instance}`);
  assert.deepEqual(list(0), []);
  registry.register(endpoint(0), 0);
  assert.deepEqual(list(0), ['api/0']);
  // A registration committed with other writes (the supervisor's `ready`) counts the same.
  const op = registry.registration(other, 1_000);
  store.txn([], [op, { op: 'put', key: 'instances/web/0', value: { state: 'ready' } }], 1_000);
  registry.register(endpoint(1), 1_000);
  assert.deepEqual(list(1_000), ['api/0', 'api/1', 'web/0']);
  assert.deepEqual(list(1_000, 'api'), ['api/0', 'api/1']);
  registry.deregister('api', 1);
  assert.deepEqual(list(1_000), ['api/0', 'web/0']);
  // api/0's lease (registered at 0) runs out at 10 000, before any sweep: it is gone from the list.
  assert.deepEqual(list(9_999), ['api/0', 'web/0']);
  assert.deepEqual(list(10_000), ['web/0']);
  // web/0 is renewed (a keep-alive, no event): it stays past its first expiry.
  registry.heartbeat('web', 0, () => other, 8_000);
  registry.flushRenewals(8_000);
  assert.deepEqual(list(12_000), ['web/0']);
  assert.deepEqual(list(18_000), []);
  // The list handed out is the caller's own.
  registry.register(endpoint(2), 20_000);
  registry.endpoints(20_000).pop();
  assert.deepEqual(list(20_000), ['api/2']);
});

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

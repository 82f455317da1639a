import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSqliteStore } from '../../src/store/index.js';
import { EventLog } from '../../src/observer/index.js';

test('observer - the event log keeps order and caps its size', () => {
  const store = openSqliteStore(':memory:');
  const log = new EventLog(store, 3600_000, 100);
  for (let i = 0; i < 1000; i++) log.append({ at: 1000 + i, cell: 'a', instance: 0, from: 'ready', to: 'backoff', reason: String(i), pid: null });
  const events = log.list(5000);
  assert.ok(events.length <= 110 && events.length >= 100, `${events.length} kept`);
  assert.equal(events.at(-1)!.reason, '999', 'newest kept');
  assert.deepEqual(events.map((e) => e.at), [...events.map((e) => e.at)].sort((x, y) => x - y));
  assert.equal(log.list(5000, { cell: 'b' }).length, 0);
  assert.equal(log.list(1000 + 3600_000 + 1000).length, 0, 'expired after the retention');
  store.close();
});

test('observer - appendWith commits the event and the caller ops together, in one revision', () => {
  const store = openSqliteStore(':memory:');
  const log = new EventLog(store, 3600_000, 100);
  const before = store.revision();
  log.appendWith({ at: 1000, cell: 'api', instance: 0, from: 'launching', to: 'ready', reason: 'healthy', pid: 42 }, [{ op: 'put', key: 'instances/api/0', value: { state: 'ready' } }]);
  assert.equal(store.revision(), before + 1, 'one commit');
  const record = store.get('instances/api/0', 1000)!;
  const [event] = store.list('events/', 1000);
  assert.equal(record.revision, event.revision);
  assert.deepEqual(log.list(1000).map((e) => `${e.cell}.${e.instance} ${e.from}->${e.to}`), ['api.0 launching->ready']);
  store.close();
});

test('observer - appendAll commits many changes in one revision, events in order, and still caps the log', () => {
  const store = openSqliteStore(':memory:');
  const log = new EventLog(store, 3600_000, 20);
  const changes = Array.from({ length: 30 }, (_, i) => ({
    event: { at: 1000, cell: `c${i}`, instance: 0, from: 'stopped' as const, to: 'launching' as const, reason: 'start', pid: null },
    ops: [{ op: 'put' as const, key: `instances/c${i}/0`, value: { state: 'launching' } }],
  }));
  // A change without a transition: only its record is written.
  log.appendAll([...changes, { ops: [{ op: 'put', key: 'instances/x/0', value: { port: 1 } }] }], 1000);
  const records = store.list('instances/', 1000);
  assert.equal(records.length, 31);
  const revisions = new Set([...records, ...store.list('events/', 1000)].map((e) => e.revision));
  assert.equal(revisions.size, 1, 'records and events in one commit');
  // 30 events over a cap of 20 (checked every 2 appends): the oldest went, the newest are kept in order.
  log.appendAll([{ event: { at: 1001, cell: 'last', instance: 0, from: null, to: 'launching', reason: 'start', pid: null }, ops: [] }], 1001);
  const kept = log.list(1001).map((e) => e.cell);
  assert.ok(kept.length >= 20 && kept.length <= 22, `${kept.length} kept`);
  assert.deepEqual(kept.slice(-3), ['c28', 'c29', 'last']);
  store.close();
});

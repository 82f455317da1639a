/**
 * The `Store` conformance suite. Every implementation (SQLite now, etcd later) registers it with
 * its own `open()`; the tests use the `Store` interface only. Watch delivery may be asynchronous
 * in other implementations, so event assertions wait with `eventually` and use a marker write
 * to prove that nothing else arrived.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store, StoreEntry, TxnCompare, TxnOp, WatchEvent } from '../../src/store/index.js';

export interface StoreHandle {
  store: Store;
  [Symbol.asyncDispose](): Promise<void>;
}

const T0 = 1_700_000_000_000;

/** Resolves once `check()` holds; fails after `timeoutMs`. */
async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Collects the events of one watch. */
function record(store: Store, prefix: string): { events: WatchEvent[]; stop: () => void } {
  const events: WatchEvent[] = [];
  const stop = store.watch(prefix, (event) => events.push(event));
  return { events, stop };
}

/** Key order of the contract: UTF-8 bytes, i.e. Unicode code points (not JS's UTF-16 units). */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Small deterministic PRNG (mulberry32), so a failing random run can be replayed from its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function plain(entry: StoreEntry | undefined): Omit<StoreEntry, 'revision'> | undefined {
  if (!entry) return undefined;
  const { revision: _revision, ...rest } = entry;
  return rest;
}

export function runStoreConformance(label: string, open: () => Promise<StoreHandle>): void {
  const it = (name: string, fn: (store: Store) => Promise<void> | void): void => {
    test(`${label} - ${name}`, async () => {
      const handle = await open();
      try {
        await fn(handle.store);
      } finally {
        await handle[Symbol.asyncDispose]();
      }
    });
  };

  /** Writes a marker under `prefix` and waits until `events` has it: everything before it has arrived. */
  async function flush(store: Store, events: WatchEvent[], prefix: string): Promise<WatchEvent[]> {
    const marker = `${prefix}~marker-${Math.random().toString(36).slice(2)}`;
    store.put(marker, true, { now: T0 });
    await eventually(() => events.some((e) => e.key === marker), `marker ${marker}`);
    return events.filter((e) => e.key !== marker);
  }

  // --- versions and revisions -------------------------------------------------------------------

  it('get of a missing key returns undefined', (store) => {
    assert.equal(store.get('nope', T0), undefined);
    assert.deepEqual(store.list('nope', T0), []);
  });

  it('put creates version 1 with timestamps from now', (store) => {
    const entry = store.put('cells/api', { port: 8080 }, { now: T0 });
    assert.deepEqual(plain(entry), {
      key: 'cells/api',
      value: { port: 8080 },
      version: 1,
      createdAt: T0,
      updatedAt: T0,
      expiresAt: null,
    });
    assert.equal(entry.revision, store.revision());
    assert.deepEqual(store.get('cells/api', T0 + 1), entry);
  });

  it('put on an existing key bumps the version and keeps createdAt', (store) => {
    store.put('k', 1, { now: T0 });
    store.put('k', 2, { now: T0 + 10 });
    const third = store.put('k', 3, { now: T0 + 20 });
    assert.equal(third.version, 3);
    assert.equal(third.createdAt, T0);
    assert.equal(third.updatedAt, T0 + 20);
    assert.equal(store.get('k', T0 + 20)?.value, 3);
  });

  it('delete then re-create starts again at version 1', (store) => {
    store.put('k', 'a', { now: T0 });
    store.put('k', 'b', { now: T0 });
    assert.equal(store.delete('k'), true);
    assert.equal(store.get('k', T0), undefined);
    assert.equal(store.delete('k'), false);
    const again = store.put('k', 'c', { now: T0 + 5 });
    assert.equal(again.version, 1);
    assert.equal(again.createdAt, T0 + 5);
  });

  it('revision increases strictly with every committed change', (store) => {
    let last = store.revision();
    const expectNext = (revision: number): void => {
      assert.ok(revision > last, `revision ${revision} should exceed ${last}`);
      assert.equal(store.revision(), revision);
      last = revision;
    };
    for (let i = 0; i < 50; i += 1) {
      expectNext(store.put(`r/${i % 7}`, i, { now: T0 + i }).revision);
      const cas = store.compareAndSet(`r/${i % 7}`, -i, store.get(`r/${i % 7}`, T0 + i)!.version, { now: T0 + i });
      expectNext(cas!.revision);
      assert.equal(store.txn([], [{ op: 'put', key: `t/${i % 5}`, value: i }], T0 + i), true);
      expectNext(store.get(`t/${i % 5}`, T0 + i)!.revision);
      if (i % 3 === 0) {
        assert.equal(store.delete(`r/${i % 7}`), true);
        expectNext(store.revision());
      }
    }
  });

  it('changes that commit nothing leave the revision alone', (store) => {
    store.put('a', 1, { now: T0 });
    store.put('short', 1, { now: T0, ttlMs: 10 });
    const before = store.revision();
    assert.equal(store.compareAndSet('a', 2, 7, { now: T0 }), undefined);
    assert.equal(store.compareAndSet('a', 2, 0, { now: T0 }), undefined);
    assert.equal(store.txn([{ key: 'a', version: 2 }], [{ op: 'put', key: 'b', value: 1 }], T0), false);
    assert.equal(store.delete('missing'), false);
    assert.equal(store.deletePrefix('nothing/'), 0);
    assert.equal(store.sweepExpired(T0 + 9), 0);
    store.get('a', T0);
    store.list('', T0);
    assert.equal(store.revision(), before);
  });

  it('each entry records the revision of its last change', (store) => {
    const a = store.put('a', 1, { now: T0 });
    const b = store.put('b', 1, { now: T0 });
    assert.ok(b.revision > a.revision);
    assert.equal(store.get('a', T0)?.revision, a.revision);
    const a2 = store.put('a', 2, { now: T0 });
    assert.ok(a2.revision > b.revision);
    assert.deepEqual(
      store.list('', T0).map((e) => [e.key, e.revision]),
      [
        ['a', a2.revision],
        ['b', b.revision],
      ],
    );
  });

  // --- compare-and-set and transactions ---------------------------------------------------------

  it('compareAndSet with expected version 0 creates only when absent', (store) => {
    const created = store.compareAndSet('lock', 'owner-1', 0, { now: T0 });
    assert.equal(created?.version, 1);
    assert.equal(store.compareAndSet('lock', 'owner-2', 0, { now: T0 }), undefined);
    assert.equal(store.get('lock', T0)?.value, 'owner-1');
  });

  it('compareAndSet succeeds on the current version and fails on a stale one', (store) => {
    store.put('k', 'v1', { now: T0 });
    const v2 = store.compareAndSet('k', 'v2', 1, { now: T0 + 1 });
    assert.equal(v2?.version, 2);
    assert.equal(v2?.value, 'v2');
    assert.equal(store.compareAndSet('k', 'lost', 1, { now: T0 + 2 }), undefined);
    assert.equal(store.get('k', T0 + 2)?.value, 'v2');
    assert.equal(store.compareAndSet('absent', 'x', 1, { now: T0 }), undefined);
    assert.equal(store.get('absent', T0), undefined);
  });

  it('txn applies every op in one commit when all compares hold', async (store) => {
    store.put('a', 1, { now: T0 });
    store.put('gone', 1, { now: T0 });
    const { events } = record(store, '');
    const ok = store.txn(
      [
        { key: 'a', version: 1 },
        { key: 'new', version: 0 },
      ],
      [
        { op: 'put', key: 'a', value: 2 },
        { op: 'put', key: 'new', value: 'n', ttlMs: 1000 },
        { op: 'delete', key: 'gone' },
      ],
      T0 + 1,
    );
    assert.equal(ok, true);
    const a = store.get('a', T0 + 1)!;
    const created = store.get('new', T0 + 1)!;
    assert.equal(a.version, 2);
    assert.equal(created.version, 1);
    assert.equal(created.expiresAt, T0 + 1001);
    assert.equal(store.get('gone', T0 + 1), undefined);
    assert.equal(a.revision, created.revision, 'a transaction commits at one revision');
    assert.equal(store.revision(), a.revision);
    await eventually(() => events.length >= 3, 'three txn events');
    assert.deepEqual(
      events.map((e) => [e.type, e.key, e.revision]),
      [
        ['put', 'a', a.revision],
        ['put', 'new', a.revision],
        ['delete', 'gone', a.revision],
      ],
    );
  });

  it('txn applies nothing when any compare fails', async (store) => {
    store.put('a', 1, { now: T0 });
    store.put('b', 1, { now: T0 });
    const { events } = record(store, '');
    const before = store.revision();
    const ok = store.txn(
      [
        { key: 'a', version: 1 },
        { key: 'b', version: 2 },
      ],
      [
        { op: 'put', key: 'a', value: 'changed' },
        { op: 'delete', key: 'b' },
        { op: 'put', key: 'c', value: 'created' },
      ],
      T0,
    );
    assert.equal(ok, false);
    assert.equal(store.get('a', T0)?.value, 1);
    assert.equal(store.get('b', T0)?.value, 1);
    assert.equal(store.get('c', T0), undefined);
    assert.equal(store.revision(), before);
    assert.deepEqual(await flush(store, events, ''), []);
  });

  it('txn with an unserializable value throws and applies nothing', (store) => {
    store.put('a', 1, { now: T0 });
    const before = store.revision();
    assert.throws(() =>
      store.txn([], [
        { op: 'put', key: 'a', value: 2 },
        { op: 'put', key: 'b', value: () => 'not json' },
      ], T0),
    );
    assert.equal(store.get('a', T0)?.value, 1);
    assert.equal(store.get('b', T0), undefined);
    assert.equal(store.revision(), before);
  });

  it('txn compare with version 0 guards creation, and empty txns succeed', (store) => {
    assert.equal(store.txn([{ key: 'leader', version: 0 }], [{ op: 'put', key: 'leader', value: 'n1' }], T0), true);
    assert.equal(store.txn([{ key: 'leader', version: 0 }], [{ op: 'put', key: 'leader', value: 'n2' }], T0), false);
    assert.equal(store.get('leader', T0)?.value, 'n1');
    const before = store.revision();
    assert.equal(store.txn([{ key: 'leader', version: 1 }], [], T0), true);
    assert.equal(store.txn([], [], T0), true);
    assert.equal(store.revision(), before);
  });

  // --- TTLs ---------------------------------------------------------------------------------------

  it('an entry with a TTL is visible until expiresAt and absent from then on', (store) => {
    const entry = store.put('lease/n1', 'alive', { now: T0, ttlMs: 1000 });
    assert.equal(entry.expiresAt, T0 + 1000);
    assert.equal(store.get('lease/n1', T0 + 999)?.value, 'alive');
    assert.equal(store.list('lease/', T0 + 999).length, 1);
    assert.equal(store.get('lease/n1', T0 + 1000), undefined);
    assert.deepEqual(store.list('lease/', T0 + 1000), []);
    assert.deepEqual(store.list('', T0 + 5000), []);
  });

  it('sweepExpired removes expired entries and emits delete events', async (store) => {
    store.put('lease/a', 1, { now: T0, ttlMs: 100 });
    store.put('lease/b', 1, { now: T0, ttlMs: 200 });
    store.put('lease/c', 1, { now: T0 });
    const { events } = record(store, 'lease/');
    const before = store.revision();
    assert.equal(store.sweepExpired(T0 + 150), 1);
    assert.ok(store.revision() > before);
    assert.equal(store.sweepExpired(T0 + 150), 0);
    assert.equal(store.sweepExpired(T0 + 200), 1);
    assert.equal(store.sweepExpired(T0 + 10_000), 0);
    await eventually(() => events.length >= 2, 'two sweep events');
    assert.deepEqual(
      events.map((e) => [e.type, e.key, e.entry]),
      [
        ['delete', 'lease/a', undefined],
        ['delete', 'lease/b', undefined],
      ],
    );
    assert.ok(events[0]!.revision < events[1]!.revision);
    assert.equal(events[1]!.revision, store.revision());
    assert.deepEqual(
      store.list('', T0 + 10_000).map((e) => e.key),
      ['lease/c'],
    );
  });

  it('renew extends live leases like a keep-alive: same value, version, revision, no event', async (store) => {
    const entry = store.put('lease/r', { at: 1 }, { now: T0, ttlMs: 100 });
    store.put('lease/s', 2, { now: T0, ttlMs: 100 });
    store.put('lease/forever', 1, { now: T0 });
    const { events } = record(store, 'lease/');
    const before = store.revision();
    assert.deepEqual(store.renew(['lease/r', 'lease/s', 'lease/forever', 'lease/missing'], 100, T0 + 90), ['lease/forever', 'lease/missing'], 'the keys left alone');
    const renewed = store.get('lease/r', T0 + 150);
    assert.deepEqual(
      renewed && [renewed.value, renewed.version, renewed.revision, renewed.updatedAt, renewed.expiresAt],
      [{ at: 1 }, entry.version, entry.revision, entry.updatedAt, T0 + 190],
    );
    assert.equal(store.get('lease/s', T0 + 150)?.expiresAt, T0 + 190);
    assert.equal(store.revision(), before);
    assert.equal(store.get('lease/r', T0 + 190), undefined, 'it still expires, at the new time');
    assert.deepEqual(store.renew(['lease/r'], 100, T0 + 190), ['lease/r'], 'an expired lease is not revived');
    assert.equal(store.get('lease/forever', T0 + 10_000)?.value, 1, 'an entry without a TTL gets none');
    assert.deepEqual(store.renew([], 100, T0), []);
    assert.throws(() => store.renew(['lease/r'], 0, T0), TypeError);
    assert.throws(() => store.renew(['lease/r', ''], 100, T0), TypeError);
    store.put('lease/other', 1, { now: T0 });
    await eventually(() => events.length >= 1, 'the put after the renewals');
    assert.deepEqual(events.map((e) => e.key), ['lease/other'], 'renewals emit no events');
  });

  it('a put or compareAndSet over an expired entry starts again at version 1', (store) => {
    store.put('k', 'old', { now: T0, ttlMs: 10 });
    store.put('k', 'old2', { now: T0 + 1, ttlMs: 10 });
    const fresh = store.put('k', 'new', { now: T0 + 11 });
    assert.equal(fresh.version, 1);
    assert.equal(fresh.createdAt, T0 + 11);
    assert.equal(fresh.expiresAt, null);

    store.put('lock', 'holder', { now: T0, ttlMs: 10 });
    assert.equal(store.compareAndSet('lock', 'thief', 0, { now: T0 + 9 }), undefined);
    const taken = store.compareAndSet('lock', 'next', 0, { now: T0 + 10 });
    assert.equal(taken?.version, 1);
    assert.equal(store.txn([{ key: 'lock', version: 1 }], [], T0 + 10), true);
  });

  it('a txn compare sees an expired entry as absent', (store) => {
    store.put('lease', 'x', { now: T0, ttlMs: 10 });
    assert.equal(store.txn([{ key: 'lease', version: 0 }], [{ op: 'put', key: 'y', value: 1 }], T0 + 5), false);
    assert.equal(store.txn([{ key: 'lease', version: 0 }], [{ op: 'put', key: 'y', value: 1 }], T0 + 10), true);
  });

  it('a put without ttlMs clears an earlier expiry, a put with one refreshes it', (store) => {
    store.put('k', 1, { now: T0, ttlMs: 10 });
    const refreshed = store.put('k', 2, { now: T0 + 5, ttlMs: 10 });
    assert.equal(refreshed.expiresAt, T0 + 15);
    assert.equal(refreshed.version, 2);
    const forever = store.put('k', 3, { now: T0 + 6 });
    assert.equal(forever.expiresAt, null);
    assert.equal(store.get('k', T0 + 1_000_000)?.value, 3);
  });

  // --- watches ------------------------------------------------------------------------------------

  it('watch delivers only keys under its prefix, in commit order', async (store) => {
    const cells = record(store, 'cells/');
    store.put('cells/a', 1, { now: T0 });
    store.put('cellsX', 1, { now: T0 });
    store.put('cells', 1, { now: T0 });
    store.put('nodes/a', 1, { now: T0 });
    store.put('cells/b', 1, { now: T0 });
    store.put('cells/a', 2, { now: T0 });
    store.delete('cells/b');
    store.delete('nodes/a');
    const events = await flush(store, cells.events, 'cells/');
    assert.deepEqual(
      events.map((e) => [e.type, e.key]),
      [
        ['put', 'cells/a'],
        ['put', 'cells/b'],
        ['put', 'cells/a'],
        ['delete', 'cells/b'],
      ],
    );
    for (let i = 1; i < events.length; i += 1) assert.ok(events[i]!.revision > events[i - 1]!.revision);
  });

  it('watch events carry the entry for puts and the revision of the change', async (store) => {
    const { events } = record(store, '');
    const put = store.put('x', { deep: [1, 2] }, { now: T0, ttlMs: 50 });
    store.delete('x');
    const deleteRevision = store.revision();
    await eventually(() => events.length >= 2, 'two events');
    assert.deepEqual(events[0], { type: 'put', key: 'x', entry: put, revision: put.revision });
    assert.equal(events[1]!.type, 'delete');
    assert.equal(events[1]!.entry, undefined);
    assert.equal(events[1]!.revision, deleteRevision);
  });

  it('a stopped watch receives nothing more, and stopping twice is harmless', async (store) => {
    const stopped = record(store, '');
    const kept = record(store, '');
    store.put('a', 1, { now: T0 });
    await eventually(() => stopped.events.length === 1, 'first event');
    stopped.stop();
    stopped.stop();
    store.put('b', 1, { now: T0 });
    await flush(store, kept.events, '');
    assert.deepEqual(
      stopped.events.map((e) => e.key),
      ['a'],
    );
  });

  it('several watches on overlapping prefixes each get their events', async (store) => {
    const all = record(store, '');
    const a = record(store, 'a/');
    const aa = record(store, 'a/a/');
    store.put('a/a/1', 1, { now: T0 });
    store.put('a/b', 1, { now: T0 });
    store.put('b', 1, { now: T0 });
    await flush(store, all.events, '');
    assert.deepEqual(await flush(store, a.events, 'a/').then((es) => es.map((e) => e.key)), ['a/a/1', 'a/b']);
    assert.deepEqual(await flush(store, aa.events, 'a/a/').then((es) => es.map((e) => e.key)), ['a/a/1']);
    assert.deepEqual(
      all.events.filter((e) => !e.key.includes('~marker')).map((e) => e.key),
      ['a/a/1', 'a/b', 'b'],
    );
  });

  it('a watch callback sees the committed change when it reads', async (store) => {
    const seen: unknown[] = [];
    store.watch('k', (event) => seen.push(store.get(event.key, T0)?.value));
    store.put('k', 'v1', { now: T0 });
    store.put('k', 'v2', { now: T0 });
    await eventually(() => seen.length >= 2, 'two callbacks');
    assert.equal(seen.at(-1), 'v2');
    assert.ok(seen[0] === 'v1' || seen[0] === 'v2');
  });

  // --- prefixes, order, keys, values --------------------------------------------------------------

  it('deletePrefix removes exactly the keys under the prefix and emits a delete for each', async (store) => {
    for (const key of ['a', 'a/', 'a/x', 'a//y', 'a/x/z', 'a0', 'a.', 'b/x']) store.put(key, key, { now: T0 });
    const { events } = record(store, '');
    assert.equal(store.deletePrefix('a/'), 4);
    assert.deepEqual(
      store.list('', T0).map((e) => e.key),
      ['a', 'a.', 'a0', 'b/x'],
    );
    const deleted = await flush(store, events, 'z/');
    assert.deepEqual(deleted.map((e) => [e.type, e.key]).sort(), [
      ['delete', 'a/'],
      ['delete', 'a//y'],
      ['delete', 'a/x'],
      ['delete', 'a/x/z'],
    ]);
    assert.equal(store.deletePrefix('a/'), 0);
  });

  it('deletePrefix of the empty prefix removes everything', (store) => {
    for (const key of ['a', 'b/c', 'é']) store.put(key, 1, { now: T0 });
    assert.equal(store.deletePrefix(''), 3);
    assert.deepEqual(store.list('', T0), []);
  });

  it('list returns entries in key order', (store) => {
    const next = random(7);
    const keys = Array.from({ length: 200 }, (_, i) => `o/${Math.floor(next() * 1e6).toString(36)}-${i}`);
    const shuffled = [...keys].sort(() => next() - 0.5);
    for (const key of shuffled) store.put(key, key, { now: T0 });
    store.put('p', 'outside', { now: T0 });
    assert.deepEqual(
      store.list('o/', T0).map((e) => e.key),
      [...keys].sort(compareKeys),
    );
    assert.equal(store.list('', T0).length, 201);
    assert.deepEqual(
      store.list('o/', T0).map((e) => e.value),
      [...keys].sort(compareKeys),
    );
  });

  it('unicode keys round-trip and prefix scans stay exact', (store) => {
    const keys = [
      'u/café',
      'u/cafe',
      'u/日本/東京',
      'u/😀',
      'u/😀/child',
      'u/😁',
      'u/\uffff',
      'u/\uffffx',
      'u/\ue000',
      'u/\u{10ffff}',
      'u/\u{10ffff}\u{10ffff}',
      'u/a\u0000b',
      'v/😀',
      'u',
    ];
    for (const key of keys) store.put(key, { key }, { now: T0 });
    for (const key of keys) assert.deepEqual(store.get(key, T0)?.value, { key });
    const listed = store.list('u/', T0).map((e) => e.key);
    assert.deepEqual(listed, keys.filter((k) => k.startsWith('u/')).sort(compareKeys));
    assert.deepEqual(
      store.list('u/😀', T0).map((e) => e.key),
      ['u/😀', 'u/😀/child'],
    );
    assert.deepEqual(
      store.list('u/\uffff', T0).map((e) => e.key),
      ['u/\uffff', 'u/\uffffx'],
    );
    assert.deepEqual(
      store.list('u/\u{10ffff}', T0).map((e) => e.key),
      ['u/\u{10ffff}', 'u/\u{10ffff}\u{10ffff}'],
    );
    assert.deepEqual(
      store.list('u/日本', T0).map((e) => e.key),
      ['u/日本/東京'],
    );
    assert.equal(store.deletePrefix('u/😀'), 2);
    assert.equal(store.get('u/😁', T0)?.version, 1);
  });

  it('large values round-trip', (store) => {
    const big = 'x'.repeat(2 * 1024 * 1024) + '😀';
    store.put('big/string', big, { now: T0 });
    assert.equal(store.get<string>('big/string', T0)?.value, big);
    const wide = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`field${i}`, { i, s: `v${i}` }]));
    store.put('big/object', wide, { now: T0 });
    assert.deepEqual(store.get('big/object', T0)?.value, wide);
    let deep: unknown = 'leaf';
    for (let i = 0; i < 200; i += 1) deep = { child: deep };
    store.put('big/deep', deep, { now: T0 });
    assert.deepEqual(store.get('big/deep', T0)?.value, deep);
  });

  it('JSON values of every kind round-trip', (store) => {
    const values: unknown[] = [null, 0, -1.5, 1e300, true, false, '', 'tab\tquote"', [], [1, [2, [3]]], {}, { a: { b: null } }];
    values.forEach((value, i) => store.put(`v/${i}`, value, { now: T0 }));
    values.forEach((value, i) => assert.deepEqual(store.get(`v/${i}`, T0)?.value, value));
  });

  it('returned values are copies that the caller may change', (store) => {
    const value = { list: [1, 2] };
    const put = store.put('k', value, { now: T0 });
    value.list.push(3);
    (put.value as { list: number[] }).list.push(4);
    const got = store.get<{ list: number[] }>('k', T0)!;
    got.value.list.push(5);
    assert.deepEqual(store.get('k', T0)?.value, { list: [1, 2] });
  });

  it('values that are not JSON-serializable are rejected', (store) => {
    assert.throws(() => store.put('k', undefined, { now: T0 }), TypeError);
    assert.throws(() => store.put('k', () => 1, { now: T0 }), TypeError);
    assert.throws(() => store.put('k', 10n, { now: T0 }), TypeError);
    assert.throws(() => store.compareAndSet('k', Symbol('s'), 0, { now: T0 }), TypeError);
    assert.equal(store.get('k', T0), undefined);
  });

  it('empty keys are rejected', (store) => {
    assert.throws(() => store.put('', 1, { now: T0 }), TypeError);
    assert.throws(() => store.get('', T0), TypeError);
    assert.throws(() => store.txn([], [{ op: 'put', key: '', value: 1 }], T0), TypeError);
  });

  // --- a random walk against a reference model ----------------------------------------------------

  it('a random sequence of operations matches a reference model', async (store) => {
    interface ModelEntry {
      value: unknown;
      version: number;
      createdAt: number;
      updatedAt: number;
      expiresAt: number | null;
    }
    const model = new Map<string, ModelEntry>();
    const next = random(20240601);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const keyPool = ['a/1', 'a/2', 'a/3', 'a/b/1', 'b/1', 'b/2', 'c', 'é/1', '😀/1'];
    const prefixes = ['', 'a/', 'a/b/', 'b/', 'é/', '😀', 'zzz'];
    const isLive = (e: ModelEntry, now: number): boolean => e.expiresAt === null || e.expiresAt > now;
    const liveVersion = (key: string, now: number): number => {
      const e = model.get(key);
      return e && isLive(e, now) ? e.version : 0;
    };
    const modelPut = (key: string, value: unknown, now: number, ttlMs?: number): void => {
      const e = model.get(key);
      const prev = e && isLive(e, now) ? e : undefined;
      model.set(key, {
        value,
        version: prev ? prev.version + 1 : 1,
        createdAt: prev ? prev.createdAt : now,
        updatedAt: now,
        expiresAt: ttlMs === undefined ? null : now + ttlMs,
      });
    };
    const modelSweep = (now: number): number => {
      let n = 0;
      for (const [key, e] of model) {
        if (isLive(e, now)) continue;
        model.delete(key);
        n += 1;
      }
      return n;
    };
    const liveList = (prefix: string, now: number) =>
      [...model.entries()]
        .filter(([k, e]) => k.startsWith(prefix) && isLive(e, now))
        .sort(([a], [b]) => compareKeys(a, b))
        .map(([key, e]) => ({ key, ...e }));

    // A mirror built only from watch events must end equal to the store.
    const mirror = new Map<string, StoreEntry>();
    let lastEventRevision = 0;
    store.watch('', (event) => {
      assert.ok(event.revision >= lastEventRevision, 'events arrive in commit order');
      lastEventRevision = event.revision;
      if (event.type === 'put') mirror.set(event.key, event.entry!);
      else mirror.delete(event.key);
    });

    let now = T0;
    let revision = store.revision();
    for (let step = 0; step < 1500; step += 1) {
      const context = `step ${step}`;
      if (next() < 0.1) now += Math.floor(next() * 40);
      const key = pick(keyPool);
      const ttlMs = next() < 0.3 ? 1 + Math.floor(next() * 60) : undefined;
      const roll = next();
      let changed: boolean;
      if (roll < 0.3) {
        const value = { step, n: Math.floor(next() * 100) };
        const entry = store.put(key, value, ttlMs === undefined ? { now } : { now, ttlMs });
        modelPut(key, value, now, ttlMs);
        assert.equal(entry.version, model.get(key)!.version, context);
        changed = true;
      } else if (roll < 0.45) {
        const current = liveVersion(key, now);
        const expected = next() < 0.6 ? current : current + 1;
        const result = store.compareAndSet(key, step, expected, ttlMs === undefined ? { now } : { now, ttlMs });
        changed = expected === current;
        assert.equal(result !== undefined, changed, context);
        if (changed) modelPut(key, step, now, ttlMs);
      } else if (roll < 0.55) {
        // Sweep first: whether deleting an expired, unswept entry counts as existing is not part of the contract.
        const swept = store.sweepExpired(now);
        assert.equal(swept, modelSweep(now), context);
        if (swept > 0) {
          assert.ok(store.revision() > revision, context);
          revision = store.revision();
        }
        const existed = model.delete(key);
        assert.equal(store.delete(key), existed, context);
        changed = existed;
      } else if (roll < 0.6) {
        const swept = store.sweepExpired(now);
        assert.equal(swept, modelSweep(now), context);
        if (swept > 0) {
          assert.ok(store.revision() > revision, context);
          revision = store.revision();
        }
        const prefix = pick(prefixes);
        const doomed = [...model.keys()].filter((k) => k.startsWith(prefix));
        for (const k of doomed) model.delete(k);
        assert.equal(store.deletePrefix(prefix), doomed.length, context);
        changed = doomed.length > 0;
      } else if (roll < 0.8) {
        const swept = store.sweepExpired(now);
        assert.equal(swept, modelSweep(now), context);
        if (swept > 0) {
          assert.ok(store.revision() > revision, context);
          revision = store.revision();
        }
        const opKeys = [...new Set([key, pick(keyPool), pick(keyPool)])];
        const compares: TxnCompare[] = [pick(keyPool), pick(keyPool)].map((k) => ({
          key: k,
          version: next() < 0.8 ? liveVersion(k, now) : liveVersion(k, now) + 1,
        }));
        const ops: TxnOp[] = opKeys.map((k) =>
          next() < 0.7
            ? ttlMs === undefined
              ? { op: 'put', key: k, value: [step, k] }
              : { op: 'put', key: k, value: [step, k], ttlMs }
            : { op: 'delete', key: k },
        );
        const shouldApply = compares.every((c) => liveVersion(c.key, now) === c.version);
        assert.equal(store.txn(compares, ops, now), shouldApply, context);
        changed = false;
        if (shouldApply) {
          for (const op of ops) {
            if (op.op === 'put') {
              modelPut(op.key, op.value, now, op.ttlMs);
              changed = true;
            } else if (model.delete(op.key)) {
              changed = true;
            }
          }
        }
      } else if (roll < 0.9) {
        const swept = store.sweepExpired(now);
        assert.equal(swept, modelSweep(now), context);
        changed = swept > 0;
      } else {
        const prefix = pick(prefixes);
        assert.deepEqual(
          store.list(prefix, now).map(plain),
          liveList(prefix, now),
          context,
        );
        changed = false;
      }
      const e = model.get(key);
      assert.deepEqual(plain(store.get(key, now)), e && isLive(e, now) ? { key, ...e } : undefined, context);
      if (changed) assert.ok(store.revision() > revision, `${context}: revision must grow`);
      else assert.equal(store.revision(), revision, `${context}: revision must not move`);
      revision = store.revision();
    }

    assert.deepEqual(store.list('', now).map(plain), liveList('', now));
    await eventually(() => lastEventRevision === store.revision(), 'watch to catch up');
    store.sweepExpired(now);
    await eventually(() => lastEventRevision === store.revision(), 'watch to catch up after sweep');
    assert.deepEqual(
      [...mirror.values()].sort((a, b) => compareKeys(a.key, b.key)),
      store.list('', now),
    );
  });
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  SqliteStore,
  StoreClosedError,
  StoreOpenError,
  openSqliteStore,
  prefixUpperBound,
  type WatchEvent,
} from '../../src/store/index.js';
import { runStoreConformance } from './conformance.js';

const T0 = 1_700_000_000_000;

function makeTempDir(t?: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cell-store-'));
  t?.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

runStoreConformance('sqlite store', async () => {
  const dir = makeTempDir();
  const store = openSqliteStore(path.join(dir, 'state.db'));
  return {
    store,
    async [Symbol.asyncDispose]() {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

runStoreConformance('sqlite store in memory', async () => {
  const store = openSqliteStore(':memory:');
  return {
    store,
    async [Symbol.asyncDispose]() {
      store.close();
    },
  };
});

test('sqlite store - data, versions, revision and expiry survive close and reopen', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  const first = openSqliteStore(file);
  first.put('cells/api', { port: 1 }, { now: T0 });
  first.put('cells/api', { port: 2 }, { now: T0 + 1 });
  first.put('lease/n1', 'x', { now: T0, ttlMs: 100 });
  first.put('gone', 1, { now: T0 });
  first.delete('gone');
  const revision = first.revision();
  const api = first.get('cells/api', T0 + 1);
  first.close();

  const second = openSqliteStore(file);
  t.after(() => second.close());
  assert.equal(second.revision(), revision);
  assert.deepEqual(second.get('cells/api', T0 + 1), api);
  assert.equal(second.get('lease/n1', T0 + 99)?.expiresAt, T0 + 100);
  assert.equal(second.get('lease/n1', T0 + 100), undefined);
  assert.equal(second.get('gone', T0), undefined);
  assert.ok(second.put('next', 1, { now: T0 }).revision > revision);
});

test('sqlite store - a file that is not a database fails with StoreOpenError naming the path', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  fs.writeFileSync(file, 'this is not a database\n'.repeat(500));
  assert.throws(
    () => openSqliteStore(file),
    (error: unknown) => {
      assert.ok(error instanceof StoreOpenError);
      assert.equal(error.name, 'StoreOpenError');
      assert.equal(error.path, file);
      assert.match(error.message, /state\.db/);
      assert.ok(error.cause instanceof Error, 'the SQLite error is kept as cause');
      const json = error.toJSON();
      assert.equal(json.path, file);
      assert.equal(json.cause?.message, (error.cause as Error).message);
      const revived = StoreOpenError.fromJSON(JSON.parse(JSON.stringify(json)));
      assert.equal(revived.message, error.message);
      assert.equal(revived.path, file);
      return true;
    },
  );
});

test('sqlite store - a database with damaged pages fails to open', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  const store = openSqliteStore(file);
  for (let i = 0; i < 500; i += 1) store.put(`k/${i}`, 'v'.repeat(200), { now: T0 });
  store.close();
  // Keep the header page intact so SQLite recognizes the file, then scribble over the b-tree pages.
  const bytes = fs.readFileSync(file);
  const pageSize = bytes.readUInt16BE(16);
  for (let offset = pageSize; offset < bytes.length; offset += 7) bytes[offset] = (offset * 31) & 0xff;
  fs.writeFileSync(file, bytes);
  assert.throws(
    () => openSqliteStore(file),
    (error: unknown) => error instanceof StoreOpenError && error.path === file,
  );
});

test('sqlite store - a missing directory fails with a clear StoreOpenError', (t) => {
  const file = path.join(makeTempDir(t), 'no', 'such', 'dir', 'state.db');
  assert.throws(
    () => openSqliteStore(file),
    (error: unknown) =>
      error instanceof StoreOpenError && error.path === file && /directory .* does not exist/.test(error.message),
  );
});

test('sqlite store - a file from a newer schema is refused', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  openSqliteStore(file).close();
  const raw = new Database(file);
  raw.pragma('user_version = 99');
  raw.close();
  assert.throws(() => openSqliteStore(file), /schema version 99 is newer/);
});

test('sqlite store - WAL mode is active and the documented schema is in place', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  const store = openSqliteStore(file);
  t.after(() => store.close());
  store.put('k', 1, { now: T0 });
  assert.ok(fs.existsSync(`${file}-wal`), 'a -wal file exists while the store is open');
  const raw = new Database(file, { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  const columns = (raw.pragma('table_info(state)') as { name: string }[]).map((c) => c.name);
  assert.deepEqual(columns, ['key', 'value', 'version', 'revision', 'created_at', 'updated_at', 'expires_at']);
  const indexes = (raw.pragma('index_list(state)') as { name: string }[]).map((i) => i.name);
  assert.ok(indexes.includes('state_expires_at'));
  assert.equal(raw.prepare('SELECT revision FROM meta').pluck().get(), store.revision());
  assert.equal(raw.prepare('SELECT value FROM state WHERE key = ?').pluck().get('k'), '1');
  // The prefix scan must be a range search on the primary key, not a table scan.
  const plan = raw
    .prepare(
      `EXPLAIN QUERY PLAN SELECT key, value, version, revision, created_at, updated_at, expires_at FROM state
       WHERE key >= ? AND key < ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key`,
    )
    .all('a/', prefixUpperBound('a/'), T0) as { detail: string }[];
  assert.deepEqual(
    plan.map((p) => p.detail),
    ['SEARCH state USING INDEX sqlite_autoindex_state_1 (key>? AND key<?)'],
  );
  assert.deepEqual(store.integrityCheck(), ['ok']);
});

test('sqlite store - close is idempotent and later calls throw StoreClosedError', (t) => {
  const store = openSqliteStore(path.join(makeTempDir(t), 'state.db'));
  const events: WatchEvent[] = [];
  store.watch('', (e) => events.push(e));
  store.close();
  store.close();
  assert.equal(store.isClosed, true);
  assert.throws(
    () => store.put('k', 1, { now: T0 }),
    (error: unknown) => error instanceof StoreClosedError && error.operation === 'put' && error.toJSON().name === 'StoreClosedError',
  );
  assert.throws(() => store.revision(), StoreClosedError);
  assert.deepEqual(events, []);
});

test('sqlite store - two connections to one file see each other and share the revision', (t) => {
  const file = path.join(makeTempDir(t), 'state.db');
  const a = openSqliteStore(file);
  const b = openSqliteStore(file);
  t.after(() => (a.close(), b.close()));
  const first = a.put('k', 'from a', { now: T0 });
  const second = b.put('k', 'from b', { now: T0 });
  assert.equal(second.version, 2);
  assert.ok(second.revision > first.revision);
  assert.equal(a.get('k', T0)?.value, 'from b');
  assert.equal(a.revision(), b.revision());
});

test('sqlite store - a txn naming one key twice throws TypeError', () => {
  const store = openSqliteStore(':memory:');
  try {
    assert.throws(
      () =>
        store.txn([], [
          { op: 'put', key: 'k', value: 1 },
          { op: 'delete', key: 'k' },
        ], T0),
      /appears in more than one op/,
    );
    assert.equal(store.revision(), 0);
  } finally {
    store.close();
  }
});

test('sqlite store - bad arguments throw TypeError naming the option', () => {
  const store = new SqliteStore(':memory:');
  try {
    assert.throws(() => store.put('k', 1, { now: Number.NaN }), /option "now"/);
    assert.throws(() => store.put('k', 1, { now: T0, ttlMs: 0 }), /option "ttlMs"/);
    assert.throws(() => store.compareAndSet('k', 1, -1, { now: T0 }), /expectedVersion/);
    assert.throws(() => store.get('\ud800', T0), /lone surrogate/);
    assert.throws(() => store.txn([], [{ op: 'nope', key: 'k' } as never], T0), /op must be/);
  } finally {
    store.close();
  }
});

test('sqlite store - a throwing watch callback is reported and the others still run', () => {
  const reported: unknown[] = [];
  const store = openSqliteStore(':memory:', { onListenerError: (error) => reported.push(error) });
  try {
    const seen: string[] = [];
    store.watch('', () => {
      throw new Error('bad listener');
    });
    store.watch('', (e) => seen.push(e.key));
    const entry = store.put('k', 1, { now: T0 });
    assert.equal(entry.version, 1);
    assert.deepEqual(seen, ['k']);
    assert.equal((reported[0] as Error).message, 'bad listener');
  } finally {
    store.close();
  }
});

test('sqlite store - writes from inside a watch callback are delivered after the current event', () => {
  const store = openSqliteStore(':memory:');
  try {
    const seen: string[] = [];
    store.watch('', (e) => {
      seen.push(`${e.key}@${e.revision}`);
      if (e.key === 'a') store.put('b', 1, { now: T0 });
    });
    store.watch('', (e) => seen.push(`second:${e.key}`));
    store.put('a', 1, { now: T0 });
    assert.deepEqual(seen, ['a@1', 'second:a', 'b@2', 'second:b']);
  } finally {
    store.close();
  }
});

test('sqlite store - prefixUpperBound is the next string in code point order', () => {
  assert.equal(prefixUpperBound(''), undefined);
  assert.equal(prefixUpperBound('a/'), 'a0');
  assert.equal(prefixUpperBound('a\uffff'), 'a\u{10000}');
  assert.equal(prefixUpperBound('a\ud7ff'), 'a\ue000');
  assert.equal(prefixUpperBound('a\u{10ffff}'), 'b');
  assert.equal(prefixUpperBound('\u{10ffff}\u{10ffff}'), undefined);
  assert.equal(prefixUpperBound('😀'), '😁');
});

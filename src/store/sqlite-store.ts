/**
 * The embedded `Store`: one SQLite file in WAL mode through better-sqlite3. Every call is
 * synchronous and runs in one SQLite transaction; watch callbacks run after the commit.
 *
 * Layout (schema version 1, kept in `PRAGMA user_version`):
 *   state(key TEXT PRIMARY KEY, value BLOB, version, revision, created_at, updated_at, expires_at)
 *   meta(id = 1, revision)            the store-wide revision, one row
 *   state_expires_at                  partial index on expires_at, for sweepExpired
 * Values are JSON text. Keys compare as UTF-8 bytes (SQLite's BINARY collation), which is Unicode
 * code point order and also etcd's order.
 */
import type BetterSqlite3 from 'better-sqlite3';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as nodePath from 'node:path';
import { StoreClosedError, StoreOpenError, StoreValueError } from './errors.js';
import type { PutOptions, Store, StoreEntry, TxnCompare, TxnOp, WatchEvent } from './store.js';

// Required, not imported: importing a CommonJS package from ESM makes node scan its source for
// named exports first (cjs-module-lexer), ~5 ms on the path of every daemon start.
const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;

export interface SqliteStoreOptions {
  /**
   * Called when a watch callback throws (which the contract forbids). The default rethrows the error
   * on the next tick, as an uncaught exception: the write itself has committed and is not undone.
   */
  onListenerError?: (error: unknown, event: WatchEvent) => void;
  /** Run `PRAGMA quick_check` when opening a file and refuse a damaged one; default true. */
  verifyOnOpen?: boolean;
  /** How long a write waits for another connection's lock, in ms; default 5000. */
  busyTimeoutMs?: number;
}

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS state (
  key        TEXT PRIMARY KEY,
  value      BLOB NOT NULL,
  version    INTEGER NOT NULL DEFAULT 1,
  revision   INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS state_expires_at ON state (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);
`;

const COLUMNS = 'key, value, version, revision, created_at, updated_at, expires_at';
const IS_LIVE = '(expires_at IS NULL OR expires_at > @now)';

interface Row {
  key: string;
  value: string;
  version: number;
  revision: number;
  created_at: number;
  updated_at: number;
  expires_at: number | null;
}

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

/** Three shapes of a prefix query: everything, an open range, a closed range. */
interface PrefixStatements {
  all: Statement;
  from: Statement;
  range: Statement;
}

interface Watcher {
  prefix: string;
  onEvent: (event: WatchEvent) => void;
  isActive: boolean;
}

/** What one write transaction accumulates: its revision (taken on first change) and its events. */
interface WriteContext {
  nextRevision(): number;
  events: WatchEvent[];
}

// A lone surrogate cannot be encoded as UTF-8, so SQLite and etcd would store a different key.
// (isWellFormed, not /\p{Cs}/u: a Unicode property class loads ICU data, ~8 MB of resident memory.)
const hasLoneSurrogate = (s: string): boolean => !(s as string & { isWellFormed(): boolean }).isWellFormed();

function checkKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new TypeError(`${what} must be a non-empty string, got ${JSON.stringify(key) ?? String(key)}`);
  }
  if (hasLoneSurrogate(key)) throw new TypeError(`${what} ${JSON.stringify(key)} contains a lone surrogate`);
}

function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw new TypeError(`prefix must be a string, got ${String(prefix)}`);
  if (hasLoneSurrogate(prefix)) throw new TypeError(`prefix ${JSON.stringify(prefix)} contains a lone surrogate`);
}

function checkNow(now: unknown): asserts now is number {
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new TypeError(`option "now" must be a finite number of ms, got ${String(now)}`);
  }
}

function checkTtl(ttlMs: unknown): asserts ttlMs is number | undefined {
  if (ttlMs !== undefined && (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0)) {
    throw new TypeError(`option "ttlMs" must be a positive number of ms, got ${String(ttlMs)}`);
  }
}

function encodeValue(key: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`value of key ${JSON.stringify(key)} is not JSON-serializable`, { cause: error });
  }
  if (json === undefined) {
    throw new TypeError(`value of key ${JSON.stringify(key)} is not JSON-serializable (got ${typeof value})`);
  }
  return json;
}

function decodeRow<T>(row: Row): StoreEntry<T> {
  let value: T;
  try {
    value = JSON.parse(row.value) as T;
  } catch (error) {
    throw new StoreValueError(row.key, 'stored text is not JSON', { cause: error });
  }
  return {
    key: row.key,
    value,
    version: row.version,
    revision: row.revision,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expiresAt: row.expires_at,
  };
}

function isLive(row: Row, now: number): boolean {
  return row.expires_at === null || row.expires_at > now;
}

/**
 * The smallest string greater than every string that starts with `prefix`, in code point order;
 * undefined when there is none (empty prefix, or only U+10FFFF). With it a prefix scan is the
 * range `key >= prefix AND key < bound`, which SQLite answers from the primary key index.
 * (`prefix + '\uffff'` would miss keys continuing with a character beyond the BMP.)
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const codePoints = Array.from(prefix);
  for (let i = codePoints.length - 1; i >= 0; i -= 1) {
    const codePoint = codePoints[i]!.codePointAt(0)!;
    if (codePoint === 0x10ffff) continue;
    const next = codePoint + 1 === 0xd800 ? 0xe000 : codePoint + 1;
    return codePoints.slice(0, i).join('') + String.fromCodePoint(next);
  }
  return undefined;
}

function describeOpenFailure(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `Store` on a SQLite file (or `:memory:` for tests). Writes use `BEGIN IMMEDIATE`, so several
 * connections (e.g. a CLI reading while the daemon writes) stay consistent; the store revision is
 * read and bumped inside each write transaction.
 *
 * Semantics beyond the `Store` contract:
 * - A transaction commits at one revision: all its entries and events share it; the same holds for
 *   `deletePrefix` and `sweepExpired`. Calls that change nothing do not bump the revision.
 * - `delete` and `deletePrefix` take no `now`: they remove matching rows whether or not expired.
 * - A txn may not name the same key in two ops (`TypeError`, as etcd).
 */
export class SqliteStore implements Store {
  /** The database file, or `:memory:`. */
  readonly path: string;
  private readonly db: BetterSqlite3.Database;
  private readonly onListenerError: (error: unknown, event: WatchEvent) => void;
  private isClosedFlag = false;
  private watchers: Watcher[] = [];
  private readonly eventQueue: WatchEvent[] = [];
  private isDispatching = false;

  private readonly selectRow: Statement;
  private readonly selectLive: Statement;
  private readonly selectLiveVersion: Statement;
  private readonly listLive: PrefixStatements;
  private readonly listKeys: PrefixStatements;
  private readonly deleteRange: PrefixStatements;
  private readonly selectExpiredKeys: Statement;
  private readonly deleteExpired: Statement;
  private readonly anyExpired: Statement;
  private readonly upsertRow: Statement;
  private readonly deleteRow: Statement;
  private readonly renewRow: Statement;
  private readonly selectRevision: Statement;
  private readonly updateRevision: Statement;
  private readonly writeTransaction: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;

  /** Opens (and creates if needed) the store at `path`. Throws `StoreOpenError`. */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.path = path;
    this.onListenerError =
      options.onListenerError ??
      ((error) => {
        process.nextTick(() => {
          throw error;
        });
      });
    const isMemory = path === ':memory:';
    if (!isMemory) {
      const dir = nodePath.dirname(nodePath.resolve(path));
      if (!fs.existsSync(dir)) throw new StoreOpenError(path, `directory ${dir} does not exist (create it first)`);
    }
    let db: BetterSqlite3.Database | undefined;
    try {
      db = new Database(path, { timeout: options.busyTimeoutMs ?? 5000 });
      const journalMode = db.pragma('journal_mode = WAL', { simple: true });
      if (!isMemory && journalMode !== 'wal') {
        throw new Error(`journal_mode WAL is not available here (got ${String(journalMode)})`);
      }
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = OFF');
      this.migrate(db, path);
      if (!isMemory && options.verifyOnOpen !== false) {
        const problems = (db.pragma('quick_check') as { quick_check: string }[]).map((r) => r.quick_check);
        if (problems.length !== 1 || problems[0] !== 'ok') {
          throw new StoreOpenError(path, `database is damaged: ${problems.slice(0, 3).join('; ')}`, { isCorrupt: true });
        }
      }
      this.db = db;

      const prefixStatements = (head: string, tail: string): PrefixStatements => ({
        all: db!.prepare(`${head} ${tail.replace('{where}', '')}`),
        from: db!.prepare(`${head} ${tail.replace('{where}', 'key >= @lo AND')}`),
        range: db!.prepare(`${head} ${tail.replace('{where}', 'key >= @lo AND key < @hi AND')}`),
      });
      this.selectRow = db.prepare(`SELECT ${COLUMNS} FROM state WHERE key = ?`);
      this.selectLive = db.prepare(`SELECT ${COLUMNS} FROM state WHERE key = @key AND ${IS_LIVE}`);
      this.selectLiveVersion = db.prepare(`SELECT version FROM state WHERE key = @key AND ${IS_LIVE}`).pluck();
      this.listLive = prefixStatements(`SELECT ${COLUMNS} FROM state`, `WHERE {where} ${IS_LIVE} ORDER BY key`);
      this.listKeys = prefixStatements('SELECT key FROM state', 'WHERE {where} 1 ORDER BY key');
      for (const statement of Object.values(this.listKeys)) statement.pluck();
      this.deleteRange = prefixStatements('DELETE FROM state', 'WHERE {where} 1');
      this.selectExpiredKeys = db.prepare('SELECT key FROM state WHERE expires_at <= ? ORDER BY key').pluck();
      this.deleteExpired = db.prepare('DELETE FROM state WHERE expires_at <= ?');
      this.anyExpired = db.prepare('SELECT 1 FROM state WHERE expires_at <= ? LIMIT 1').pluck();
      this.upsertRow = db.prepare(
        `INSERT INTO state (${COLUMNS}) VALUES (@key, @value, @version, @revision, @created_at, @updated_at, @expires_at)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,
           revision = excluded.revision, created_at = excluded.created_at,
           updated_at = excluded.updated_at, expires_at = excluded.expires_at`,
      );
      this.deleteRow = db.prepare('DELETE FROM state WHERE key = ?');
      this.renewRow = db.prepare('UPDATE state SET expires_at = @expires WHERE key = @key AND expires_at IS NOT NULL AND expires_at > @now');
      this.selectRevision = db.prepare('SELECT revision FROM meta WHERE id = 1').pluck();
      this.updateRevision = db.prepare('UPDATE meta SET revision = ? WHERE id = 1');
      this.writeTransaction = db.transaction((fn: () => unknown) => fn());
    } catch (error) {
      try {
        db?.close();
      } catch {
        // The open failure is the error worth reporting.
      }
      if (error instanceof StoreOpenError) throw error;
      throw new StoreOpenError(path, describeOpenFailure(error), { cause: error });
    }
  }

  /** Creates the schema in a fresh file; refuses a file written by a newer schema. */
  private migrate(db: BetterSqlite3.Database, path: string): void {
    const migrate = db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new StoreOpenError(path, `schema version ${version} is newer than this cell supports (${SCHEMA_VERSION})`);
      }
      if (version === SCHEMA_VERSION) return;
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    // IMMEDIATE: two processes creating the same file at once must not both run the migration.
    migrate.immediate();
  }

  get<T = unknown>(key: string, now: number): StoreEntry<T> | undefined {
    this.assertOpen('get');
    checkKey(key);
    checkNow(now);
    const row = this.selectLive.get({ key, now }) as Row | undefined;
    return row ? decodeRow<T>(row) : undefined;
  }

  list<T = unknown>(prefix: string, now: number): StoreEntry<T>[] {
    this.assertOpen('list');
    checkPrefix(prefix);
    checkNow(now);
    const rows = this.runPrefix(this.listLive, prefix, 'all', { now }) as Row[];
    return rows.map((row) => decodeRow<T>(row));
  }

  put(key: string, value: unknown, opts: PutOptions): StoreEntry {
    this.assertOpen('put');
    checkKey(key);
    checkNow(opts?.now);
    checkTtl(opts.ttlMs);
    const json = encodeValue(key, value);
    return this.write((ctx) => this.applyPut(ctx, key, json, opts.now, opts.ttlMs));
  }

  compareAndSet(key: string, value: unknown, expectedVersion: number, opts: PutOptions): StoreEntry | undefined {
    this.assertOpen('compareAndSet');
    checkKey(key);
    checkVersion(expectedVersion, 'expectedVersion');
    checkNow(opts?.now);
    checkTtl(opts.ttlMs);
    const json = encodeValue(key, value);
    return this.write((ctx) => {
      if (this.liveVersion(key, opts.now) !== expectedVersion) return undefined;
      return this.applyPut(ctx, key, json, opts.now, opts.ttlMs);
    });
  }

  renew(keys: readonly string[], ttlMs: number, now: number): string[] {
    this.assertOpen('renew');
    if (!Array.isArray(keys)) throw new TypeError(`keys must be an array, got ${String(keys)}`);
    for (const key of keys) checkKey(key);
    checkNow(now);
    checkTtl(ttlMs);
    if (ttlMs === undefined) throw new TypeError('ttlMs is required to renew');
    if (keys.length === 0) return [];
    // No revision and no events: a keep-alive is not a change anyone watches. One transaction
    // for the lot, so a daemon renewing 100 leases pays for one commit.
    const expires = now + ttlMs;
    return this.writeTransaction.immediate(() => keys.filter((key) => this.renewRow.run({ key, now, expires }).changes !== 1)) as string[];
  }

  delete(key: string): boolean {
    this.assertOpen('delete');
    checkKey(key);
    return this.write((ctx) => this.applyDelete(ctx, key));
  }

  deletePrefix(prefix: string): number {
    this.assertOpen('deletePrefix');
    checkPrefix(prefix);
    return this.write((ctx) => {
      const keys = this.runPrefix(this.listKeys, prefix, 'all', {}) as string[];
      if (keys.length === 0) return 0;
      this.runPrefix(this.deleteRange, prefix, 'run', {});
      const revision = ctx.nextRevision();
      for (const key of keys) ctx.events.push({ type: 'delete', key, revision });
      return keys.length;
    });
  }

  txn(compares: TxnCompare[], ops: TxnOp[], now: number): boolean {
    this.assertOpen('txn');
    checkNow(now);
    if (!Array.isArray(compares)) throw new TypeError(`txn: compares must be an array, got ${String(compares)}`);
    if (!Array.isArray(ops)) throw new TypeError(`txn: ops must be an array, got ${String(ops)}`);
    for (const compare of compares) {
      checkKey(compare?.key, 'txn compare key');
      checkVersion(compare.version, `txn compare version of ${JSON.stringify(compare.key)}`);
    }
    // Validate and encode everything before taking the write lock: a bad op aborts the whole txn.
    const seen = new Set<string>();
    const prepared = ops.map((op) => {
      checkKey(op?.key, 'txn op key');
      if (seen.has(op.key)) throw new TypeError(`txn: key ${JSON.stringify(op.key)} appears in more than one op`);
      seen.add(op.key);
      if (op.op === 'put') {
        checkTtl(op.ttlMs);
        return { op: 'put' as const, key: op.key, json: encodeValue(op.key, op.value), ttlMs: op.ttlMs };
      }
      if (op.op === 'delete') return { op: 'delete' as const, key: op.key };
      throw new TypeError(`txn: op must be "put" or "delete", got ${JSON.stringify((op as { op: unknown }).op)}`);
    });
    return this.write((ctx) => {
      for (const compare of compares) {
        if (this.liveVersion(compare.key, now) !== compare.version) return false;
      }
      for (const op of prepared) {
        if (op.op === 'put') this.applyPut(ctx, op.key, op.json, now, op.ttlMs);
        else this.applyDelete(ctx, op.key);
      }
      return true;
    });
  }

  sweepExpired(now: number): number {
    this.assertOpen('sweepExpired');
    checkNow(now);
    // Runs every second: most sweeps find nothing, and a read needs no write transaction.
    if (this.anyExpired.get(now) === undefined) return 0;
    return this.write((ctx) => {
      const keys = this.selectExpiredKeys.all(now) as string[];
      if (keys.length === 0) return 0;
      this.deleteExpired.run(now);
      const revision = ctx.nextRevision();
      for (const key of keys) ctx.events.push({ type: 'delete', key, revision });
      return keys.length;
    });
  }

  watch(prefix: string, onEvent: (event: WatchEvent) => void): () => void {
    this.assertOpen('watch');
    checkPrefix(prefix);
    if (typeof onEvent !== 'function') throw new TypeError(`watch: onEvent must be a function, got ${typeof onEvent}`);
    const watcher: Watcher = { prefix, onEvent, isActive: true };
    // Copy on write: a dispatch in progress keeps iterating the list it started with.
    this.watchers = [...this.watchers, watcher];
    return () => {
      if (!watcher.isActive) return;
      watcher.isActive = false;
      this.watchers = this.watchers.filter((w) => w !== watcher);
    };
  }

  revision(): number {
    this.assertOpen('revision');
    return this.selectRevision.get() as number;
  }

  /** Runs `PRAGMA integrity_check`; returns `['ok']` for a sound file, otherwise the problems found. */
  integrityCheck(): string[] {
    this.assertOpen('integrityCheck');
    return (this.db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
  }

  /**
   * Copies the WAL into the database file. SQLite does this on its own every 1000 pages and on the
   * last close; call it at quiet moments to bound the WAL. `truncate` also empties the -wal file and
   * waits (busy timeout) for readers to finish; `passive` never waits.
   */
  checkpoint(mode: 'passive' | 'truncate' = 'passive'): void {
    this.assertOpen('checkpoint');
    this.db.pragma(`wal_checkpoint(${mode === 'truncate' ? 'TRUNCATE' : 'PASSIVE'})`);
  }

  /** True once `close()` has been called. */
  get isClosed(): boolean {
    return this.isClosedFlag;
  }

  /** Stops every watch and closes the file. Idempotent; any other call afterwards throws `StoreClosedError`. */
  close(): void {
    if (this.isClosedFlag) return;
    this.isClosedFlag = true;
    for (const watcher of this.watchers) watcher.isActive = false;
    this.watchers = [];
    this.db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(operation: string): void {
    if (this.isClosedFlag) throw new StoreClosedError(this.path, operation);
  }

  private liveVersion(key: string, now: number): number {
    return (this.selectLiveVersion.get({ key, now }) as number | undefined) ?? 0;
  }

  private runPrefix(
    statements: PrefixStatements,
    prefix: string,
    mode: 'all' | 'run',
    params: Record<string, unknown>,
  ): unknown {
    const hi = prefix === '' ? undefined : prefixUpperBound(prefix);
    const statement = prefix === '' ? statements.all : hi === undefined ? statements.from : statements.range;
    const bound = prefix === '' ? params : hi === undefined ? { ...params, lo: prefix } : { ...params, lo: prefix, hi };
    const args = Object.keys(bound).length === 0 ? [] : [bound];
    return mode === 'all' ? statement.all(...args) : statement.run(...args);
  }

  /** Runs `fn` in one IMMEDIATE transaction, then hands the events it produced to the watchers. */
  private write<R>(fn: (ctx: WriteContext) => R): R {
    let revision = 0;
    const ctx: WriteContext = {
      nextRevision: () => {
        if (revision === 0) {
          revision = (this.selectRevision.get() as number) + 1;
          this.updateRevision.run(revision);
        }
        return revision;
      },
      events: [],
    };
    const result = this.writeTransaction.immediate(() => fn(ctx)) as R;
    this.dispatch(ctx.events);
    return result;
  }

  private applyPut(ctx: WriteContext, key: string, json: string, now: number, ttlMs: number | undefined): StoreEntry {
    const existing = this.selectRow.get(key) as Row | undefined;
    const previous = existing && isLive(existing, now) ? existing : undefined;
    const row: Row = {
      key,
      value: json,
      version: previous ? previous.version + 1 : 1,
      revision: ctx.nextRevision(),
      created_at: previous ? previous.created_at : now,
      updated_at: now,
      expires_at: ttlMs === undefined ? null : now + ttlMs,
    };
    this.upsertRow.run(row);
    const entry = decodeRow(row);
    ctx.events.push({ type: 'put', key, entry, revision: row.revision });
    return entry;
  }

  private applyDelete(ctx: WriteContext, key: string): boolean {
    if (this.deleteRow.run(key).changes === 0) return false;
    ctx.events.push({ type: 'delete', key, revision: ctx.nextRevision() });
    return true;
  }

  // Events queue up so that a callback that writes (against the contract) still sees every event
  // in commit order, after the ones already being delivered.
  private dispatch(events: WatchEvent[]): void {
    if (events.length === 0 || this.watchers.length === 0) return;
    this.eventQueue.push(...events);
    if (this.isDispatching) return;
    this.isDispatching = true;
    try {
      for (let i = 0; i < this.eventQueue.length; i += 1) {
        const event = this.eventQueue[i]!;
        for (const watcher of this.watchers) {
          if (!watcher.isActive || !event.key.startsWith(watcher.prefix)) continue;
          try {
            watcher.onEvent(event);
          } catch (error) {
            this.onListenerError(error, event);
          }
        }
      }
    } finally {
      this.eventQueue.length = 0;
      this.isDispatching = false;
    }
  }
}

function checkVersion(version: unknown, what: string): asserts version is number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new TypeError(`${what} must be a non-negative integer (0 = absent), got ${String(version)}`);
  }
}

/** Opens the SQLite store at `path` (the directory must exist). Throws `StoreOpenError`. */
export function openSqliteStore(path: string, options?: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(path, options);
}

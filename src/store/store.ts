/**
 * The `Store` seam: a versioned key-value store with compare-and-set, transactions, TTLs and
 * prefix watches. The embedded implementation is SQLite (WAL); the cluster one is etcd.
 *
 * Contract, shared by every implementation (one conformance suite runs against each):
 * - Keys are non-empty strings of well-formed Unicode, ordered by their UTF-8 bytes (code point
 *   order, as etcd). Values are JSON-serializable; anything else throws `TypeError`, and readers
 *   get a copy as JSON would rebuild it. `version` starts at 1 on create and grows by one on every
 *   put of that key; a delete then re-create starts again at 1.
 * - `revision` is store-wide and strictly increasing with every committed change. One call is one
 *   commit: all entries and events of a txn (or a deletePrefix, or a sweep) share its revision.
 *   A call that changes nothing (failed guard, delete of a missing key) leaves it unchanged.
 * - No wall clock inside: callers pass `now` (ms) with every write or read that cares about TTLs.
 *   An entry whose `expiresAt <= now` is absent to readers (and to version guards: a put over it
 *   creates version 1) and is removed by `sweepExpired`.
 * - Watch callbacks run after the change is committed, in commit order, synchronously within the
 *   writing call for the embedded store. A callback must not throw; it must not write re-entrantly.
 */
export interface StoreEntry<T = unknown> {
  key: string;
  value: T;
  version: number;
  /** Store revision of the last change to this key. */
  revision: number;
  createdAt: number;
  updatedAt: number;
  expiresAt: number | null;
}

export interface PutOptions {
  now: number;
  /** Time to live in ms from `now`; absent means no expiry. */
  ttlMs?: number;
}

export type TxnOp =
  | { op: 'put'; key: string; value: unknown; ttlMs?: number }
  | { op: 'delete'; key: string };

/** A guard of a transaction: the key's current version must equal `version` (0 = absent). */
export interface TxnCompare {
  key: string;
  version: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** Present for puts. */
  entry?: StoreEntry;
  revision: number;
}

export interface Store {
  get<T = unknown>(key: string, now: number): StoreEntry<T> | undefined;
  /** Entries whose key starts with `prefix` (`''` = all), in key order. */
  list<T = unknown>(prefix: string, now: number): StoreEntry<T>[];
  put(key: string, value: unknown, opts: PutOptions): StoreEntry;
  /**
   * Writes only if the key's current version equals `expectedVersion` (0 = must be absent).
   * Returns the new entry, or `undefined` when the guard failed (nothing written).
   */
  compareAndSet(key: string, value: unknown, expectedVersion: number, opts: PutOptions): StoreEntry | undefined;
  /** Returns true if the key existed. */
  delete(key: string): boolean;
  /** Deletes every key under `prefix`; returns how many. */
  deletePrefix(prefix: string): number;
  /**
   * All-or-nothing: if every compare holds, applies every op in one commit (in op order) and returns
   * true; otherwise writes nothing and returns false. Naming one key in two ops throws `TypeError`.
   */
  txn(compares: TxnCompare[], ops: TxnOp[], now: number): boolean;
  /**
   * Extends the TTL of each live entry of `keys` that has one to `now + ttlMs`, in one commit,
   * without changing values, versions or the store revision and without watch events (as an etcd
   * lease keep-alive). Returns the keys it left alone: absent, expired, or without a TTL.
   */
  renew(keys: readonly string[], ttlMs: number, now: number): string[];
  /** Removes entries expired at `now`, emitting delete events for them. Returns how many. */
  sweepExpired(now: number): number;
  /** Calls `onEvent` for each change under `prefix`; the returned function stops the watch. */
  watch(prefix: string, onEvent: (event: WatchEvent) => void): () => void;
  /** Current store revision. */
  revision(): number;
  close(): void;
}

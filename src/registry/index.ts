import type { Store, StoreEntry, TxnOp, WatchEvent } from '../store/index.js';

/**
 * The registry (the seed's Nucleus): which instances serve a cell and where. An endpoint is a
 * store key under `registry/endpoints/<cell>/<index>` with a TTL; heartbeats renew it, so an
 * instance whose heartbeats stop disappears from discovery on its own.
 */
export interface Endpoint {
  cell: string;
  instance: number;
  url: string;
  port: number;
  /** The unix socket of an SDK cell (null for cells that do not speak the protocol). */
  socket: string | null;
  pid: number | null;
  version: string;
}

const PREFIX = 'registry/endpoints/';

export class Registry {
  /** When each endpoint's lease was last written, to renew it only past half its TTL. */
  private renewedAt = new Map<string, number>();
  private dueRenewals = new Map<string, () => Endpoint>();
  /**
   * Every live endpoint by key, kept up to date from the store's events, until the first of their
   * leases runs out (renewals, which make no event, only push that later; the list is then read
   * again): the gateway's long poll asks for the whole list after each change, ~60 times in a
   * cold start of 100 cells, and decoding it from SQLite each time was most of the cost.
   */
  private listed: { byKey: Map<string, StoreEntry<Endpoint>>; validUntil: number; sorted: Endpoint[] | null } | null = null;

  constructor(
    private readonly store: Store,
    private readonly ttlMs: number,
  ) {
    store.watch(PREFIX, (event) => {
      const listed = this.listed;
      if (!listed) return;
      listed.sorted = null;
      if (event.type === 'delete') listed.byKey.delete(event.key);
      else if (event.entry) {
        listed.byKey.set(event.key, event.entry as StoreEntry<Endpoint>);
        listed.validUntil = Math.min(listed.validUntil, event.entry.expiresAt ?? Infinity);
      } else this.listed = null;
    });
  }

  static key(cell: string, instance: number): string {
    return `${PREFIX}${cell}/${instance}`;
  }

  /** Registers (or re-registers) an endpoint. Idempotent. */
  register(endpoint: Endpoint, now: number): void {
    const op = this.registration(endpoint, now);
    this.store.put(op.key, op.value, { now, ttlMs: this.ttlMs });
  }

  /**
   * The store write that registers `endpoint`, for a caller that commits it with writes of its
   * own (the supervisor: an instance's `ready` record and its endpoint in one commit).
   */
  registration(endpoint: Endpoint, now: number): TxnOp & { op: 'put' } {
    const key = Registry.key(endpoint.cell, endpoint.instance);
    this.renewedAt.set(key, now);
    this.dueRenewals.delete(key);
    return { op: 'put', key, value: endpoint, ttlMs: this.ttlMs };
  }

  /**
   * A heartbeat: the lease is renewed once half of it has run out, so steady health costs few
   * writes. Due renewals wait for `flushRenewals` (the daemon's one-second tick), which writes
   * them all in one commit. A renewal is a keep-alive (no revision, no watch event): watchers of
   * the registry (the gateway, last-known-good) hear about endpoints that change, not about ones
   * that stay. The endpoint is built only when it must be written again.
   */
  heartbeat(cell: string, instance: number, endpoint: () => Endpoint, now: number): void {
    const key = Registry.key(cell, instance);
    const last = this.renewedAt.get(key);
    if (last !== undefined && now - last < this.ttlMs / 2) return;
    if (last === undefined) this.register(endpoint(), now);
    else this.dueRenewals.set(key, endpoint);
  }

  /** Writes the renewals heartbeats asked for; a lease that ran out meanwhile is registered again. */
  flushRenewals(now: number): void {
    if (this.dueRenewals.size === 0) return;
    const due = this.dueRenewals;
    this.dueRenewals = new Map();
    const lapsed = new Set(this.store.renew([...due.keys()], this.ttlMs, now));
    for (const [key, endpoint] of due) {
      if (lapsed.has(key)) this.register(endpoint(), now);
      else this.renewedAt.set(key, now);
    }
  }

  deregister(cell: string, instance: number): void {
    const key = Registry.key(cell, instance);
    this.renewedAt.delete(key);
    this.dueRenewals.delete(key);
    this.store.delete(key);
  }

  /** The live endpoints (of `cell`, or all), in key order. */
  endpoints(now: number, cell?: string): Endpoint[] {
    let listed = this.listed;
    if (!listed || now >= listed.validUntil) {
      const entries = this.store.list<Endpoint>(PREFIX, now);
      listed = this.listed = { byKey: new Map(entries.map((e) => [e.key, e])), validUntil: Math.min(...entries.map((e) => e.expiresAt ?? Infinity)), sorted: null };
    }
    // Keys are ASCII (cell names are), so this is the store's own key order.
    listed.sorted ??= [...listed.byKey.keys()].sort().map((key) => listed.byKey.get(key)!.value);
    return cell === undefined ? [...listed.sorted] : listed.sorted.filter((e) => e.cell === cell);
  }

  /** Calls `onChange` after any endpoint change (including expiries swept by the store). */
  watch(onChange: (event: WatchEvent) => void): () => void {
    return this.store.watch(PREFIX, onChange);
  }
}

import type { Store, WatchEvent } from '../store/index.js';

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

  constructor(
    private readonly store: Store,
    private readonly ttlMs: number,
  ) {}

  static key(cell: string, instance: number): string {
    return `${PREFIX}${cell}/${instance}`;
  }

  /** Registers (or re-registers) an endpoint. Idempotent. */
  register(endpoint: Endpoint, now: number): void {
    const key = Registry.key(endpoint.cell, endpoint.instance);
    this.store.put(key, endpoint, { now, ttlMs: this.ttlMs });
    this.renewedAt.set(key, now);
    this.dueRenewals.delete(key);
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

  endpoints(now: number, cell?: string): Endpoint[] {
    return this.store.list<Endpoint>(cell ? `${PREFIX}${cell}/` : PREFIX, now).map((e) => e.value);
  }

  /** Calls `onChange` after any endpoint change (including expiries swept by the store). */
  watch(onChange: (event: WatchEvent) => void): () => void {
    return this.store.watch(PREFIX, onChange);
  }
}

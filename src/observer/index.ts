import type { Store, TxnOp } from '../store/index.js';
import type { TransitionEvent } from '../reconciler/index.js';

/**
 * The observer: the event log of every instance transition (what `cell events`, `cell status`
 * and the tests read), kept in the store under `events/` with a TTL so it cannot grow forever.
 */
export class EventLog {
  private seq = 0;
  private sinceTrim = 0;

  /**
   * Events live `retentionMs`, and at most `maxEvents` are kept (a crash loop must not grow the
   * store without bound): every `maxEvents / 10` appends, the oldest beyond the cap are deleted.
   */
  constructor(
    private readonly store: Store,
    private readonly retentionMs = 24 * 3600_000,
    private readonly maxEvents = 10_000,
  ) {}

  append(event: TransitionEvent): void {
    this.appendWith(event, []);
  }

  /**
   * Appends `event` in the same commit as `ops`: the supervisor writes an instance's new record
   * and the transition that led to it together (one commit instead of two, ~400 fewer in a cold
   * start of 100 cells).
   */
  appendWith(event: TransitionEvent, ops: TxnOp[]): void {
    this.appendAll([{ event, ops }], event.at);
  }

  /**
   * Several changes in one commit, each its ops and, if it is a transition, its event: a tick
   * of the supervisor that starts 100 instances writes their claims at once.
   */
  appendAll(changes: { event?: TransitionEvent; ops: TxnOp[] }[], now: number): void {
    if (changes.length === 0) return;
    const ops: TxnOp[] = [];
    let appended = 0;
    for (const { event, ops: own } of changes) {
      ops.push(...own);
      if (!event) continue;
      // Time first, then a per-daemon sequence: keys sort in commit order across daemon restarts.
      const key = `events/${String(event.at).padStart(15, '0')}-${String(this.seq++).padStart(8, '0')}-${process.pid}`;
      ops.push({ op: 'put', key, value: event, ttlMs: this.retentionMs });
      appended++;
    }
    this.store.txn([], ops, now);
    this.sinceTrim += appended;
    if (this.sinceTrim >= Math.max(1, Math.floor(this.maxEvents / 10))) {
      this.sinceTrim = 0;
      this.trim(now);
    }
  }

  private trim(now: number): void {
    const all = this.store.list('events/', now);
    const excess = all.length - this.maxEvents;
    if (excess <= 0) return;
    this.store.txn([], all.slice(0, excess).map((e) => ({ op: 'delete' as const, key: e.key })), now);
  }

  list(now: number, filter: { cell?: string; since?: number; limit?: number } = {}): TransitionEvent[] {
    let events = this.store.list<TransitionEvent>('events/', now).map((e) => e.value);
    if (filter.cell) events = events.filter((e) => e.cell === filter.cell);
    if (filter.since !== undefined) events = events.filter((e) => e.at >= filter.since!);
    if (filter.limit !== undefined) events = events.slice(-filter.limit);
    return events;
  }
}

export { readProcessUsage, type ProcessUsage } from './usage.js';

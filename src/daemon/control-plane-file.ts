import type { Clock } from '../clock/index.js';
import { writeFileAtomic, writeFileAtomicSync } from '../store/index.js';

/** How soon a write that failed (a full disk) is tried again. */
const RETRY_MS = 1000;

/**
 * Writes control-plane.json (the seed's snapshot of processes, dependencies, versions and last
 * health) atomically: temp file, fsync, rename. Bursts of changes coalesce into one write; a
 * write never overlaps another, so the file on disk is always one whole snapshot.
 */
export class ControlPlaneFile {
  private pending: (() => object) | null = null;
  private writing = false;
  private cancelTimer: (() => void) | null = null;

  private failing = false;

  constructor(
    private readonly path: string,
    private readonly clock: Clock,
    // A cold start of 100 cells changes state for seconds on end: at 25 ms this wrote (and
    // fsynced) the whole snapshot ~130 times, CPU taken from the cells starting. The store is
    // the source of truth for readoption; this file may lag by this much.
    private readonly debounceMs = 100,
    /** Told of the first failed write of a streak (the error), and of the write that ends it (null). */
    private readonly onError?: (err: Error | null) => void,
  ) {}

  private closed = false;

  schedule(snapshot: () => object, delayMs = this.debounceMs): void {
    if (this.closed) return;
    this.pending = snapshot;
    if (this.cancelTimer || this.writing) return;
    this.cancelTimer = this.clock.setTimer(delayMs, () => {
      this.cancelTimer = null;
      void this.flush();
    });
  }

  private inFlight: Promise<void> = Promise.resolve();

  private flush(): Promise<void> {
    this.inFlight = this.write();
    return this.inFlight;
  }

  private async write(): Promise<void> {
    const snapshot = this.pending;
    if (!snapshot) return;
    this.pending = null;
    this.writing = true;
    try {
      await writeFileAtomic(this.path, JSON.stringify(snapshot(), null, 2) + '\n');
      if (this.failing) this.onError?.(null);
      this.failing = false;
    } catch (err) {
      // A full disk: said once, and this snapshot waits for the next try (the newest wins). The
      // old file stays whole meanwhile (the rename never happened).
      if (!this.failing) this.onError?.(err as Error);
      this.failing = true;
      this.pending ??= snapshot;
    } finally {
      this.writing = false;
      if (this.pending) this.schedule(this.pending, this.failing ? RETRY_MS : undefined);
    }
  }

  /**
   * Final write (shutdown): waits for a write in flight, so no older snapshot lands after it.
   * Returns the error of a write that failed (the file keeps an older snapshot), else null.
   */
  async writeFinal(snapshot: object): Promise<Error | null> {
    this.closed = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.pending = null;
    await this.inFlight;
    this.pending = null;
    try {
      writeFileAtomicSync(this.path, JSON.stringify(snapshot, null, 2) + '\n');
      return null;
    } catch (err) {
      // The shutdown goes on: the cells are stopped already, and the store says so.
      this.onError?.(err as Error);
      return err as Error;
    }
  }
}

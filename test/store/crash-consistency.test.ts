/**
 * Kills a real writer (test/fixtures/store-writer.ts: SqliteStore + writeFileAtomicSync) with
 * SIGKILL at random moments, at least 200 times, and checks after every kill that the store and
 * the JSON state file are intact and that the store revision never went backwards.
 *
 * Start cost decides the run time (200 starts): `node --import tsx` costs ~0.55 s of CPU per
 * process (its loader runs in a worker thread), tsx's in-thread require hook ~0.25 s, so writers
 * are loaded with `node --require tsx/cjs` (same tsx transform of the same sources; set
 * CELL_CRASH_LOADER=import to use `--import tsx`). Each lane (its own directory) keeps spare
 * writers loading while the current one runs; a spare opens the store only when told `go`, after
 * the test has checked the previous kill. CELL_CRASH_KILLS overrides the number of kills.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openSqliteStore, readJsonFileSync } from '../../src/store/index.js';

const WRITER = fileURLToPath(new URL('../fixtures/store-writer.ts', import.meta.url));
const WRITER_ARGS =
  process.env.CELL_CRASH_LOADER === 'import'
    ? ['--import', 'tsx', WRITER]
    : ['--require', 'tsx/cjs', '-e', 'require(process.argv[1])', WRITER];
const TOTAL_KILLS = Number(process.env.CELL_CRASH_KILLS ?? 200);
const LANES = 3;
/** Writers loading ahead per lane. */
const SPARES = 2;
const PAD_LENGTH = 20_000;
const STEP_TIMEOUT_MS = 15_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One writer process and the lines it has printed. */
class Writer {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private readonly lines: string[] = [];
  private stderr = '';
  private onLine: (() => void) | undefined;

  constructor(dir: string, live: Set<Writer>) {
    this.child = spawn(process.execPath, [...WRITER_ARGS, dir], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this);
        resolve({ code, signal });
        this.onLine?.();
      });
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.onLine?.();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    // A writer killed before it reads stdin must not turn into an EPIPE error here.
    this.child.stdin!.on('error', () => undefined);
  }

  /** Resolves with the first line starting with `prefix`; rejects if the writer exits first. */
  async waitForLine(prefix: string): Promise<string> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      const line = this.lines.find((l) => l.startsWith(prefix));
      if (line !== undefined) return line;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`writer ${this.child.pid} exited before "${prefix}": ${this.describe()}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`writer ${this.child.pid} did not print "${prefix}": ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.onLine = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.onLine = undefined;
    }
  }

  go(): void {
    this.child.stdin!.write('go\n');
  }

  async kill(): Promise<Exit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }

  describe(): string {
    return `exit ${this.child.exitCode}/${this.child.signalCode}, stdout ${JSON.stringify(this.lines)}, stderr ${this.stderr.slice(-2000)}`;
  }
}

interface StateFile {
  pid: number;
  seq: number;
  revision: number;
  pad: string;
}

type Phase = 'load' | 'open' | 'run' | 'kill' | 'check';

/** What one lane has seen so far. */
interface LaneState {
  dir: string;
  lastRevision: number;
  hasSeenFile: boolean;
  kills: number;
  /** Time spent waiting in each phase, summed over rounds. */
  phaseMs: Record<Phase, number>;
}

/** Opens the store the writer left behind and checks every invariant; records its revision. */
function checkAfterKill(lane: LaneState, context: string): void {
  const file = readJsonFileSync<StateFile>(path.join(lane.dir, 'state.json'));
  if (file === undefined) {
    assert.equal(lane.hasSeenFile, false, `${context}: state.json vanished after it had been written`);
  } else {
    lane.hasSeenFile = true;
    assert.equal(typeof file.revision, 'number', context);
    assert.equal(file.pad.length, PAD_LENGTH, `${context}: state.json is complete`);
  }

  const store = openSqliteStore(path.join(lane.dir, 'state.db'));
  try {
    assert.deepEqual(store.integrityCheck(), ['ok'], `${context}: integrity_check`);
    const revision = store.revision();
    assert.ok(revision >= lane.lastRevision, `${context}: revision went back from ${lane.lastRevision} to ${revision}`);
    if (file) assert.ok(file.revision <= revision, `${context}: state.json has revision ${file.revision} > store ${revision}`);
    const now = Date.now();
    const a = store.get<number>('bank/a', now);
    const b = store.get<number>('bank/b', now);
    if (a || b) assert.equal(a!.value + b!.value, 100, `${context}: the transfer txn is atomic`);
    const seq = store.get<number>('meta/seq', now);
    if (seq) {
      const log = store.get(`log/${String(seq.value).padStart(10, '0')}`, now);
      assert.ok(log, `${context}: log entry ${seq.value} committed with meta/seq`);
      assert.equal(log.revision, seq.revision, `${context}: log and meta/seq share a revision`);
    }
    lane.lastRevision = revision;
  } finally {
    store.close();
  }
}

function randomDelayMs(): number {
  return 5 + Math.floor(Math.random() * 56);
}

async function runLane(lane: LaneState, kills: number, live: Set<Writer>, signal: AbortSignal): Promise<void> {
  // Spares load while the current writer runs; a spare touches nothing until its own `go`.
  const spares: Writer[] = [];
  try {
    for (let round = 0; round < kills && !signal.aborted; round += 1) {
      const context = `${path.basename(lane.dir)} kill ${round + 1}`;
      while (spares.length < Math.min(SPARES, kills - round)) spares.push(new Writer(lane.dir, live));
      const writer = spares.shift()!;
      await timed(lane, 'load', writer.waitForLine('loaded'));
      if (signal.aborted) break;
      await runRound(lane, writer, context);
    }
  } finally {
    await Promise.all(spares.map((spare) => spare.kill()));
  }
}

async function runRound(lane: LaneState, writer: Writer, context: string): Promise<void> {
  writer.go();
  const writing = await timed(lane, 'open', writer.waitForLine('writing '));
  const openedAt = Number(writing.split(' ')[1]);
  assert.equal(openedAt, lane.lastRevision, `${context}: the writer found the revision the test last saw`);
  await timed(lane, 'run', new Promise((resolve) => setTimeout(resolve, randomDelayMs())));
  const exit = await timed(lane, 'kill', writer.kill());
  assert.equal(exit.signal, 'SIGKILL', `${context}: writer ended on its own: ${writer.describe()}`);
  lane.kills += 1;
  await timed(lane, 'check', Promise.resolve().then(() => checkAfterKill(lane, context)));
}

/** Adds the time `promise` takes to the lane's phase total (reported as a diagnostic). */
async function timed<T>(lane: LaneState, phase: Phase, promise: Promise<T>): Promise<T> {
  const startedAt = performance.now();
  try {
    return await promise;
  } finally {
    lane.phaseMs[phase] += performance.now() - startedAt;
  }
}

test('store - survives 200 SIGKILLs of a writer with an intact database, state file and revision', { timeout: 90_000 }, async (t) => {
  const live = new Set<Writer>();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cell-crash-'));
  t.after(async () => {
    await Promise.all([...live].map((writer) => writer.kill()));
    fs.rmSync(root, { recursive: true, force: true });
  });

  const startedAt = Date.now();
  const lanes: LaneState[] = Array.from({ length: LANES }, (_, i) => {
    const dir = path.join(root, `lane-${i}`);
    fs.mkdirSync(dir);
    return { dir, lastRevision: 0, hasSeenFile: false, kills: 0, phaseMs: { load: 0, open: 0, run: 0, kill: 0, check: 0 } };
  });
  const perLane = Math.ceil(TOTAL_KILLS / LANES);
  // The first failing lane stops the others, so no lane spawns writers after the cleanup.
  const controller = new AbortController();
  let firstError: unknown;
  await Promise.allSettled(
    lanes.map((lane) =>
      runLane(lane, perLane, live, controller.signal).catch((error: unknown) => {
        if (!controller.signal.aborted) firstError = error;
        controller.abort();
        for (const writer of live) void writer.kill();
      }),
    ),
  );
  if (controller.signal.aborted) throw firstError;

  const kills = lanes.reduce((sum, lane) => sum + lane.kills, 0);
  assert.ok(kills >= TOTAL_KILLS, `${kills} kills`);
  for (const lane of lanes) {
    assert.ok(lane.hasSeenFile, 'every lane wrote its state file at least once');
    assert.ok(lane.lastRevision > 0, 'every lane committed something');
    const leftovers = fs.readdirSync(lane.dir).filter((name) => name.includes('.tmp-'));
    assert.ok(leftovers.length <= 1, `writers clean up the temporaries of killed predecessors: ${leftovers}`);
  }
  assert.equal(live.size, 0, 'no writer is left running');
  const phases = (Object.keys(lanes[0]!.phaseMs) as Phase[])
    .map((phase) => `${phase} ${Math.round(lanes.reduce((sum, lane) => sum + lane.phaseMs[phase], 0) / kills)}`)
    .join(', ');
  t.diagnostic(
    `${kills} kills in ${Date.now() - startedAt} ms over ${LANES} lanes; final revisions ` +
      `${lanes.map((l) => l.lastRevision).join(', ')}; mean ms per kill: ${phases}`,
  );
});

import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ChildProcessDriver } from '../../src/supervisor/child-process-driver.js';
import { RotationSchedule, followFile, rotateIfLarger } from '../../src/supervisor/log-rotation.js';
import { readLastLines } from '../../src/api/index.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('logs - rotateIfLarger shifts the old files and drops the oldest', (t) => {
  const file = join(tempDir(t), 'web.0.log');
  writeFileSync(file, 'current\n');
  writeFileSync(`${file}.1`, 'one\n');
  writeFileSync(`${file}.2`, 'two\n');

  assert.equal(rotateIfLarger(file, 100, 2), false, 'not larger than maxBytes');
  assert.equal(readFileSync(file, 'utf8'), 'current\n');

  assert.equal(rotateIfLarger(file, 4, 2), true);
  assert.equal(readFileSync(file, 'utf8'), '');
  assert.equal(readFileSync(`${file}.1`, 'utf8'), 'current\n');
  assert.equal(readFileSync(`${file}.2`, 'utf8'), 'one\n');
  assert.equal(existsSync(`${file}.3`), false);

  assert.equal(rotateIfLarger(join(tempDir(t), 'missing.log'), 0, 2), false);
  assert.throws(() => rotateIfLarger(file, 0, -1), TypeError);
});

test('logs - rotation keeps the child\'s later writes at the start of the truncated file', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ticker.0.log');
  const driver = new ChildProcessDriver();
  const fixture = fileURLToPath(new URL('../fixtures/ticker.mjs', import.meta.url));
  const handle = await driver.spawn({
    cell: 'ticker',
    instance: 0,
    command: `'${process.execPath}' '${fixture}'`,
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TICK_MS: '10' },
    logFile: file,
  });
  t.after(() => driver.signalGroup(handle.pid, 'SIGKILL'));

  await waitFor('a few ticks', () => readFileSync(file, 'utf8').includes('tick 5\n'));
  const before = statSync(file).size;
  assert.equal(rotateIfLarger(file, 10, 3), true);
  assert.match(readFileSync(`${file}.1`, 'utf8'), /^ticker pid \d+\ntick 0\n/);

  await waitFor('ticks after rotation', () => readFileSync(file, 'utf8').split('\n').length > 3);
  const after = readFileSync(file, 'utf8');
  // Without O_APPEND the child would write at its old offset, leaving a hole of NUL bytes.
  assert.equal(after.includes('\0'), false);
  assert.match(after, /^tick \d+\n/);
  assert.ok(statSync(file).size < before + 200);
});

test('logs - readLastLines on a 5 MB file reads only the end', (t) => {
  const file = join(tempDir(t), 'big.log');
  const lines: string[] = [];
  for (let i = 0; i < 100_000; i++) lines.push(`line ${i} ${'x'.repeat(40)}`);
  writeFileSync(file, lines.join('\n') + '\n');
  assert.ok(statSync(file).size > 5_000_000);

  const started = performance.now();
  const last = readLastLines(file, 20);
  const elapsed = performance.now() - started;
  assert.deepEqual(last, lines.slice(-20));
  assert.ok(elapsed < 50, `took ${elapsed.toFixed(1)}ms`);

  // More lines than one 64 KiB chunk holds.
  assert.deepEqual(readLastLines(file, 3000), lines.slice(-3000));
});

test('logs - readLastLines edge cases', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'small.log');
  writeFileSync(file, 'a\nb\nc');
  assert.deepEqual(readLastLines(file, 2), ['b', 'c'], 'no final line end');
  assert.deepEqual(readLastLines(file, 10), ['a', 'b', 'c']);
  assert.deepEqual(readLastLines(file, 0), []);
  writeFileSync(file, 'a\r\n\nb\n');
  assert.deepEqual(readLastLines(file, 3), ['a', '', 'b'], 'CRLF and empty lines');
  writeFileSync(file, '');
  assert.deepEqual(readLastLines(file, 5), []);
  assert.deepEqual(readLastLines(join(dir, 'missing.log'), 5), []);

  // A multi-byte character straddling the 64 KiB chunk boundary stays whole.
  const head = 'y'.repeat(10) + '\n' + 'z'.repeat(100_000 - 64 * 1024 - 12);
  const text = head + '€uro\n' + 'w'.repeat(64 * 1024 - 6) + '\n';
  writeFileSync(file, text);
  const last = readLastLines(file, 2);
  assert.ok(last[0].endsWith('€uro'));
  assert.equal(last[1], 'w'.repeat(64 * 1024 - 6));
});

test('logs - readLastLines takes the lines missing from the current file from .1, .2, ... (oldest first)', (t) => {
  const file = join(tempDir(t), 'chat.0.log');
  // 5000 lines written, rotated by copytruncate at 2000 and 4000 bytes' worth of lines.
  const lines = Array.from({ length: 5000 }, (_, i) => `line ${i}`);
  writeFileSync(file, lines.slice(0, 2000).join('\n') + '\n');
  assert.equal(rotateIfLarger(file, 10, 3), true);
  appendFileSync(file, lines.slice(2000, 4000).join('\n') + '\n');
  assert.equal(rotateIfLarger(file, 10, 3), true);
  appendFileSync(file, lines.slice(4000).join('\n') + '\n');

  assert.deepEqual(readLastLines(file, 3000), lines.slice(-3000), 'from .1 and the current file');
  assert.deepEqual(readLastLines(file, 4500), lines.slice(-4500), 'from .2, .1 and the current file');
  assert.deepEqual(readLastLines(file, 9999), lines, 'everything there is');
  assert.deepEqual(readLastLines(file, 1000), lines.slice(-1000), 'the current file alone when it has enough');

  // Just after a rotation the current file is empty: every line comes from the copies.
  assert.equal(rotateIfLarger(file, 10, 3), true);
  assert.deepEqual(readLastLines(file, 3000), lines.slice(-3000), 'empty current file');
  // keep: 3 dropped the oldest copy; the first missing copy ends the reading.
  assert.equal(existsSync(`${file}.3`), true);
  assert.deepEqual(readLastLines(file, 9999), lines);
});

test('logs - readLastLines joins a line that rotation cut in two, and reads copies up to the first missing one', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'cut.log');
  writeFileSync(`${file}.1`, 'one\ntwo\nthr');
  writeFileSync(file, 'ee\nfour\n');
  assert.deepEqual(readLastLines(file, 3), ['two', 'three', 'four']);
  assert.deepEqual(readLastLines(file, 2), ['three', 'four'], 'the current file is enough once its first line is whole');
  assert.deepEqual(readLastLines(file, 10), ['one', 'two', 'three', 'four']);

  writeFileSync(`${file}.3`, 'orphan\n');
  assert.deepEqual(readLastLines(file, 10), ['one', 'two', 'three', 'four'], 'no .2: .3 is not read');
  // The current file missing (not created yet, or removed): the copies still count.
  const other = join(dir, 'gone.log');
  writeFileSync(`${other}.1`, 'a\nb\n');
  assert.deepEqual(readLastLines(other, 5), ['a', 'b']);
});

test('logs - followFile sees appends, and restarts at 0 after a truncation', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'follow.log');
  writeFileSync(file, 'old line\n');
  const controller = new AbortController();
  t.after(() => controller.abort());
  let seen = '';
  const following = followFile(file, (text) => (seen += text), controller.signal, { pollMs: 50 });

  await new Promise((r) => setTimeout(r, 50));
  appendFileSync(file, 'first\n');
  await waitFor('first', () => seen.includes('first\n'));
  assert.equal(seen.includes('old line'), false, 'starts at the end, like tail -f');

  truncateSync(file, 0);
  appendFileSync(file, 'after\n');
  await waitFor('after', () => seen.includes('after\n'));
  assert.equal(seen, 'first\nafter\n');

  controller.abort();
  await following;
  appendFileSync(file, 'ignored\n');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(seen.includes('ignored'), false);
});

test('logs - followFile waits for a file that does not exist yet', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'later.log');
  const controller = new AbortController();
  t.after(() => controller.abort());
  let seen = '';
  const following = followFile(file, (text) => (seen += text), controller.signal, { pollMs: 30 });
  await new Promise((r) => setTimeout(r, 50));
  writeFileSync(file, 'hello\n');
  await waitFor('hello', () => seen === 'hello\n');
  controller.abort();
  await following;
});

test('logs - a rotation keeps what the writer appends while the copy runs', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'busy.0.log');
  // A large file, so that the copy takes a while, and a writer adding a numbered line every 2 ms.
  writeFileSync(file, Buffer.alloc(64 * 1024 * 1024, 'x\n'));
  const driver = new ChildProcessDriver();
  const script = "let i = 0; setInterval(() => require('fs').writeSync(1, 'line ' + i++ + '\\n'), 2)";
  const handle = await driver.spawn({ cell: 'busy', instance: 0, command: `'${process.execPath}' -e "${script}"`, cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, logFile: file });
  t.after(() => driver.signalGroup(handle.pid, 'SIGKILL'));
  await waitFor('the writer runs', () => Number(/^line (\d+)$/.exec(readLastLines(file, 1)[0] ?? '')?.[1] ?? -1) >= 20, 20_000);
  assert.equal(rotateIfLarger(file, 1024, 2), true);
  await waitFor('lines after the rotation', () => /line \d+\n(.|\n)*line \d+\n/.test(readFileSync(file, 'utf8')), 20_000);
  driver.signalGroup(handle.pid, 'SIGKILL');
  const numbers = (readFileSync(`${file}.1`, 'utf8') + readFileSync(file, 'utf8'))
    .split('\n')
    .filter((l) => l.startsWith('line '))
    .map((l) => Number(l.slice(5)));
  const missing = numbers.slice(1).reduce((sum, n, k) => sum + (n - numbers[k] - 1), 0);
  // A plain copy-then-truncate loses every line written during the copy of 64 MiB (tens of
  // lines); the rounds leave only the moment between the last one and the truncate.
  assert.ok(missing <= 1, `lines lost at the rotation: ${missing}`);
});

test('logs - RotationSchedule checks a quiet file every 10 s and a filling one often, and rotates it', (t) => {
  const dir = tempDir(t);
  const quiet = join(dir, 'quiet.0.log');
  const busy = join(dir, 'busy.0.log');
  writeFileSync(quiet, 'hello\n');
  writeFileSync(busy, '');
  const schedule = new RotationSchedule();
  const MB = 1024 * 1024;
  let now = 100_000;
  assert.equal(schedule.run([quiet, busy], now, MB, 2), now + 300, 'new files are looked at again soon (250 ms, on the 100 ms grid)');
  now += 1000;
  appendFileSync(busy, Buffer.alloc(200 * 1024, 'b'));
  const next = schedule.run([quiet, busy], now, MB, 2);
  // 200 KiB a second with 824 KiB to go: half of the ~4 s left, on the 1 s grid.
  assert.equal(next, now + 3000);
  now = next;
  appendFileSync(busy, Buffer.alloc(900 * 1024, 'b'));
  const afterRotation = schedule.run([quiet, busy], now, MB, 2);
  assert.equal(statSync(busy).size, 0, 'rotated once over max_size');
  assert.equal(statSync(`${busy}.1`).size, 1100 * 1024);
  assert.ok(afterRotation - now <= 2000, `a fast file is checked again soon: in ${afterRotation - now} ms`);
  // The quiet file did not grow: due 10 s after its second check, at 101 s.
  assert.equal(schedule.run([quiet], now + 5000, MB, 2), 111_000);
});

/**
 * A follower of `file` that has seen its first line, "one", and is idle: woken only by the file's
 * own events (no poll), so none of its reads is in flight (on the thread pool, beside a test's
 * synchronous writes) when the rotations after this happen.
 */
async function idleFollowerAfterOne(t: TestContext, file: string): Promise<{ seen: () => string; stop: () => Promise<void> }> {
  const controller = new AbortController();
  t.after(() => controller.abort());
  let seen = '';
  const following = followFile(file, (text) => (seen += text), controller.signal, { pollMs: 60_000 });
  await new Promise((r) => setTimeout(r, 50));
  appendFileSync(file, 'one\n');
  await waitFor('one', () => seen === 'one\n');
  // Its last read and stat of that wake-up done (they run on the thread pool, slow on a loaded machine).
  await new Promise((r) => setTimeout(r, 500));
  return {
    seen: () => seen,
    stop: async () => {
      controller.abort();
      await following;
    },
  };
}

test('logs - followFile reads the end of what it followed from the rotated copy, then goes on in the new file', async (t) => {
  const file = join(tempDir(t), 'follow.log');
  writeFileSync(file, '');
  const follower = await idleFollowerAfterOne(t, file);
  // Written and rotated before the follower wakes up: "two" and "thr" are only in the copy.
  appendFileSync(file, 'two\nthr');
  assert.equal(rotateIfLarger(file, 1, 2), true);
  appendFileSync(file, 'ee\nfour\n');
  await waitFor('four', () => follower.seen().includes('four\n'));
  assert.equal(follower.seen(), 'one\ntwo\nthree\nfour\n');
  await follower.stop();
});

test('logs - a file far over its limit (a cell writing faster than rotation) is copied from its last 4 x max_size (16 MiB at least) only, and the copy says what was dropped', (t) => {
  const file = join(tempDir(t), 'flood.0.log');
  const maxBytes = 512 * 1024;
  const line = (i: number) => `line ${String(i).padStart(8, '0')} ${'x'.repeat(80)}\n`;
  const lines = Array.from({ length: 400_000 }, (_, i) => line(i));
  writeFileSync(file, lines.join(''));
  const size = statSync(file).size;
  assert.ok(size > 30 * maxBytes);
  assert.equal(rotateIfLarger(file, maxBytes, 2), true);
  assert.equal(statSync(file).size, 0);
  const copy = readFileSync(`${file}.1`, 'utf8');
  const window = Math.max(4 * maxBytes, 16 * 1024 * 1024);
  const note = `[cell] ${size - window} bytes of output dropped here: the cell wrote faster than its log is rotated (logs.max_size)\n`;
  assert.ok(copy.startsWith(note), copy.slice(0, 200));
  assert.equal(copy.length, note.length + window);
  assert.ok(copy.endsWith(lines.at(-1)!), 'up to the last line written');
});

test('logs - readLastLines with endAt reads the file as if it ended there (a follow goes on from that offset)', (t) => {
  const file = join(tempDir(t), 'seq.0.log');
  writeFileSync(file, 'one\ntwo\nthree\n');
  const end = statSync(file).size;
  appendFileSync(file, 'four\nfive\n');
  assert.deepEqual(readLastLines(file, 2, end), ['two', 'three']);
  assert.deepEqual(readLastLines(file, 2), ['four', 'five']);
});

test('logs - followFile reads back through every copy made by several rotations between two of its reads', async (t) => {
  const file = join(tempDir(t), 'fast.log');
  writeFileSync(file, '');
  writeFileSync(`${file}.1`, 'older copy\n');
  const follower = await idleFollowerAfterOne(t, file);
  // Three rotations before the follower wakes: the rest of its file is now in `.3`.
  appendFileSync(file, 'two\n');
  assert.equal(rotateIfLarger(file, 1, 5), true);
  appendFileSync(file, 'three\n');
  assert.equal(rotateIfLarger(file, 1, 5), true);
  appendFileSync(file, 'four\n');
  assert.equal(rotateIfLarger(file, 1, 5), true);
  appendFileSync(file, 'five\n');
  await waitFor('five', () => follower.seen().includes('five\n'));
  assert.equal(follower.seen(), 'one\ntwo\nthree\nfour\nfive\n', 'each line once, in order, and nothing of the copy older than the follow');
  await follower.stop();
});

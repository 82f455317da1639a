import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BuildError, computeVersion, RACY_WINDOW_MS, runBuild, SourceHasher, type FileStat, type SourceHasherIo } from '../../src/builder/index.js';
import { fake } from '../support/fake.js';

/** A temporary tree of source files, removed at the end of the test. */
function tree(files: Record<string, string>): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cell-builder-'));
  for (const [rel, content] of Object.entries(files)) write(dir, rel, content);
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

function write(dir: string, rel: string, content: string): void {
  mkdirSync(join(dir, rel, '..'), { recursive: true });
  writeFileSync(join(dir, rel), content);
}

const spec = (dir: string, source = ['**/*.js']) => ({ cwd: dir, source, run: 'node a.js', env: {}, build: undefined });

/** A hasher over the real file system that counts reads; `now` defaults to the real clock. */
function countingHasher(io: Partial<SourceHasherIo> = {}): { hasher: SourceHasher; reads: string[] } {
  const reads: string[] = [];
  const hasher = new SourceHasher({
    readFile: (path) => {
      reads.push(path);
      return readFileSync(path);
    },
    ...io,
  });
  return { hasher, reads };
}

/** Well past the racy window of every file written by the test: their digests are trusted. */
const later = () => Date.now() + 10 * RACY_WINDOW_MS;

test('builder version - the same files give the same version, from a fresh cache too', async () => {
  using t = tree({ 'a.js': 'one\n', 'lib/b.js': 'two\n' });
  const first = await computeVersion(spec(t.dir));
  assert.match(first, /^[0-9a-f]{12}$/);
  assert.equal(await computeVersion(spec(t.dir)), first);
  assert.equal(await new SourceHasher().version(spec(t.dir)), first, 'a new cache computes the same version');
  assert.equal(await new SourceHasher({ now: later }).version(spec(t.dir)), first);
});

test('builder version - run, env and build are part of the version; cells without sources keep their one-shot hash', async () => {
  using t = tree({ 'a.js': 'one\n' });
  const base = await computeVersion(spec(t.dir));
  assert.notEqual(await computeVersion({ ...spec(t.dir), run: 'node b.js' }), base);
  assert.notEqual(await computeVersion({ ...spec(t.dir), env: { A: '1' } }), base);
  assert.notEqual(await computeVersion({ ...spec(t.dir), build: 'make' }), base);
  assert.equal(await computeVersion(spec(t.dir)), base);
  // The digest of the `how` JSON alone, as before the stat cache: these versions did not change.
  assert.equal(await computeVersion({ cwd: t.dir, source: [], run: 'node a.js', env: {}, build: undefined }), '1c00bdeafb23');
});

test('builder version - a content change with the same size and a restored mtime gives a new version', async () => {
  using t = tree({ 'a.js': 'aaaa\n', 'b.js': 'bbbb\n' });
  // Whole seconds, which survive the round trip through utimes exactly.
  const old = Math.floor(Date.now() / 1000) - 3_600;
  utimesSync(join(t.dir, 'a.js'), old, old);
  const { hasher, reads } = countingHasher({ now: later });
  const before = await hasher.version(spec(t.dir));
  // ctime has a coarse clock (a few ms): let it move on, as it does between two edits by a person.
  await sleep(50);
  const { size } = statSync(join(t.dir, 'a.js'));
  writeFileSync(join(t.dir, 'a.js'), 'AAAA\n');
  utimesSync(join(t.dir, 'a.js'), old, old);
  const after = statSync(join(t.dir, 'a.js'));
  assert.equal(after.size, size);
  assert.equal(after.mtimeMs, old * 1000, 'same size and mtime: only ctime tells');
  reads.length = 0;
  const changed = await hasher.version(spec(t.dir));
  assert.notEqual(changed, before);
  assert.deepEqual(reads, [join(t.dir, 'a.js')], 'only the changed file is read again');
  assert.equal(await new SourceHasher().version(spec(t.dir)), changed, 'the same version as a fresh cache');
});

test('builder version - adding, removing or renaming a file gives a new version', async () => {
  using t = tree({ 'a.js': 'one\n', 'b.js': 'two\n' });
  const { hasher } = countingHasher({ now: later });
  const base = await hasher.version(spec(t.dir));

  write(t.dir, 'c.js', 'three\n');
  const added = await hasher.version(spec(t.dir));
  assert.notEqual(added, base);
  unlinkSync(join(t.dir, 'c.js'));
  assert.equal(await hasher.version(spec(t.dir)), base, 'removing the new file gives the old version back');

  unlinkSync(join(t.dir, 'b.js'));
  const removed = await hasher.version(spec(t.dir));
  assert.notEqual(removed, base);
  write(t.dir, 'b.js', 'two\n');
  assert.equal(await hasher.version(spec(t.dir)), base);

  renameSync(join(t.dir, 'b.js'), join(t.dir, 'd.js'));
  const renamed = await hasher.version(spec(t.dir));
  assert.notEqual(renamed, base);
  // A rename keeps dev, ino, size, mtime: the path is what changed, and it is part of the version.
  mkdirSync(join(t.dir, 'sub'));
  renameSync(join(t.dir, 'd.js'), join(t.dir, 'sub', 'd.js'));
  const moved = await hasher.version(spec(t.dir));
  assert.notEqual(moved, renamed);
  assert.notEqual(moved, base);
  // Swapping the contents of two files under their names is a change too.
  using u = tree({ 'x.js': 'left\n', 'y.js': 'right\n' });
  const swap = await hasher.version(spec(u.dir));
  renameSync(join(u.dir, 'x.js'), join(u.dir, 'tmp'));
  renameSync(join(u.dir, 'y.js'), join(u.dir, 'x.js'));
  renameSync(join(u.dir, 'tmp'), join(u.dir, 'y.js'));
  assert.notEqual(await hasher.version(spec(u.dir)), swap);
});

test('builder version - a second call over 2,000 unchanged files reads none of them', async () => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 2_000; i++) files[`src/d${i % 20}/f${i}.js`] = `export const n = ${i};\n`;
  using t = tree(files);
  const { hasher, reads } = countingHasher({ now: later });
  const first = await hasher.version(spec(t.dir));
  assert.equal(reads.length, 2_000);
  reads.length = 0;
  assert.equal(await hasher.version(spec(t.dir)), first);
  assert.deepEqual(reads, []);
  write(t.dir, 'src/d3/f3.js', 'export const n = -3;\n');
  const changed = await hasher.version(spec(t.dir));
  assert.notEqual(changed, first);
  assert.deepEqual(reads, [join(t.dir, 'src/d3/f3.js')]);
  assert.equal(await new SourceHasher().version(spec(t.dir)), changed, 'the same version as a fresh cache');
});

test('builder version - a file modified right after it was hashed, within the same second, is hashed again', async () => {
  using t = tree({ 'a.js': 'aaaa\n' });
  const path = join(t.dir, 'a.js');
  // Real clock: the file was written just now, so its digest is not trusted on the next call.
  const { hasher, reads } = countingHasher();
  const before = await hasher.version(spec(t.dir));
  const { mtime } = statSync(path);
  writeFileSync(path, 'AAAA\n');
  utimesSync(path, mtime, mtime);
  const after = await hasher.version(spec(t.dir));
  assert.notEqual(after, before);
  assert.deepEqual(reads, [path, path]);
  // Unchanged but still recent: read again, until it is older than the window.
  assert.equal(await hasher.version(spec(t.dir)), after);
  assert.equal(reads.length, 3);
});

test('builder version - racy clean: a change that leaves the stat as it was is seen when it came within the window', async () => {
  using t = tree({ 'a.js': 'aaaa\n' });
  const path = join(t.dir, 'a.js');
  // A file system whose timestamps do not move between two writes in the same tick: the stat
  // before and after the edit are the same, only the content differs.
  const real = statSync(path);
  const pinned: FileStat = { dev: real.dev, ino: real.ino, size: real.size, mtimeMs: 1_000_000, ctimeMs: 1_000_000 };
  const stat = () => pinned;

  let now = pinned.mtimeMs + 300; // hashed 0.3 s after the last change
  const racy = countingHasher({ stat, now: () => now });
  const before = await racy.hasher.version(spec(t.dir));
  writeFileSync(path, 'AAAA\n');
  now += 200;
  const after = await racy.hasher.version(spec(t.dir));
  assert.notEqual(after, before, 'the edit within the window is seen');
  assert.equal(racy.reads.length, 2);
  // Hashed well after the change now: trusted from here on.
  now = pinned.mtimeMs + RACY_WINDOW_MS + 1_000;
  await racy.hasher.version(spec(t.dir));
  assert.equal(racy.reads.length, 3);
  assert.equal(await racy.hasher.version(spec(t.dir)), after);
  assert.equal(racy.reads.length, 3);

  // Control: hashed long after the last change, the same pinned stat is trusted and no file is
  // read again. This is why the window exists.
  writeFileSync(path, 'aaaa\n');
  const trusting = countingHasher({ stat, now: () => pinned.mtimeMs + RACY_WINDOW_MS + 1_000 });
  const old = await trusting.hasher.version(spec(t.dir));
  writeFileSync(path, 'AAAA\n');
  assert.equal(await trusting.hasher.version(spec(t.dir)), old);
  assert.equal(trusting.reads.length, 1);
});

test('builder version - a cache entry is dropped when its file leaves the source set', async () => {
  using t = tree({ 'a.js': 'one\n', 'b.js': 'two\n' });
  // Timestamps left out of the stat, so that moving a file away and back leaves it as it was.
  const stat = (path: string): FileStat | undefined => {
    const s = statSync(path, { throwIfNoEntry: false });
    return s && { dev: s.dev, ino: s.ino, size: s.size, mtimeMs: 0, ctimeMs: 0 };
  };
  const { hasher, reads } = countingHasher({ stat, now: later });
  const base = await hasher.version(spec(t.dir));
  reads.length = 0;
  assert.equal(await hasher.version(spec(t.dir)), base);
  assert.deepEqual(reads, [], 'unchanged stat: nothing read');
  const b = join(t.dir, 'b.js');
  renameSync(b, join(t.dir, 'b.keep'));
  assert.notEqual(await hasher.version(spec(t.dir)), base);
  renameSync(join(t.dir, 'b.keep'), b);
  // b.js is back with the same stat, but its entry went when a call did not see it: read again.
  assert.equal(await hasher.version(spec(t.dir)), base);
  assert.deepEqual(reads, [b]);
});

test('builder version - a file that vanishes between the glob and the read is left out', async () => {
  using t = tree({ 'a.js': 'one\n', 'b.js': 'two\n' });
  const { hasher } = countingHasher({
    now: later,
    readFile: (path) => {
      if (path.endsWith('b.js')) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return readFileSync(path);
    },
  });
  const withoutB = await hasher.version(spec(t.dir));
  unlinkSync(join(t.dir, 'b.js'));
  assert.equal(await new SourceHasher().version(spec(t.dir)), withoutB);
});

test('builder - a large source file is hashed by a process of its own, to the same version, without blocking the caller', async () => {
  using t = tree({ 'a.js': 'small', 'big.js': 'x'.repeat(3 * 1024 * 1024) });
  const inProcess = await new SourceHasher({ largeFileBytes: Number.POSITIVE_INFINITY }).version(spec(t.dir));
  let ticks = 0;
  const ticking = setInterval(() => ticks++, 5);
  const { hasher, reads } = countingHasher();
  const child = await hasher.version(spec(t.dir));
  clearInterval(ticking);
  assert.deepEqual(reads, [join(t.dir, 'a.js')], 'the large file is not read here');
  assert.equal(child, inProcess);
  assert.ok(ticks > 0, 'timers ran while it was hashed');
  writeFileSync(join(t.dir, 'big.js'), 'y'.repeat(3 * 1024 * 1024));
  assert.notEqual(await new SourceHasher().version(spec(t.dir)), inProcess, 'a change of the large file is a new version');
});

test('builder - a build past its build_timeout is stopped whole (its shell and what it started) and fails saying so', async () => {
  using t = tree({});
  const log = join(t.dir, 'build.log');
  const spec = { ...fake.cell('slow'), cwd: t.dir, build: 'echo $$ > pgid; sleep 30 & sleep 30', buildTimeoutMs: 300 };
  const started = Date.now();
  await assert.rejects(runBuild(spec, log, { PATH: process.env.PATH ?? '/usr/bin:/bin' }), (err: Error) => {
    assert.ok(err instanceof BuildError);
    assert.equal(err.timeoutMs, 300);
    assert.equal(err.message, `cell slow: build \`${spec.build}\` failed (still running after build_timeout 0.3s: stopped), see ${log}`);
    return true;
  });
  assert.ok(Date.now() - started < 10_000);
  const group = Number(readFileSync(join(t.dir, 'pgid'), 'utf8'));
  // Nothing of the build's group is left (the background sleep included).
  await sleep(100);
  assert.deepEqual(liveMembersOf(group), []);
});

test('builder - a build stopped at its build_timeout takes along what it moved out of its group (setsid); a build that ended by itself leaves such a server running', async () => {
  using t = tree({});
  const alive = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch {
      return false;
    }
  };
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const hung = { ...fake.cell('hung'), cwd: t.dir, build: 'setsid sleep 30 & echo $! > escapee; sleep 30', buildTimeoutMs: 500 };
  await assert.rejects(runBuild(hung, join(t.dir, 'hung.log'), env), (err: Error) => err instanceof BuildError && err.timeoutMs === 500);
  const escapee = Number(readFileSync(join(t.dir, 'escapee'), 'utf8'));
  assert.ok(escapee > 0);
  await sleep(100);
  assert.equal(alive(escapee), false, 'the setsid child of a stopped build is gone');

  // The sleep gives setsid time to leave the group before the group's kill at the build's end.
  const done = { ...fake.cell('done'), cwd: t.dir, build: 'setsid sleep 30 > /dev/null 2>&1 & echo $! > server; sleep 0.3' };
  await runBuild(done, join(t.dir, 'done.log'), env);
  const server = Number(readFileSync(join(t.dir, 'server'), 'utf8'));
  try {
    await sleep(100);
    assert.equal(alive(server), true, 'a build that ended by itself keeps what it left outside its group');
  } finally {
    process.kill(server, 'SIGKILL');
  }
});

test('builder - how many files the globs matched is known after a version, none included', async () => {
  using t = tree({ 'a.js': 'a', 'b.js': 'b' });
  const hasher = new SourceHasher();
  assert.equal(hasher.sourceFileCount(spec(t.dir)), undefined);
  await hasher.version(spec(t.dir));
  assert.equal(hasher.sourceFileCount(spec(t.dir)), 2);
  await hasher.version(spec(t.dir, ['src/**/*.tsx']));
  assert.equal(hasher.sourceFileCount(spec(t.dir, ['src/**/*.tsx'])), 0);
});

test('builder - a build is stopped whole when its signal aborts (the daemon going down)', async () => {
  using t = tree({});
  const log = join(t.dir, 'build.log');
  const spec = { ...fake.cell('long'), cwd: t.dir, build: 'echo $$ > pgid; sleep 30 & sleep 30' };
  const abort = new AbortController();
  const build = runBuild(spec, log, { PATH: process.env.PATH ?? '/usr/bin:/bin' }, abort.signal);
  for (let i = 0; i < 100; i++) {
    try {
      if (readFileSync(join(t.dir, 'pgid'), 'utf8').trim()) break;
    } catch {
      // Not written yet.
    }
    await sleep(20);
  }
  abort.abort();
  await assert.rejects(build, (err: Error) => err instanceof BuildError && /killed by SIGTERM/.test(err.message));
  const group = Number(readFileSync(join(t.dir, 'pgid'), 'utf8'));
  await sleep(100);
  assert.deepEqual(liveMembersOf(group), []);
});

/** The live (not zombie) processes of process group `group`. */
function liveMembersOf(group: number): string[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return fields[2] === String(group) && fields[0] !== 'Z';
    } catch {
      return false;
    }
  });
}

test('builder - a build whose shell ends (killed alone here) takes what it started with it', async () => {
  using t = tree({});
  const spec = { ...fake.cell('leader'), cwd: t.dir, build: 'echo $$ > pgid; sleep 30 & sleep 31' };
  const build = runBuild(spec, join(t.dir, 'build.log'), { PATH: process.env.PATH ?? '/usr/bin:/bin' });
  let leader = 0;
  for (let i = 0; i < 100 && !leader; i++) {
    await sleep(20);
    leader = Number(readFileSync(join(t.dir, 'pgid'), { encoding: 'utf8', flag: 'a+' }).trim() || 0);
  }
  process.kill(leader, 'SIGTERM');
  await assert.rejects(build, /killed by SIGTERM/);
  await sleep(100);
  assert.deepEqual(liveMembersOf(leader), [], 'the background sleep went with it');
});

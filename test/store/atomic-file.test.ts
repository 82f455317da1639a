import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  StateFileError,
  readJsonFile,
  readJsonFileSync,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileAtomicSync,
} from '../../src/store/index.js';

function makeTempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cell-atomic-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tempFilesIn(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => name.includes('.tmp-'));
}

test('atomic file - writeFileAtomic creates and replaces a file, leaving no temporaries', async (t) => {
  const dir = makeTempDir(t);
  const file = path.join(dir, 'control-plane.json');
  await writeFileAtomic(file, JSON.stringify({ n: 1 }));
  assert.deepEqual(await readJsonFile(file), { n: 1 });
  await writeFileAtomic(file, Buffer.from(JSON.stringify({ n: 2 })));
  assert.deepEqual(await readJsonFile(file), { n: 2 });
  assert.deepEqual(tempFilesIn(dir), []);
});

test('atomic file - writeFileAtomicSync creates and replaces a file, leaving no temporaries', (t) => {
  const dir = makeTempDir(t);
  const file = path.join(dir, 'control-plane.json');
  writeFileAtomicSync(file, '{"n":1}');
  writeFileAtomicSync(file, '{"n":2}');
  assert.deepEqual(readJsonFileSync(file), { n: 2 });
  assert.deepEqual(tempFilesIn(dir), []);
});

test('atomic file - the mode option sets the permissions of the new file', async (t) => {
  const dir = makeTempDir(t);
  const asyncFile = path.join(dir, 'a.json');
  const syncFile = path.join(dir, 'b.json');
  await writeFileAtomic(asyncFile, '{}', { mode: 0o600 });
  writeFileAtomicSync(syncFile, '{}', { mode: 0o600 });
  assert.equal(fs.statSync(asyncFile).mode & 0o777, 0o600);
  assert.equal(fs.statSync(syncFile).mode & 0o777, 0o600);
  await assert.rejects(writeFileAtomic(asyncFile, '{}', { mode: 0o10000 }), /option "mode"/);
  assert.throws(() => writeFileAtomicSync(syncFile, '{}', { mode: -1 }), TypeError);
});

test('atomic file - a write into a missing directory throws StateFileError and leaves nothing', async (t) => {
  const dir = makeTempDir(t);
  const file = path.join(dir, 'missing', 'state.json');
  await assert.rejects(writeFileAtomic(file, '{}'), (error: unknown) => {
    assert.ok(error instanceof StateFileError);
    assert.equal(error.operation, 'write');
    assert.equal(error.path, file);
    assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOENT');
    return true;
  });
  assert.throws(() => writeFileAtomicSync(file, '{}'), (error: unknown) => error instanceof StateFileError);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('atomic file - concurrent writers leave one complete version', async (t) => {
  const dir = makeTempDir(t);
  const file = path.join(dir, 'state.json');
  const payloads = Array.from({ length: 20 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(10_000 + i) }));
  await Promise.all(payloads.map((payload) => writeFileAtomic(file, payload)));
  assert.ok(payloads.includes(fs.readFileSync(file, 'utf8')));
  assert.deepEqual(tempFilesIn(dir), []);
});

test('atomic file - readJsonFile returns undefined for a missing file', async (t) => {
  const dir = makeTempDir(t);
  assert.equal(await readJsonFile(path.join(dir, 'none.json')), undefined);
  assert.equal(readJsonFileSync(path.join(dir, 'none.json')), undefined);
});

test('atomic file - readJsonFile throws StateFileError for a file that is not JSON', async (t) => {
  const file = path.join(makeTempDir(t), 'broken.json');
  fs.writeFileSync(file, '{"half": ');
  const check = (error: unknown): boolean => {
    assert.ok(error instanceof StateFileError);
    assert.equal(error.name, 'StateFileError');
    assert.equal(error.operation, 'parse');
    assert.equal(error.path, file);
    assert.ok(error.cause instanceof SyntaxError);
    assert.match(error.message, /broken\.json/);
    const revived = StateFileError.fromJSON(JSON.parse(JSON.stringify(error)));
    assert.equal(revived.path, file);
    assert.equal(revived.operation, 'parse');
    assert.equal(revived.message, error.message);
    assert.equal((revived.cause as Error).name, 'SyntaxError');
    return true;
  };
  await assert.rejects(readJsonFile(file), check);
  assert.throws(() => readJsonFileSync(file), check);
});

test('atomic file - readJsonFile of a directory is a read error', async (t) => {
  const dir = makeTempDir(t);
  await assert.rejects(
    readJsonFile(dir),
    (error: unknown) => error instanceof StateFileError && error.operation === 'read' && error.path === dir,
  );
});

test('atomic file - removeStaleTempFiles removes only temporaries of dead writers', (t) => {
  const dir = makeTempDir(t);
  const file = path.join(dir, 'state.json');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const stale = `state.json.tmp-${dead}-0a1b2c`;
  const live = `state.json.tmp-${process.pid}-3d4e5f`;
  const unrelated = ['state.json', 'other.json.tmp-1-abc', `state.json.tmp-${dead}-not-hex!`];
  for (const name of [stale, live, ...unrelated]) fs.writeFileSync(path.join(dir, name), '');
  assert.equal(removeStaleTempFiles(file), 1);
  assert.deepEqual(fs.readdirSync(dir).sort(), [live, ...unrelated].sort());
  assert.equal(removeStaleTempFiles(path.join(dir, 'missing', 'x.json')), 0);
});

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { StoreOpenError, openSqliteStore } from '../../src/store/index.js';

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cell-store-open-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openError(file: string): StoreOpenError {
  try {
    openSqliteStore(file).close();
  } catch (err) {
    assert.ok(err instanceof StoreOpenError, String(err));
    return err;
  }
  assert.fail(`${file} opened`);
}

test('store open error - random bytes are a corrupt store, with the reason apart from the path', (t) => {
  const file = path.join(tempDir(t), 'state.db');
  fs.writeFileSync(file, randomBytes(32768));
  const err = openError(file);
  assert.equal(err.isCorrupt, true);
  assert.equal(err.reason, 'file is not a database');
  assert.equal(err.message, `cannot open store ${file}: file is not a database`);
});

test('store open error - damaged pages are a corrupt store', (t) => {
  const file = path.join(tempDir(t), 'state.db');
  const store = openSqliteStore(file);
  for (let i = 0; i < 500; i += 1) store.put(`k/${i}`, 'v'.repeat(200), { now: 1 });
  store.close();
  const bytes = fs.readFileSync(file);
  const pageSize = bytes.readUInt16BE(16);
  for (let offset = pageSize; offset < bytes.length; offset += 7) bytes[offset] = (offset * 31) & 0xff;
  fs.writeFileSync(file, bytes);
  assert.equal(openError(file).isCorrupt, true);
});

test('store open error - a missing directory or a newer schema is not corruption', (t) => {
  const dir = tempDir(t);
  assert.equal(openError(path.join(dir, 'no', 'state.db')).isCorrupt, false);
  const file = path.join(dir, 'state.db');
  openSqliteStore(file).close();
  // A file written by a later schema version: the file is sound, this cell is too old for it.
  const db = new Database(file);
  db.pragma('user_version = 99');
  db.close();
  const err = openError(file);
  assert.equal(err.isCorrupt, false);
  assert.match(err.reason, /schema version 99 is newer/);
});

test('store open error - reason and isCorrupt travel through toJSON and fromJSON', () => {
  const cause = Object.assign(new Error('file is not a database'), { code: 'SQLITE_NOTADB' });
  const err = new StoreOpenError('/h/state.db', 'file is not a database', { cause });
  assert.equal(err.isCorrupt, true);
  const revived = StoreOpenError.fromJSON(JSON.parse(JSON.stringify(err.toJSON())));
  assert.equal(revived.reason, 'file is not a database');
  assert.equal(revived.isCorrupt, true);
  assert.equal(revived.message, err.message);
  assert.equal(new StoreOpenError('/h/state.db', 'x', { isCorrupt: true }).isCorrupt, true);
  assert.equal(new StoreOpenError('/h/state.db', 'x').isCorrupt, false);
});

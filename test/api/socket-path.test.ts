import { test } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CellHomeTooLongError, MAX_SOCKET_PATH_BYTES, checkCellHome, resolveCellHome, socketPathTooLong } from '../../src/api/index.js';

/** An absolute path of exactly `bytes` bytes (ASCII), ending in `tail`. */
function pathOf(bytes: number, tail = ''): string {
  return '/' + 'd'.repeat(bytes - 1 - tail.length) + tail;
}

test('api socket path - a path up to the limit is fine, one byte more is named with its length', () => {
  assert.equal(MAX_SOCKET_PATH_BYTES, process.platform === 'linux' ? 107 : 103);
  assert.equal(socketPathTooLong(pathOf(MAX_SOCKET_PATH_BYTES, '/a.0.sock')), null);
  const long = pathOf(MAX_SOCKET_PATH_BYTES + 1, '/a.0.sock');
  assert.equal(
    socketPathTooLong(long),
    `socket ${long} would be ${MAX_SOCKET_PATH_BYTES + 1} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of unix socket paths`,
  );
});

test('api socket path - the limit counts bytes, not characters', () => {
  // 'é' is two bytes in UTF-8: this path is short in characters and too long in bytes.
  const path = '/' + 'é'.repeat(60) + '.sock';
  assert.ok(path.length <= MAX_SOCKET_PATH_BYTES);
  assert.match(socketPathTooLong(path) ?? '', new RegExp(`would be ${Buffer.byteLength(path)} bytes`));
});

test('api socket path - checkCellHome refuses a home whose run/daemon.sock would be too long', () => {
  const fits = pathOf(MAX_SOCKET_PATH_BYTES - '/run/daemon.sock'.length);
  assert.doesNotThrow(() => checkCellHome(fits));
  const home = pathOf(105);
  assert.throws(
    () => checkCellHome(home),
    (err: unknown) => {
      assert.ok(err instanceof CellHomeTooLongError);
      assert.equal(err.name, 'CellHomeTooLongError');
      assert.equal(err.home, home);
      assert.equal(err.socket, join(home, 'run', 'daemon.sock'));
      assert.equal(err.bytes, 121);
      assert.equal(err.limit, MAX_SOCKET_PATH_BYTES);
      assert.equal(
        err.message,
        `CELL_HOME ${home} is too long: its socket $CELL_HOME/run/daemon.sock would be 121 bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of unix socket paths; use a shorter CELL_HOME`,
      );
      assert.deepEqual(JSON.parse(JSON.stringify(err)), { name: err.name, message: err.message, home, socket: err.socket, bytes: 121, limit: err.limit });
      return true;
    },
  );
});

test('api paths - an empty CELL_HOME or --home means the default home, not the current directory', () => {
  const saved = process.env.CELL_HOME;
  try {
    process.env.CELL_HOME = '';
    assert.equal(resolveCellHome(), join(homedir(), '.cell'));
    assert.equal(resolveCellHome(''), join(homedir(), '.cell'));
    process.env.CELL_HOME = '/srv/mesh';
    assert.equal(resolveCellHome(''), '/srv/mesh');
    assert.equal(resolveCellHome('/tmp/other'), '/tmp/other');
  } finally {
    if (saved === undefined) delete process.env.CELL_HOME;
    else process.env.CELL_HOME = saved;
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tellingLine } from '../../src/cli/daemon-control.js';

// What node prints for an uncaught exception: the source line, a caret, the error, its stack and
// properties, and its version. QA saw `} |  | Node.js v20.20.2` as the reason from this.
const UNCAUGHT = `node:internal/fs/utils:356
    throw err;
    ^

Error: ENOENT: no such file or directory, chmod '/tmp/qa/c/xxxx/run/daemon.sock'
    at Object.chmodSync (node:fs:1938:3)
    at Server.<anonymous> (file:///work/main/dist/daemon/main.js:9000:9)
    at Object.onceWrapper (node:events:633:28) {
  errno: -2,
  code: 'ENOENT',
  syscall: 'chmod',
  path: '/tmp/qa/c/xxxx/run/daemon.sock'
}

Node.js v20.20.2
`;

test('cli daemon output - the daemon\'s own report wins, without its prefix', () => {
  assert.equal(
    tellingLine('(node:12) Warning: something\ncell daemon: cannot open store /h/state.db: file is not a database\n'),
    'cannot open store /h/state.db: file is not a database',
  );
});

test('cli daemon output - an uncaught error gives its message line, not node\'s footer', () => {
  assert.equal(tellingLine(UNCAUGHT), "Error: ENOENT: no such file or directory, chmod '/tmp/qa/c/xxxx/run/daemon.sock'");
  assert.equal(tellingLine('TypeError [ERR_INVALID_ARG_TYPE]: The "path" argument must be of type string\n    at x (y:1:1)\n\nNode.js v20.20.2\n'), 'TypeError [ERR_INVALID_ARG_TYPE]: The "path" argument must be of type string');
});

test('cli daemon output - otherwise the last line that is not noise, or nothing', () => {
  assert.equal(tellingLine('starting\nsegfault in foo\n}\n\nNode.js v20.20.2\n'), 'segfault in foo');
  assert.equal(tellingLine(''), '');
  assert.equal(tellingLine('\n}\n\nNode.js v20.20.2\n'), '');
});

test('cli daemon output - without the error line, an inspected error\'s properties are noise too', () => {
  const noMessage = UNCAUGHT.replace(/^Error: .*\n/m, '');
  assert.equal(tellingLine(noMessage), 'throw err;');
});

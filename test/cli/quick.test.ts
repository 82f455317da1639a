import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plainUp } from '../../src/cli/quick.js';

test('cli quick - a plain `cell up` is run without the full CLI, with its home, manifest, wait and timeout', () => {
  const dflt = { wait: true, timeoutMs: 120_000 };
  assert.deepEqual(plainUp(['up']), dflt);
  assert.deepEqual(plainUp(['up', '--no-wait']), { ...dflt, wait: false });
  assert.deepEqual(plainUp(['-f', 'mesh.yaml', 'up', '--timeout', '30s']), { ...dflt, file: 'mesh.yaml', timeoutMs: 30_000 });
  assert.deepEqual(plainUp(['--home', '/tmp/h', 'up', '--file=a.yaml', '--timeout=500ms']), { ...dflt, home: '/tmp/h', file: 'a.yaml', timeoutMs: 500 });
  assert.deepEqual(plainUp(['up', '--home=/tmp/h', '-f', 'up', '--no-wait']), { home: '/tmp/h', file: 'up', wait: false, timeoutMs: 120_000 });
});

test('cli quick - anything else is left to the full CLI alone', () => {
  for (const argv of [
    [],
    ['status'],
    ['down'],
    ['up', '--foreground'],
    ['up', '--help'],
    ['up', '-h'],
    ['up', 'extra'],
    ['up', 'up'],
    ['up', '-f'],
    ['up', '--home'],
    ['--timeout', '5s', 'up'],
    ['--no-wait', 'up'],
    ['up', '--no-wait=1'],
    ['up', '--bogus'],
    ['up', '--timeout', 'bogus'],
    ['up', '--timeout'],
  ]) {
    assert.equal(plainUp(argv), null, argv.join(' '));
  }
});

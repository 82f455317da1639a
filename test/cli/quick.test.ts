import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plainUp } from '../../src/cli/quick.js';

test('cli quick - a plain `cell up` is recognised early, with its home and manifest', () => {
  assert.deepEqual(plainUp(['up']), {});
  assert.deepEqual(plainUp(['up', '--no-wait']), {});
  assert.deepEqual(plainUp(['-f', 'mesh.yaml', 'up', '--timeout', '30s']), { file: 'mesh.yaml' });
  assert.deepEqual(plainUp(['--home', '/tmp/h', 'up', '--file=a.yaml', '--timeout=5s']), { home: '/tmp/h', file: 'a.yaml' });
  assert.deepEqual(plainUp(['up', '--home=/tmp/h', '-f', 'up']), { home: '/tmp/h', file: 'up' });
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

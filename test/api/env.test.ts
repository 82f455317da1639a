import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cellBaseEnv, INHERITED_ARENA_VAR } from '../../src/api/index.js';

test('api - cells get the user environment back, not the daemon memory tuning', () => {
  assert.equal(cellBaseEnv({ MALLOC_ARENA_MAX: '1', [INHERITED_ARENA_VAR]: '', PATH: '/bin' }).MALLOC_ARENA_MAX, undefined);
  assert.deepEqual(cellBaseEnv({ MALLOC_ARENA_MAX: '1', [INHERITED_ARENA_VAR]: '4', PATH: '/bin' }), { MALLOC_ARENA_MAX: '4', PATH: '/bin' });
  assert.deepEqual(cellBaseEnv({ MALLOC_ARENA_MAX: '8' }), { MALLOC_ARENA_MAX: '8' }, 'a foreground daemon keeps the user value');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cellBaseEnv, daemonEnv, DAEMON_ENV_TUNING } from '../../src/api/index.js';

test('api - the daemon runs tuned, cells get the user environment back', () => {
  const user = { PATH: '/bin', NODE_EXTRA_CA_CERTS: '/etc/ssl/corp.pem' };
  const daemon = daemonEnv(user);
  assert.equal(daemon.MALLOC_ARENA_MAX, '1');
  assert.equal(daemon.NODE_EXTRA_CA_CERTS, '', 'the daemon skips loading the CA bundle at start');
  assert.deepEqual(cellBaseEnv(daemon), user, 'unset stays unset, set values come back');
  assert.deepEqual(cellBaseEnv(daemonEnv({ MALLOC_ARENA_MAX: '4' })), { MALLOC_ARENA_MAX: '4' });
  // The gateway is started by the supervisor with the daemon's tuning on top of cellBaseEnv.
  assert.deepEqual({ ...cellBaseEnv(daemon), ...DAEMON_ENV_TUNING }.NODE_EXTRA_CA_CERTS, '');
});

test('api - a foreground daemon (no saved user values) passes the environment through', () => {
  assert.deepEqual(cellBaseEnv({ MALLOC_ARENA_MAX: '8', PATH: '/bin' }), { MALLOC_ARENA_MAX: '8', PATH: '/bin' });
  assert.deepEqual(cellBaseEnv({ PATH: '/bin', CELL_USER_ENV: 'not json' }), { PATH: '/bin' });
});

test('api - bin/cell emptied NODE_EXTRA_CA_CERTS for the CLI: the daemon and the cells still get the user value', () => {
  const cli = { PATH: '/bin', NODE_EXTRA_CA_CERTS: '', CELL_USER_NODE_EXTRA_CA_CERTS: '/etc/ssl/corp.pem' };
  const daemon = daemonEnv(cli);
  assert.equal(daemon.NODE_EXTRA_CA_CERTS, '');
  assert.equal(daemon.CELL_USER_NODE_EXTRA_CA_CERTS, undefined, 'folded into the saved user values');
  assert.deepEqual(cellBaseEnv(daemon), { PATH: '/bin', NODE_EXTRA_CA_CERTS: '/etc/ssl/corp.pem' });
  // A foreground daemon runs in the CLI's own process.
  assert.deepEqual(cellBaseEnv(cli), { PATH: '/bin', NODE_EXTRA_CA_CERTS: '/etc/ssl/corp.pem' });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MeshHarness, ROOT, processesOfHome, sleep, waitUntil } from './harness.js';

const DAEMON = join(ROOT, 'dist/daemon/main.js');
const KILLS_PER_MESH = 110;

// A cell that crashes at once and is restarted every few ms keeps the daemon writing state
// (instance records, events, control-plane.json) all the time; the others must survive untouched.
const MESH = `
cells:
  steady:
    run: node fixtures/service.mjs
    instances: 2
    health: { tcp: {}, interval: 100ms }
  flappy:
    run: node fixtures/crash-after.mjs
    env: { CRASH_AFTER_MS: "5" }
    restart: { policy: always, backoff: 10ms, max_backoff: 20ms, max_retries: 100000000, reset_after: 1h }
`;

function checkState(home: string, round: number): void {
  const file = join(home, 'control-plane.json');
  if (existsSync(file)) {
    const state = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(typeof state.processes, 'object', `round ${round}: control-plane.json has processes`);
  }
  const db = new Database(join(home, 'state.db'));
  try {
    assert.deepEqual(db.pragma('integrity_check', { simple: false }), [{ integrity_check: 'ok' }], `round ${round}: integrity_check`);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  } finally {
    db.close();
  }
}

async function killDaemonRepeatedly(mesh: MeshHarness, seed: number): Promise<number> {
  let rand = seed;
  const next = () => (rand = (rand * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  let kills = 0;
  for (let round = 0; round < KILLS_PER_MESH; round++) {
    const daemon = spawn(process.execPath, [DAEMON, '--home', mesh.home], { env: { ...process.env, CELL_HOME: mesh.home }, stdio: 'ignore' });
    const exited = new Promise((r) => daemon.on('exit', r));
    // Random moment: during boot (readoption, kernel) or while it reconciles the crash loop.
    await sleep(20 + Math.floor(next() * 400));
    daemon.kill('SIGKILL');
    await exited;
    kills++;
    checkState(mesh.home, round);
  }
  return kills;
}

test('e2e crash consistency - 200+ kill -9 of the daemon during state writes leave valid state and no duplicate', async () => {
  await using a = new MeshHarness(MESH);
  await using b = new MeshHarness(MESH);
  for (const mesh of [a, b]) {
    await mesh.ok(['up', '--no-wait']);
    await waitUntil('steady ready', async () => (await mesh.ps()).filter((p) => p.cell === 'steady' && p.state === 'ready').length === 2);
    // Stop the daemon abruptly once so the loop starts from a crashed daemon too.
    process.kill((await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid, 'SIGKILL');
    await sleep(100);
  }
  const steadyBefore = async (mesh: MeshHarness) => JSON.parse(readFileSync(join(mesh.home, 'control-plane.json'), 'utf8')).processes;
  const beforeA = await steadyBefore(a);
  const kills = (await Promise.all([killDaemonRepeatedly(a, 7), killDaemonRepeatedly(b, 11)])).reduce((x, y) => x + y, 0);
  assert.ok(kills >= 200, `${kills} kills`);

  for (const mesh of [a, b]) {
    const up = await mesh.cell(['up', '--no-wait']);
    assert.equal(up.code, 0, up.stderr);
    const ps = await waitUntil('steady ready after the storm', async () => {
      const list = await mesh.ps();
      return list.filter((p) => p.cell === 'steady' && p.state === 'ready').length === 2 ? list : undefined;
    });
    // No duplicates: every process carrying this home is the daemon, a recorded instance, the
    // flappy cell's current short-lived process, or the live daemon's one warm spare waiting for
    // flappy's next crash (a dead daemon's spares end with it: more than one would be a leak).
    const status = await mesh.json<{ daemon: { pid: number } }>(['status']);
    const known = new Set([status.daemon.pid, ...ps.map((p) => p.pid)]);
    const waitingSpare = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('warm-node-prelude.cjs');
      } catch {
        return false;
      }
    };
    const unknown = processesOfHome(mesh.home).filter((pid) => !known.has(pid));
    const spares = unknown.filter(waitingSpare);
    const extra = unknown.filter((pid) => !waitingSpare(pid));
    assert.ok(spares.length <= 1, `waiting spares: ${spares}`);
    assert.ok(extra.length <= 1, `untracked processes: ${extra}`);
    assert.equal(ps.filter((p) => p.cell === 'steady').length, 2);
  }
  // The steady cells of mesh a were readopted across 110 daemon deaths: same pids as before.
  const psA = await a.ps();
  for (const i of [0, 1]) assert.equal(psA.find((p) => p.cell === 'steady' && p.instance === i)!.pid, beforeA[`steady/${i}`].pid);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MeshHarness, processesOfHome, httpGet, waitUntil, type Ps } from './harness.js';

interface EventView {
  at: string;
  cell: string;
  instance: number;
  from: string | null;
  to: string;
}

// A diamond (web -> api, auth -> cache -> db), a non-Node cell (python3's http.server), two
// instances of api, and a worker whose shell leaves a background child in its process group.
const MESH = `
cells:
  db:
    run: python3 -m http.server $PORT --bind 127.0.0.1
    health: { http: { path: / }, interval: 300ms }
  cache:
    run: node fixtures/service.mjs
    depends_on: [db]
    env: { ORDER_FILE: ./order.log }
    health: { tcp: {}, interval: 300ms }
  api:
    run: node fixtures/service.mjs
    depends_on: [cache]
    instances: 2
    env: { ORDER_FILE: ./order.log }
    health: { http: { path: /health }, interval: 300ms }
  auth:
    run: node fixtures/service.mjs
    depends_on: [cache]
    env: { ORDER_FILE: ./order.log }
    health: { http: { path: /health }, interval: 300ms }
  web:
    run: node fixtures/service.mjs
    depends_on: [api, auth]
    env: { ORDER_FILE: ./order.log }
    health: { http: { path: /health }, interval: 300ms }
  worker:
    run: sh -c 'sleep 600 & exec node fixtures/service.mjs'
    depends_on: [db]
    env: { ORDER_FILE: ./order.log }
    health: { tcp: {}, interval: 300ms }
`;

const DEPS: Record<string, string[]> = { db: [], cache: ['db'], api: ['cache'], auth: ['cache'], web: ['api', 'auth'], worker: ['db'] };
const INSTANCES: Record<string, number> = { db: 1, cache: 1, api: 2, auth: 1, web: 1, worker: 1 };

test('e2e lifecycle - up starts in dependency order, down stops in reverse and leaves no process', async () => {
  await using mesh = new MeshHarness(MESH);
  const up = await mesh.cell(['up', '--timeout', '60s']);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /mesh up: 6 cells healthy/);

  const ps = await mesh.ps();
  const app = ps.filter((p) => p.cell !== 'gateway');
  assert.equal(app.length, 7, 'six cells, api twice');
  for (const p of app) {
    assert.equal(p.state, 'ready', `${p.cell}.${p.instance}`);
    assert.ok(p.pid && p.port, 'pid and port');
    assert.match(p.started_at!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  const db = app.find((p) => p.cell === 'db')!;
  assert.match(readFileSync(`/proc/${db.pid}/cmdline`, 'utf8'), /python3/, 'the pid is python itself, not a shell');
  assert.equal((await httpGet(db.port!)).status, 200);

  // Start order: each cell's first launch comes after every instance of its dependencies was ready.
  const events = await mesh.json<EventView[]>(['events']);
  const firstLaunch = (cell: string) => Math.min(...events.filter((e) => e.cell === cell && e.to === 'launching').map((e) => Date.parse(e.at)));
  const readyAt = (cell: string, i: number) => Date.parse(events.find((e) => e.cell === cell && e.instance === i && e.to === 'ready')!.at);
  for (const [cell, deps] of Object.entries(DEPS)) {
    for (const dep of deps) {
      for (let i = 0; i < INSTANCES[dep]; i++) {
        assert.ok(firstLaunch(cell) >= readyAt(dep, i), `${cell} launched before ${dep}.${i} was ready`);
      }
    }
  }
  // Kernel cells booted in the seed's order.
  const kernelReady = events.filter((e) => ['builder', 'supervisor', 'registry', 'graph', 'gateway', 'observer'].includes(e.cell) && e.to === 'ready');
  assert.deepEqual(kernelReady.map((e) => e.cell), ['builder', 'supervisor', 'registry', 'graph', 'gateway', 'observer']);
  const status = await mesh.json<{ daemon: { pid: number; version: string; uptime: number }; cells: { name: string; kind: string; state: string }[] }>(['status']);
  assert.ok(status.daemon.pid > 0 && typeof status.daemon.uptime === 'number' && status.daemon.version);
  assert.deepEqual(status.cells.filter((c) => c.kind === 'kernel').map((c) => c.state), ['ready', 'ready', 'ready', 'ready', 'ready', 'ready']);

  // The worker's background child shares its process group.
  const worker = app.find((p) => p.cell === 'worker')!;
  const before = processesOfHome(mesh.home);
  assert.ok(before.length >= 9, `cells, their children and the gateway: ${before.length}`);
  assert.ok(before.some((pid) => pid !== worker.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep')), 'worker child runs');

  const down = await mesh.json<{ stopped: string[]; sequence: { cell: string; instance: number; to: string; at: string }[] }>(['down']);
  // Down order: a cell starts draining only after every cell that depends on it has stopped.
  const drainAt = (cell: string) => Math.min(...down.sequence.filter((s) => s.cell === cell && s.to === 'draining').map((s) => Date.parse(s.at)));
  const stoppedAt = (cell: string) => Math.max(...down.sequence.filter((s) => s.cell === cell && s.to === 'stopped').map((s) => Date.parse(s.at)));
  for (const [cell, deps] of Object.entries(DEPS)) {
    for (const dep of deps) assert.ok(drainAt(dep) >= stoppedAt(cell), `${dep} drained before its dependent ${cell} stopped`);
  }
  assert.ok(drainAt('gateway') >= Math.max(...Object.keys(DEPS).map(stoppedAt)), 'kernel gateway last');

  // What the cells themselves saw: start lines in dependency order, stop lines in reverse.
  const order = readFileSync(join(mesh.dir, 'order.log'), 'utf8').trim().split('\n').map((l) => l.split(' '));
  const seen = (what: string, cell: string) => order.filter((o) => o[1] === what && o[2].startsWith(`${cell}.`)).map((o) => Number(o[0]));
  for (const [cell, deps] of Object.entries(DEPS)) {
    for (const dep of deps) {
      if (dep === 'db') continue; // python writes no order line
      assert.ok(Math.min(...seen('start', cell)) >= Math.max(...seen('start', dep)), `${cell} started before ${dep}`);
      assert.ok(Math.min(...seen('stop', dep)) >= Math.max(...seen('stop', cell)), `${dep} stopped before ${cell}`);
    }
  }

  assert.deepEqual(processesOfHome(mesh.home), [], 'no process of the mesh survives down');
  const state = JSON.parse(readFileSync(join(mesh.home, 'control-plane.json'), 'utf8'));
  assert.ok(Object.values(state.processes).every((p) => (p as { state: string }).state === 'stopped'));
  assert.ok(!existsSync(join(mesh.home, 'run/daemon.sock')), 'daemon gone');

  // The same home comes back whole with the next `up`, the kernel's gateway included.
  const again = await mesh.cell(['up', '--timeout', '60s']);
  assert.equal(again.code, 0, again.stderr);
  const statusAgain = await mesh.json<{ cells: { name: string; kind: string; state: string }[] }>(['status']);
  assert.deepEqual(statusAgain.cells.filter((c) => c.kind === 'kernel').map((c) => `${c.name} ${c.state}`), ['builder ready', 'supervisor ready', 'registry ready', 'graph ready', 'gateway ready', 'observer ready']);
  const dbAgain = (await mesh.ps()).find((p) => p.cell === 'db')!;
  assert.equal(dbAgain.state, 'ready');
  assert.equal((await httpGet(dbAgain.port!)).status, 200);
});

test('e2e lifecycle - status, ps, graph, health and logs read the running mesh; unknown cells are clear errors', async () => {
  await using mesh = new MeshHarness(`
cells:
  db:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  api:
    run: node fixtures/service.mjs
    depends_on: [db]
    instances: 2
    source: ["fixtures/service.mjs"]
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const text = await mesh.ok(['status']);
  assert.match(text, /CELL\s+KIND\s+STATE/);
  assert.match(text, /api\s+cell\s+● ready\s+2\/2/);
  const ps: Ps[] = await mesh.ps();
  assert.deepEqual(Object.keys(ps[0]).sort(), ['cell', 'health', 'instance', 'pid', 'port', 'restarts', 'started_at', 'state', 'version']);
  assert.equal((await mesh.ok(['graph'])).trim(), 'db\napi -> db');
  assert.match(await mesh.ok(['graph', '--format', 'dot']), /digraph/);
  assert.match(await mesh.ok(['graph', '--format', 'mermaid']), /graph TD/);
  const data = await mesh.json<{ nodes: { cell: string; instances: number }[]; edges: { from: string; to: string; condition: string }[] }>(['graph', '--json']);
  assert.deepEqual(data.nodes.map((n) => `${n.cell}x${n.instances}`).sort(), ['apix2', 'dbx1']);
  assert.deepEqual(data.edges, [{ from: 'api', to: 'db', condition: 'healthy' }]);
  const health = await mesh.json<{ cell: string; health: string }[]>(['health', 'api']);
  assert.equal(health.length, 2);
  assert.ok(health.every((h) => h.health === 'passing'));
  // One instance, named as for `cell logs`.
  assert.deepEqual((await mesh.json<{ cell: string; instance: number }[]>(['health', 'api.1'])).map((h) => `${h.cell}.${h.instance}`), ['api.1']);
  const noSuch = await mesh.cell(['health', 'api.7']);
  assert.deepEqual([noSuch.code, noSuch.stderr], [2, 'cell: cell "api" has no instance 7 (instances: api.0, api.1)\n']);
  // CHECK is the configured check, REACHED the level the last probe reached.
  const healthText = await mesh.ok(['health']);
  assert.match(healthText, /INSTANCE\s+STATE\s+HEALTH\s+CHECK\s+REACHED/);
  assert.match(healthText, /api\.0\s+ready\s+passing\s+http \/\s+http/);
  assert.match(healthText, /db\.0\s+ready\s+passing\s+tcp\s+socket/);
  const logs = await mesh.ok(['logs', 'api', '-n', '5']);
  assert.match(logs, /\[api\.0\] api\.0 listening/);
  assert.match(logs, /\[api\.1\] api\.1 listening/);

  for (const args of [['logs', 'nope'], ['restart', 'nope'], ['scale', 'nope', '2'], ['health', 'nope']]) {
    const r = await mesh.cell(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /unknown cell "nope" \(cells: api, db\)/);
  }
  // Not a count, an empty one (an unset $N) least of all: nothing is scaled.
  for (const count of ['two', '', ' ', '1e1', '0x2', '1.5']) {
    const bad = await mesh.cell(['scale', 'api', count]);
    assert.equal(bad.code, 2, JSON.stringify(count));
    assert.equal(bad.stderr, `cell: instances must be a non-negative integer, got "${count}"\n`);
  }
  assert.equal((await mesh.ps()).filter((p) => p.cell === 'api' && p.state === 'ready').length, 2);

  // Scale up and down through desired state.
  await mesh.ok(['scale', 'api', '3']);
  await waitUntil('scaled up to 3', async () => (await mesh.ps()).filter((p) => p.cell === 'api' && p.state === 'ready').length === 3);
  await mesh.ok(['scale', 'api', '1']);
  await waitUntil('scaled down to 1', async () => (await mesh.ps()).filter((p) => p.cell === 'api').length === 1);
});

test('e2e lifecycle - down right after up --no-wait, in the middle of the start burst: no process of the mesh survives', async () => {
  const lines = ['cells:'];
  for (let i = 0; i < 30; i++) lines.push(`  s${i}:`, '    run: node fixtures/service.mjs', '    health: { tcp: {}, interval: 1s }');
  await using mesh = new MeshHarness(lines.join('\n') + '\n');
  await mesh.ok(['up', '--no-wait']);
  // Some instances have a pid by now, most are still waiting for their spawn.
  const down = await mesh.cell(['down']);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(processesOfHome(mesh.home), [], 'no process of the mesh survives down');
  // The next start runs each cell once, on a clean slate.
  await mesh.ok(['up', '--timeout', '60s']);
  const ps = await mesh.ps();
  const app = ps.filter((p) => p.cell !== 'gateway');
  assert.equal(app.length, 30);
  assert.ok(app.every((p) => p.state === 'ready'));
  const services = processesOfHome(mesh.home).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('service.mjs'));
  assert.deepEqual(services.sort(), app.map((p) => p.pid!).sort(), 'exactly the listed processes run: no duplicate, no leftover');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { MeshHarness, CELL_BIN, waitUntil, processesOfHome, httpGet, sleep } from './harness.js';
import { dynamicPortRange } from '../../src/supervisor/ports.js';

interface Status {
  daemon: { pid: number; gateway: string | null };
  cells: { name: string; kind: string; state: string; version: string; latest_version: string; outdated: boolean; reason: string | null; restarts: number; instances: number; ready: number }[];
}

test('e2e commands - the version loop notices changed sources; restart runs the new version', async () => {
  await using mesh = new MeshHarness(`
version_check_interval: 200ms
cells:
  api:
    run: node fixtures/service.mjs
    source: ["fixtures/service.mjs"]
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const before = (await mesh.json<Status>(['status'])).cells.find((c) => c.name === 'api')!;
  assert.equal(before.outdated, false);
  assert.match(await mesh.ok(['status']), /api .*✓ Latest/);
  appendFileSync(join(mesh.dir, 'fixtures/service.mjs'), '\n// changed\n');
  const outdated = await waitUntil('api outdated', async () => {
    const c = (await mesh.json<Status>(['status'])).cells.find((x) => x.name === 'api')!;
    return c.outdated ? c : undefined;
  });
  assert.equal(outdated.version, before.version, 'the running instance keeps its version');
  assert.notEqual(outdated.latest_version, before.version);
  assert.match(await mesh.ok(['status']), /api .*⚠ Update Available/);
  const apiBefore = (await mesh.ps()).find((p) => p.cell === 'api')!;
  assert.match(await mesh.ok(['restart', 'api']), /^restarted: api \(healthy: api\)$/m);
  // `cell restart` returns once the cell is healthy again, on a new process.
  const apiAfter = (await mesh.ps()).find((p) => p.cell === 'api')!;
  assert.equal(apiAfter.state, 'ready');
  assert.notEqual(apiAfter.pid, apiBefore.pid);
  const after = await waitUntil('api restarted on the new version', async () => {
    const c = (await mesh.json<Status>(['status'])).cells.find((x) => x.name === 'api')!;
    return c.state === 'ready' && !c.outdated ? c : undefined;
  });
  assert.equal(after.version, outdated.latest_version);
});

test('e2e commands - prune stops instances of cells removed from the manifest', async () => {
  await using mesh = new MeshHarness(`
cells:
  keep:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  gone-base:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  gone:
    run: node fixtures/service.mjs
    instances: 2
    depends_on: [gone-base]
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const gonePids = (await mesh.ps()).filter((p) => p.cell.startsWith('gone')).map((p) => p.pid!);
  mesh.writeManifest(`
cells:
  keep:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const status = await mesh.json<Status>(['status']);
  assert.match(status.cells.find((c) => c.name === 'gone')!.reason!, /not in the manifest/);
  assert.equal((await mesh.ps()).filter((p) => p.cell === 'gone' && p.state === 'ready').length, 2, 'still running before prune');
  const dry = await mesh.json<{ dry_run: boolean; instances: { cell: string; pid: number }[] }>(['prune', '--dry-run']);
  assert.equal(dry.dry_run, true);
  assert.deepEqual(dry.instances.map((i) => i.pid).sort(), [...gonePids].sort());
  assert.deepEqual(dry.instances.map((i) => i.cell), ['gone', 'gone', 'gone-base'], 'in the order prune stops them: dependents first');
  assert.match(await mesh.ok(['prune', '--dry-run']), /^would stop gone\.0 \(pid \d+\)\nwould stop gone\.1 \(pid \d+\)\nwould stop gone-base\.0 \(pid \d+\)\n$/);
  assert.ok(gonePids.every((pid) => processesOfHome(mesh.home).includes(pid)), 'dry run stops nothing');
  const since = Date.now();
  const pruned = await mesh.ok(['prune']);
  assert.match(pruned, /stopped gone\.0 \(pid \d+\)\nstopped gone\.1 \(pid \d+\)/);
  assert.match(pruned, /stopped gone-base\.0 \(pid \d+\)/);
  assert.ok(gonePids.every((pid) => !processesOfHome(mesh.home).includes(pid)));
  // Dependents first, as the removed manifest had them: gone-base drains after both gone stopped.
  const events = (await mesh.json<{ at: string; cell: string; to: string }[]>(['events'])).filter((e) => Date.parse(e.at) >= since - 1000);
  const goneStopped = events.filter((e) => e.cell === 'gone' && e.to === 'stopped').map((e) => Date.parse(e.at));
  const baseDraining = events.find((e) => e.cell === 'gone-base' && e.to === 'draining');
  assert.equal(goneStopped.length, 2, JSON.stringify(events));
  assert.ok(baseDraining && Date.parse(baseDraining.at) >= Math.max(...goneStopped), JSON.stringify(events));
  assert.deepEqual((await mesh.ps()).map((p) => p.cell).sort(), ['gateway', 'keep']);
  assert.equal(await mesh.ok(['prune']), 'nothing to prune\n');

  // A cell dropped while the mesh is down runs nothing: the next up just forgets it, no prune
  // needed, and status and down no longer count it.
  await mesh.ok(['down']);
  mesh.writeManifest(`
cells:
  other:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  assert.deepEqual((await mesh.json<Status>(['status'])).cells.filter((c) => c.kind === 'cell').map((c) => c.name), ['other']);
  assert.deepEqual((await mesh.ps()).map((p) => p.cell).sort(), ['gateway', 'other']);
  assert.match(await mesh.ok(['down']), /stopped 1 cell\b/);
});

test('e2e commands - restart of the whole mesh keeps counters and order; top and init work', async () => {
  await using mesh = new MeshHarness(`
cells:
  db:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  api:
    run: node fixtures/service.mjs
    depends_on: [db]
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  process.kill((await mesh.ps()).find((p) => p.cell === 'api')!.pid!, 'SIGKILL');
  await waitUntil('api back', async () => (await mesh.ps()).find((p) => p.cell === 'api' && p.state === 'ready' && p.restarts === 1));
  const before = await mesh.ps();
  assert.match(await mesh.ok(['restart']), /restarted: db, api/);
  const after = await waitUntil('all ready', async () => {
    const ps = await mesh.ps();
    return ps.every((p) => p.state === 'ready') ? ps : undefined;
  });
  for (const p of after.filter((x) => x.cell !== 'gateway')) {
    const old = before.find((b) => b.cell === p.cell)!;
    assert.notEqual(p.pid, old.pid, `${p.cell} restarted`);
    assert.equal(p.restarts, old.restarts + 1, `${p.cell} restart counted, history kept`);
  }
  const frame = await mesh.ok(['top', '--once']);
  assert.match(frame, /INSTANCE\s+PID\s+STATE\s+HEALTH\s+CPU\s+MEM/);
  assert.match(frame, /api\.0\s+\d+\s+● ready\s+passing/);

  const init = await mesh.cell(['-f', 'starter.yaml', 'init']);
  assert.equal(init.code, 0);
  assert.match(readFileSync(join(mesh.dir, 'starter.yaml'), 'utf8'), /^# cell\.yaml/);
  const again = await mesh.cell(['-f', 'starter.yaml', 'init']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists \(use --force to overwrite\)/);
});

for (const [signal, what] of [['SIGINT', 'Ctrl-C'], ['SIGTERM', 'SIGTERM (systemd, docker stop)']] as const) test(`e2e commands - up --foreground runs the daemon attached; ${what} stops the mesh`, async () => {
  await using mesh = new MeshHarness(`
cells:
  api:
    run: node fixtures/service.mjs
    health: { http: { path: / }, interval: 200ms }
`);
  const child = spawn(process.execPath, [CELL_BIN, 'up', '--foreground'], { cwd: mesh.dir, env: { ...process.env, CELL_HOME: mesh.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    await waitUntil('foreground mesh up', async () => out.includes('Ctrl-C stops the mesh'), 30_000);
    const ps = await mesh.ps();
    const api = ps.find((p) => p.cell === 'api')!;
    assert.equal((await httpGet(api.port!)).status, 200);
    assert.equal((await mesh.json<Status>(['status'])).daemon.pid, child.pid, 'the daemon is this process');
    child.kill(signal);
    assert.equal(await exited, 0);
    assert.deepEqual(processesOfHome(mesh.home), [], `${signal} stopped every cell, the gateway too`);
    assert.ok(!existsSync(join(mesh.home, 'run/daemon.sock')));
  } finally {
    child.kill('SIGKILL');
  }
});

test('e2e commands - build runs before start when the version changed; a failing build changes nothing', async () => {
  await using mesh = new MeshHarness(`
cells:
  app:
    run: node fixtures/service.mjs
    source: ["src.txt"]
    build: sh -c 'echo build >> builds.log'
    health: { tcp: {}, interval: 200ms }
`, { 'src.txt': 'v1' });
  await mesh.ok(['up']);
  await mesh.ok(['up']);
  assert.equal(readFileSync(join(mesh.dir, 'builds.log'), 'utf8'), 'build\n', 'same version: built once');
  const pid = (await mesh.ps()).find((p) => p.cell === 'app')!.pid;
  mesh.writeManifest(`
cells:
  app:
    run: node fixtures/service.mjs
    source: ["src.txt"]
    build: sh -c 'echo compile error >&2; exit 7'
    health: { tcp: {}, interval: 200ms }
`);
  const bad = await mesh.cell(['up']);
  assert.equal(bad.code, 2);
  // Progress lines come first on stderr; the error is the last line, and one line.
  assert.match(bad.stderr, /\ncell: cell app: build `sh -c 'echo compile error >&2; exit 7'` failed \(exit code 7\), see .*app\.build\.log\n$/);
  assert.match(readFileSync(join(mesh.home, 'logs/app.build.log'), 'utf8'), /compile error/);
  const after = (await mesh.ps()).find((p) => p.cell === 'app')!;
  assert.equal(after.pid, pid, 'the running instance is untouched');
  assert.equal(after.state, 'ready');
});

test('e2e commands - the installed cell command: daemon and gateway skip the CA bundle, cells get the user value', async () => {
  await using mesh = new MeshHarness(`
cells:
  env:
    run: node fixtures/forever.mjs
`);
  const userCa = join(mesh.dir, 'corp-ca.pem');
  appendFileSync(userCa, '');
  const up = await mesh.cell(['up'], { command: true, env: { NODE_EXTRA_CA_CERTS: userCa } });
  assert.equal(up.code, 0, up.stderr);
  const environOf = (pid: number) =>
    Object.fromEntries(
      readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
  const status = await mesh.json<{ daemon: { pid: number; version: string } }>(['status']);
  const ps = await mesh.ps();
  const cell = ps.find((p) => p.cell === 'env')!;
  const gateway = ps.find((p) => p.cell === 'gateway')!;
  assert.equal(environOf(status.daemon.pid).NODE_EXTRA_CA_CERTS, '', 'the daemon starts without parsing the bundle');
  assert.equal(environOf(gateway.pid!).NODE_EXTRA_CA_CERTS, '', 'so does the gateway');
  const range = dynamicPortRange();
  if (range) assert.ok(cell.port! >= range.min && cell.port! <= range.max, `port ${cell.port} in ${range.min}-${range.max}, below the ephemeral ports`);
  const cellEnv = environOf(cell.pid!);
  assert.equal(cellEnv.NODE_EXTRA_CA_CERTS, userCa, 'the cell runs with the user value');
  assert.equal(cellEnv.CELL_USER_NODE_EXTRA_CA_CERTS, undefined);
  assert.equal(cellEnv.CELL_USER_ENV, undefined);
  const st = await mesh.cell(['status'], { command: true, env: { NODE_EXTRA_CA_CERTS: userCa } });
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /env\s+cell\s+● ready/);
  const version = await mesh.cell(['--version'], { command: true });
  assert.equal(version.code, 0, version.stderr);
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version);
  assert.equal(status.daemon.version, pkg.version, 'the daemon reports the same version');
});

test('e2e commands - cell up returns as soon as the mesh is healthy, and fails naming a crashing or slow cell', async () => {
  const slowCell = (name: string, readyAfterMs: number) => `
  ${name}:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "${readyAfterMs}" }
    health: { http: { path: / }, interval: 30s }`;
  await using mesh = new MeshHarness(`cells:${slowCell('slow', 1500)}\n`);
  const t0 = Date.now();
  const up = await mesh.cell(['up']);
  const upMs = Date.now() - t0;
  assert.equal(up.code, 0, up.stderr);
  assert.equal((await mesh.ps()).find((p) => p.cell === 'slow')?.state, 'ready');
  // Listening after 1.5 s; the readiness probes ramp up from 20 ms, so the whole command (daemon
  // start included) returns within ~1-2 s of that, long before the 30 s health interval.
  assert.ok(upMs < 10_000, `cell up took ${upMs} ms`);

  mesh.writeManifest(`cells:${slowCell('slow', 1500)}
  crashy:
    run: node fixtures/crash-after.mjs
    env: { CRASH_AFTER_MS: "50" }
    health: { tcp: {} }
    restart: { backoff: 100ms, max_retries: 1 }
`);
  const failed = await mesh.cell(['up', '--timeout', '30s']);
  assert.equal(failed.code, 1, failed.stderr);
  assert.match(failed.stderr.trim().split('\n').at(-1)!, /^cell: cells failed: crashy \(.+\); see `cell logs <cell>`$/);

  mesh.writeManifest(`cells:${slowCell('slow', 1500)}${slowCell('slower', 60_000)}\n`);
  const slow = await mesh.cell(['up', '--timeout', '1s']);
  assert.equal(slow.code, 1, slow.stderr);
  assert.match(slow.stderr.trim().split('\n').at(-1)!, /^cell: not healthy after 1s: slower \(launching/);
});

test('e2e commands - the gateway follows endpoint changes: scale up, a killed instance, scale down', async () => {
  await using mesh = new MeshHarness(`
cells:
  web:
    run: node fixtures/http-server.mjs
    health: { http: { path: /health }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const gatewayPort = Number(new URL((await mesh.json<Status>(['status'])).daemon.gateway!).port);
  /** The instances that answered `tries` requests through the gateway (round-robin). */
  const answering = async (tries: number) => {
    const ids = new Set<string>();
    for (let i = 0; i < tries; i++) {
      const res = await httpGet(gatewayPort, '/web/');
      if (res.status === 200) ids.add(res.body.trim());
    }
    return [...ids].sort();
  };
  assert.deepEqual(await answering(3), ['ok web.0']);
  assert.match(await mesh.ok(['scale', 'web', '3']), /web scaled to 3 instances, all healthy/);
  // `cell scale` returns once every instance is ready.
  assert.deepEqual((await mesh.ps()).filter((p) => p.cell === 'web').map((p) => `${p.instance}:${p.state}`), ['0:ready', '1:ready', '2:ready']);
  await waitUntil('the gateway routes to all 3', async () => (await answering(9)).length === 3);
  const killed = (await mesh.ps()).find((p) => p.cell === 'web' && p.instance === 1)!;
  process.kill(killed.pid!, 'SIGKILL');
  await waitUntil('web.1 back under a new pid', async () => (await mesh.ps()).some((p) => p.cell === 'web' && p.instance === 1 && p.state === 'ready' && p.pid !== killed.pid));
  await waitUntil('the gateway routes to all 3 again', async () => (await answering(9)).length === 3);
  // A scale-down returns once the extra instances have drained and stopped.
  assert.match(await mesh.ok(['scale', 'web', '1']), /^web scaled to 1 instance, all healthy$/m);
  assert.deepEqual((await mesh.ps()).filter((p) => p.cell === 'web' && p.pid !== null).map((p) => p.instance), [0]);
  await waitUntil('the gateway routes to web.0 alone', async () => (await answering(6)).join() === 'ok web.0');
  // Scaled to nothing, then back: it comes back.
  assert.match(await mesh.ok(['scale', 'web', '0']), /^web scaled to 0 instances$/m);
  const none = (await mesh.json<Status>(['status'])).cells.find((c) => c.name === 'web')!;
  assert.equal(none.state, 'stopped');
  assert.equal(none.reason, 'scaled to 0 instances');
  // Its log is still there to read, as with no daemon running.
  assert.match(await mesh.ok(['logs', 'web']), /http-server got SIGTERM, closing/);
  // Nothing to wait for when it is restarted at 0.
  assert.match(await mesh.ok(['restart', 'web', '--timeout', '20s']), /restarted: web/);
  await mesh.ok(['scale', 'web', '1']);
  await waitUntil('web.0 serves again through the gateway', async () => (await answering(3)).join() === 'ok web.0');
});

test('e2e commands - restart --no-wait returns while a cell rolls; a scale-down in the middle of the roll ends it without a moment with nothing ready', async () => {
  await using mesh = new MeshHarness(`
cells:
  slow:
    run: node fixtures/slow-ready.mjs
    instances: 3
    env: { READY_AFTER_MS: "1500" }
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const before = (await mesh.ps()).filter((p) => p.cell === 'slow').map((p) => p.pid);
  const since = Date.now();
  await mesh.ok(['restart', 'slow', '--no-wait']);
  // A roll of 3 instances that each take 1.5 s to be ready is far from done.
  const running = (await mesh.ps()).filter((p) => p.cell === 'slow' && before.includes(p.pid));
  assert.ok(running.length >= 2, `the roll goes on in the background: ${running.length} of the old processes run`);
  assert.match(await mesh.ok(['scale', 'slow', '1']), /^slow scaled to 1 instance, all healthy$/m);
  const after = (await mesh.ps()).filter((p) => p.cell === 'slow' && p.pid !== null);
  assert.deepEqual(after.map((p) => `${p.instance} ${p.state}`), ['0 ready']);
  assert.equal(before.includes(after[0]!.pid), false, 'slow.0 was replaced');
  // The cell always had an instance ready: replay its transitions since the restart.
  const events = (await mesh.json<{ at: string; cell: string; instance: number; from: string | null; to: string }[]>(['events', 'slow'])).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const ready = new Set(before.map((_, i) => i));
  let least = ready.size;
  for (const e of events.filter((e) => Date.parse(e.at) >= since - 50)) {
    if (e.to === 'ready') ready.add(e.instance);
    else ready.delete(e.instance);
    least = Math.min(least, ready.size);
  }
  assert.ok(least >= 1, `a moment with ${least} instances ready: ${JSON.stringify(events)}`);
  // And a restart that waits is not held up by the instances scaled away.
  assert.match(await mesh.ok(['restart', 'slow', '--timeout', '20s']), /restarted: slow/);
});

test('e2e commands - a launching instance whose probes fail is failing for cell health (exit 1), and cell scale gives a failed instance another try', async () => {
  await using mesh = new MeshHarness(`
cells:
  sick:
    run: node fixtures/http-server.mjs
    env: { HEALTH_STATUS: "500" }
    health: { http: { path: /health }, interval: 200ms, grace: 60s }
  once:
    run: sh -c 'echo run >> once.log; exit 1'
    restart: { policy: never }
`);
  assert.equal((await mesh.cell(['up', '--no-wait'])).code, 0);
  await waitUntil('once failed', async () => (await mesh.ps()).some((p) => p.cell === 'once' && p.state === 'failed') || undefined);
  await mesh.cell(['scale', 'once', '2', '--no-wait']);
  await waitUntil('once.0 ran again, and once.1 ran', async () => readFileSync(join(mesh.dir, 'once.log'), 'utf8') === 'run\nrun\nrun\n' || undefined);
  const failing = await waitUntil('a probe reached sick and failed', async () => {
    const r = await mesh.cell(['health', 'sick', '--json']);
    const [h] = JSON.parse(r.stdout) as { state: string; health: string; detail: string }[];
    return h?.health === 'failing' ? { ...h, code: r.code } : undefined;
  });
  assert.equal(failing.state, 'launching');
  assert.equal(failing.code, 1);
  assert.match(failing.detail, /500/);
  assert.equal((await mesh.ps()).find((p) => p.cell === 'sick')!.health, 'failing', 'ps says the same');
});

test('e2e commands - a restart signals an instance only after the gateway has the answers it was waiting for: a program that exits at once on SIGTERM loses no POST', async () => {
  // Answers a POST 400 ms after its body, and exits the moment it is told to stop.
  const abrupt = `import { createServer } from 'node:http';
createServer((req, res) => { req.resume(); req.on('end', () => setTimeout(() => res.end('done ' + process.env.CELL_INSTANCE), 400)); })
  .listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;
  await using mesh = new MeshHarness(`
cells:
  abrupt:
    run: node abrupt.mjs
    instances: 2
    health: { tcp: {}, interval: 200ms }
`, { 'abrupt.mjs': abrupt });
  await mesh.ok(['up']);
  const gatewayPort = Number(new URL((await mesh.json<Status>(['status'])).daemon.gateway!).port);
  const post = () =>
    new Promise<string>((resolvePost) => {
      const req = request({ host: '127.0.0.1', port: gatewayPort, path: '/abrupt/', method: 'POST', agent: false, timeout: 8000, headers: { 'content-length': 5 } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolvePost(`${res.statusCode} ${body}`));
      });
      req.on('error', (err) => resolvePost(`error ${err.message}`));
      req.end('hello');
    });
  // In flight on both instances when the roll begins.
  const answers = Promise.all([post(), post(), post(), post()]);
  await sleep(150);
  await mesh.ok(['restart', 'abrupt']);
  assert.deepEqual((await answers).map((a) => a.replace(/ \d$/, '')), ['200 done', '200 done', '200 done', '200 done']);
});

test('e2e commands - a request the gateway holds for a restarting cell is answered 503 at once when the cell is scaled to 0', async () => {
  await using mesh = new MeshHarness(`
cells:
  slow:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "4000" }
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const gatewayPort = Number(new URL((await mesh.json<Status>(['status'])).daemon.gateway!).port);
  assert.equal(await mesh.ok(['restart', 'slow', '--no-wait']), 'restarting: slow\n');
  const held = httpGet(gatewayPort, '/slow/', 15_000);
  await sleep(500);
  await mesh.ok(['scale', 'slow', '0']);
  const answer = await held;
  assert.equal(answer.status, 503);
  assert.doesNotMatch(answer.body, /waited/, 'not after the whole hold');
});

test('e2e commands - a source glob that matches no file is pointed out by cell up', async () => {
  await using mesh = new MeshHarness(`
cells:
  web:
    run: node fixtures/service.mjs
    source: ["src/**/*.tsx"]
    health: { tcp: {}, interval: 200ms }
`);
  const up = await mesh.cell(['up']);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stderr, /^cell: note: cell web: source \["src\/\*\*\/\*\.tsx"\] matches no file in .+: its version follows run, env and build only$/m);
});

test('e2e commands - a new version that never gets ready: the roll stops with the old instance serving, and status shows the version that serves as outdated', async () => {
  const manifest = (crash: boolean) => `
cells:
  web:
    run: node fixtures/service.mjs
    instances: 2
    env: { ${crash ? 'CRASH_UNLESS: no-such-file' : 'OK: "1"'} }
    health: { tcp: {}, interval: 200ms, grace: 2s }
    restart: { backoff: 100ms, max_retries: 1 }
`;
  await using mesh = new MeshHarness(manifest(false));
  await mesh.ok(['up']);
  const old = (await mesh.json<{ cells: { name: string; version: string }[] }>(['status'])).cells.find((c) => c.name === 'web')!.version;
  mesh.writeManifest(manifest(true));
  const up = await mesh.cell(['up', '--timeout', '10s']);
  assert.equal(up.code, 1, up.stderr);
  const web = (await mesh.json<{ cells: { name: string; version: string; latest_version: string; outdated: boolean; ready: number }[] }>(['status'])).cells.find((c) => c.name === 'web')!;
  assert.equal(web.ready, 1, 'the roll stopped: one old instance serves');
  assert.equal(web.version, old);
  assert.notEqual(web.latest_version, old);
  assert.equal(web.outdated, true);
});

test('e2e commands - cell up after a change of a check reports what the new check says, not the old one\'s last word', async () => {
  const manifest = (health: string) => `
cells:
  api:
    run: node fixtures/service.mjs
    health: ${health}
`;
  await using mesh = new MeshHarness(manifest('{ tcp: {}, interval: 200ms }'));
  await mesh.ok(['up']);
  const pid = (await mesh.ps()).find((p) => p.cell === 'api')!.pid;
  // Another check that passes: healthy, the same process (a check is no reason to restart).
  mesh.writeManifest(manifest('{ http: { path: / }, interval: 200ms }'));
  assert.match(await mesh.ok(['up']), /mesh up: 1 cell healthy/);
  assert.equal((await mesh.ps()).find((p) => p.cell === 'api')!.pid, pid);
  // One that fails: not reported healthy.
  mesh.writeManifest(manifest('{ exec: "exit 1", interval: 1s, retries: 10, grace: 2s }'));
  const up = await mesh.cell(['up', '--timeout', '2s']);
  assert.equal(up.code, 1, up.stdout);
  assert.match(up.stderr, /^cell: not healthy after 2s: api \(/m);
  const table = await mesh.ok(['status']);
  assert.match(table, /^api .*1 failing its check/m, table);
});

test('e2e commands - down also ends a cell\'s child that left its process group (setsid)', async () => {
  await using mesh = new MeshHarness(`
cells:
  escaper:
    run: sh -c 'setsid sleep 1007 & exec sleep 1008'
`);
  await mesh.ok(['up']);
  const escapee = await waitUntil('the setsid child runs', async () => {
    const pids = processesOfHome(mesh.home).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\x001007'));
    return pids[0];
  });
  const instance = (await mesh.ps()).find((p) => p.cell === 'escaper')!;
  assert.notEqual(readFileSync(`/proc/${escapee}/stat`, 'utf8').split(') ')[1].split(' ')[2], String(instance.pid), 'it is outside the instance\'s group');
  await mesh.ok(['down']);
  assert.deepEqual(processesOfHome(mesh.home), [], 'nothing of the mesh is left, the escapee included');
});

test('e2e commands - two `cell up` at once on a fresh home: both succeed, through one daemon, with one instance each', async () => {
  await using mesh = new MeshHarness(`
cells:
  api:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  worker:
    run: sleep 600
`);
  const [a, b] = await Promise.all([mesh.cell(['up']), mesh.cell(['up'])]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const status = await mesh.json<Status>(['status']);
  const ps = await mesh.ps();
  assert.deepEqual(ps.map((p) => `${p.cell}.${p.instance}`).sort(), ['api.0', 'gateway.0', 'worker.0']);
  // One daemon and one process per instance carry this home, nothing else.
  assert.deepEqual(processesOfHome(mesh.home).sort(), [status.daemon.pid, ...ps.map((p) => p.pid!)].sort());
});

test('e2e commands - two `cell up` at once with different manifests: the later apply wins, and the other up says at once which of its cells it took out', async () => {
  const slow = (name: string) => `
  ${name}:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "3000" }
    health: { http: { path: / }, interval: 200ms }`;
  await using mesh = new MeshHarness(`cells:${slow('db')}${slow('xa')}\n`, { 'other.yaml': `cells:${slow('db')}${slow('yb')}\n` });
  const [a, b] = await Promise.all([mesh.cell(['up', '--timeout', '60s']), mesh.cell(['-f', join(mesh.dir, 'other.yaml'), 'up', '--timeout', '60s'])]);
  const [won, lost] = a.code === 0 ? [a, b] : [b, a];
  assert.equal(won.code, 0, won.stderr);
  assert.equal(lost.code, 1, lost.stderr);
  assert.match(lost.stderr, /^cell: no longer in the mesh: (xa|yb) \(a later `cell up` applied a manifest without it; `cell prune` stops what still runs\)$/m);
  const orphan = /no longer in the mesh: (\w+)/.exec(lost.stderr)![1]!;
  const status = await mesh.json<{ cells: { name: string; orphan?: boolean }[] }>(['status']);
  assert.equal(status.cells.find((c) => c.name === orphan)?.orphan, true);
  await mesh.ok(['prune']);
  assert.equal((await mesh.ps()).some((p) => p.cell === orphan), false);
});

test('e2e commands - up restarts the cells whose run line or env changed, and leaves the others running', async () => {
  const manifest = (m: string) => `
cells:
  app:
    run: node fixtures/service.mjs
    env: { M: ${m} }
    health: { tcp: {}, interval: 200ms }
  other:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
`;
  await using mesh = new MeshHarness(manifest('one'));
  await mesh.ok(['up']);
  const before = await mesh.ps();
  const second = await mesh.ok(['up']);
  assert.doesNotMatch(second, /new version/, 'nothing changed: nothing restarted');
  mesh.writeManifest(manifest('two'));
  const out = await mesh.ok(['up']);
  assert.match(out, /^restarted on a new version \(manifest or sources changed\): app$/m);
  const after = await mesh.ps();
  const pidOf = (ps: typeof before, cell: string) => ps.find((p) => p.cell === cell)!.pid!;
  assert.notEqual(pidOf(after, 'app'), pidOf(before, 'app'), 'app runs a new process');
  assert.equal(after.find((p) => p.cell === 'app')!.state, 'ready', 'healthy when up returns');
  assert.ok(readFileSync(`/proc/${pidOf(after, 'app')}/environ`, 'utf8').split('\0').includes('M=two'), 'with the new env');
  assert.equal(pidOf(after, 'other'), pidOf(before, 'other'), 'an unchanged cell keeps its process');
  const status = await mesh.json<Status>(['status']);
  assert.equal(status.cells.find((c) => c.name === 'app')!.outdated, false);
});

test('e2e commands - restart builds a changed cell first; a failing build stops nothing and the version stays the built one', async () => {
  await using mesh = new MeshHarness(`
cells:
  app:
    run: node fixtures/service.mjs
    source: ["src.txt"]
    build: sh -c 'if grep -q bad src.txt; then echo broken >&2; exit 4; fi; cat src.txt >> builds.log'
    health: { tcp: {}, interval: 200ms }
`, { 'src.txt': 'v1\n' });
  await mesh.ok(['up']);
  const builds = () => readFileSync(join(mesh.dir, 'builds.log'), 'utf8');
  assert.equal(builds(), 'v1\n');
  writeFileSync(join(mesh.dir, 'src.txt'), 'v2\n');
  await mesh.ok(['restart', 'app']);
  assert.equal(builds(), 'v1\nv2\n', 'the restart built v2');
  const built = (await mesh.json<Status>(['status'])).cells.find((c) => c.name === 'app')!;
  assert.equal(built.outdated, false);
  const pid = (await mesh.ps()).find((p) => p.cell === 'app')!.pid;

  writeFileSync(join(mesh.dir, 'src.txt'), 'bad\n');
  const bad = await mesh.cell(['restart', 'app']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr.trim().split('\n').at(-1)!, /cell app: build .* failed \(exit code 4\)/);
  const after = (await mesh.ps()).find((p) => p.cell === 'app')!;
  assert.equal(after.pid, pid, 'nothing was stopped');
  assert.equal(after.version, built.version, 'the instance still runs the version that was built');
  assert.equal(builds(), 'v1\nv2\n');
});

test('e2e commands - processes an instance left in its group die with it, before it starts again', async () => {
  await using mesh = new MeshHarness(`
cells:
  forker:
    run: sh -c 'sleep 2100 & exec node fixtures/service.mjs'
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const first = (await mesh.ps()).find((p) => p.cell === 'forker')!;
  const sleepers = () =>
    processesOfHome(mesh.home).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\x002100\x00';
      } catch {
        return false;
      }
    });
  const [leftover] = await waitUntil('the background sleep runs', async () => (sleepers().length === 1 ? sleepers() : undefined));
  process.kill(first.pid!, 'SIGKILL');
  const again = await waitUntil('forker back on a new pid', async () => {
    const p = (await mesh.ps()).find((x) => x.cell === 'forker')!;
    return p.state === 'ready' && p.pid !== first.pid ? p : undefined;
  });
  assert.ok(again.restarts >= 1);
  assert.ok(!existsSync(`/proc/${leftover}`) || readFileSync(`/proc/${leftover}/stat`, 'utf8').includes(') Z'), 'the first run\'s background sleep is gone');
  await waitUntil('one sleep: the new run\'s', async () => sleepers().length === 1 || undefined);
});

test('e2e commands - a start after down begins a new run: restart counters from zero', async () => {
  await using mesh = new MeshHarness(`
cells:
  app:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const first = (await mesh.ps())[0];
  process.kill(first.pid!, 'SIGKILL');
  await waitUntil('app restarted', async () => (await mesh.ps()).find((p) => p.state === 'ready' && p.pid !== first.pid && p.restarts === 1));
  for (let round = 0; round < 2; round++) {
    await mesh.ok(['down']);
    await mesh.ok(['up']);
    const app = (await mesh.ps()).find((p) => p.cell === 'app')!;
    assert.equal(app.restarts, 0, `round ${round}: a fresh run, not a restart`);
  }
  await mesh.ok(['restart', 'app']);
  assert.equal((await mesh.ps()).find((p) => p.cell === 'app')!.restarts, 1, 'cell restart is counted');
});

test('e2e commands - instances: 0 in the manifest: the cell is in the mesh with nothing running, its dependents wait for it by name, and a scale starts it', async () => {
  await using mesh = new MeshHarness(`
cells:
  spare:
    run: node fixtures/service.mjs
    instances: 0
    health: { http: { path: / }, interval: 200ms }
  web:
    run: node fixtures/service.mjs
    depends_on: [spare]
    health: { http: { path: / }, interval: 200ms }
`);
  const up = await mesh.cell(['up', '--timeout', '2s']);
  assert.equal(up.code, 1, up.stderr);
  assert.match(up.stderr, /^cell: not healthy after 2s: web \(waiting: waiting for spare \(scaled to 0 instances\)\)$/m);
  const status = await mesh.json<Status>(['status']);
  const spare = status.cells.find((c) => c.name === 'spare')!;
  assert.deepEqual([spare.state, spare.instances, spare.ready, spare.reason], ['stopped', 0, 0, 'scaled to 0 instances']);
  assert.deepEqual((await mesh.ps()).filter((p) => p.cell !== 'gateway').map((p) => p.cell), [], 'nothing runs');

  assert.match(await mesh.ok(['scale', 'spare', '1']), /^spare scaled to 1 instance, all healthy$/m);
  await waitUntil('web ready once spare is', async () => (await mesh.ps()).find((p) => p.cell === 'web' && p.state === 'ready'));
});

test('e2e commands - a cell that leaves the manifest while it is starting still gets ready, and runs on until a prune', async () => {
  const base = `
cells:
  api:
    run: node fixtures/service.mjs
    health: { http: { path: / }, interval: 200ms }
`;
  await using mesh = new MeshHarness(`${base}  late:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "1500" }
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up', '--no-wait']);
  await waitUntil('late launching', async () => (await mesh.ps()).find((p) => p.cell === 'late' && p.state === 'launching' && p.pid));
  await mesh.ok(['-f', mesh.writeManifest(base, 'less.yaml'), 'up']);
  const late = await waitUntil('the orphan late ready', async () => (await mesh.ps()).find((p) => p.cell === 'late' && p.state === 'ready'));
  assert.equal((await httpGet(late.port!)).body, 'ok\n');
  const status = await mesh.json<{ cells: { name: string; orphan?: boolean; reason: string | null }[] }>(['status']);
  assert.deepEqual(status.cells.filter((c) => c.name === 'late').map((c) => [c.orphan, c.reason]), [[true, 'not in the manifest (cell prune stops it)']]);
  await mesh.ok(['prune']);
  assert.equal((await mesh.ps()).find((p) => p.cell === 'late'), undefined);
});

test('e2e commands - a scale that a later up replaces does not claim its count', async () => {
  await using mesh = new MeshHarness(`
cells:
  slow:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "8000" }
    health: { http: { path: / }, interval: 200ms, grace: 30s }
`);
  await mesh.ok(['up'], { timeoutMs: 60_000 });
  const scale = mesh.cell(['scale', 'slow', '3']);
  // The new instances take 8 s to get ready; the manifest (1 instance) is applied meanwhile.
  await waitUntil('the scale is applied', async () => (await mesh.ps()).filter((p) => p.cell === 'slow').length === 3 || undefined, 10_000, 20);
  await mesh.ok(['up', '--no-wait']);
  const r = await scale;
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr.trim(), /^cell: the scale of slow to 3 was replaced by a later change: it now has 1 instance$/m);
});

test('e2e commands - a one-shot job that completes serves its dependents, up waits for it, and a later up leaves it done', async () => {
  await using mesh = new MeshHarness(`
cells:
  migrate:
    run: sh -c 'echo migrating >> runs.log; sleep 0.3'
    restart: { policy: on-failure }
    # Never ready while it runs (without a check, a running process is ready, and app would
    # start alongside it): app can start only on its completion.
    health: { exec: "false", grace: 60s }
  app:
    run: node fixtures/service.mjs
    depends_on: [migrate]
    health: { tcp: {}, interval: 200ms }
`);
  const up = await mesh.ok(['up', '--timeout', '30s']);
  assert.match(up, /mesh up: 2 cells healthy/);
  const ps = await mesh.ps();
  assert.equal(ps.find((p) => p.cell === 'app')!.state, 'ready', 'the app started after the job completed, not paused');
  assert.equal(ps.find((p) => p.cell === 'migrate')!.state, 'stopped');
  assert.match(await mesh.ok(['status']), /migrate\s+cell\s+✓ completed/);
  await mesh.ok(['up']);
  assert.equal(readFileSync(join(mesh.dir, 'runs.log'), 'utf8'), 'migrating\n', 'done once: up does not run it again');
  assert.equal((await mesh.ps()).find((p) => p.cell === 'app')!.pid, ps.find((p) => p.cell === 'app')!.pid);
  await mesh.ok(['restart', 'migrate']);
  assert.equal(readFileSync(join(mesh.dir, 'runs.log'), 'utf8'), 'migrating\nmigrating\n', 'restart runs it again');
  await mesh.ok(['down']);
  await mesh.ok(['up']);
  assert.equal(readFileSync(join(mesh.dir, 'runs.log'), 'utf8'), 'migrating\nmigrating\nmigrating\n', 'a new run of the mesh runs it again');
});

test('e2e commands - the builds of independent cells run side by side', async () => {
  const cell = (name: string) => `
  ${name}:
    run: node fixtures/service.mjs
    source: ["src.txt"]
    build: sh -c 'echo "start ${name}" >> builds.log; sleep 1; echo "end ${name}" >> builds.log'
    health: { tcp: {}, interval: 200ms }`;
  await using mesh = new MeshHarness(`cells:${cell('one')}${cell('two')}\n`, { 'src.txt': 'v1' });
  const up = await mesh.cell(['up']);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stderr, /applying .*cell\.yaml \(cells with a build step are built first if their sources changed: one, two; output in logs\/<cell>\.build\.log\)/);
  const lines = readFileSync(join(mesh.dir, 'builds.log'), 'utf8').trim().split('\n');
  assert.deepEqual(lines.slice(0, 2).map((l) => l.split(' ')[0]), ['start', 'start'], `both began before either ended: ${lines.join(', ')}`);
});

test('e2e commands - a restart during a cell\'s build waits for that build (not killed, not run twice), and a build log is rotated like the others', async () => {
  await using mesh = new MeshHarness(`
logs: { max_size: 1KB, keep: 2 }
cells:
  api:
    run: node fixtures/service.mjs
    instances: 2
    source: ["src.txt"]
    build: sh -c 'echo "start" >> builds.log; head -c 4000 /dev/zero | tr "\\0" x; sleep 2; echo "end" >> builds.log'
    health: { tcp: {}, interval: 200ms }
`, { 'src.txt': 'v1' });
  await mesh.ok(['up']);
  writeFileSync(join(mesh.dir, 'src.txt'), 'v2');
  const up = mesh.cell(['up']);
  await waitUntil('the build runs', async () => readFileSync(join(mesh.dir, 'builds.log'), 'utf8').split('\n').filter((l) => l === 'start').length === 2 || undefined);
  const restart = await mesh.cell(['restart', 'api']);
  assert.equal(restart.code, 0, restart.stderr);
  const applied = await up;
  assert.equal(applied.code, 0, applied.stderr);
  assert.equal(readFileSync(join(mesh.dir, 'builds.log'), 'utf8'), 'start\nend\nstart\nend\n', 'v1 built once, v2 built once and to its end');
  const log = join(mesh.home, 'logs', 'api.build.log');
  assert.ok(statSync(log).size <= 4100, `rotated before the build: ${statSync(log).size} bytes`);
  assert.ok(existsSync(`${log}.1`));
});

test('e2e commands - restart and an applied change replace a cell\'s instances one at a time: the gateway always has one to send to', async () => {
  const manifest = (ver: string) => `
cells:
  web:
    run: node fixtures/service.mjs
    instances: 3
    env: { VER: ${ver} }
    health: { http: { path: / }, interval: 200ms }
`;
  await using mesh = new MeshHarness(manifest('v1'));
  await mesh.ok(['up']);
  const gatewayPort = Number(new URL((await mesh.json<Status>(['status'])).daemon.gateway!).port);
  const statuses: number[] = [];
  let running = true;
  const load = (async () => {
    while (running) {
      statuses.push(await httpGet(gatewayPort, '/web/').then((r) => r.status, () => 0));
      await sleep(10);
    }
  })();
  try {
    const before = (await mesh.ps()).filter((p) => p.cell === 'web');
    await mesh.ok(['restart', 'web']);
    mesh.writeManifest(manifest('v2'));
    await mesh.ok(['up']);
    const after = (await mesh.ps()).filter((p) => p.cell === 'web');
    assert.ok(after.every((p) => p.state === 'ready' && !before.some((b) => b.pid === p.pid)), 'every instance was replaced');
  } finally {
    running = false;
    await load;
  }
  assert.ok(statuses.length > 20, `${statuses.length} requests`);
  assert.equal(statuses.filter((s) => s === 503).length, 0, `no moment without a ready instance: ${JSON.stringify(statuses.filter((s) => s !== 200))}`);
  // Each replacement is ready before the next instance is stopped.
  type Ev = { at: string; instance: number; from: string | null; to: string; reason: string | null };
  const events = (await mesh.json<Ev[]>(['events', 'web'])).filter((e) => e.reason === 'restart requested' || e.to === 'ready' || e.to === 'draining');
  const drains = events.filter((e) => e.to === 'draining' && e.reason === 'restart requested');
  assert.equal(drains.length, 3);
  for (let k = 1; k < drains.length; k++) {
    const readyAgain = events.find((e) => e.instance === drains[k - 1].instance && e.to === 'ready' && e.at > drains[k - 1].at);
    assert.ok(readyAgain && readyAgain.at <= drains[k].at, `web.${drains[k - 1].instance} was ready again before web.${drains[k].instance} stopped`);
  }
});

test('e2e commands - the gateway holds requests while a lone instance comes back: kill -9, restart, a restart of the mesh', async () => {
  await using mesh = new MeshHarness(`
cells:
  web:
    run: node fixtures/service.mjs
    health: { http: { path: / }, interval: 200ms }
  flaky:
    run: node fixtures/service.mjs
    env: { CRASH_UNLESS: never-there }
    health: { tcp: {}, interval: 200ms }
    restart: { policy: always, backoff: 100ms, max_retries: 1 }
`);
  // flaky crashes for good: up names it and fails, web is up.
  const up = await mesh.cell(['up', '--timeout', '15s']);
  assert.notEqual(up.code, 0);
  assert.match(up.stderr, /flaky/);
  const gatewayPort = Number(new URL((await mesh.json<Status>(['status'])).daemon.gateway!).port);
  // Four clients, GETs and POSTs with a body, each answer labelled with the phase it came in.
  const outcomes: { phase: string; answer: string }[] = [];
  let phase = 'kills';
  let running = true;
  const client = async (c: number) => {
    for (let i = c; running; i++) {
      const post = i % 2 === 1;
      const during = phase;
      const answer = await new Promise<string>((resolvePost) => {
        const req = request({ host: '127.0.0.1', port: gatewayPort, path: '/web/', method: post ? 'POST' : 'GET', agent: false, timeout: 8000, headers: post ? { 'content-length': 5 } : {} }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d));
          res.on('end', () => resolvePost(res.statusCode === 200 ? '200' : `${post ? 'POST' : 'GET'} ${res.statusCode} ${body}`));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (err) => resolvePost(err.message));
        req.end(post ? 'order' : undefined);
      });
      outcomes.push({ phase: during === phase ? during : 'between', answer });
      await sleep(5);
    }
  };
  const load = Promise.all([0, 1, 2, 3].map(client));
  const webPid = async () => (await mesh.ps()).find((p) => p.cell === 'web' && p.state === 'ready')?.pid;
  try {
    for (let k = 0; k < 3; k++) {
      const pid = (await waitUntil('web ready', webPid))!;
      await sleep(300);
      process.kill(pid, 'SIGKILL');
      await waitUntil('web back under a new pid', async () => ((await webPid()) ?? pid) !== pid);
    }
    await sleep(300);
    phase = 'restarts';
    await mesh.ok(['restart', 'web']);
    await sleep(300);
    // A restart of the whole mesh (flaky fails again: the command says so).
    await mesh.cell(['restart']);
    await waitUntil('web ready after the restart of the mesh', webPid);
    await sleep(300);
  } finally {
    running = false;
    await load;
  }
  assert.ok(outcomes.length > 100, `${outcomes.length} requests`);
  // Every GET was answered by web. A POST on its way to the instance at the moment it is killed
  // may fail (it may have been acted on: it is not sent twice), at most one per kill and client.
  const failed = outcomes.filter((o) => o.answer !== '200');
  assert.deepEqual(failed.filter((o) => !o.answer.startsWith('POST 502')), [], `every GET through the gateway was answered by web (${outcomes.length} requests)`);
  const killFailures = failed.filter((o) => o.phase !== 'restarts');
  assert.ok(killFailures.length <= 12, `at most one POST lost per kill and client: ${JSON.stringify(killFailures)}`);
  for (const f of killFailures) assert.match(f.answer, /ECONNRESET|socket hang up|EPIPE/);
  // A restart is graceful: the gateway stops sending to the instance before it is told to stop,
  // so nothing is cut, POSTs included.
  assert.deepEqual(failed.filter((o) => o.phase === 'restarts'), [], `${outcomes.filter((o) => o.phase === 'restarts').length} requests during the restarts`);
  // A cell with nothing on its way (flaky failed for good) is a 503 at once, not after a wait.
  const started = Date.now();
  const flaky = await httpGet(gatewayPort, '/flaky/');
  assert.equal(flaky.status, 503);
  assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
  // `cell health` says so by its exit code, in JSON too; web alone is healthy.
  for (const args of [['health', 'flaky'], ['health', 'flaky', '--json'], ['health', '--json']]) assert.equal((await mesh.cell(args)).code, 1, args.join(' '));
  assert.equal((await mesh.cell(['health', 'web', '--json'])).code, 0);
});

test('e2e commands - depends_on with condition completed: the app starts after the migration ends, not while it runs', async () => {
  await using mesh = new MeshHarness(`
cells:
  migrate:
    run: sh -c 'echo "$(date +%s%3N) start" >> order.log; sleep 1.5; test ! -f fail && echo "$(date +%s%3N) done" >> order.log'
    restart: { policy: on-failure, backoff: 100ms, max_retries: 1 }
  app:
    run: sh -c 'echo "$(date +%s%3N) app" >> order.log; exec node fixtures/service.mjs'
    depends_on:
      migrate: { condition: completed }
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up', '--no-wait']);
  const waiting = await waitUntil('app waiting for the migration', async () => {
    const app = (await mesh.json<Status>(['status'])).cells.find((c) => c.name === 'app');
    return app?.reason?.includes('migrate') ? app : undefined;
  });
  assert.equal(waiting.reason, 'waiting for migrate (to complete)');
  assert.match(await mesh.ok(['up', '--timeout', '30s']), /mesh up: 2 cells healthy/);
  const lines = readFileSync(join(mesh.dir, 'order.log'), 'utf8').trim().split('\n').map((l) => l.split(' '));
  assert.deepEqual(lines.map((l) => l[1]), ['start', 'done', 'app'], 'the app started once the migration was done');
  assert.equal(await mesh.ok(['graph']), 'migrate\napp -> migrate (completed)\n');
  assert.ok(Number(lines[2][0]) >= Number(lines[1][0]));
  assert.match(await mesh.ok(['status']), /migrate\s+cell\s+✓ completed/);
  // A restart of the whole mesh runs the job again, and the app again after it.
  assert.equal(await mesh.ok(['restart']), 'restarted: migrate, app (healthy: app; completed: migrate)\n');
  const again = readFileSync(join(mesh.dir, 'order.log'), 'utf8').trim().split('\n').map((l) => l.split(' ')[1]);
  assert.deepEqual(again, ['start', 'done', 'app', 'start', 'done', 'app']);
  assert.match(await mesh.ok(['status']), /migrate\s+cell\s+✓ completed/);
  // ps --json keeps its documented shape (state stopped); the table says the run completed.
  assert.match(await mesh.ok(['ps']), /migrate\.0\s+-\s+\S+\s+stopped \(completed\)/);

  // A re-run that fails: `cell restart migrate` waits for the run to complete, not for it to be
  // running, and says it failed; the app it already let start keeps running (not paused).
  const appPid = (await mesh.ps()).find((p) => p.cell === 'app')!.pid;
  writeFileSync(join(mesh.dir, 'fail'), '');
  const rerun = await mesh.cell(['restart', 'migrate']);
  assert.equal(rerun.code, 1, rerun.stdout);
  assert.match(rerun.stderr, /cells failed: migrate/);
  const after = await mesh.ps();
  assert.equal(after.find((p) => p.cell === 'migrate')!.state, 'failed');
  assert.deepEqual([after.find((p) => p.cell === 'app')!.state, after.find((p) => p.cell === 'app')!.pid], ['ready', appPid]);

  // A new run of the mesh: while the job runs again, the app says what it waits for, not why it
  // stopped last (`cell down`).
  await mesh.ok(['down']);
  rmSync(join(mesh.dir, 'fail'));
  await mesh.ok(['up', '--no-wait']);
  const waitingAgain = await waitUntil('app waiting for the migration again', async () => {
    const app = (await mesh.json<Status>(['status'])).cells.find((c) => c.name === 'app');
    return app?.reason?.includes('migrate') ? app : undefined;
  }, 5000);
  assert.deepEqual([waitingAgain.state, waitingAgain.reason], ['stopped', 'waiting for migrate (to complete)']);
  await mesh.ok(['up', '--timeout', '30s']);
});

test('e2e commands - a daemon killed in the middle of a rolling replacement: the next up finishes it one instance at a time, the cell never without a ready instance', async () => {
  const manifest = (ver: string) => `
cells:
  web:
    run: node fixtures/service.mjs
    instances: 2
    env: { VER: ${ver}, STOP_DELAY_MS: "300" }
    health: { http: { path: / }, interval: 200ms }
`;
  await using mesh = new MeshHarness(manifest('v1'));
  await mesh.ok(['up']);
  const before = (await mesh.ps()).filter((p) => p.cell === 'web');
  mesh.writeManifest(manifest('v2'));
  const interrupted = mesh.cell(['up']);
  await waitUntil('web.0 draining', async () => (await mesh.ps()).some((p) => p.cell === 'web' && p.instance === 0 && p.state === 'draining'));
  process.kill((await mesh.json<Status>(['status'])).daemon.pid, 'SIGKILL');
  await interrupted;
  // web.0 finishes its stop while no daemon runs: the next one finds it gone, web.1 still on v1.
  await sleep(800);
  const killedAt = new Date().toISOString();
  await mesh.ok(['up']);
  const after = (await mesh.ps()).filter((p) => p.cell === 'web');
  assert.ok(after.every((p) => p.state === 'ready' && !before.some((b) => b.pid === p.pid)), `both replaced: ${JSON.stringify(after)}`);
  assert.equal(new Set(after.map((p) => p.version)).size, 1, 'on one version');
  // web.1, left on v1, is stopped only once web.0 is ready on v2: never both down.
  type Ev = { at: string; instance: number; to: string };
  const events = (await mesh.json<Ev[]>(['events', 'web'])).filter((e) => e.at > killedAt);
  const web0Ready = events.find((e) => e.instance === 0 && e.to === 'ready');
  const web1Stop = events.find((e) => e.instance === 1 && e.to === 'draining');
  assert.ok(web0Ready && web1Stop, JSON.stringify(events));
  assert.ok(web0Ready.at <= web1Stop.at, `web.0 ready (${web0Ready.at}) before web.1 stops (${web1Stop.at})`);
});

test('e2e commands - up while a down runs waits for it to end, then starts the mesh afresh', async () => {
  await using mesh = new MeshHarness(`
cells:
  a:
    run: node fixtures/service.mjs
    env: { STOP_DELAY_MS: "4000" }
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const before = (await mesh.json<Status>(['status'])).daemon.pid;
  const down = mesh.cell(['down']);
  await waitUntil('the daemon shutting down', async () => (await mesh.json<Status & { daemon: { shutting_down: boolean } }>(['status'])).daemon.shutting_down);
  // A change the down would undo at once is refused, saying why.
  const restart = await mesh.cell(['restart', 'a']);
  assert.notEqual(restart.code, 0);
  assert.match(restart.stderr, /the cell daemon is shutting down \(a `cell down` is under way\)/);
  const up = await mesh.cell(['up']);
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stderr, /waiting for the daemon to finish shutting down/);
  assert.equal((await down).code, 0);
  const after = await mesh.json<Status>(['status']);
  assert.notEqual(after.daemon.pid, before, 'a new daemon');
  assert.equal((await mesh.ps()).find((p) => p.cell === 'a')?.state, 'ready');
});

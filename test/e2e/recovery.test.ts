import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, unlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/index.js';
import { DB_API_MESH, MeshHarness, httpGet, waitUntil, sleep, processesOfHome, type Ps } from './harness.js';

interface EventView {
  at: string;
  cell: string;
  instance: number;
  from: string | null;
  to: string;
  reason: string | null;
}

test('e2e recovery - kill -9 of an instance brings it back healthy with its restart counted', async () => {
  await using mesh = new MeshHarness(`
cells:
  api:
    run: node fixtures/service.mjs
    instances: 2
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const before = (await mesh.ps()).find((p) => p.cell === 'api' && p.instance === 1)!;
  process.kill(before.pid!, 'SIGKILL');
  const after = await waitUntil('api.1 ready again with a new pid', async () => {
    const p = (await mesh.ps()).find((x) => x.cell === 'api' && x.instance === 1)!;
    return p.state === 'ready' && p.pid !== before.pid ? p : undefined;
  });
  assert.equal(after.restarts, 1);
  assert.equal(after.port, before.port, 'an instance keeps its port across restarts');
  assert.equal((await httpGet(after.port!)).status, 200);
  const other = (await mesh.ps()).find((p) => p.cell === 'api' && p.instance === 0)!;
  assert.equal(other.restarts, 0);
});

test('e2e recovery - after a crash a warm node waits, and the next crash\'s restart becomes the instance from it: identity, log, command line; down leaves nothing', async () => {
  await using mesh = new MeshHarness(`
cells:
  api:
    run: node fixtures/service.mjs
    health: { http: { path: / }, interval: 200ms }
`);
  await mesh.ok(['up']);
  const readyAgain = async (oldPid: number) =>
    waitUntil(`api ready again after the kill of ${oldPid}`, async () => {
      const p = (await mesh.ps()).find((x) => x.cell === 'api')!;
      return p.state === 'ready' && p.pid !== oldPid ? p : undefined;
    });
  const first = (await mesh.ps()).find((p) => p.cell === 'api')!;
  process.kill(first.pid!, 'SIGKILL');
  const second = await readyAgain(first.pid!);
  const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  // The daemon says when the spare is ready to take a start (it boots just after the restart).
  const spare = await waitUntil('a warm spare ready after the crash', async () => {
    const ready = readFileSync(join(mesh.home, 'logs/daemon.log'), 'utf8').split('\n').find((l) => l.includes('"warm spare ready"'));
    const pid = ready ? (JSON.parse(ready) as { spare: number }).spare : undefined;
    return pid !== undefined && environOf(pid).includes('CELL_WARM_SPARE=1') ? pid : undefined;
  });

  process.kill(second.pid!, 'SIGKILL');
  const third = await readyAgain(second.pid!);
  assert.equal(third.pid, spare, 'the restart took the waiting spare');
  assert.equal(third.restarts, 2);
  const answer = await httpGet(third.port!);
  assert.equal(answer.status, 200);
  assert.deepEqual(JSON.parse(answer.body), { cell: 'api', instance: 0, pid: spare });
  assert.equal(readFileSync(`/proc/${spare}/cmdline`, 'utf8').replace(/\0+$/, ''), 'node fixtures/service.mjs');
  const stat = readFileSync(`/proc/${spare}/stat`, 'utf8');
  assert.equal(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2], String(spare), 'it leads its own process group');
  const logs = await mesh.ok(['logs', 'api', '-n', '50']);
  assert.equal(logs.match(new RegExp(`api\\.0 listening on ${third.port}`, 'g'))?.length, 3, logs);

  await mesh.ok(['down']);
  assert.deepEqual(processesOfHome(mesh.home), [], 'no instance and no spare left');
});

test('e2e recovery - a check answered by another program on the instance\'s port does not make it ready; the restart moves to a free port and goes ready there', async () => {
  await using mesh = new MeshHarness(`
cells:
  late:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "2500" }
    health: { http: { path: / }, interval: 200ms, grace: 20s }
    restart: { backoff: 200ms }
`);
  await mesh.ok(['up', '--no-wait']);
  const first = await waitUntil('late launching with a pid', async () => {
    const p = (await mesh.ps()).find((x) => x.cell === 'late');
    return p?.pid && p.port ? p : undefined;
  });
  // Another program takes the port before the instance binds it, and answers its check with a 200.
  const impostor = createServer((_req, res) => res.end('impostor\n'));
  await new Promise<void>((resolve, reject) => {
    impostor.once('error', reject);
    impostor.listen(first.port!, '127.0.0.1', resolve);
  });
  try {
    assert.equal((await httpGet(first.port!)).body, 'impostor\n');
    type Status = { cells: { name: string; instance_list: (Ps & { health_detail: string | null })[] }[] };
    const seen = await waitUntil('late says who holds its port', async () => {
      const status = await mesh.json<Status>(['status', '--verbose']);
      const p = status.cells.find((c) => c.name === 'late')!.instance_list[0];
      return p.health_detail?.startsWith(`port ${first.port} answers`) ? p : undefined;
    });
    assert.equal(seen.state, 'launching', 'not ready on another program\'s answer');
    assert.equal(seen.pid, first.pid);
    assert.match(seen.health_detail!, new RegExp(`^port ${first.port} answers, but pid ${process.pid} \\(.*node.*\\) holds its listener, not a process of this instance$`));

    // Its own listen then fails (EADDRINUSE) and it exits; the restart finds the port taken and
    // takes another, where its own listener makes it ready.
    const moved = await waitUntil('late ready on another port', async () => {
      const p = (await mesh.ps()).find((x) => x.cell === 'late')!;
      return p.state === 'ready' ? p : undefined;
    }, 30_000);
    assert.notEqual(moved.port, first.port);
    assert.notEqual(moved.pid, first.pid);
    assert.equal((await httpGet(moved.port!)).body, 'ok\n');
    assert.equal((await httpGet(first.port!)).body, 'impostor\n', 'the other program keeps its port');
    const log = readFileSync(join(mesh.home, 'logs/daemon.log'), 'utf8');
    assert.match(log, /"check answered by another program"/);
  } finally {
    await new Promise((resolve) => impostor.close(resolve));
  }
});

test('e2e recovery - a crash loop backs off, fails, pauses its dependents, and all recover once fixed', async () => {
  await using mesh = new MeshHarness(`
cells:
  db:
    run: node fixtures/service.mjs
    env: { CRASH_UNLESS: ./db-ok }
    health: { tcp: {}, interval: 200ms }
    restart: { policy: always, backoff: 300ms, max_backoff: 5s, max_retries: 4, reset_after: 10s }
  api:
    run: node fixtures/service.mjs
    depends_on: [db]
    health: { http: { path: / }, interval: 200ms }
  web:
    run: node fixtures/service.mjs
    depends_on: [api]
    health: { http: { path: / }, interval: 200ms }
`);
  const okFile = join(mesh.dir, 'db-ok');
  writeFileSync(okFile, '');
  await mesh.ok(['up']);
  const api = (await mesh.ps()).find((p) => p.cell === 'api')!;

  // Break db and kill it: every restart now crashes at once.
  unlinkSync(okFile);
  const t0 = Date.now();
  process.kill((await mesh.ps()).find((p) => p.cell === 'db')!.pid!, 'SIGKILL');
  const failed = await waitUntil('db failed', async () => {
    const s = await mesh.json<{ cells: { name: string; state: string; reason: string | null }[] }>(['status']);
    const db = s.cells.find((c) => c.name === 'db')!;
    return db.state === 'failed' ? s : undefined;
  }, 30_000, 100);
  const db = failed.cells.find((c) => c.name === 'db')!;
  assert.match(db.reason!, /crash loop: 5 failures in a row, last: exit code 3/);
  for (const name of ['api', 'web']) assert.equal(failed.cells.find((c) => c.name === name)!.state, 'paused', `${name} paused while db is down`);
  // A paused dependent is stopped (SIGSTOP), not killed: same pid, state T.
  const stat = readFileSync(`/proc/${api.pid}/stat`, 'utf8');
  assert.equal(stat.slice(stat.lastIndexOf(')') + 2)[0], 'T');

  // Backoff: restart at once, then 300ms, 600ms, 1200ms between the crash and the next launch.
  const events = (await mesh.json<EventView[]>(['events', 'db'])).filter((e) => Date.parse(e.at) >= t0);
  const crashes = events.filter((e) => e.to === 'backoff').map((e) => Date.parse(e.at));
  const relaunches = events.filter((e) => e.from === 'backoff' && e.to === 'launching').map((e) => Date.parse(e.at));
  const waits = relaunches.map((t, i) => t - crashes[i]);
  assert.equal(waits.length, 4, `four restarts before failing: ${JSON.stringify(events)}`);
  const expected = [0, 300, 600, 1200];
  waits.forEach((w, i) => assert.ok(w >= expected[i] - 5 && w < expected[i] + 400, `wait ${i}: ${w}ms, expected ~${expected[i]}ms (${waits})`));
  const logs = readFileSync(join(mesh.home, 'logs/daemon.log'), 'utf8');
  assert.match(logs, /ALERT: instance failed \(crash loop\)/);

  // Fix it: `cell restart db` (manual intervention) brings db back, then its dependents resume.
  writeFileSync(okFile, '');
  await mesh.ok(['restart', 'db']);
  await waitUntil('all ready', async () => (await mesh.ps()).filter((p) => p.cell !== 'gateway').every((p) => p.state === 'ready'), 20_000);
  const now = await mesh.ps();
  assert.equal(now.find((p) => p.cell === 'api')!.pid, api.pid, 'api resumed, not restarted');
  assert.equal((await httpGet(now.find((p) => p.cell === 'web')!.port!)).status, 200);
});

test('e2e recovery - kill -9 of the daemon under load: no request fails, up readopts the same pids', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  await mesh.ok(['up']);
  const before = await mesh.ps();
  const daemonPid = (await mesh.json<{ daemon: { pid: number; gateway: string } }>(['status'])).daemon.pid;
  const gatewayPort = Number(new URL((await mesh.json<{ daemon: { gateway: string } }>(['status'])).daemon.gateway).port);
  const targets = before.filter((p) => p.cell !== 'gateway').map((p) => p.port!);

  // Load: direct to every instance and through the gateway, until told to stop (bounded).
  let running = true;
  let sent = 0;
  const failures: string[] = [];
  const load = (async () => {
    const deadline = Date.now() + 30_000;
    while (running && Date.now() < deadline) {
      await Promise.all([...targets.map((port) => httpGet(port)), httpGet(gatewayPort, '/api/')].map((p) =>
        p.then((r) => {
          sent++;
          if (r.status !== 200) failures.push(`status ${r.status}`);
        }, (err) => failures.push(String(err))),
      ));
      await sleep(5);
    }
  })();
  await sleep(300);
  process.kill(daemonPid, 'SIGKILL');
  await sleep(500);
  const up = await mesh.cell(['up']);
  assert.equal(up.code, 0, up.stderr);
  await sleep(500);
  running = false;
  await load;
  assert.ok(sent > 100, `load ran: ${sent} requests`);
  assert.deepEqual(failures, [], 'no request failed');

  const after = await mesh.ps();
  const pids = (list: typeof before) => list.map((p) => `${p.cell}.${p.instance}:${p.pid}`).sort();
  assert.deepEqual(pids(after), pids(before), 'same pids readopted, gateway included');
  assert.ok(after.every((p) => p.state === 'ready' && p.restarts === 0));
  const newDaemon = (await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid;
  assert.notEqual(newDaemon, daemonPid);
  // No duplicates: exactly one process per instance (plus nothing else) carries this home.
  const live = processesOfHome(mesh.home).filter((p) => p !== newDaemon).sort();
  assert.deepEqual(live, before.map((p) => p.pid!).sort());
});

test('e2e recovery - down after kill -9 of the daemon stops the cells it left running', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  await mesh.ok(['up']);
  const daemonPid = (await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid;
  const before = await mesh.ps();
  process.kill(daemonPid, 'SIGKILL');
  await waitUntil('the daemon is gone', async () => !processesOfHome(mesh.home).includes(daemonPid) || undefined);
  assert.ok(before.every((p) => processesOfHome(mesh.home).includes(p.pid!)), 'its cells run on');
  const down = await mesh.cell(['down', '--json']);
  assert.equal(down.code, 0, down.stderr);
  const result = JSON.parse(down.stdout) as { stopped: string[]; sequence: { cell: string; to: string }[] };
  assert.deepEqual([...result.stopped].sort(), [...new Set(before.filter((p) => p.cell !== 'gateway').map((p) => p.cell))].sort());
  assert.ok(result.sequence.some((e) => e.cell === 'db' && e.to === 'stopped'));
  assert.deepEqual(processesOfHome(mesh.home), [], 'no process of the mesh is left');
  const again = await mesh.cell(['down']);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /mesh already down/);
});

test('e2e recovery - down after kill -9 of the daemon and the loss of control-plane.json still finds and stops the cells', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  await mesh.ok(['up']);
  const daemonPid = (await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid;
  process.kill(daemonPid, 'SIGKILL');
  await waitUntil('the daemon is gone', async () => !processesOfHome(mesh.home).includes(daemonPid) || undefined);
  rmSync(join(mesh.home, 'control-plane.json'));
  const down = await mesh.cell(['down']);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /^mesh down: stopped 2 cells and the daemon$/m);
  assert.deepEqual(processesOfHome(mesh.home), [], 'no process of the mesh is left');
});

test('e2e recovery - up after a daemon death does not kill another program\'s process group that took a dead instance\'s pid', async () => {
  await using mesh = new MeshHarness(`
cells:
  worker:
    run: sleep 600
`);
  await mesh.ok(['up']);
  const daemonPid = (await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid;
  const worker = (await mesh.ps()).find((p) => p.cell === 'worker')!;
  process.kill(daemonPid, 'SIGKILL');
  process.kill(worker.pid!, 'SIGKILL');
  await waitUntil('daemon and worker gone', async () => (processesOfHome(mesh.home).some((p) => p === daemonPid || p === worker.pid) ? undefined : true));
  // Another program's process group, not of this mesh. The pid a dead instance had may be reused
  // by such a group while the daemon is away: written into the worker's record, that is the case.
  const foreign = spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH } });
  try {
    const store = openSqliteStore(join(mesh.home, 'state.db'));
    try {
      const rec = store.get<Record<string, unknown>>('instances/worker/0', Date.now())!;
      assert.equal(rec.value.pid, worker.pid, 'the record names the dead worker');
      store.put('instances/worker/0', { ...rec.value, pid: foreign.pid }, { now: Date.now() });
    } finally {
      store.close();
    }
    await mesh.ok(['up']);
    const restarted = (await mesh.ps()).find((p) => p.cell === 'worker')!;
    assert.equal(restarted.state, 'ready');
    assert.notEqual(restarted.pid, foreign.pid);
    assert.equal(foreign.exitCode, null);
    assert.equal(foreign.signalCode, null);
    process.kill(foreign.pid!, 0); // still there: throws ESRCH if readoption killed it
  } finally {
    foreign.kill('SIGKILL');
  }
});

test('e2e recovery - what an instance leaves outside its process group (a setsid child) is killed once it has ended, by restart or crash; its next process\'s is spared', async () => {
  await using mesh = new MeshHarness(`
cells:
  det:
    run: node fixtures/escapee.mjs
    health: { tcp: {}, interval: 200ms }
`);
  await mesh.ok(['up']);
  const escapees = async (): Promise<number[]> => {
    const text = await mesh.ok(['logs', 'det', '-n', '100']);
    return [...text.matchAll(/escapee (\d+)/g)].map((m) => Number(m[1]));
  };
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const [first] = await escapees();
  assert.ok(alive(first), 'the escapee runs beside its instance');
  await mesh.ok(['restart', 'det']);
  const second = await waitUntil('the new instance\'s escapee', async () => (await escapees()).find((p) => p !== first));
  await waitUntil('the old escapee killed', async () => !alive(first), 5000);
  const pid = (await mesh.ps()).find((p) => p.cell === 'det')!.pid!;
  process.kill(pid, 'SIGKILL');
  const third = await waitUntil('the escapee of the instance restarted after its crash', async () => (await escapees()).find((p) => p !== first && p !== second));
  await waitUntil('the crashed instance\'s escapee killed', async () => !alive(second), 5000);
  await sleep(1500);
  assert.ok(alive(third), 'the running instance\'s escapee is spared');
  await mesh.ok(['down']);
  assert.deepEqual(processesOfHome(mesh.home), [], 'nothing left after down');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MeshHarness, ROOT, sleep, waitUntil, processesOfHome } from './harness.js';
import { connect, ConnectionLostError } from '../../src/sdk/index.js';
import { Greeter } from '../../examples/greeter/greeter-cell.js';

interface Nucleus {
  cells: { cell: string; healthy: number; instances: number; lazy: boolean; activated: boolean; instance_list: { instance: number; registered: boolean; endpoint: string | null; sdk: boolean }[] }[];
}
interface Discover {
  resolved_by: string;
  endpoints: { instance: number; socket: string | null }[];
  steps: { step: string; found: number }[];
}

const GREETER_DIR = join(ROOT, 'examples/greeter');

function runClient(home: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'client.ts', ...args], { cwd: GREETER_DIR, env: { ...process.env, CELL_HOME: home, CELL_SECRET: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    // 'close': after the output has been read to its end, which 'exit' may come before.
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

test('e2e sdk - the Deploy Your Cell walkthrough: 3 greeters, a client by name, calls spread', async () => {
  await using mesh = new MeshHarness(null, {}, { dir: GREETER_DIR });
  const up = await mesh.cell(['up', '--timeout', '90s'], { timeoutMs: 120_000 });
  assert.equal(up.code, 0, up.stderr);
  const ps = (await mesh.ps()).filter((p) => p.cell === 'greeter');
  assert.equal(ps.length, 3);
  assert.ok(ps.every((p) => p.state === 'ready' && p.health === 'passing'));

  const run = await runClient(mesh.home, ['World', '30']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^Hello, World!$/m);
  const spread = /by instance: (.*)$/m.exec(run.stdout)![1];
  assert.deepEqual(spread.split(' ').map((s) => s.split('=')[0]), ['greeter.0', 'greeter.1', 'greeter.2'], spread);
  for (const part of spread.split(' ')) assert.equal(Number(part.split('=')[1]), 10, `round-robin: ${spread}`);

  // The registry (Nucleus) knows every instance, its socket, and that it speaks the protocol.
  const nucleus = await mesh.json<Nucleus>(['nucleus']);
  const greeter = nucleus.cells.find((c) => c.cell === 'greeter')!;
  assert.equal(greeter.healthy, 3);
  assert.ok(greeter.instance_list.every((i) => i.registered && i.sdk && i.endpoint?.endsWith('.sock')));
  const text = await mesh.ok(['nucleus']);
  assert.match(text, /greeter\s+3\/3 healthy\s+3 registered/);

  const discover = await mesh.json<Discover>(['discover', 'greeter']);
  assert.equal(discover.resolved_by, 'control-plane');
  assert.equal(discover.endpoints.length, 3);
  assert.match(await mesh.ok(['discover', 'greeter']), /1\. control-plane\s+✓ .*\ngreeter: resolved by control-plane/);

  // Local socket security: the run dir is 0700, and a client without the mesh secret is refused.
  assert.equal(statSync(join(mesh.home, 'run')).mode & 0o777, 0o700);
  assert.equal(statSync(join(mesh.home, 'keys/mesh.secret')).mode & 0o777, 0o600);
  const sockets = discover.endpoints.map((e) => e.socket!);
  await assert.rejects(connect(Greeter, { sockets, secret: 'not-the-mesh-secret', timeoutMs: 3000 }), (err: Error) => err.name === 'HandshakeError');
});

test('e2e sdk - killing an instance mid-load: calls keep succeeding; down drains with zero failed calls', async () => {
  await using mesh = new MeshHarness(null, {}, { dir: GREETER_DIR });
  await mesh.ok(['up', '--timeout', '90s'], { timeoutMs: 120_000 });
  process.env.CELL_HOME = mesh.home;
  delete process.env.CELL_SECRET;
  const client = await connect(Greeter, { timeoutMs: 10_000 });
  const outcomes = { ok: 0, lost: 0, other: [] as string[] };
  let running = true;
  const worker = async () => {
    const deadline = Date.now() + 60_000;
    while (running && Date.now() < deadline) {
      try {
        await client.greet({ name: 'load' });
        outcomes.ok++;
      } catch (err) {
        if (err instanceof ConnectionLostError) outcomes.lost++;
        else outcomes.other.push(`${(err as Error).name}: ${(err as Error).message}`);
      }
    }
  };
  const workers = Array.from({ length: 16 }, worker);
  await sleep(500);
  const victim = (await mesh.ps()).find((p) => p.cell === 'greeter' && p.instance === 1)!;
  process.kill(victim.pid!, 'SIGKILL');
  const okAtKill = outcomes.ok;
  await sleep(1000);
  assert.ok(outcomes.ok > okAtKill + 100, `calls kept succeeding after the kill: ${outcomes.ok - okAtKill}`);
  await waitUntil('greeter.1 back', async () => (await mesh.ps()).find((p) => p.cell === 'greeter' && p.instance === 1 && p.state === 'ready' && p.pid !== victim.pid), 60_000);
  running = false;
  await Promise.all(workers);
  assert.deepEqual(outcomes.other, [], 'only in-flight calls on the killed instance may fail, with ConnectionLostError');
  assert.ok(outcomes.lost <= 16, `at most the calls in flight on it failed: ${outcomes.lost}`);

  // Graceful: `cell down` sends the shutdown op first; calls in flight during the drain succeed.
  const drained = { ok: 0, failed: [] as string[] };
  let draining = true;
  const drainWorkers = Array.from({ length: 8 }, async () => {
    while (draining) {
      try {
        await client.greet({ name: 'drain' });
        drained.ok++;
      } catch (err) {
        drained.failed.push((err as Error).name);
        break;
      }
    }
  });
  await sleep(200);
  const before = drained.ok;
  const down = await mesh.json<{ sequence: unknown[] }>(['down']);
  assert.ok(down.sequence.length > 0);
  draining = false;
  await Promise.all(drainWorkers);
  assert.ok(before > 0);
  // After the last instance is gone, new calls have nowhere to go: that is not a dropped call.
  // What must hold: no call that a server accepted failed.
  assert.ok(drained.failed.every((n) => n !== 'ConnectionLostError'), `calls lost during the drain: ${drained.failed}`);
  await client.close();
  assert.deepEqual(processesOfHome(mesh.home), []);
  const log = (await import('node:fs')).readFileSync(join(mesh.home, 'logs/daemon.log'), 'utf8');
  assert.doesNotMatch(log, /shutdown op failed/);
  assert.doesNotMatch(log, /sending SIGKILL/);
});

test('e2e sdk - a lazy cell starts on its first call, which waits for it', async () => {
  await using mesh = new MeshHarness(null, {}, { dir: GREETER_DIR });
  const manifest = mesh.writeManifest(
    `
cells:
  greeter:
    run: node --import tsx greeter.ts
    cwd: ${GREETER_DIR}
    lazy: true
    instances: 2
    health: { ping: {}, interval: 1s }
`,
    join(mesh.home, '..', 'lazy.yaml'),
  );
  const up = await mesh.cell(['-f', manifest, 'up']);
  assert.equal(up.code, 0, up.stderr);
  assert.deepEqual((await mesh.ps()).filter((p) => p.cell === 'greeter'), [], 'not started by up');
  const status = await mesh.json<{ cells: { name: string; state: string; reason: string }[] }>(['status']);
  assert.match(status.cells.find((c) => c.name === 'greeter')!.reason, /lazy/);
  const noSpawn = await mesh.cell(['discover', 'greeter', '--no-spawn', '--json']);
  assert.equal(noSpawn.code, 0);
  assert.equal((JSON.parse(noSpawn.stdout) as Discover).resolved_by, 'unresolved');

  process.env.CELL_HOME = mesh.home;
  delete process.env.CELL_SECRET;
  const t0 = Date.now();
  const client = await connect(Greeter, { timeoutMs: 60_000 });
  const reply = await client.greet({ name: 'lazy' });
  assert.equal(reply.greeting, 'Hello, lazy!');
  assert.ok(Date.now() - t0 < 60_000);
  await client.close();
  const ps = (await mesh.ps()).filter((p) => p.cell === 'greeter');
  assert.equal(ps.length, 2);
  const nucleus = await mesh.json<Nucleus>(['nucleus']);
  assert.equal(nucleus.cells.find((c) => c.cell === 'greeter')!.activated, true);
  assert.ok(existsSync(join(mesh.home, 'run')));
});

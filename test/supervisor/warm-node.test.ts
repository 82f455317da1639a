import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChildProcessDriver } from '../../src/supervisor/index.js';
import { warmPlan } from '../../src/supervisor/warm-node.js';
import { instanceProcessesOfHome, WARM_STARTED } from '../../src/api/index.js';
import type { SpawnRequest } from '../../src/supervisor/index.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function answer(port: number): Promise<string> {
  for (let i = 0; ; i++) {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`)).text();
    } catch (err) {
      if (i === 100) throw err;
      await sleep(20);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'cell-warm-'));
  copyFileSync(join(FIXTURES, 'warm-view.cjs'), join(dir, 'view.cjs'));
  const home = join(dir, 'home');
  const request = (command: string, extraEnv: Record<string, string> = {}): SpawnRequest => ({
    cell: 'x',
    instance: 0,
    command,
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/', PORT: '1234', CELL_NAME: 'x', CELL_INSTANCE: '0', CELL_HOME: home, ...extraEnv },
    logFile: join(dir, 'x.log'),
    afterFailure: true,
  });
  // The driver's children are unref'd (a daemon must be able to exit while cells run): the test
  // keeps its own event loop alive while it waits on them.
  const keepAlive = setInterval(() => {}, 1000);
  return {
    dir,
    home,
    request,
    [Symbol.dispose]: () => {
      clearInterval(keepAlive);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('warmPlan - only a plain script of the daemon\'s own node, with the boot environment picked out', () => {
  const req = { cwd: '/', env: { PATH: process.env.PATH ?? '', HOME: '/home/x', NODE_PATH: '/lib/node', LANG: 'C', PORT: '1', CELL_NAME: 'a', CELL_HOME: '/h' } };
  const plan = warmPlan(['node', 'app.js', '--port', '1'], req);
  assert.deepEqual(plan && { script: plan.script, args: plan.args, bootEnv: plan.bootEnv }, {
    script: 'app.js',
    args: ['--port', '1'],
    bootEnv: { HOME: '/home/x', LANG: 'C', NODE_PATH: '/lib/node', CELL_HOME: '/h' },
  });
  assert.ok(warmPlan([process.execPath, 'app.js'], req), 'the binary by its path');
  assert.equal(warmPlan(['node', '--inspect', 'app.js'], req), null, 'node flags');
  assert.equal(warmPlan(['node', 'inspect', 'app.js'], req), null, 'the debugger subcommand');
  assert.equal(warmPlan(['node', 'app.js'], { ...req, env: { ...req.env, NODE_OPTIONS: '--require ./tracer.js' } }), null, 'preloads run at boot');
  assert.notEqual(warmPlan(['node', 'a.js'], req)!.key, warmPlan([process.execPath, 'a.js'], req)!.key, 'another argv0');
  assert.equal(warmPlan(['node'], req), null, 'no script');
  assert.equal(warmPlan(['python3', 'app.py'], req), null, 'not node');
  assert.equal(warmPlan(['node', 'app.js'], { ...req, env: { ...req.env, PATH: '/nonexistent' } }), null, 'no node on the PATH');
  assert.notEqual(warmPlan(['node', 'a.js'], req)!.key, warmPlan(['node', 'a.js'], { ...req, env: { ...req.env, TZ: 'UTC' } })!.key, 'another boot environment');
  assert.equal(warmPlan(['node', 'a.js'], req)!.key, warmPlan(['node', 'b.js'], { ...req, env: { ...req.env, PORT: '2', CELL_NAME: 'b' } })!.key, 'same boot environment');
});

test('ChildProcessDriver - a failure restart from a warm spare is what a cold start is, as the program sees it', async () => {
  using s = setup();
  const driver = new ChildProcessDriver({ warmSpares: { keepMs: 10_000, bootDelayMs: 20 } });
  try {
    // Both starts name node by its path: argv0 is the program's too.
    const command = `${process.execPath} view.cjs one two`;
    const cold = await driver.spawn(s.request(command));
    assert.equal(cold.warm, undefined);
    assert.deepEqual(await cold.exited, { code: 7, signal: null });
    const spare = await until('a ready spare', () => driver.warmSparePid);

    const warm = await driver.spawn(s.request(command));
    assert.equal(warm.warm, true);
    assert.equal(warm.pid, spare);
    assert.deepEqual(await warm.exited, { code: 7, signal: null });

    const [coldView, coldErr, warmView, warmErr] = readFileSync(join(s.dir, 'x.log'), 'utf8').trim().split('\n');
    assert.equal(coldErr, 'warm-view: on stderr');
    assert.equal(warmErr, 'warm-view: on stderr', 'stderr goes to the log too');
    assert.deepEqual(JSON.parse(warmView), JSON.parse(coldView));
    assert.equal(JSON.parse(warmView).cmdline, command);
  } finally {
    driver.close();
  }
});

test('ChildProcessDriver - an ES module starts warm and serves; a spare of another boot environment is not used', async () => {
  using s = setup();
  writeFileSync(
    join(s.dir, 'serve.mjs'),
    "import { createServer } from 'node:http';\ncreateServer((q, r) => r.end(String(process.pid))).listen(Number(process.env.PORT), '127.0.0.1');\n",
  );
  const driver = new ChildProcessDriver({ warmSpares: { keepMs: 10_000, bootDelayMs: 20 } });
  const started: number[] = [];
  try {
    await (await driver.spawn(s.request('node view.cjs'))).exited;
    await until('a ready spare', () => driver.warmSparePid);
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const served = await driver.spawn(s.request('node serve.mjs', { PORT: String(port) }));
    started.push(served.pid);
    assert.equal(served.warm, true);
    const body = await answer(port);
    assert.equal(body, String(served.pid));

    const next = await until('the next ready spare', () => driver.warmSparePid !== served.pid && driver.warmSparePid);
    const other = await driver.spawn(s.request('node view.cjs', { NODE_PATH: '/nonexistent' }));
    assert.equal(other.warm, undefined, 'NODE_PATH is read at boot: the spare cannot be this start');
    await other.exited;
    await until('the old spare let go', () => !alive(next));
  } finally {
    driver.close();
    for (const pid of started) process.kill(-pid, 'SIGKILL');
  }
});

test('ChildProcessDriver - a spare that died, or that sat unused past keepMs, is not used; the start goes cold', async () => {
  using s = setup();
  const driver = new ChildProcessDriver({ warmSpares: { keepMs: 600, bootDelayMs: 20 } });
  try {
    await (await driver.spawn(s.request('node view.cjs'))).exited;
    const spare = await until('a ready spare', () => driver.warmSparePid);
    process.kill(spare, 'SIGKILL');
    await until('the spare seen gone', () => driver.warmSparePid === null);
    const after = await driver.spawn(s.request('node view.cjs'));
    assert.equal(after.warm, undefined);
    assert.deepEqual(await after.exited, { code: 7, signal: null });

    const next = await until('the next ready spare', () => driver.warmSparePid);
    await until('the spare let go after keepMs', () => !alive(next), 3000);
    assert.equal(driver.warmSparePid, null);
  } finally {
    driver.close();
  }
});

test('ChildProcessDriver - a spare ends with the daemon that booted it; a program it became is found as the home\'s', async () => {
  using s = setup();
  // A daemon stand-in: boots a spare, prints its pid, and dies without closing anything.
  const script = `
    import { ChildProcessDriver } from ${JSON.stringify(join(import.meta.dirname, '../../src/supervisor/index.ts'))};
    const driver = new ChildProcessDriver({ warmSpares: { keepMs: 60000, bootDelayMs: 0 } });
    setInterval(() => {}, 1000);
    const req = ${JSON.stringify(s.request('node view.cjs'))};
    await (await driver.spawn(req)).exited;
    setInterval(() => { if (driver.warmSparePid) { console.log(driver.warmSparePid); process.exit(0); } }, 10);
  `;
  const daemon = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  daemon.stdout.on('data', (d) => (out += d));
  await new Promise((r) => daemon.once('exit', r));
  const orphan = Number(out.trim());
  assert.ok(orphan > 1, `the stand-in printed a spare pid: ${out}`);
  await until('the orphaned spare gone', () => !alive(orphan), 3000);

  const driver = new ChildProcessDriver({ warmSpares: { keepMs: 10_000, bootDelayMs: 20 } });
  const sleeper = join(s.dir, 'sleep.cjs');
  writeFileSync(sleeper, 'setTimeout(() => {}, 30000);\n');
  let pid = 0;
  try {
    await (await driver.spawn(s.request('node view.cjs'))).exited;
    await until('a ready spare', () => driver.warmSparePid);
    const h = await driver.spawn(s.request(`node ${sleeper}`));
    pid = h.pid;
    assert.equal(h.warm, true);
    const found = instanceProcessesOfHome(s.home).find((p) => p.pid === pid);
    assert.deepEqual(found && { cell: found.cell, pgrp: found.pgrp }, { cell: WARM_STARTED, pgrp: pid });
  } finally {
    driver.close();
    if (pid) process.kill(-pid, 'SIGKILL');
  }
});

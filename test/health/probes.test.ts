import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { closeProbeConnections, probe, resolveCheckPort, type ProbeTarget } from '../../src/health/index.js';
import type { HealthSpec } from '../../src/manifest/types.js';

after(() => closeProbeConnections());

const timing = { intervalMs: 1000, timeoutMs: 1000, retries: 3, graceMs: 5000 };

function env(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) out[k] = v;
  return out;
}

function target(spec: HealthSpec, port = 0, cwd = process.cwd(), extraEnv: Record<string, string> = {}): ProbeTarget {
  return { spec, port, cwd, env: { ...env(), ...extraEnv } };
}

/** An in-process HTTP server on a random port, closed when the test ends. */
async function serve(t: TestContext, handler: http.RequestListener): Promise<{ port: number; connections: () => number }> {
  const server = http.createServer(handler);
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

test('health - resolveCheckPort substitutes the instance port for $PORT', () => {
  assert.equal(resolveCheckPort({ port: '$PORT' }, 4100), 4100);
  assert.equal(resolveCheckPort({ port: 9000 }, 4100), 9000);
});

test('health - http 2xx passes and reuses one kept-alive connection', async (t) => {
  const paths: string[] = [];
  const server = await serve(t, (req, res) => {
    paths.push(req.url ?? '');
    res.end('ok');
  });
  const spec: HealthSpec = { kind: 'http', path: '/health', port: '$PORT', ...timing };
  for (let i = 0; i < 3; i++) {
    const result = await probe(target(spec, server.port));
    assert.equal(result.ok, true);
    assert.equal(result.level, 'http');
    assert.equal(result.detail, undefined);
    assert.ok(result.durationMs >= 0 && result.durationMs < 1000);
  }
  assert.deepEqual(paths, ['/health', '/health', '/health']);
  assert.equal(server.connections(), 1);
});

test('health - http retries once when the server dropped the kept-alive connection', async (t) => {
  // The second request on any connection finds it closed, as when an idle timeout races the probe.
  const perSocket = new WeakMap<object, number>();
  const server = await serve(t, (req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    if (n > 1) return req.socket.destroy();
    res.end('ok');
  });
  const spec: HealthSpec = { kind: 'http', path: '/health', port: '$PORT', ...timing };
  assert.equal((await probe(target(spec, server.port))).ok, true);
  const second = await probe(target(spec, server.port));
  assert.equal(second.ok, true, second.detail);
  assert.equal(server.connections(), 2);
});

test('health - bad check input fails without throwing', async () => {
  const badPort = await probe(target({ kind: 'tcp', port: 70000, ...timing }));
  assert.equal(badPort.ok, false);
  assert.match(badPort.detail ?? '', /70000/);
  const badPath = await probe(target({ kind: 'http', path: '/a b', port: 1, ...timing }));
  assert.equal(badPath.ok, false);
  assert.ok(badPath.durationMs < 100);
});

test('health - http 503 fails with the status in the detail', async (t) => {
  const server = await serve(t, (_req, res) => {
    res.statusCode = 503;
    res.end('draining');
  });
  const result = await probe(target({ kind: 'http', path: '/health', port: server.port, ...timing }, 1));
  assert.deepEqual({ ...result, durationMs: 0 }, { ok: false, level: 'socket', detail: 'GET /health -> 503', durationMs: 0 });
});

test('health - http to a closed port fails with the connect error', async () => {
  const port = await freePort();
  const result = await probe(target({ kind: 'http', path: '/', port: '$PORT', ...timing }, port));
  assert.equal(result.ok, false);
  assert.equal(result.level, 'process');
  assert.equal(result.detail, `connect ECONNREFUSED 127.0.0.1:${port}`);
});

test('health - http that never answers times out after timeoutMs', async (t) => {
  const server = await serve(t, () => {
    // Never responds.
  });
  const result = await probe(target({ kind: 'http', path: '/slow', port: '$PORT', ...timing, timeoutMs: 200 }, server.port));
  assert.equal(result.ok, false);
  assert.equal(result.level, 'socket');
  assert.equal(result.detail, 'timed out after 200ms');
  assert.ok(result.durationMs >= 190 && result.durationMs < 600, `took ${result.durationMs}ms`);
});

test('health - an aborted probe resolves at once with "aborted"', async (t) => {
  const server = await serve(t, () => {});
  const controller = new AbortController();
  const pending = probe(target({ kind: 'http', path: '/', port: '$PORT', ...timing }, server.port), { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  const result = await pending;
  assert.equal(result.detail, 'aborted');
  assert.ok(result.durationMs < 500);
  const already = await probe(target({ kind: 'tcp', port: '$PORT', ...timing }, server.port), { signal: AbortSignal.abort() });
  assert.equal(already.detail, 'aborted');
});

test('health - http against the http-server fixture', async (t) => {
  const port = await freePort();
  const fixture = fileURLToPath(new URL('../fixtures/http-server.mjs', import.meta.url));
  const child = spawn(process.execPath, [fixture], {
    env: { ...env(), PORT: String(port), CELL_NAME: 'web', CELL_INSTANCE: '1', HEALTH_STATUS: '503' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
  const health = await probe(target({ kind: 'http', path: '/health', port: '$PORT', ...timing }, port));
  assert.equal(health.detail, 'GET /health -> 503');
  const root = await probe(target({ kind: 'http', path: '/', port: '$PORT', ...timing }, port));
  assert.equal(root.ok, true);
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('health - tcp passes on an open port and fails on a closed one', async (t) => {
  const server = await serve(t, (_req, res) => res.end());
  const open = await probe(target({ kind: 'tcp', port: '$PORT', ...timing }, server.port));
  assert.deepEqual([open.ok, open.level, open.detail], [true, 'socket', undefined]);
  const port = await freePort();
  const closed = await probe(target({ kind: 'tcp', port, ...timing }, 1));
  assert.deepEqual([closed.ok, closed.level, closed.detail], [false, 'process', `connect ECONNREFUSED 127.0.0.1:${port}`]);
});

test('health - exec passes on exit 0 in the target cwd and env, fails on exit 1', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-health-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'marker'), '');
  const pass = await probe(target({ kind: 'exec', command: 'test -f marker && test "$MODE" = ready', ...timing }, 0, dir, { MODE: 'ready' }));
  assert.deepEqual([pass.ok, pass.level, pass.detail], [true, 'exec', undefined]);
  const fail = await probe(target({ kind: 'exec', command: 'echo "db not reachable" >&2; exit 1', ...timing }, 0, dir));
  assert.deepEqual([fail.ok, fail.detail], [false, 'exit 1: db not reachable']);
  const missing = await probe(target({ kind: 'exec', command: 'true', ...timing }, 0, join(dir, 'nope')));
  assert.equal(missing.ok, false);
  assert.match(missing.detail ?? '', /does not exist/);
});

test('health - exec that hangs is killed with its whole group on timeout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-health-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pidFile = join(dir, 'bg.pid');
  const spec: HealthSpec = { kind: 'exec', command: `sleep 30 & echo $! > '${pidFile}'; sleep 30`, ...timing, timeoutMs: 300 };
  const result = await probe(target(spec, 0, dir));
  assert.equal(result.ok, false);
  assert.equal(result.detail, 'timed out after 300ms');
  assert.ok(result.durationMs < 1000);
  const bg = Number(readFileSync(pidFile, 'utf8'));
  t.after(() => {
    if (!isGone(bg)) process.kill(bg, 'SIGKILL');
  });
  const deadline = Date.now() + 2000;
  while (!isGone(bg) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(isGone(bg), true, 'the background sleep died with the group');
});

test('health - process checks pass (the caller checks the pid)', async () => {
  const result = await probe(target({ kind: 'process', ...timing }));
  assert.deepEqual([result.ok, result.level], [true, 'process']);
});

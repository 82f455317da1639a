import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortAllocator, dynamicPortRange, ephemeralPortRange } from '../../src/supervisor/ports.js';

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

test('ports - the dynamic range stays below the kernel ephemeral range', () => {
  assert.deepEqual(dynamicPortRange({ min: 32768, max: 60999 }), { min: 20000, max: 32000 });
  // An ephemeral range that starts inside the dynamic one cuts it short...
  assert.deepEqual(dynamicPortRange({ min: 30000, max: 60999 }), { min: 20000, max: 29999 });
  // ...and one that covers it leaves nothing: ports then come from listen(0).
  assert.equal(dynamicPortRange({ min: 1024, max: 65535 }), null);
  assert.equal(dynamicPortRange({ min: 20500, max: 60999 }), null);

  const dir = mkdtempSync(join(tmpdir(), 'cell-ports-'));
  try {
    const file = join(dir, 'ip_local_port_range');
    writeFileSync(file, '40000\t50000\n');
    assert.deepEqual(ephemeralPortRange(file), { min: 40000, max: 50000 });
    writeFileSync(file, 'garbage\n');
    assert.deepEqual(ephemeralPortRange(file), { min: 32768, max: 60999 });
    assert.deepEqual(ephemeralPortRange(join(dir, 'missing')), { min: 32768, max: 60999 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // This machine's own range and the one cell uses here do not meet.
  const here = ephemeralPortRange();
  const range = dynamicPortRange(here);
  if (range) assert.ok(range.max < here.min || range.min > here.max, JSON.stringify({ here, range }));
});

// The ranges below sit under the dynamic range, where no cell of a test running alongside listens.
test('ports - hands out distinct free ports in the range, skipping used and taken ones', async () => {
  const range = { min: 15_000, max: 15_999 };
  // Start where another program listens: that port and the one marked in use are skipped.
  const taken = await listen(range.min);
  try {
    const ports = new PortAllocator(range, () => 0);
    const inUse = new Set([range.min + 1]);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push(await ports.allocate(inUse));
    assert.deepEqual(got, [range.min + 2, range.min + 3, range.min + 4, range.min + 5, range.min + 6]);
    // Concurrent calls never get the same port.
    const burst = await Promise.all(Array.from({ length: 20 }, () => ports.allocate(inUse)));
    assert.equal(new Set(burst).size, 20);
    for (const port of burst) assert.ok(port >= range.min && port <= range.max && !got.includes(port));
    // Each one can be listened on.
    const server = await listen(burst[0]);
    await new Promise((r) => server.close(r));
  } finally {
    await new Promise((r) => taken.close(r));
  }
});

test('ports - wraps around the end of the range, and says so when it is full', async () => {
  const range = { min: 16_000, max: 16_002 };
  const ports = new PortAllocator(range, () => 0.99);
  assert.deepEqual([await ports.allocate(new Set()), await ports.allocate(new Set())], [range.max, range.min]);
  await assert.rejects(ports.allocate(new Set([range.min, range.min + 1, range.max])), /no free port in 16000-16002/);
});

test('ports - with no dynamic range, the system picks (listen on port 0)', async () => {
  const ports = new PortAllocator(null);
  const port = await ports.allocate(new Set());
  assert.ok(port > 0);
});

test('ports - a candidate is handed out at once, unchecked, round-robin and skipping ports in use', async () => {
  const range = { min: 15_500, max: 15_503 };
  const ports = new PortAllocator(range, () => 0.5);
  const inUse = new Set([15_503]);
  // From the random start (the middle), wrapping at the end, never a port in use.
  assert.deepEqual([ports.candidate(inUse), ports.candidate(inUse), ports.candidate(inUse)], [15_502, 15_500, 15_501]);
  assert.equal(ports.candidate(new Set([15_500, 15_501, 15_502, 15_503])), null, 'all in use');
  assert.equal(new PortAllocator(null).candidate(new Set()), null, 'no range: the system picks, later');
  // isFree is the check the start makes before its spawn.
  const server = await new Promise<Server>((resolve) => {
    const s = createServer();
    s.listen(15_500, '127.0.0.1', () => resolve(s));
  });
  try {
    assert.equal(await ports.isFree(15_500), false);
    assert.equal(await ports.isFree(15_501), true);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createServer, type AddressInfo } from 'node:net';
import { DB_API_MESH, MeshHarness, ROOT, httpGet, processesOfHome, waitUntil, type CliResult } from './harness.js';

const DAEMON = join(ROOT, 'dist/daemon/main.js');

/** A path of exactly `length` characters: `dir`/hhh…h. */
function homeOfLength(dir: string, length: number): string {
  const home = join(dir, 'h'.repeat(length - dir.length - 1));
  assert.equal(home.length, length);
  return home;
}

/** The `cell: …` line of a failed command; fails unless it is the only one (progress lines aside). */
function errorLine(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('cell: '));
  assert.equal(lines.length, 1, r.stderr);
  return lines[0]!;
}

test('e2e homes - a CELL_HOME too long for its socket is refused in one line, before any daemon starts', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  const home = homeOfLength(mesh.dir, 105);
  const why = `CELL_HOME ${home} is too long: its socket $CELL_HOME/run/daemon.sock would be 121 bytes, over the 107-byte limit of unix socket paths; use a shorter CELL_HOME`;

  // Read commands too (not "start it with `cell up`": no daemon can run there), quick path or not.
  const reads = [['status'], ['ps', '--json'], ['health'], ['logs', 'db'], ['top'], ['down']].map((c) => ['--home', home, ...c]);
  for (const args of [['--home', home, 'up'], ['--home', home, 'up', '--no-wait'], ['--home', home, 'up', '--foreground'], ...reads]) {
    const r = await mesh.cell(args);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `cell: ${why}\n`);
    assert.equal(r.stdout, '');
  }
  assert.equal(existsSync(home), false, 'nothing is created for the home (no daemon.out, no `ru` socket)');
  assert.deepEqual(processesOfHome(home), []);

  // The daemon itself refuses too, when started some other way.
  const daemon = spawn(process.execPath, [DAEMON, '--home', home], { env: { ...process.env, CELL_HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((r) => daemon.on('close', r));
  assert.equal(code, 2);
  assert.equal(stderr, `cell daemon: ${why}\n`);
  assert.equal(existsSync(home), false);
});

test('e2e homes - a CELL_HOME that is a file, or under one, is refused in one line; init refuses a directory', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  const file = join(mesh.dir, 'a-file');
  writeFileSync(file, 'not a home\n');
  for (const [home, why] of [
    [file, `CELL_HOME ${file} is not a directory; use a directory (it is created if missing)`],
    [join(file, 'sub'), `CELL_HOME ${join(file, 'sub')} is not a directory (${file} is a file); use a directory (it is created if missing)`],
  ] as const) {
    const reads = [['status'], ['ps', '--json'], ['health'], ['logs', 'db'], ['down']].map((c) => ['--home', home, ...c]);
    for (const args of [['--home', home, 'up'], ['--home', home, 'up', '--foreground'], ...reads]) {
      const r = await mesh.cell(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `cell: ${why}\n`);
    }
  }
  assert.equal(statSync(file).isFile(), true, 'the file is left as it was');
  // A link to nothing cannot become a directory either.
  const dangling = join(mesh.dir, 'dangling');
  symlinkSync(join(mesh.dir, 'nowhere'), dangling);
  const up = await mesh.cell(['--home', dangling, 'up', '--no-wait']);
  assert.equal(up.code, 2, up.stderr);
  assert.equal(up.stderr, `cell: CELL_HOME ${dangling} is not a directory; use a directory (it is created if missing)\n`);

  const dir = join(mesh.dir, 'as-dir.yaml');
  mkdirSync(dir);
  const init = await mesh.cell(['-f', dir, 'init', '--force']);
  assert.equal(init.code, 2, init.stderr);
  assert.equal(errorLine(init), `cell: ${dir} is a directory: init writes a file there (use -f to name another)`);
  assert.equal(statSync(dir).isDirectory(), true);
});

test('e2e homes - a CELL_HOME whose socket is exactly 107 bytes works', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  const home = homeOfLength(mesh.dir, 107 - '/run/daemon.sock'.length);
  try {
    await mesh.ok(['--home', home, 'up']);
    const status = await mesh.ok(['--home', home, 'status', '--json']);
    assert.equal(JSON.parse(status).daemon.home, home);
  } finally {
    await mesh.cell(['--home', home, 'down']);
  }
  await waitUntil('no process of the home left', async () => processesOfHome(home).length === 0);
});

/** Kills the daemon (cells keep running), then overwrites its store with random bytes. */
async function corruptStore(mesh: MeshHarness): Promise<void> {
  const pid = (await mesh.json<{ daemon: { pid: number } }>(['status'])).daemon.pid;
  process.kill(pid, 'SIGKILL');
  await waitUntil('the daemon gone', async () => !processesOfHome(mesh.home).includes(pid));
  // Everything into state.db first (a daemon that ran a while has checkpointed): otherwise the
  // WAL still holds every page and SQLite reads the store from it, bytes in state.db or not.
  const db = new Database(join(mesh.home, 'state.db'));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const file = join(mesh.home, 'state.db');
  writeFileSync(file, randomBytes(statSync(file).size));
}

test('e2e homes - a corrupt state.db: one line that says what to do, and what it says works for up and down', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  await mesh.ok(['up']);
  const before = (await mesh.ps()).map((p) => p.pid!);
  await corruptStore(mesh);
  const db = join(mesh.home, 'state.db');
  const out = join(mesh.home, 'logs', 'daemon.out');
  // What an earlier crash left in daemon.out is not this attempt's reason.
  appendFileSync(out, "Error: an earlier attempt's crash\n}\n\nNode.js v20.20.2\n");
  const expected =
    `cell: the cell daemon did not start (exit code 1): cannot open the state store ${db}: file is not a database (corrupt?); ` +
    `move it aside (mv ${db} ${db}.bad) and run the command again: a new store starts empty, and the cells still running are found and killed ` +
    `(cell up then starts them afresh); see ${out}`;
  // The same line each time: no earlier attempt's output repeated, no node footer.
  for (const args of [['up'], ['up'], ['down']]) {
    const r = await mesh.cell(args);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(errorLine(r), expected, `cell ${args.join(' ')}`);
  }
  assert.deepEqual(before.filter((pid) => processesOfHome(mesh.home).includes(pid)), before, 'the cells kept running');

  // As the message says: the old instances (and the old gateway) are killed, fresh ones started.
  renameSync(db, `${db}.bad`);
  await mesh.ok(['up']);
  const after = await mesh.ps();
  assert.ok(after.every((p) => p.state === 'ready'), JSON.stringify(after));
  assert.equal(after.length, 4);
  assert.deepEqual(after.filter((p) => before.includes(p.pid!)), [], 'new pids');
  await waitUntil('the old instances gone', async () => before.every((pid) => !processesOfHome(mesh.home).includes(pid)));

  // And for `cell down`: the daemon it starts kills them and stops itself too.
  const again = (await mesh.ps()).map((p) => p.pid!);
  await corruptStore(mesh);
  renameSync(db, `${db}.bad2`);
  const down = await mesh.cell(['down']);
  assert.equal(down.code, 0, down.stderr);
  await waitUntil('no process of the home left (daemon included)', async () => processesOfHome(mesh.home).length === 0, 10_000);
  assert.ok(again.length === 4);
});

test('e2e homes - a cell whose instance socket would pass the limit is refused by name, and the running mesh stays', async () => {
  await using mesh = new MeshHarness(DB_API_MESH);
  const home = homeOfLength(mesh.dir, 107 - '/run/daemon.sock'.length);
  try {
    await mesh.ok(['--home', home, 'up']);
    const before = await mesh.ok(['--home', home, 'ps', '--json']);
    mesh.writeManifest(`${DB_API_MESH}\n  a-much-longer-name:\n    run: node fixtures/service.mjs\n`);
    const r = await mesh.cell(['--home', home, 'up']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(errorLine(r), /^cell: cell a-much-longer-name: its instance socket .*\/run\/a-much-longer-name\.0\.sock would be 121 bytes, over the 107-byte limit of unix socket paths; use a shorter CELL_HOME or cell name$/);
    assert.equal(await mesh.ok(['--home', home, 'ps', '--json']), before, 'the running mesh is untouched');
  } finally {
    await mesh.cell(['--home', home, 'down']);
  }
});

test('e2e homes - a fixed gateway port another mesh holds fails up in one line, and the other mesh serves on', async () => {
  const port = await new Promise<number>((resolvePort) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address() as AddressInfo;
      probe.close(() => resolvePort(free));
    });
  });
  const manifest = `gateway: { port: ${port} }\n${DB_API_MESH}`;
  await using first = new MeshHarness(manifest);
  await using second = new MeshHarness(manifest);
  await first.ok(['up']);
  const up = await second.cell(['up', '--timeout', '20s']);
  assert.equal(up.code, 1, up.stdout);
  // The progress line (not a terminal: it stays), then the one line that says why.
  const lines = up.stderr.trim().split('\n');
  assert.deepEqual(lines.slice(0, -1), ['starting the cell daemon for ' + second.home]);
  assert.match(lines.at(-1)!, new RegExp(`^cell: the cell daemon did not start \\(exit code 1\\): gateway port ${port} \\(the manifest's gateway.port\\) is in use by another program`));
  assert.deepEqual(processesOfHome(second.home), [], 'nothing of the second mesh runs');
  // The first mesh's gateway still routes.
  const answer = await httpGet(port, '/api/');
  assert.equal(answer.status, 200);
  // Once the port is free, the second mesh comes up on it (nothing stale left in its way).
  await first.ok(['down']);
  await second.ok(['up']);
  assert.equal((await httpGet(port, '/api/')).status, 200);
  // A new gateway.port on a running mesh takes a new daemon: up says so rather than ignore it.
  second.writeManifest(DB_API_MESH);
  const moved = await second.cell(['up']);
  assert.equal(moved.code, 0, moved.stderr);
  assert.match(moved.stderr, new RegExp(`^cell: note: gateway.port 0 \\(any free port\\) applies from the next start of the daemon: the gateway stays on http://127.0.0.1:${port} until`, 'm'));
});

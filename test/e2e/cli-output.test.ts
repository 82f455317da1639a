import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CELL_BIN, MeshHarness, sleep, waitUntil } from './harness.js';
import { readLastLines } from '../../src/api/index.js';

// api ×2 logs one line at start; ticker logs steadily and uses some CPU.
const MESH = `
cells:
  api:
    run: node fixtures/service.mjs
    instances: 2
    health: { tcp: {}, interval: 200ms }
  ticker:
    run: node fixtures/ticker.mjs
    env: { TICK_MS: "10" }
`;


interface LogLine {
  cell: string;
  instance: number;
  line: string;
}

/** Runs `cell <args>` in the background: its output so far, a signal to send, and its exit. */
function background(mesh: MeshHarness, command: string, args: string[]) {
  const child = spawn(command, args, { cwd: mesh.dir, env: { ...process.env, CELL_HOME: mesh.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { stdout: '', stderr: '', exited: new Promise<number | null>((r) => child.on('close', (code) => r(code))), kill: (s: NodeJS.Signals) => child.kill(s) };
  child.stdout.on('data', (d) => (run.stdout += d));
  child.stderr.on('data', (d) => (run.stderr += d));
  return run;
}

test('e2e cli output - events, logs and health of unknown and kernel cells', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);

  for (const args of [['events', 'nope'], ['events', 'nope', '--json']]) {
    const r = await mesh.cell(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'cell: unknown cell "nope" (cells: api, ticker)\n');
  }
  assert.match(await mesh.ok(['events', 'gateway']), /gateway\.0 {2}launching -> ready/);

  assert.match(await mesh.ok(['logs', 'gateway']), /gateway listening on http:\/\/127\.0\.0\.1:\d+/);
  const health = await mesh.json<{ cell: string; instance: number; health: string }[]>(['health', 'gateway']);
  assert.deepEqual(health.map((h) => [h.cell, h.instance, h.health]), [['gateway', 0, 'passing']]);

  for (const args of [['scale', 'gateway', '2'], ['restart', 'gateway']]) {
    const r = await mesh.cell(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^cell: "gateway" is a kernel cell that the daemon runs itself: it cannot be (scaled|restarted on its own)\n$/);
  }
  assert.equal((await mesh.ps()).filter((p) => p.cell === 'gateway').length, 1, 'still one gateway');
});

test('e2e cli output - logs --json: an array in the text order; with --follow one object a line', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);
  await waitUntil('both api instances logged', async () => (await mesh.ok(['logs', 'api'])).split('\n').filter(Boolean).length === 2);

  const text = (await mesh.ok(['logs', 'api'])).split('\n').filter(Boolean);
  const json = await mesh.json<LogLine[]>(['logs', 'api']);
  assert.deepEqual(json.map((l) => `[${l.cell}.${l.instance}] ${l.line}`), text);
  assert.deepEqual(json.map((l) => l.instance), [0, 1]);
  assert.match(json[0].line, /^api\.0 listening on \d+$/);

  const follow = background(mesh, process.execPath, [CELL_BIN, 'logs', 'ticker', '-n', '1', '--follow', '--json']);
  try {
    await waitUntil('followed lines', async () => follow.stdout.split('\n').length > 4, 10_000);
  } finally {
    follow.kill('SIGINT');
  }
  await follow.exited;
  const lines = follow.stdout.split('\n').filter(Boolean);
  for (const line of lines) {
    const parsed = JSON.parse(line) as LogLine;
    assert.equal(parsed.cell, 'ticker');
    assert.equal(parsed.instance, 0);
    assert.match(parsed.line, /^(tick \d+|ticker pid \d+)$/);
  }
});

// Writes 2000 lines, waits for the daemon to rotate its log (copytruncate to .log.1), writes 1000 more.
const BURST = `
import { existsSync } from 'node:fs';
const rotated = \`\${process.env.CELL_HOME}/logs/\${process.env.CELL_NAME}.\${process.env.CELL_INSTANCE}.log.1\`;
for (let i = 0; i < 2000; i++) console.log(\`line \${i}\`);
const wait = setInterval(() => {
  if (!existsSync(rotated)) return;
  clearInterval(wait);
  for (let i = 2000; i < 3000; i++) console.log(\`line \${i}\`);
}, 50);
setInterval(() => {}, 1 << 30);
`;

test('e2e cli output - logs -n takes the lines before a rotation from the rotated files', async () => {
  await using mesh = new MeshHarness(
    `
logs: { max_size: 1KB, keep: 3 }
cells:
  burst:
    run: node burst.mjs
`,
    { 'burst.mjs': BURST },
  );
  await mesh.ok(['up']);
  // The daemon rotates every 10 s.
  await waitUntil('a rotation and the lines after it', async () => existsSync(join(mesh.home, 'logs/burst.0.log.1')) && (await mesh.ok(['logs', 'burst', '-n', '1'])) === 'line 2999\n', 30_000, 200);

  const all = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
  assert.deepEqual((await mesh.ok(['logs', 'burst', '-n', '3000'])).split('\n').slice(0, -1), all, '-n 3000: the current file and .1, oldest first');
  assert.deepEqual((await mesh.ok(['logs', 'burst', '-n', '2500'])).split('\n').slice(0, -1), all.slice(-2500), '-n 2500');
  assert.deepEqual((await mesh.ok(['logs', 'burst', '-n', '5000'])).split('\n').slice(0, -1), all, 'more than there is: everything');
  const json = await mesh.json<LogLine[]>(['logs', 'burst', '-n', '3000']);
  assert.deepEqual(json.map((l) => l.line), all, '--json too');
});

test('e2e cli output - logs <cell>.<i> prints one instance; an unknown instance names the ones there are', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);
  await waitUntil('both api instances logged', async () => (await mesh.ok(['logs', 'api'])).split('\n').filter(Boolean).length === 2);

  assert.match(await mesh.ok(['logs', 'api.1']), /^api\.1 listening on \d+\n$/, 'no [api.1] prefix: one instance');
  assert.match(await mesh.ok(['logs', 'api.0', '-n', '5']), /^api\.0 listening on \d+\n$/);
  const json = await mesh.json<LogLine[]>(['logs', 'api.1']);
  assert.deepEqual(json.map((l) => [l.cell, l.instance]), [['api', 1]]);
  assert.match(await mesh.ok(['logs', 'ticker.0', '-n', '2']), /^(ticker pid \d+|tick \d+)\ntick \d+\n$/);

  for (const [args, stderr] of [
    [['logs', 'api.2'], 'cell: cell "api" has no instance 2 (instances: api.0, api.1)\n'],
    [['logs', 'api.7', '--json'], 'cell: cell "api" has no instance 7 (instances: api.0, api.1)\n'],
    [['logs', 'ticker.1', '--follow'], 'cell: cell "ticker" has no instance 1 (instances: ticker.0)\n'],
    [['logs', 'nope.1'], 'cell: unknown cell "nope" (cells: api, ticker)\n'],
    [['logs', 'api.x'], 'cell: unknown cell "api.x" (did you mean api? cells: api, ticker)\n'],
    [['logs', 'tikcer'], 'cell: unknown cell "tikcer" (did you mean ticker? cells: api, ticker)\n'],
  ] as const) {
    const r = await mesh.cell([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr, stderr, args.join(' '));
  }
});

test('e2e cli output - top --json and --once measure CPU; top on a pipe prints plain snapshots', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);

  const snapshot = await mesh.json<{ cell: string; instance: number; pid: number; state: string; cpu_percent: number | null; rss_bytes: number | null }[]>(['top']);
  assert.deepEqual(snapshot.map((r) => `${r.cell}.${r.instance}`).sort(), ['api.0', 'api.1', 'gateway.0', 'ticker.0']);
  const ticker = snapshot.find((r) => r.cell === 'ticker')!;
  assert.equal(ticker.state, 'ready');
  assert.equal(typeof ticker.cpu_percent, 'number');
  assert.ok(ticker.rss_bytes! > 0);

  const once = await mesh.ok(['top', '--once']);
  assert.doesNotMatch(once, /q quits/);
  assert.ok(!once.includes('\x1b'), 'no escapes');
  assert.match(once, /ticker\.0\s+\d+\s+● ready\s+passing\s+\d+\.\d%/);

  const top = background(mesh, process.execPath, [CELL_BIN, 'top', '--interval', '100']);
  await waitUntil('two snapshots', async () => top.stdout.split('cell top —').length > 2, 10_000);
  top.kill('SIGTERM');
  assert.equal(await top.exited, 0);
  assert.ok(!top.stdout.includes('\x1b'), `no escapes on a pipe: ${JSON.stringify(top.stdout.slice(0, 80))}`);
  assert.doesNotMatch(top.stdout, /q quits/);
});

test('e2e cli output - top on a terminal shows the cursor again when stopped with SIGTERM', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);
  // script(1) gives top a terminal; timeout(1) sends it SIGTERM. --foreground keeps top in the
  // terminal's foreground group: in a group of its own, top's raw mode stops it with SIGTTOU.
  const top = background(mesh, 'script', ['-qc', `timeout --foreground -k 5 -s TERM 2 '${process.execPath}' '${CELL_BIN}' top --interval 200`, '/dev/null']);
  const deadline = setTimeout(() => top.kill('SIGKILL'), 20_000);
  await top.exited;
  clearTimeout(deadline);
  assert.ok(top.stdout.includes('\x1b[?25l'), 'the cursor was hidden');
  assert.match(top.stdout, /\x1b\[\?25h\s*$/, `the cursor is shown again at the end: ${JSON.stringify(top.stdout.slice(-40))}`);
});

test('e2e cli output - up that fails early names the failed cells and the ones not healthy yet', async () => {
  await using mesh = new MeshHarness(`
cells:
  nocmd:
    run: /nonexistent
    restart: { max_retries: 0 }
  slow:
    run: node fixtures/slow-ready.mjs
    env: { READY_AFTER_MS: "60000" }
    health: { http: { path: / } }
`);
  const t0 = Date.now();
  const up = await mesh.cell(['up', '--timeout', '30s']);
  assert.equal(up.code, 1, up.stderr);
  assert.ok(Date.now() - t0 < 20_000, 'gave up before the timeout');
  assert.match(up.stderr.trim().split('\n').at(-1)!, /^cell: cells failed: nocmd \(.*\/nonexistent.*\); not healthy yet: slow \(launching\); see `cell logs <cell>`$/);
});

test('e2e cli output - a cell that fails under restart policy never is failed at once, and up names it without waiting out its timeout', async () => {
  await using mesh = new MeshHarness(`
cells:
  once:
    run: /nonexistent
    restart: { policy: never }
`);
  const t0 = Date.now();
  const up = await mesh.cell(['up', '--timeout', '30s']);
  assert.equal(up.code, 1, up.stderr);
  assert.ok(Date.now() - t0 < 20_000, 'gave up before the timeout');
  assert.match(up.stderr.trim().split('\n').at(-1)!, /^cell: cells failed: once \(.*\/nonexistent.*\(restart policy never\)\); see `cell logs <cell>`$/);
  const once = (await mesh.ps()).find((p) => p.cell === 'once')!;
  assert.equal(once.state, 'failed');
  assert.equal(once.restarts, 0, 'never restarted');
});

test('e2e cli output - a cell writing 5 MB/s keeps its logs near max_size, and logs --follow misses no line across rotations', async () => {
  await using mesh = new MeshHarness(`
logs: { max_size: 1MB, keep: 2 }
cells:
  spam:
    run: node fixtures/spam.mjs
`, {
    // 500 numbered 1 KB lines every 100 ms.
    'fixtures/spam.mjs': "import { writeSync } from 'node:fs';\nlet i = 0;\nconst pad = 'x'.repeat(1000);\nsetInterval(() => { let s = ''; for (let k = 0; k < 500; k++) s += `line ${i++} ${pad}\\n`; writeSync(1, s); }, 100);\n",
  });
  await mesh.ok(['up']);
  const follow = spawn(process.execPath, [CELL_BIN, 'logs', 'spam', '--follow', '-n', '0'], { cwd: mesh.dir, env: { ...process.env, CELL_HOME: mesh.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let followed = '';
  follow.stdout.on('data', (d) => (followed += d));
  const logs = join(mesh.home, 'logs');
  const current = join(logs, 'spam.0.log');
  // A copy may go between the listing and its stat (a rotation drops the oldest): it holds nothing then.
  const sizeOf = (file: string) => statSync(file, { throwIfNoEntry: false })?.size ?? 0;
  const onDisk = () => readdirSync(logs).filter((f) => f.startsWith('spam.0.log')).reduce((sum, f) => sum + sizeOf(join(logs, f)), 0);
  let largest = 0;
  const until = Date.now() + 6000;
  while (Date.now() < until) {
    largest = Math.max(largest, onDisk());
    await sleep(100);
  }
  // What the cell wrote in all, from the number of its last line (each line is ~1 KB).
  const written = (Number(/^line (\d+) /.exec(readLastLines(current, 1)[0] ?? '')?.[1] ?? 0) + 1) * 1000;
  const share = onDisk() / written;
  follow.kill('SIGTERM');
  await new Promise((r) => follow.once('exit', r));
  // Checked every 10 s, the file alone would hold everything written in the first 10 s (~27 MB
  // in 6 s here); checked by its pace, the three files stay within a few max_size, a small
  // share of what was written, however fast the machine lets the cell write.
  assert.ok(written > 8 * 1024 * 1024 && share < 0.5, `logs of spam hold ${(share * 100).toFixed(0)} % of the ${(written / 1024 / 1024).toFixed(1)} MB it wrote (up to ${(largest / 1024 / 1024).toFixed(1)} MB)`);
  assert.ok(existsSync(join(logs, 'spam.0.log.1')), 'it rotated');
  const numbers = followed.split('\n').filter((l) => l.startsWith('line ')).map((l) => Number(l.split(' ')[1]));
  assert.ok(numbers.length > 5000, `followed ${numbers.length} lines`);
  const gaps = numbers.slice(1).filter((n, k) => n !== numbers[k] + 1).length;
  // One write landing in the microseconds between a rotation's last copy and its truncate is
  // lost from the files themselves (copytruncate's limit); --follow itself loses nothing.
  assert.ok(gaps <= 1, `--follow missed or repeated lines at ${gaps} places`);
});

test('e2e cli output - usage errors are one line and exit 2; help and version exit 0', async () => {
  await using mesh = new MeshHarness(MESH);
  const cases: [string[], string][] = [
    [['frobnicate'], "cell: unknown command 'frobnicate'; see `cell --help`"],
    [['stauts'], "cell: unknown command 'stauts' (did you mean status?); see `cell --help`"],
    [['status', '--bogus'], "cell: unknown option '--bogus'; see `cell --help`"],
    [['logs'], "cell: missing required argument 'cell'; see `cell --help`"],
    [['status', 'extra'], "cell: too many arguments for 'status'. Expected 0 arguments but got 1; see `cell --help`"],
  ];
  for (const [args, line] of cases) {
    const r = await mesh.cell(args);
    assert.deepEqual([r.code, r.stderr, r.stdout], [2, `${line}\n`, ''], args.join(' '));
  }
  // No daemon: top says so and exits, as the read commands do (it used to retry for ever).
  const top = await mesh.cell(['top'], { timeoutMs: 10_000 });
  assert.equal(top.code, 3);
  assert.match(top.stderr, /^cell: the cell daemon is not running .*\n$/);
  for (const args of [['--help'], ['status', '--help'], ['--version']]) {
    const r = await mesh.cell(args);
    assert.equal(r.code, 0, args.join(' '));
    assert.ok(r.stdout.length > 0, args.join(' '));
  }
});

test('e2e cli output - logs --follow of a cell follows the instances a scale up adds, from their first line', async () => {
  await using mesh = new MeshHarness(`
cells:
  chatty:
    run: node fixtures/ticker.mjs
    env: { TICK_MS: "50" }
`);
  await mesh.ok(['up']);
  const follow = background(mesh, process.execPath, [CELL_BIN, 'logs', 'chatty', '-n', '0', '--follow']);
  try {
    await waitUntil('a tick of chatty.0', async () => /tick \d+/.test(follow.stdout), 10_000);
    await mesh.ok(['scale', 'chatty', '2']);
    const pid1 = (await mesh.ps()).find((p) => p.cell === 'chatty' && p.instance === 1)!.pid;
    // chatty.1's very first line (its pid) comes, prefixed, and its ticks after it.
    await waitUntil('chatty.1 in the follow', async () => follow.stdout.includes(`[chatty.1] ticker pid ${pid1}\n`) && /\[chatty\.1\] tick \d+/.test(follow.stdout), 10_000);
    // From then on chatty.0's lines carry their instance too.
    await waitUntil('chatty.0 prefixed', async () => /\[chatty\.0\] tick \d+/.test(follow.stdout), 10_000);
  } finally {
    follow.kill('SIGINT');
    assert.equal(await follow.exited, 0);
  }
});

test('e2e cli output - logs with no daemon running read the files on disk, as the daemon prints them', async () => {
  await using mesh = new MeshHarness(MESH);
  await mesh.ok(['up']);
  await waitUntil('a few ticks', async () => Number(/tick (\d+)\n$/.exec(await mesh.ok(['logs', 'ticker', '-n', '1']))?.[1] ?? 0) >= 5);
  await mesh.ok(['down']);
  const ticker = await mesh.cell(['logs', 'ticker', '-n', '3']);
  assert.equal(ticker.code, 0, ticker.stderr);
  assert.match(ticker.stdout, /^(tick \d+\n){3}$/);
  assert.match(ticker.stderr, /^cell: the daemon is not running: the logs of ticker as they are on disk \(.*\/logs\)\n$/);
  const api = await mesh.cell(['logs', 'api', '-n', '1']);
  assert.equal(api.code, 0, api.stderr);
  assert.match(api.stdout, /^\[api\.0\] api\.0 listening on \d+\n\[api\.1\] api\.1 listening on \d+\n$/);
  const json = JSON.parse((await mesh.cell(['logs', 'api.1', '-n', '1', '--json'])).stdout) as LogLine[];
  assert.deepEqual(json.map((l) => [l.cell, l.instance]), [['api', 1]]);
  const none = await mesh.cell(['logs', 'nope']);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /^cell: no logs of nope in .*\/logs, and the cell daemon is not running; start it with `cell up`\n$/);
});

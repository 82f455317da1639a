import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ChildProcessDriver, directArgv, shellLine } from '../../src/supervisor/child-process-driver.js';
import type { ProcessHandle, SpawnRequest } from '../../src/supervisor/driver.js';
import { SpawnError } from '../../src/supervisor/errors.js';
import { readProcStat } from '../../src/supervisor/proc.js';

const driver = new ChildProcessDriver();

function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
}

function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Awaits `p` within `ms`. The driver unrefs its children, so a bare `await handle.exited` with nothing
 * else pending would let the event loop end; this timer keeps it running.
 */
async function within<T>(p: Promise<T>, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function readCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Spawns a fixture in a temp dir; the test's cleanup kills its whole group and removes the dir. */
async function start(t: TestContext, script: string, env: Record<string, string> = {}, cell = 'web') {
  return startLine(t, `'${process.execPath}' '${fixture(script)}'`, env, cell);
}

/** As start, for any run line. */
async function startLine(t: TestContext, command: string, env: Record<string, string> = {}, cell = 'web') {
  const dir = mkdtempSync(join(tmpdir(), 'cell-driver-'));
  const req: SpawnRequest = {
    cell,
    instance: 0,
    command,
    cwd: dir,
    env: baseEnv(env),
    logFile: join(dir, 'logs', `${cell}.0.log`),
  };
  const handle = await driver.spawn(req);
  t.after(async () => {
    driver.signalGroup(handle.pid, 'SIGKILL');
    await within(handle.exited);
    rmSync(dir, { recursive: true, force: true });
  });
  return { handle, req, dir };
}

test('driver - spawn runs the program itself, in its own process group', async (t) => {
  const { handle } = await start(t, 'forever.mjs');
  // At 'spawn' the pid may still run /bin/sh, which then execs the program in place.
  const cmdline = await waitFor('exec of node', () => {
    const args = readCmdline(handle.pid);
    return args[0] === process.execPath && args;
  });
  assert.ok(cmdline[1].endsWith('forever.mjs'));
  const stat = readProcStat(handle.pid);
  assert.ok(stat);
  assert.equal(stat.pgrp, handle.pid);
  assert.equal(stat.startTicks, handle.startTicks);
  assert.ok(handle.startTicks > 0);
  assert.equal(driver.isAlive(handle.pid, handle.startTicks), true);
  assert.equal(driver.isAlive(handle.pid, handle.startTicks + 1), false);
  assert.equal(driver.groupAlive(handle.pid), true);
});

test('driver - stdout and stderr land in the log file, appended', async (t) => {
  const { handle, req } = await start(t, 'crash-after.mjs', { CRASH_CODE: '0' });
  await within(handle.exited);
  const second = await driver.spawn(req);
  await within(second.exited);
  const log = readLog(req.logFile);
  assert.match(log, new RegExp(`crash-after pid ${handle.pid}: exit 0`));
  assert.match(log, new RegExp(`crash-after pid ${second.pid}: exit 0`));
  assert.equal(log.match(/crash-after exiting with 0/g)?.length, 2, 'stderr too, from both runs');
});

test('driver - exited reports the code of a crash', async (t) => {
  const { handle } = await start(t, 'crash-after.mjs', { CRASH_CODE: '3', CRASH_AFTER_MS: '50' });
  assert.deepEqual(await within(handle.exited), { code: 3, signal: null });
  assert.equal(driver.isAlive(handle.pid, handle.startTicks), false);
  assert.equal(driver.groupAlive(handle.pid), false);
  assert.doesNotThrow(() => driver.signalGroup(handle.pid, 'SIGTERM'), 'a gone group is not an error');
});

test('driver - SIGTERM can be ignored, SIGKILL cannot', async (t) => {
  const { handle, req } = await start(t, 'ignore-sigterm.mjs');
  await waitFor('start line', () => readLog(req.logFile).includes('ignore-sigterm pid'));
  driver.signalGroup(handle.pid, 'SIGTERM');
  await waitFor('"ignoring"', () => readLog(req.logFile).includes('ignoring'));
  assert.equal(driver.isAlive(handle.pid, handle.startTicks), true);
  driver.signalGroup(handle.pid, 'SIGKILL');
  assert.deepEqual(await within(handle.exited), { code: null, signal: 'SIGKILL' });
});

test('driver - signalGroup kills the grandchild too, leaving no orphan', async (t) => {
  const { handle, req } = await start(t, 'spawn-child.mjs');
  const grandchild = Number(await waitFor('grandchild pid', () => /grandchild (\d+)/.exec(readLog(req.logFile))?.[1]));
  const gstat = readProcStat(grandchild);
  assert.ok(gstat);
  t.after(() => {
    // Only if the test failed before the group kill; the pid is ours (checked by start time).
    if (driver.isAlive(grandchild, gstat.startTicks)) process.kill(grandchild, 'SIGKILL');
  });
  assert.equal(gstat.pgrp, handle.pid);
  assert.equal(gstat.ppid, handle.pid);

  driver.signalGroup(handle.pid, 'SIGTERM');
  assert.deepEqual(await within(handle.exited), { code: null, signal: 'SIGTERM' });
  await waitFor('group gone', () => !driver.groupAlive(handle.pid));
  assert.equal(driver.isAlive(grandchild, gstat.startTicks), false);
});

test('driver - adopt refuses a wrong start time and notices exit by polling', async (t) => {
  const { handle } = await start(t, 'forever.mjs');
  assert.equal(driver.adopt(handle.pid, handle.startTicks + 1), undefined);
  assert.equal(driver.adopt(2 ** 22 + 12345, 1), undefined, 'no such pid');
  const adopted = driver.adopt(handle.pid, handle.startTicks) as ProcessHandle;
  assert.ok(adopted);
  assert.equal(adopted.pid, handle.pid);

  let seen = false;
  void adopted.exited.then(() => (seen = true));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(seen, false, 'still running');

  const killedAt = Date.now();
  driver.signalGroup(handle.pid, 'SIGKILL');
  assert.deepEqual(await within(adopted.exited), { code: null, signal: null }, 'the code of a non-child is unknown');
  assert.ok(Date.now() - killedAt < 1000);
});

test('driver - spawn with a missing cwd rejects with a SpawnError naming the cell', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-driver-'));
  try {
    const req: SpawnRequest = {
      cell: 'billing',
      instance: 2,
      command: 'true',
      cwd: join(dir, 'missing'),
      env: baseEnv(),
      logFile: join(dir, 'billing.log'),
    };
    await assert.rejects(driver.spawn(req), (err: unknown) => {
      assert.ok(err instanceof SpawnError);
      assert.equal(err.name, 'SpawnError');
      assert.equal(err.cell, 'billing');
      assert.equal(err.instance, 2);
      assert.equal(err.code, 'ENOENT');
      assert.match(err.message, /billing#2/);
      assert.match(err.message, /missing/);
      const json = JSON.parse(JSON.stringify(err));
      assert.equal(json.cell, 'billing');
      assert.equal(SpawnError.fromJSON(json).message, err.message);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('driver - signalGroup refuses pids that would signal more than one group', () => {
  assert.throws(() => driver.signalGroup(1, 'SIGTERM'), TypeError);
  assert.throws(() => driver.signalGroup(0, 'SIGTERM'), TypeError);
  assert.throws(() => driver.signalGroup(-5, 'SIGTERM'), TypeError);
});

test('child process driver - plain run lines start without a shell, anything else through /bin/sh', () => {
  const env = { PORT: '8080', DIR: '/srv/app', EMPTY: '', OPTS: '--a --b', GLOB: 'src/*.js' };
  assert.deepEqual(directArgv('node server.js --port $PORT', env), ['node', 'server.js', '--port', '8080']);
  assert.deepEqual(directArgv('python3  -m http.server ${PORT}', env), ['python3', '-m', 'http.server', '8080']);
  assert.deepEqual(directArgv('$DIR/bin/serve --dir=$DIR/www $EMPTY $UNSET', env), ['/srv/app/bin/serve', '--dir=/srv/app/www']);
  for (const needsShell of [
    'node a.js && node b.js',
    'node a.js | tee out',
    'echo "hello world"',
    "echo 'x'",
    'PORT=1 node a.js',
    'node *.js',
    'node a.js > log',
    'sleep 1; node a.js',
    'echo $1 $$',
    'echo ${PORT:-80}',
    'node a.js &',
    '~/bin/serve',
    'echo `date`',
    '$EMPTY',
    'node a.js $OPTS',
    'node $GLOB',
  ]) {
    assert.equal(directArgv(needsShell, env), null, needsShell);
  }
});

test('child process driver - a direct start runs the program itself, with $PORT expanded', async () => {
  const driver = new ChildProcessDriver();
  const dir = mkdtempSync(join(tmpdir(), 'cell-direct-'));
  const logFile = join(dir, 'x.log');
  const handle = await driver.spawn({ cell: 'x', instance: 0, command: 'echo port=$PORT', cwd: dir, env: { PORT: '4321', PATH: process.env.PATH ?? '' }, logFile });
  const exit = await within(handle.exited);
  assert.equal(exit.code, 0);
  assert.equal(readFileSync(logFile, 'utf8').trim(), 'port=4321');
  await assert.rejects(driver.spawn({ cell: 'x', instance: 0, command: 'no-such-program-here --flag', cwd: dir, env: { PATH: process.env.PATH ?? '' }, logFile }), /no-such-program-here|ENOENT/);
  rmSync(dir, { recursive: true, force: true });
});

test('child process driver - shellLine puts exec before a lone simple command, and leaves any other line as written', () => {
  const cases: [string, string][] = [
    // One simple command: exec'd, so the pid is the program's own.
    ['node server.js --port $PORT', 'exec node server.js --port $PORT'],
    ['  node a.js', '  exec node a.js'],
    ['node a.js\n', 'exec node a.js\n'],
    ['cmd 2>&1', 'exec cmd 2>&1'],
    ['cmd >/dev/null 2>&1', 'exec cmd >/dev/null 2>&1'],
    ['cmd >&2 <&0 >| out', 'exec cmd >&2 <&0 >| out'],
    ['>log node a.js', '>log exec node a.js'],
    ['> log node a.js', '> log exec node a.js'],
    ['node $(cat file)', 'exec node $(cat file)'],
    ['node $(echo a; echo b) "$(cat f | head -1)" $((1 + (2)))', 'exec node $(echo a; echo b) "$(cat f | head -1)" $((1 + (2)))'],
    ['node `cat file` ${PORT:-80} "${X:-a;b}"', 'exec node `cat file` ${PORT:-80} "${X:-a;b}"'],
    ["echo 'a;b'", "exec echo 'a;b'"],
    ['echo "a && b"', 'exec echo "a && b"'],
    ['echo "two\nlines" a\\;b \\&', 'exec echo "two\nlines" a\\;b \\&'],
    ['node a.js \\\n  --port $PORT', 'exec node a.js \\\n  --port $PORT'],
    ['node a.js # then; more', 'exec node a.js # then; more'],
    ['# the web server\nnode a.js', '# the web server\nexec node a.js'],
    ['node a#b', 'exec node a#b'],
    // Leading assignments: exec goes after them, and sh exports them to the program.
    ['GREETING=hello python3 -m http.server $PORT', 'GREETING=hello exec python3 -m http.server $PORT'],
    ["X='a b' cmd", "X='a b' exec cmd"],
    ['A=1 B="x; y" C=$(pwd) cmd --flag', 'A=1 B="x; y" C=$(pwd) exec cmd --flag'],
  ];
  const unchanged = [
    // Several commands, or one the shell must run itself.
    'echo starting && python3 -m http.server $PORT',
    'cd sub && python3 -m http.server $PORT',
    'export X=1; cmd',
    'a || b',
    'a | b',
    'a &',
    'a &>log',
    'a;',
    'echo one\necho two',
    'echo one\n\necho two\n',
    '(python3 -m http.server $PORT)',
    'f() { cmd; }',
    '{ cmd; }',
    'echo }',
    'if true; then cmd; fi',
    'while :; do cmd; done',
    '! cmd',
    '. ./env.sh',
    'ulimit -n 4096',
    'X=1 cd sub',
    // Already exec'd: the pid is the program's own as it is.
    'exec python3 -m http.server $PORT',
    'X=1 exec cmd',
    // Assignments only, nothing to exec.
    'X=1',
    'X=1 Y="2 3"',
    '',
    '# just a comment',
    // Left to sh, which reports the error.
    "echo 'unclosed",
    'echo $(unclosed',
  ];
  for (const [line, script] of cases) assert.equal(shellLine(line), script, JSON.stringify(line));
  for (const line of unchanged) assert.equal(shellLine(line), line, JSON.stringify(line));
  for (const line of ['exec python3 -m http.server $PORT', 'cd sub', 'export X=1', ': nothing']) {
    assert.equal(directArgv(line, {}), null, `${line}: the shell's own`);
  }
});

test('driver - a line of several commands runs whole: an echo first does not replace the server', async (t) => {
  const { handle, req } = await startLine(t, `echo starting && exec '${process.execPath}' '${fixture('forever.mjs')}'`);
  await waitFor('forever running', () => readLog(req.logFile).includes('forever pid'));
  const log = readLog(req.logFile);
  assert.match(log, /^starting\n/);
  // The line's own exec leaves the program in the shell's place.
  assert.match(log, new RegExp(`forever pid ${handle.pid}\\b`));
  assert.equal(driver.isAlive(handle.pid, handle.startTicks), true);
});

test('driver - a cd, a second line and an exit code all run as the shell would', async (t) => {
  const { handle, req } = await startLine(t, 'cd logs && pwd\necho two\nexit 7');
  assert.deepEqual(await within(handle.exited), { code: 7, signal: null });
  assert.match(readLog(req.logFile), /\/logs\ntwo\n$/);
});

test('driver - a leading assignment reaches the program, and the pid is still the program\'s own', async (t) => {
  const script = 'console.log("greeting=" + process.env.GREETING + " pid=" + process.pid); setInterval(() => {}, 1 << 30)';
  const { handle, req } = await startLine(t, `GREETING=hello '${process.execPath}' -e '${script}'`);
  const line = await waitFor('greeting', () => /greeting=(\S*) pid=(\d+)/.exec(readLog(req.logFile)) ?? undefined);
  assert.equal(line[1], 'hello');
  assert.equal(Number(line[2]), handle.pid);
});

test('driver - a line that says exec itself goes through the shell and keeps the program\'s pid', async (t) => {
  const { handle } = await startLine(t, 'exec sleep 30');
  await waitFor('exec of sleep', () => readCmdline(handle.pid)[0] === 'sleep');
  assert.equal(readProcStat(handle.pid)?.pgrp, handle.pid);
});

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { test, type TestContext } from 'node:test';
import { findPortHolder, parseListenerInodes, portHolderDetail } from '../../src/supervisor/port-holder.js';

test('port holder - parseListenerInodes takes the LISTEN lines of the port, v4 and v6, and nothing else', () => {
  const v4 = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:5208 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0',
    '   1: 00000000:5208 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0',
    // An established connection from that port, and a listener of another port.
    '   2: 0100007F:5208 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1',
    '   3: 0100007F:5209 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0',
    // A listener with no inode (a socket being torn down) names nobody.
    '   4: 0100007F:5208 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0',
    '',
  ].join('\n');
  assert.deepEqual(parseListenerInodes(v4, 0x5208), ['111', '222']);
  const v6 = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 00000000000000000000000000000000:5208 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0',
  ].join('\n');
  assert.deepEqual(parseListenerInodes(v6, 0x5208), ['555']);
  assert.deepEqual(parseListenerInodes('', 0x5208), []);
});

/** Starts `node -e script` as the leader of its own group; resolves with it once it printed a line. */
async function leader(t: TestContext, script: string): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, ['-e', script], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code} before a line: ${out}`)));
  });
  return { child, line };
}

const LISTEN = `const s = require('net').createServer().listen(0, '127.0.0.1', () => console.log(s.address().port)); setInterval(() => {}, 1000);`;

test('port holder - a listener of the leader, of a child in its group, or of a descendant in a group of its own is the instance\'s', async (t) => {
  const own = await leader(t, LISTEN);
  assert.deepEqual(findPortHolder(own.child.pid!, Number(own.line)), { kind: 'group' });
  // node's default listen(port): the IPv6 wildcard, dual-stack, listed in /proc/net/tcp6 only.
  const wildcard = await leader(t, LISTEN.replace(", '127.0.0.1'", ''));
  assert.deepEqual(findPortHolder(wildcard.child.pid!, Number(wildcard.line)), { kind: 'group' });
  assert.equal(findPortHolder(own.child.pid!, Number(wildcard.line)).kind, 'other', 'one leader is not the holder of the other\'s port');

  for (const detached of [false, true]) {
    // The leader starts the listener as its child and prints the child's port.
    const tree = await leader(
      t,
      `const c = require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(LISTEN)}], { detached: ${detached}, stdio: ['ignore', 'pipe', 'inherit'] });
       c.stdout.once('data', (d) => process.stdout.write(c.pid + ' ' + d));
       setInterval(() => {}, 1000);`,
    );
    const [childPid, port] = tree.line.split(' ').map(Number);
    // A detached child is not in the leader's group: its own kill.
    t.after(() => {
      try {
        process.kill(childPid, 'SIGKILL');
      } catch {
        // gone
      }
    });
    assert.deepEqual(findPortHolder(tree.child.pid!, port), { kind: 'group' }, `child detached: ${detached}`);
  }
});

test('port holder - a listener of another program is named with its pid and command line; a port no one listens on is unknown', async (t) => {
  const idle = await leader(t, `console.log('up'); setInterval(() => {}, 1000);`);
  const other: Server = createServer();
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.after(() => other.close());
  const port = (other.address() as { port: number }).port;

  const holder = findPortHolder(idle.child.pid!, port);
  assert.equal(holder.kind, 'other');
  assert.ok(holder.kind === 'other');
  assert.equal(holder.pid, process.pid);
  assert.ok(holder.command?.includes('node'), holder.command ?? 'no command');
  assert.equal(
    portHolderDetail(port, { kind: 'other', pid: 77, command: 'python3 -m http.server' }),
    `port ${port} answers, but pid 77 (python3 -m http.server) holds its listener, not a process of this instance`,
  );
  assert.equal(portHolderDetail(port, { kind: 'other', pid: null, command: null }), `port ${port} answers, but another program holds its listener, not a process of this instance`);

  await new Promise((resolve) => other.close(resolve));
  assert.deepEqual(findPortHolder(idle.child.pid!, port), { kind: 'unknown' }, 'no listener: the check is trusted');
});

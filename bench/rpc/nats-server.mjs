// Runs nats-server for bench/rpc.ts and ties its life to the bench: nats-server cannot watch its
// parent, so this wrapper does (stdin closing, SIGTERM) and stops it. Listens on 127.0.0.1 only,
// log and pid file in the bench's temp dir. Prints `READY <pid of nats-server>` once the port accepts.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { exitWithParent, need } from './common.mjs';

const bin = need('BENCH_NATS_BIN');
const port = need('BENCH_NATS_PORT');
const dir = need('BENCH_NATS_DIR');
const child = spawn(bin, ['-a', '127.0.0.1', '-p', port, '-l', join(dir, `nats-${port}.log`), '-P', join(dir, `nats-${port}.pid`)], {
  stdio: ['ignore', 'inherit', 'inherit'],
});
child.on('error', (e) => {
  process.stderr.write(`cannot start ${bin}: ${e.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  if (!stopping) process.stderr.write(`nats-server exited (${code ?? signal})\n`);
  process.exit(stopping ? 0 : 1);
});
let stopping = false;
exitWithParent(
  () =>
    new Promise(() => {
      stopping = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    }),
);

const deadline = Date.now() + 10_000;
for (;;) {
  const ok = await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: Number(port) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (ok) break;
  if (Date.now() > deadline) {
    process.stderr.write(`nats-server did not listen on 127.0.0.1:${port} within 10 s\n`);
    child.kill('SIGKILL');
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write(`READY ${child.pid} nats://127.0.0.1:${port}\n`);

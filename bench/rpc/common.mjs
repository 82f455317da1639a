// Shared by the fixtures of bench/rpc.ts (plain node, no tsx): the payload, the ready line, and the
// rule that a fixture exits when the bench that spawned it goes away (its stdin pipe closes).

/** The string every call carries (16 characters). */
export const PAYLOAD_S = 'abcdefghijklmnop';

/** The raw echo's frame body: the JSON text of a typical call's input, as fixed bytes (no encoding per call). */
export const RAW_BODY = Buffer.from(JSON.stringify({ n: 1000000, s: PAYLOAD_S }));

/** Tells the bench this fixture is serving (one line on stdout). */
export function ready(detail = '') {
  process.stdout.write(`READY ${process.pid}${detail ? ' ' + detail : ''}\n`);
}

/**
 * Calls `stop` when the parent closes our stdin (it exited, even by SIGKILL) or sends SIGTERM/SIGINT.
 * `stop` must end the process; if it has not within 3 s, the process exits anyway.
 */
export function exitWithParent(stop) {
  let stopping = false;
  const onStop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 3000).unref();
    Promise.resolve()
      .then(stop)
      .catch((e) => {
        process.stderr.write(`stop failed: ${e?.stack ?? e}\n`);
        process.exit(1);
      });
  };
  process.stdin.on('end', onStop);
  process.stdin.on('close', onStop);
  process.stdin.on('error', onStop);
  process.stdin.resume();
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
}

export function need(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`${name} is not set (this fixture is started by bench/rpc.ts)\n`);
    process.exit(2);
  }
  return v;
}

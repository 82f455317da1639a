/**
 * Malformed input against a live server in a child process: every bad frame gets an error reply
 * or a closed connection, the server keeps serving good calls, and its memory stays bounded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { connect } from '../../src/sdk/index.js';
import { DEFAULT_MAX_FRAME_BYTES, Op } from '../../src/sdk/protocol.js';
import { Greeter } from '../fixtures/sdk/cells.js';
import { readRss, socketDir, startGreeter } from './harness.js';
import { RawConnection, frame } from './raw-client.js';

const SECRET = 'fuzz-secret';
const packr = new Packr({ useRecords: false });
const KNOWN_CODES = new Set(['BAD_FRAME', 'FRAME_TOO_LARGE', 'HANDSHAKE_FAILED', 'UNKNOWN_METHOD', 'DUPLICATE_ID', 'INVALID_INPUT', 'INVALID_OUTPUT', 'HANDLER_ERROR']);

/** Bytes for one length-prefixed payload of raw bytes. */
function rawFrame(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

/** Would `body` decode to a SHUTDOWN (stops the server under test) or a GOAWAY (ends the connection)? */
function isShutdownOrGoAway(body: Uint8Array): boolean {
  try {
    const value = packr.unpack(Buffer.from(body));
    return Array.isArray(value) && (value[0] === Op.SHUTDOWN || value[0] === Op.GOAWAY);
  } catch {
    return false;
  }
}

const requestId = fc.integer({ min: 1, max: 0xffff_ffff });
const badId = fc.oneof(fc.constantFrom(0, -1, 1.5, 2 ** 32, Number.NaN, null, 'seven', true), fc.constant({}), fc.constant([]), fc.double(), fc.string());
const anyValue = fc.anything({ maxDepth: 3, maxKeys: 5, withBigInt: false, withMap: false, withSet: false, withTypedArray: true, withDate: true });
const notAnArray = anyValue.filter((v) => !Array.isArray(v));
const clientOps = new Set([Op.AUTH, Op.CALL, Op.PING, Op.SHUTDOWN, Op.SCHEMA, Op.GOAWAY]);
const methods = Object.keys(Greeter.methods);

/** Frames that keep the stream in step: each must draw a reply (mostly ERROR) and leave the connection open. */
const inStepFrame: fc.Arbitrary<{ kind: string; bytes: Buffer }> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }).filter((b) => !isShutdownOrGoAway(b)).map((b) => ({ kind: 'random payload', bytes: rawFrame(b) })) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(Op.CALL, Op.PING, Op.SHUTDOWN, Op.SCHEMA), badId, anyValue).map(([op, id, x]) => ({ kind: 'bad id', bytes: frame([op, id, 'greet', x]) })) },
  { weight: 3, arbitrary: fc.tuple(requestId, anyValue.filter((m) => typeof m !== 'string')).map(([id, method]) => ({ kind: 'method not a string', bytes: frame([Op.CALL, id, method, {}]) })) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.oneof(fc.integer({ min: -1000, max: 1000 }).filter((op) => !clientOps.has(op as never)), fc.double(), fc.string()), requestId, anyValue)
      .map(([op, id, x]) => ({ kind: 'unknown or server-only op', bytes: frame([op, id, x]) })),
  },
  { weight: 4, arbitrary: fc.tuple(requestId, fc.string({ maxLength: 300 }).filter((m) => !methods.includes(m)), anyValue).map(([id, m, x]) => ({ kind: 'unknown method', bytes: frame([Op.CALL, id, m, x]) })) },
  { weight: 6, arbitrary: fc.tuple(requestId, fc.constantFrom('greet', 'whoami', 'badOutput', 'fail'), anyValue).map(([id, m, x]) => ({ kind: 'schema-invalid payload', bytes: frame([Op.CALL, id, m, x]) })) },
  { weight: 2, arbitrary: fc.tuple(requestId, anyValue).map(([id, x]) => ({ kind: 'second AUTH', bytes: frame([Op.AUTH, id, x]) })) },
  { weight: 3, arbitrary: notAnArray.map((v) => ({ kind: 'not an array', bytes: frame(v) })) },
  { weight: 1, arbitrary: fc.constantFrom([], [Op.CALL], ['x']).map((v) => ({ kind: 'short array', bytes: frame(v) })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'empty frame', bytes: rawFrame(new Uint8Array(0)) }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 129, max: 1024 * 1024 }), fc.constantFrom(0x91, 0xdc, 0xde, 0xc4, 0xff, 0x00, 0x81, 0xa1))
      .map(([size, byte]) => ({ kind: 'large frame of one byte (deep nesting, bad lengths)', bytes: rawFrame(Buffer.alloc(size, byte)) })),
  },
);

/** Cases that leave the stream out of step or the handshake unfinished: the server must close the connection. */
type Desync = { kind: 'garbage' | 'truncated' | 'oversize' | 'before auth' | 'bad auth' | 'client goaway'; bytes: Buffer };
const desyncCase: fc.Arbitrary<Desync> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => ({ kind: 'garbage' as const, bytes: Buffer.from(b) })),
  fc.tuple(requestId, anyValue, fc.nat()).map(([id, x, cut]) => {
    const whole = frame([Op.CALL, id, 'greet', x]);
    return { kind: 'truncated' as const, bytes: whole.subarray(0, 1 + (cut % (whole.length - 1))) };
  }),
  fc.tuple(fc.integer({ min: DEFAULT_MAX_FRAME_BYTES + 1, max: 0xffff_ffff }), fc.uint8Array({ maxLength: 64 })).map(([len, rest]) => {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(len, 0);
    return { kind: 'oversize' as const, bytes: Buffer.concat([header, rest]) };
  }),
  fc.tuple(fc.constantFrom(Op.CALL, Op.PING, Op.SHUTDOWN, Op.SCHEMA, Op.HELLO, Op.WELCOME), requestId).map(([op, id]) => ({ kind: 'before auth' as const, bytes: frame([op, id, 'greet', { name: 'x' }]) })),
  fc.tuple(requestId, anyValue).map(([id, x]) => ({ kind: 'client goaway' as const, bytes: Buffer.concat([frame([Op.CALL, id, 'greet', x]), frame([Op.GOAWAY, 0])]) })),
  fc.oneof(fc.record({ v: fc.constantFrom(1, 2, 0, '1'), proof: fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), fc.string(), fc.constant(null)) }), notAnArray).map((fields) => ({ kind: 'bad auth' as const, bytes: frame([Op.AUTH, 0, fields]) })),
);

async function closedWithin(conn: RawConnection, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([conn.closed.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function isError(message: unknown): message is [number, number, { code: string; message: string; name: string }] {
  return Array.isArray(message) && message[0] === Op.ERROR;
}

test('sdk - fuzz: 10,000+ malformed frames at a live server get errors or a closed connection, and it keeps serving in bounded memory', async (t) => {
  using dir = socketDir();
  const socket = dir.socket('greeter');
  await using server = await startGreeter(socket, { secret: SECRET });
  await using canary = await connect(Greeter, { sockets: [socket], secret: SECRET, timeoutMs: 5000 });
  assert.equal((await canary.greet({ name: 'before' })).greeting, 'Hello, before!');
  const startRss = readRss(server.pid);
  let maxRss = startRss;
  let malformed = 0;
  let goodCalls = 0;
  let pingId = 0;
  const kinds = new Map<string, number>();
  const count = (kind: string) => kinds.set(kind, (kinds.get(kind) ?? 0) + 1);

  await fc.assert(
    fc.asyncProperty(fc.array(inStepFrame, { minLength: 30, maxLength: 50 }), desyncCase, async (cases, desync) => {
      // In step: each bad frame is followed by a PING; each must draw at least one reply before its PONG.
      const conn = await RawConnection.open(socket, { secret: SECRET });
      try {
        const pongs: number[] = [];
        for (const c of cases) {
          conn.write(c.bytes);
          pongs.push(++pingId);
          conn.send([Op.PING, pingId]);
        }
        const last = pongs[pongs.length - 1];
        const pong = await conn.next((m) => Array.isArray(m) && m[0] === Op.PONG && m[1] === last, 15_000);
        assert.ok(pong !== undefined, `the server closed a connection on an in-step frame; last messages: ${JSON.stringify(conn.messages.slice(-3))}`);
        let i = 0;
        for (let k = 0; k < cases.length; k++) {
          let replies = 0;
          while (!(Array.isArray(conn.messages[i]) && (conn.messages[i] as unknown[])[0] === Op.PONG && (conn.messages[i] as unknown[])[1] === pongs[k])) {
            const message = conn.messages[i++];
            if (isError(message)) {
              assert.ok(KNOWN_CODES.has(message[2].code), `unknown error code ${message[2].code}`);
              assert.equal(typeof message[2].message, 'string');
              assert.ok(!message[2].message.includes('\n'), `multi-line error: ${message[2].message}`);
            }
            replies++;
          }
          i++;
          assert.ok(replies >= 1, `no reply to a ${cases[k].kind} frame: ${cases[k].bytes.subarray(0, 40).toString('hex')}`);
          malformed++;
          count(cases[k].kind);
        }
      } finally {
        conn.close();
      }

      // Out of step: the server must close the connection (after an error where it can send one).
      const raw = await RawConnection.open(socket, { secret: SECRET, authenticate: desync.kind !== 'before auth' && desync.kind !== 'bad auth' });
      raw.write(desync.bytes);
      // Garbage and truncated frames leave the server waiting for the rest: end our side, as a peer that gives up would.
      if (desync.kind === 'garbage' || desync.kind === 'truncated') raw.socket.end();
      const closed = await closedWithin(raw, 5000);
      raw.close();
      assert.ok(closed, `the server left a connection open after a ${desync.kind} case`);
      if (desync.kind === 'oversize') assert.ok(raw.messages.some((m) => isError(m) && m[2].code === 'FRAME_TOO_LARGE'), 'no FRAME_TOO_LARGE error');
      if (desync.kind === 'before auth' || desync.kind === 'bad auth') assert.ok(raw.messages.some((m) => isError(m) && m[2].code === 'HANDSHAKE_FAILED'), 'no HANDSHAKE_FAILED error');
      malformed++;
      count(desync.kind);

      // A good call, interleaved: the server is up and answers correctly.
      const name = `run-${malformed}`;
      assert.equal((await canary.greet({ name })).greeting, `Hello, ${name}!`);
      goodCalls++;
      maxRss = Math.max(maxRss, readRss(server.pid));
    }),
    { numRuns: 260, endOnFailure: true },
  );

  assert.ok(malformed >= 10_000, `only ${malformed} malformed frames`);
  assert.equal(server.child.exitCode, null, `the server died: ${server.stderr()}`);
  assert.equal((await canary.greet({ name: 'after' })).greeting, 'Hello, after!');
  const endRss = readRss(server.pid);
  const bound = 2 * startRss + 50 * 1024 * 1024;
  assert.ok(maxRss < bound, `server RSS reached ${maxRss} bytes (start ${startRss}, bound ${bound})`);
  assert.equal(server.stderr(), '', 'the server wrote to stderr');
  const summary = [...kinds].map(([k, n]) => `${k}: ${n}`).join(', ');
  t.diagnostic(`fuzz: ${malformed} malformed frames, ${goodCalls} good calls interleaved; server RSS ${(startRss / 2 ** 20).toFixed(1)} MB at start, max ${(maxRss / 2 ** 20).toFixed(1)} MB, end ${(endRss / 2 ** 20).toFixed(1)} MB; ${summary}`);
});

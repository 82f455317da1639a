import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameWriter, Op, encodeFrame, isRequestId } from '../../src/sdk/protocol.js';

function collect(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
  const messages: unknown[] = [];
  const errors: Array<{ message: string; code: string; fatal: boolean }> = [];
  const reader = new FrameReader(
    {
      onMessage: (m) => messages.push(m),
      onFrameError: (e, code, fatal) => errors.push({ message: e.message, code, fatal }),
    },
    maxFrameBytes,
  );
  return { reader, messages, errors };
}

const sample: unknown[][] = [
  [Op.CALL, 1, 'greet', { name: 'World' }],
  [Op.REPLY, 2, { list: Array.from({ length: 30_000 }, (_, i) => i), bin: Buffer.from([1, 2, 3]) }],
  [Op.PING, 3],
  [Op.ERROR, 4, { name: 'E', message: 'ü€', code: 'X', cell: 'c' }],
  [Op.CALL, 0xffff_ffff, 'm', 'x'.repeat(200)],
];

test('sdk - frames split at any byte, or many to a chunk, decode to the same messages', () => {
  const stream = Buffer.concat(sample.map((m) => encodeFrame(m)));
  // One chunk, then every split point of two chunks (strided to keep it quick), then one byte at a time.
  const splits: Buffer[][] = [[stream]];
  for (let at = 1; at < stream.length; at += at < 400 ? 1 : 997) splits.push([stream.subarray(0, at), stream.subarray(at)]);
  splits.push(Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1)));
  for (const chunks of splits) {
    const { reader, messages, errors } = collect();
    for (const chunk of chunks) reader.push(Buffer.from(chunk));
    assert.deepEqual(errors, []);
    assert.equal(messages.length, sample.length);
    assert.deepEqual(messages[0], sample[0]);
    assert.equal((messages[1] as [number, number, { list: number[] }])[2].list.length, 30_000);
    assert.deepEqual([...(messages[1] as [number, number, { bin: Uint8Array }])[2].bin], [1, 2, 3]);
    assert.deepEqual(messages.slice(2), sample.slice(2));
  }
});

test('sdk - binary values decoded from a split frame do not change when the reader reuses its buffer', () => {
  const { reader, messages } = collect();
  const a = encodeFrame([Op.REPLY, 1, Buffer.alloc(40, 0xaa)]);
  const b = encodeFrame([Op.REPLY, 2, Buffer.alloc(40, 0xbb)]);
  for (const frame of [a, b]) {
    reader.push(Buffer.from(frame.subarray(0, 10)));
    reader.push(Buffer.from(frame.subarray(10)));
  }
  assert.deepEqual([...(messages[0] as [number, number, Uint8Array])[2]], Array(40).fill(0xaa));
  assert.deepEqual([...(messages[1] as [number, number, Uint8Array])[2]], Array(40).fill(0xbb));
});

test('sdk - an oversize length prefix is fatal at once, before any of its bytes arrive', () => {
  const { reader, messages, errors } = collect(1024);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(0xffff_fff0, 0);
  reader.push(Buffer.concat([encodeFrame([Op.PING, 1]), header.subarray(0, 2)]));
  assert.equal(errors.length, 0);
  reader.push(header.subarray(2));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'FRAME_TOO_LARGE');
  assert.equal(errors[0].fatal, true);
  assert.match(errors[0].message, /4294967280 bytes exceeds the limit of 1024/);
  reader.push(encodeFrame([Op.PING, 2]));
  assert.deepEqual(messages, [[Op.PING, 1]]);
});

test('sdk - undecodable and empty frames are errors the stream survives', () => {
  const { reader, messages, errors } = collect();
  const bad = Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]);
  const empty = Buffer.from([0, 0, 0, 0]);
  const trailing = Buffer.from([0, 0, 0, 2, 0x01, 0x02]);
  reader.push(Buffer.concat([bad, empty, trailing, encodeFrame([Op.PING, 9])]));
  assert.deepEqual(
    errors.map((e) => [e.code, e.fatal]),
    [
      ['BAD_FRAME', false],
      ['BAD_FRAME', false],
      ['BAD_FRAME', false],
    ],
  );
  assert.deepEqual(messages, [[Op.PING, 9]]);
});

test('sdk - a paused reader holds the rest of the chunk until it resumes', () => {
  const messages: unknown[] = [];
  const reader: FrameReader = new FrameReader({
    onMessage: (m) => {
      messages.push(m);
      if (messages.length === 2) reader.pause();
    },
    onFrameError: () => assert.fail('no errors expected'),
  });
  const frames = Array.from({ length: 5 }, (_, i) => encodeFrame([Op.PING, i + 1]));
  reader.push(Buffer.concat(frames.slice(0, 4)));
  assert.equal(messages.length, 2);
  reader.push(frames[4]);
  assert.equal(messages.length, 2);
  reader.resume();
  assert.deepEqual(messages, [1, 2, 3, 4, 5].map((id) => [Op.PING, id]));
});

test('sdk - the writer coalesces frames of one turn into one write, and flushes a burst early', async () => {
  const writes: Buffer[] = [];
  const writer = new FrameWriter({ write: (data) => (writes.push(Buffer.from(data)), true) });
  for (let i = 1; i <= 3; i++) writer.push(encodeFrame([Op.PING, i]));
  assert.equal(writes.length, 0);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(writes.length, 1);
  const { reader, messages } = collect();
  reader.push(writes[0]);
  assert.deepEqual(messages, [1, 2, 3].map((id) => [Op.PING, id]));
  writes.length = 0;
  for (let i = 1; i <= 40; i++) writer.push(encodeFrame([Op.PING, i]));
  assert.ok(writes.length >= 2, 'a burst is sent before the end of the turn');
  await new Promise((resolve) => setImmediate(resolve));
  const all = collect();
  for (const w of writes) all.reader.push(w);
  assert.equal(all.messages.length, 40);
});

test('sdk - request ids are uint32 other than 0', () => {
  for (const id of [1, 2 ** 32 - 1, 12345]) assert.ok(isRequestId(id));
  for (const id of [0, -1, 1.5, 2 ** 32, Number.NaN, '1', null]) assert.ok(!isRequestId(id), String(id));
});

test('sdk - frames are a 4-byte big-endian length and msgpack, as docs/PROTOCOL.md shows', () => {
  const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
  const dump = /<!-- example-call -->\s*```text\n([\s\S]*?)```/.exec(doc);
  assert.ok(dump, 'docs/PROTOCOL.md has the example CALL dump');
  const hex = dump[1]
    .split('\n')
    .map((line) => line.replace(/^[0-9a-f]{4}:\s*/, '').split('  ')[0])
    .join('')
    .replace(/\s+/g, '');
  const frame = encodeFrame([Op.CALL, 1, 'greet', { name: 'World' }]);
  assert.equal(hex, frame.toString('hex'));
  assert.equal(frame.readUInt32BE(0), frame.length - 4);
  assert.deepEqual(new Packr({ useRecords: false }).unpack(frame.subarray(4)), [Op.CALL, 1, 'greet', { name: 'World' }]);
});

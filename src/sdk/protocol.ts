/**
 * The wire protocol (docs/PROTOCOL.md): frames of a 4-byte big-endian length and a msgpack
 * payload `[op, id, ...fields]`. Shared by the server, the client and the admin helpers.
 */
import { Packr, RESERVE_START_SPACE, RESET_BUFFER_MODE, REUSE_BUFFER_MODE, Unpackr } from 'msgpackr';

export const PROTOCOL_VERSION = 1;

/** Operation codes, the first element of every payload. */
export const Op = {
  HELLO: 1,
  AUTH: 2,
  WELCOME: 3,
  CALL: 4,
  REPLY: 5,
  ERROR: 6,
  PING: 7,
  PONG: 8,
  SHUTDOWN: 9,
  SHUTDOWN_ACK: 10,
  SCHEMA: 11,
  SCHEMA_REPLY: 12,
  GOAWAY: 13,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Codes carried by ERROR replies. */
export const ErrorCode = {
  BAD_FRAME: 'BAD_FRAME',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  HANDSHAKE_FAILED: 'HANDSHAKE_FAILED',
  UNKNOWN_METHOD: 'UNKNOWN_METHOD',
  DUPLICATE_ID: 'DUPLICATE_ID',
  INVALID_INPUT: 'INVALID_INPUT',
  INVALID_OUTPUT: 'INVALID_OUTPUT',
  HANDLER_ERROR: 'HANDLER_ERROR',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
} as const;

export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;
export const HEADER_BYTES = 4;
/** Largest request id; ids are uint32 and 0 is reserved for connection-level messages. */
export const MAX_ID = 0xffff_ffff;

/** The fields of an ERROR op. */
export interface WireError {
  name: string;
  message: string;
  code: string;
  cell?: string;
  method?: string;
}

const packr = new Packr({ useRecords: false });

/**
 * Encodes one payload into a whole frame (length prefix included). The buffer is a view into
 * msgpackr's output buffer, which msgpackr never writes over, so it may be queued until the flush.
 */
export function encodeFrame(payload: unknown[]): Buffer {
  const frame = packr.pack(payload, RESERVE_START_SPACE | HEADER_BYTES);
  frame.writeUInt32BE(frame.length - HEADER_BYTES, 0);
  return frame;
}

/** Bytes msgpackr writes for a uint32 `id`: positive fixint below 0x80 (useRecords: false), else uint8/16/32. */
function idBytes(id: number): number {
  return id < 0x80 ? 1 : id < 0x100 ? 2 : id < 0x10000 ? 3 : 5;
}

function writeId(frame: Buffer, pos: number, id: number): number {
  if (id < 0x80) {
    frame[pos] = id;
    return pos + 1;
  }
  if (id < 0x100) {
    frame[pos] = 0xcc;
    frame[pos + 1] = id;
    return pos + 2;
  }
  if (id < 0x10000) {
    frame[pos] = 0xcd;
    frame[pos + 1] = id >>> 8;
    frame[pos + 2] = id & 0xff;
    return pos + 3;
  }
  frame[pos] = 0xce;
  frame[pos + 1] = id >>> 24;
  frame[pos + 2] = (id >>> 16) & 0xff;
  frame[pos + 3] = (id >>> 8) & 0xff;
  frame[pos + 4] = id & 0xff;
  return pos + 5;
}

function writeLength(frame: Buffer, at: number, len: number): void {
  frame[at] = len >>> 24;
  frame[at + 1] = (len >>> 16) & 0xff;
  frame[at + 2] = (len >>> 8) & 0xff;
  frame[at + 3] = len & 0xff;
}

/** Largest prefix (length, array header, op, id, method) msgpackr can reserve in front of a payload. */
const MAX_PREFIX_BYTES = 0xff;
const MAX_METHOD_KEYS = 1024;
/** Method names as msgpackr encodes them, so a CALL's prefix is written without encoding the name each time. */
const methodKeys = new Map<string, Buffer>();

function methodKey(method: string): Buffer {
  let key = methodKeys.get(method);
  if (key === undefined) {
    key = Buffer.from(packr.pack(method));
    if (methodKeys.size < MAX_METHOD_KEYS) methodKeys.set(method, key);
  }
  return key;
}

/**
 * A frame encoded in place: bytes `[start, end)` of `buf` (length prefix included). It lives in
 * msgpackr's buffer, which the next encode writes over: hand it to {@link FrameWriter.pushEncoded}
 * (which copies it) before encoding anything else.
 */
export interface EncodedFrame {
  buf: Buffer;
  start: number;
  end: number;
}

const lastEncoded: EncodedFrame = { buf: Buffer.alloc(0), start: 0, end: 0 };
/** msgpackr writes the payload after `prefix` reserved bytes, returns its whole buffer (no view) and reuses the space next time. */
const IN_PLACE = RESERVE_START_SPACE | REUSE_BUFFER_MODE | RESET_BUFFER_MODE;

function encodedWhole(frame: Buffer): EncodedFrame {
  lastEncoded.buf = frame;
  lastEncoded.start = 0;
  lastEncoded.end = frame.length;
  return lastEncoded;
}

/**
 * `encodeFrame([Op.CALL, id, method, input])`, byte for byte, with msgpackr encoding only `input`:
 * the prefix (length, array header, op, id, method) is written by hand into the space reserved
 * before it. `id` must be a request id (uint32). The result is valid until the next encode.
 */
export function encodeCallInPlace(id: number, method: string, input: unknown): EncodedFrame {
  const key = methodKey(method);
  const keyLen = key.length;
  const prefix = HEADER_BYTES + 2 + idBytes(id) + keyLen;
  if (prefix > MAX_PREFIX_BYTES) return encodedWhole(encodeFrame([Op.CALL, id, method, input]));
  const target = packr.pack(input, IN_PLACE | prefix) as Buffer & { start: number; end: number };
  const start = target.start;
  const end = target.end;
  writeLength(target, start, end - start - HEADER_BYTES);
  target[start + 4] = 0x94;
  target[start + 5] = Op.CALL;
  let pos = writeId(target, start + 6, id);
  for (let i = 0; i < keyLen; i++) target[pos++] = key[i];
  lastEncoded.buf = target;
  lastEncoded.start = start;
  lastEncoded.end = end;
  return lastEncoded;
}

/** `encodeFrame([Op.REPLY, id, output])`, byte for byte, with msgpackr encoding only `output`. Valid until the next encode. */
export function encodeReplyInPlace(id: number, output: unknown): EncodedFrame {
  const target = packr.pack(output, IN_PLACE | (HEADER_BYTES + 2 + idBytes(id))) as Buffer & { start: number; end: number };
  const start = target.start;
  const end = target.end;
  writeLength(target, start, end - start - HEADER_BYTES);
  target[start + 4] = 0x93;
  target[start + 5] = Op.REPLY;
  writeId(target, start + 6, id);
  lastEncoded.buf = target;
  lastEncoded.start = start;
  lastEncoded.end = end;
  return lastEncoded;
}

/** {@link encodeFrame}, as an {@link EncodedFrame} (valid until the next encode). */
export function encodeInPlace(payload: unknown[]): EncodedFrame {
  return encodedWhole(encodeFrame(payload));
}

function copyEncoded(f: EncodedFrame): Buffer {
  return Buffer.from(f.buf.subarray(f.start, f.end));
}

/** {@link encodeCallInPlace} as a frame of its own. */
export function encodeCallFrame(id: number, method: string, input: unknown): Buffer {
  return copyEncoded(encodeCallInPlace(id, method, input));
}

/** {@link encodeReplyInPlace} as a frame of its own. */
export function encodeReplyFrame(id: number, output: unknown): Buffer {
  return copyEncoded(encodeReplyInPlace(id, output));
}

/** True when `id` is a valid request id (uint32, not 0). */
export function isRequestId(id: unknown): id is number {
  return typeof id === 'number' && id > 0 && id <= MAX_ID && Number.isInteger(id);
}

/** Reads an ERROR op's fields, tolerating a peer that sends a malformed error. */
export function readWireError(fields: unknown): WireError {
  const f = (fields !== null && typeof fields === 'object' ? fields : {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return {
    name: str(f.name) ?? 'Error',
    message: str(f.message) ?? '',
    code: str(f.code) ?? 'ERROR',
    cell: str(f.cell),
    method: str(f.method),
  };
}

/** What a {@link FrameReader} hands its decoded messages and framing errors to. */
export interface FrameSink {
  /** One decoded payload; the reader does not check its shape. */
  onMessage(message: unknown): void;
  /**
   * A frame that could not be used. `fatal` means the stream is out of sync (oversize length
   * prefix): the reader stops and the connection must be closed.
   */
  onFrameError(error: Error, code: string, fatal: boolean): void;
  /**
   * Optional fast path: a payload `[4, id, method, input]` with a uint id and a string method,
   * decoded without building the array. Without it such payloads go to onMessage.
   */
  onCall?(id: number, method: string, input: unknown): void;
  /** Optional fast path: a payload `[5, id, output]` with a uint id. Without it it goes to onMessage. */
  onReply?(id: number, output: unknown): void;
}

/** Method names decoded by a reader, kept by their bytes so a CALL's name is matched, not decoded. */
const MAX_READER_KEYS = 32;
const FAST_NONE = 0;
const FAST_CALL = 1;
const FAST_REPLY = 2;

/** Frames up to this size are decoded from a scratch copy (see FrameReader.decode). */
const SMALL_FRAME_BYTES = 128;
const MIN_PARTIAL_BYTES = 64 * 1024;

/**
 * Splits a byte stream into frames and decodes them, many per chunk. A frame that lies whole inside
 * a chunk is decoded in place (a small one from a scratch copy, see decode()); a frame split across
 * chunks is gathered in a reusable buffer (decoded with `copyBuffers`, since that buffer is
 * overwritten by the next frame). Nothing is allocated for a length prefix before it is checked.
 */
export class FrameReader {
  private readonly inPlace = new Unpackr({ useRecords: false });
  private readonly copying = new Unpackr({ useRecords: false, copyBuffers: true });
  private readonly range = { start: 0, end: 0 };
  private readonly scratch = Buffer.allocUnsafe(SMALL_FRAME_BYTES);
  private partial: Buffer | null = null;
  /** Bytes of the split frame gathered so far, header included; 0 when there is none. */
  private partialBytes = 0;
  /** Whole size (header included) of the split frame, or -1 while its header is incomplete. */
  private partialSize = -1;
  private readonly keyBytes: Buffer[] = [];
  private readonly keyNames: string[] = [];
  private readonly hasCall: boolean;
  private readonly hasReply: boolean;
  /** What decodeFast() decoded, handed to the sink outside the decoder's try. */
  private fastId = 0;
  private fastMethod = '';
  private fastValue: unknown = undefined;
  private isStopped = false;
  private isPaused = false;
  /** The chunk whose frames from `heldOffset` on wait for `resume()`. */
  private held: Buffer | null = null;
  private heldOffset = 0;

  constructor(
    private readonly sink: FrameSink,
    /** Largest payload accepted; a larger length prefix stops the reader (fatal error). */
    public maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {
    this.hasCall = typeof sink.onCall === 'function';
    this.hasReply = typeof sink.onReply === 'function';
  }

  /** Feeds one chunk; messages and errors reach the sink synchronously. */
  push(chunk: Buffer): void {
    if (this.isStopped) return;
    if (this.held !== null) {
      // Paused with frames left over: keep them in order (the owner should have paused its socket).
      this.held = Buffer.concat([this.held.subarray(this.heldOffset), chunk]);
      this.heldOffset = 0;
      return;
    }
    this.process(chunk, 0);
  }

  /**
   * Stops handing out messages, at once: the rest of the current chunk is held (not copied) until
   * `resume()`. The owner pauses its socket too, so a peer that floods is held by the kernel.
   */
  pause(): void {
    this.isPaused = true;
  }

  /** Hands out held messages (synchronously), unless a message pauses it again. */
  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    const held = this.held;
    if (held !== null) {
      this.held = null;
      this.process(held, this.heldOffset);
    }
  }

  /** Stops decoding; later chunks are ignored. */
  stop(): void {
    this.isStopped = true;
    this.partial = null;
    this.held = null;
  }

  private process(chunk: Buffer, start: number): void {
    const n = chunk.length;
    let off = start;
    if (this.partialBytes > 0) {
      off = this.continuePartial(chunk, off);
      if (off < 0 || this.partialBytes > 0) return;
    }
    while (n - off >= HEADER_BYTES) {
      if (this.isPaused) {
        this.held = chunk;
        this.heldOffset = off;
        return;
      }
      const len = chunk.readUInt32BE(off);
      if (len > this.maxFrameBytes) return this.oversize(len);
      const end = off + HEADER_BYTES + len;
      if (end > n) break;
      this.decode(this.inPlace, chunk, off + HEADER_BYTES, end);
      if (this.isStopped) return;
      off = end;
    }
    if (off < n) {
      if (this.isPaused) {
        this.held = chunk;
        this.heldOffset = off;
      } else {
        this.startPartial(chunk, off);
      }
    }
  }

  private startPartial(chunk: Buffer, off: number): void {
    const rest = chunk.length - off;
    let size = -1;
    if (rest >= HEADER_BYTES) size = HEADER_BYTES + chunk.readUInt32BE(off);
    this.ensureCapacity(Math.max(size, MIN_PARTIAL_BYTES));
    chunk.copy(this.partial!, 0, off);
    this.partialBytes = rest;
    this.partialSize = size;
  }

  /** Returns the offset in `chunk` after the split frame, or -1 when the reader stopped. */
  private continuePartial(chunk: Buffer, start: number): number {
    const partial = this.partial!;
    let off = start;
    if (this.partialSize < 0) {
      const need = HEADER_BYTES - this.partialBytes;
      const take = Math.min(need, chunk.length - off);
      chunk.copy(partial, this.partialBytes, off, off + take);
      this.partialBytes += take;
      off += take;
      if (this.partialBytes < HEADER_BYTES) return off;
      const len = partial.readUInt32BE(0);
      if (len > this.maxFrameBytes) {
        this.oversize(len);
        return -1;
      }
      this.partialSize = HEADER_BYTES + len;
      this.ensureCapacity(this.partialSize);
    }
    const take = Math.min(this.partialSize - this.partialBytes, chunk.length - off);
    chunk.copy(this.partial!, this.partialBytes, off, off + take);
    this.partialBytes += take;
    off += take;
    if (this.partialBytes < this.partialSize) return off;
    const buf = this.partial!;
    const end = this.partialSize;
    this.partialBytes = 0;
    this.partialSize = -1;
    // A frame larger than the usual buffer leaves a big buffer behind; drop it so idle connections stay small.
    if (buf.length > MIN_PARTIAL_BYTES) this.partial = null;
    this.decode(this.copying, buf, HEADER_BYTES, end);
    return this.isStopped ? -1 : off;
  }

  private ensureCapacity(size: number): void {
    if (this.partial === null || this.partial.length < size) {
      const old = this.partial;
      this.partial = Buffer.allocUnsafe(size);
      if (old !== null && this.partialBytes > 0) old.copy(this.partial, 0, 0, this.partialBytes);
    }
  }

  private decode(unpackr: Unpackr, buf: Buffer, start: number, end: number): void {
    let message: unknown;
    let fast = FAST_NONE;
    const range = this.range;
    const size = end - start;
    try {
      if (size === 0) throw new Error('empty frame');
      fast = this.decodeFast(unpackr, buf, start, end);
      if (fast !== FAST_NONE) {
        // handed out below, outside the try
      } else if (size <= SMALL_FRAME_BYTES) {
        // msgpackr decodes the strings of a short source in JS but calls its native extractor for a long
        // one (a frame in the middle of a chunk counts as long), which costs more than it saves on a small
        // frame: copying the frame to a small scratch buffer is cheaper.
        const scratch = this.scratch;
        // A byte loop beats Buffer#copy (several JS wrappers deep in Node 20) for a few dozen bytes.
        if (size <= 48) for (let i = 0; i < size; i++) scratch[i] = buf[start + i];
        else buf.copy(scratch, 0, start, end);
        range.start = 0;
        range.end = size;
        message = this.copying.unpack(scratch, range);
      } else {
        range.start = start;
        range.end = end;
        message = unpackr.unpack(buf, range);
      }
    } catch (error) {
      this.sink.onFrameError(new Error(`undecodable frame: ${(error as Error)?.message ?? String(error)}`.slice(0, 200)), ErrorCode.BAD_FRAME, false);
      return;
    }
    if (fast === FAST_NONE) {
      this.sink.onMessage(message);
    } else {
      const value = this.fastValue;
      this.fastValue = undefined;
      if (fast === FAST_CALL) this.sink.onCall!(this.fastId, this.fastMethod, value);
      else this.sink.onReply!(this.fastId, value);
    }
  }

  /**
   * Decodes a CALL `[4, id, method, input]` or REPLY `[5, id, output]` whose id is a uint and whose
   * method is a short string: the prefix by hand, msgpackr only for the last element. Returns false,
   * having handed out nothing, for anything else (or a payload msgpackr refuses), which then takes the
   * full decode, so errors are exactly those of the full decode.
   */
  private decodeFast(unpackr: Unpackr, buf: Buffer, start: number, end: number): number {
    const head = buf[start];
    let isCall: boolean;
    if (head === 0x94) {
      if (buf[start + 1] !== Op.CALL || !this.hasCall) return FAST_NONE;
      isCall = true;
    } else if (head === 0x93) {
      if (buf[start + 1] !== Op.REPLY || !this.hasReply) return FAST_NONE;
      isCall = false;
    } else {
      return FAST_NONE;
    }
    let p = start + 2;
    let id: number;
    const c = buf[p];
    if (c < 0x80) {
      id = c;
      p += 1;
    } else if (c === 0xcc) {
      id = buf[p + 1];
      p += 2;
    } else if (c === 0xcd) {
      id = (buf[p + 1] << 8) | buf[p + 2];
      p += 3;
    } else if (c === 0xce) {
      id = buf[p + 1] * 0x1000000 + ((buf[p + 2] << 16) | (buf[p + 3] << 8) | buf[p + 4]);
      p += 5;
    } else {
      return FAST_NONE;
    }
    let method = '';
    if (isCall) {
      if (p >= end) return FAST_NONE;
      const s = buf[p];
      if ((s & 0xe0) !== 0xa0) return FAST_NONE;
      const len = s & 0x1f;
      const from = p + 1;
      p = from + len;
      if (p > end) return FAST_NONE;
      const name = this.methodName(buf, from, len);
      if (name === null) return FAST_NONE;
      method = name;
    }
    if (p >= end) return FAST_NONE;
    const range = this.range;
    const size = end - p;
    let value: unknown;
    try {
      if (size <= SMALL_FRAME_BYTES) {
        // See decode(): msgpackr decodes a short source faster when it starts at 0.
        const scratch = this.scratch;
        if (size <= 48) for (let i = 0; i < size; i++) scratch[i] = buf[p + i];
        else buf.copy(scratch, 0, p, end);
        range.start = 0;
        range.end = size;
        value = this.copying.unpack(scratch, range);
      } else {
        range.start = p;
        range.end = end;
        value = unpackr.unpack(buf, range);
      }
    } catch {
      return FAST_NONE;
    }
    this.fastId = id;
    this.fastMethod = method;
    this.fastValue = value;
    return isCall ? FAST_CALL : FAST_REPLY;
  }

  /** The method name in `buf[from, from + len)`, from the reader's keys; null when it is not ASCII. */
  private methodName(buf: Buffer, from: number, len: number): string | null {
    const keyBytes = this.keyBytes;
    const n = keyBytes.length;
    for (let k = 0; k < n; k++) {
      const key = keyBytes[k];
      if (key.length !== len) continue;
      let i = 0;
      while (i < len && key[i] === buf[from + i]) i++;
      if (i === len) return this.keyNames[k];
    }
    let name = '';
    for (let i = 0; i < len; i++) {
      const b = buf[from + i];
      if (b >= 0x80) return null;
      name += String.fromCharCode(b);
    }
    if (n < MAX_READER_KEYS) {
      keyBytes.push(Buffer.from(buf.subarray(from, from + len)));
      this.keyNames.push(name);
    }
    return name;
  }

  private oversize(len: number): void {
    this.stop();
    this.sink.onFrameError(new Error(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes} bytes`), ErrorCode.FRAME_TOO_LARGE, true);
  }
}

/** Measured with test/sdk/perf-probe.ts: 16 beat 4, 8, 32 and "once per turn" at 64 calls in flight. */
const FLUSH_FRAMES = 16;
const FLUSH_BYTES = 64 * 1024;

/** How a {@link FrameWriter} hands a batch of frames to the socket. */
export interface FrameTarget {
  write(data: Buffer): boolean;
}

/** Frames up to this size are copied into the writer's slab; larger ones are queued as they are. */
const SLAB_FRAME_BYTES = 2048;
/**
 * The slab small frames are copied into, shared by every writer of the process: a writer's queued
 * bytes are one run of it as long as no other writer appended meanwhile (else its run is sealed and a
 * new one starts). Bytes once handed out are never written over; a full slab is replaced. A writer
 * keeps no reference to the slab once it flushed, so idle connections hold no memory.
 */
const SLAB_BYTES = 64 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabPos = 0;

/**
 * Queues frames and writes them as one buffer once per event-loop turn (setImmediate runs after the
 * poll phase, so replies to every chunk read in that phase go out in a single write), or as soon as
 * FLUSH_FRAMES are queued: with many calls in flight, sending the first replies of a burst early lets
 * the peer work on them while this side prepares the rest, instead of the two processes taking turns.
 *
 * Small frames are copied one after the other into the shared slab, and a flush writes a view of
 * this writer's run of it (no per-frame buffer, no concat); the socket may hold that view, which is
 * why the slab's bytes are never written over.
 */
export class FrameWriter {
  /** Written frames waiting, in order, before the slab's bytes (only when large frames are queued). */
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private queuedFrames = 0;
  /** The slab this writer's run is in; its bytes [runStart, runEnd) are queued, after everything in `queue`. */
  private run: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  private isScheduled = false;
  private isClosed = false;
  private readonly flushBound = () => {
    this.isScheduled = false;
    this.flush();
  };

  /** `onBacklog` runs after a write that left the socket over its high-water mark. */
  constructor(
    private readonly target: FrameTarget,
    private readonly onBacklog: (() => void) | null = null,
  ) {}

  /** Bytes queued and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  push(frame: Buffer): void {
    if (this.isClosed) return;
    this.seal();
    this.queue.push(frame);
    this.queued(frame.length);
  }

  /** Queues a frame encoded in place (copied now, so the encoder may write over it). */
  pushEncoded(f: EncodedFrame): void {
    if (this.isClosed) return;
    const len = f.end - f.start;
    if (len > SLAB_FRAME_BYTES) {
      this.push(copyEncoded(f));
      return;
    }
    if (slabPos + len > SLAB_BYTES) {
      slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      slabPos = 0;
    }
    let d = slabPos;
    // Continue this writer's run only if it ends where the shared slab's free space begins.
    if (this.run !== slab || this.runEnd !== d) {
      this.seal();
      this.run = slab;
      this.runStart = d;
    }
    const dst = slab;
    const src = f.buf;
    if (len <= 64) {
      for (let s = f.start, end = f.end; s < end; s++) dst[d++] = src[s];
    } else {
      dst.set(src.subarray(f.start, f.end), d);
      d += len;
    }
    slabPos = d;
    this.runEnd = d;
    this.queued(len);
  }

  private queued(len: number): void {
    this.queuedFrames++;
    this.queuedBytes += len;
    if (this.queuedFrames >= FLUSH_FRAMES || this.queuedBytes >= FLUSH_BYTES) {
      this.flush();
      return;
    }
    if (!this.isScheduled) {
      this.isScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Moves the run's bytes to the queue (a frame that is not in the run comes next). */
  private seal(): void {
    const run = this.run;
    if (run !== null) {
      if (this.runEnd > this.runStart) this.queue.push(run.subarray(this.runStart, this.runEnd));
      this.run = null;
      this.runStart = this.runEnd = 0;
    }
  }

  /** Writes everything queued now. Returns the socket's `write()` result (false: over its high-water mark). */
  flush(): boolean {
    if (this.isClosed || this.queuedFrames === 0) return true;
    let data: Buffer;
    const queue = this.queue;
    if (queue.length === 0) {
      data = this.run!.subarray(this.runStart, this.runEnd);
      this.run = null;
      this.runStart = this.runEnd = 0;
    } else {
      this.seal();
      data = queue.length === 1 ? queue[0] : Buffer.concat(queue, this.queuedBytes);
      queue.length = 0;
    }
    this.queuedBytes = 0;
    this.queuedFrames = 0;
    const isBelowHighWater = this.target.write(data);
    if (!isBelowHighWater) this.onBacklog?.();
    return isBelowHighWater;
  }

  /** Drops whatever is queued; later pushes are ignored. */
  close(): void {
    this.isClosed = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.queuedFrames = 0;
    this.run = null;
    this.runStart = this.runEnd = 0;
  }
}

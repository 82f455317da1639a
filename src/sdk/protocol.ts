/**
 * The wire protocol (docs/PROTOCOL.md): frames of a 4-byte big-endian length and a msgpack
 * payload `[op, id, ...fields]`. Shared by the server, the client and the admin helpers.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';

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
}

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
  private isStopped = false;
  private isPaused = false;
  /** The chunk whose frames from `heldOffset` on wait for `resume()`. */
  private held: Buffer | null = null;
  private heldOffset = 0;

  constructor(
    private readonly sink: FrameSink,
    /** Largest payload accepted; a larger length prefix stops the reader (fatal error). */
    public maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {}

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
    const range = this.range;
    const size = end - start;
    try {
      if (size === 0) throw new Error('empty frame');
      if (size <= SMALL_FRAME_BYTES) {
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
    this.sink.onMessage(message);
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

/**
 * Queues frames and writes them as one buffer once per event-loop turn (setImmediate runs after the
 * poll phase, so replies to every chunk read in that phase go out in a single write), or as soon as
 * FLUSH_FRAMES are queued: with many calls in flight, sending the first replies of a burst early lets
 * the peer work on them while this side prepares the rest, instead of the two processes taking turns.
 */
export class FrameWriter {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
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
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    if (this.queue.length >= FLUSH_FRAMES || this.queuedBytes >= FLUSH_BYTES) {
      this.flush();
      return;
    }
    if (!this.isScheduled) {
      this.isScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Writes everything queued now. Returns the socket's `write()` result (false: over its high-water mark). */
  flush(): boolean {
    if (this.isClosed || this.queue.length === 0) return true;
    const queue = this.queue;
    const data = queue.length === 1 ? queue[0] : Buffer.concat(queue, this.queuedBytes);
    queue.length = 0;
    this.queuedBytes = 0;
    const isBelowHighWater = this.target.write(data);
    if (!isBelowHighWater) this.onBacklog?.();
    return isBelowHighWater;
  }

  /** Drops whatever is queued; later pushes are ignored. */
  close(): void {
    this.isClosed = true;
    this.queue = [];
    this.queuedBytes = 0;
  }
}

/**
 * The client side of one connection to one instance: handshake, request ids, pipelined calls and
 * their deadlines. `Client` (client.ts) spreads calls over several of these; the admin helpers
 * (admin.ts) open one for a single request.
 */
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { AbortError, CallTimeoutError, ConnectionClosedError, ConnectionLostError, HandshakeError, ProtocolError, RemoteError } from './errors.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  type FrameSink,
  FrameReader,
  FrameWriter,
  HEADER_BYTES,
  MAX_ID,
  Op,
  PROTOCOL_VERSION,
  type EncodedFrame,
  encodeCallInPlace,
  encodeInPlace,
  encodeFrame,
  readWireError,
} from './protocol.js';

/** Where a call waits when no connection can take it, and who watches its signal; the client implements it. */
export interface CallHost {
  /** Forget `call` (it settled while waiting for a connection). */
  unqueue(call: PendingCall): void;
  /** Stop watching `call.signal` for `call` (it settled). */
  unwatch(call: PendingCall): void;
}

/**
 * One request from its start to its settlement. It is linked into a {@link TimeoutQueue} (its
 * deadline) and sits either in a connection's pending map or in the client's waiting set.
 */
export class PendingCall {
  /** The request id on `conn`; 0 while the call is not on a connection (then the host holds it). */
  id = 0;
  conn: Connection | null = null;
  deadline = 0;
  attempts = 0;
  queue: TimeoutQueue | null = null;
  prev: PendingCall | null = null;
  next: PendingCall | null = null;
  isSettled = false;

  constructor(
    readonly op: number,
    readonly cell: string,
    readonly method: string,
    readonly input: unknown,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
    private readonly resolveFn: (value: unknown) => void,
    private readonly rejectFn: (error: unknown) => void,
    readonly host: CallHost | null,
  ) {}

  resolve(value: unknown): void {
    if (this.isSettled) return;
    this.detach();
    this.resolveFn(value);
  }

  reject(error: unknown): void {
    if (this.isSettled) return;
    this.detach();
    this.rejectFn(error);
  }

  /** Its deadline passed: take it out of wherever it waits and reject it. */
  expire(cause?: unknown): void {
    this.reject(
      new CallTimeoutError(`${this.cell}.${this.method} got no reply within ${this.timeoutMs} ms`, {
        cell: this.cell,
        method: this.method,
        cause,
      }),
    );
  }

  abort(): void {
    this.reject(new AbortError(`${this.cell}.${this.method} was aborted`, { cell: this.cell, method: this.method, cause: this.signal?.reason }));
  }

  private detach(): void {
    this.isSettled = true;
    this.queue?.remove(this);
    if (this.conn !== null) {
      this.conn.forget(this);
      this.conn = null;
    } else if (this.id === 0) {
      this.host?.unqueue(this);
    }
    if (this.signal !== undefined) this.host?.unwatch(this);
  }
}

/**
 * The calls that share one timeout, in start order, which is also deadline order: one timer for
 * the earliest, re-armed when it fires. Far cheaper than a timer per call.
 */
export class TimeoutQueue {
  private head: PendingCall | null = null;
  private tail: PendingCall | null = null;
  private timer: NodeJS.Timeout | null = null;
  private isTimerRefed = false;
  private readonly onTimerBound = () => this.onTimer();

  constructor(
    readonly timeoutMs: number,
    private readonly owner: Deadlines,
  ) {}

  get isEmpty(): boolean {
    return this.head === null;
  }

  add(call: PendingCall, now: number): void {
    call.deadline = now + this.timeoutMs;
    call.queue = this;
    call.prev = this.tail;
    call.next = null;
    if (this.tail !== null) this.tail.next = call;
    else this.head = call;
    this.tail = call;
    if (this.timer === null) {
      this.timer = setTimeout(this.onTimerBound, this.timeoutMs);
      this.isTimerRefed = true;
    } else if (!this.isTimerRefed) {
      this.timer.ref();
      this.isTimerRefed = true;
    }
  }

  remove(call: PendingCall): void {
    if (call.queue !== this) return;
    if (call.prev !== null) call.prev.next = call.next;
    else this.head = call.next;
    if (call.next !== null) call.next.prev = call.prev;
    else this.tail = call.prev;
    call.prev = call.next = null;
    call.queue = null;
    // An idle queue keeps its timer (re-arming costs more than a wake-up) but must not hold the process open.
    if (this.head === null && this.timer !== null && this.isTimerRefed) {
      this.timer.unref();
      this.isTimerRefed = false;
    }
  }

  /** Rejects every call it holds with `error`. */
  clear(error: Error): void {
    while (this.head !== null) this.head.reject(error);
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private onTimer(): void {
    this.timer = null;
    const now = performance.now();
    // 1 ms of slack: timers fire on whole milliseconds.
    while (this.head !== null && this.head.deadline <= now + 1) {
      const call = this.head;
      call.expire(this.owner.causeFor(call));
    }
    if (this.head === null) {
      this.owner.dropQueue(this);
      return;
    }
    this.timer = setTimeout(this.onTimerBound, Math.max(1, Math.ceil(this.head.deadline - now)));
    this.isTimerRefed = true;
  }
}

/** The timeout queues of one client, one per distinct `timeoutMs`. */
export class Deadlines {
  private readonly queues = new Map<number, TimeoutQueue>();

  constructor(private readonly causeOf: (call: PendingCall) => unknown = () => undefined) {}

  track(call: PendingCall): void {
    let queue = this.queues.get(call.timeoutMs);
    if (queue === undefined) {
      queue = new TimeoutQueue(call.timeoutMs, this);
      this.queues.set(call.timeoutMs, queue);
    }
    queue.add(call, performance.now());
  }

  causeFor(call: PendingCall): unknown {
    return this.causeOf(call);
  }

  dropQueue(queue: TimeoutQueue): void {
    if (this.queues.get(queue.timeoutMs) === queue) this.queues.delete(queue.timeoutMs);
  }

  clear(error: Error): void {
    for (const queue of this.queues.values()) queue.clear(error);
    this.queues.clear();
  }
}

/**
 * The requests in flight on one connection, by id. Ids count up (wrapping past 2^32 - 1, skipping
 * 0) and each lives in slot `id & mask`: an id whose slot is taken is skipped, so ids in flight are
 * unique and a lookup is one array read, with no hashing.
 */
export class RequestTable {
  private slots: Array<PendingCall | undefined> = new Array(64);
  private mask = 63;
  private next = 1;
  size = 0;

  /** Stores `call` under a fresh id and returns the id. */
  add(call: PendingCall): number {
    if (this.size > this.mask >> 1) this.grow();
    let id = this.next;
    while (this.slots[id & this.mask] !== undefined) id = id >= MAX_ID ? 1 : id + 1;
    this.next = id >= MAX_ID ? 1 : id + 1;
    this.slots[id & this.mask] = call;
    this.size++;
    return id;
  }

  get(id: unknown): PendingCall | undefined {
    if (typeof id !== 'number') return undefined;
    const call = this.slots[id & this.mask];
    return call !== undefined && call.id === id ? call : undefined;
  }

  /** Removes `call` if it is the one stored under its id. */
  remove(call: PendingCall): void {
    const slot = call.id & this.mask;
    if (this.slots[slot] === call) {
      this.slots[slot] = undefined;
      this.size--;
    }
  }

  /** Empties the table and returns what it held. */
  drain(): PendingCall[] {
    const calls = this.slots.filter((c): c is PendingCall => c !== undefined);
    this.slots = new Array(this.slots.length);
    this.size = 0;
    return calls;
  }

  private grow(): void {
    const old = this.slots;
    this.mask = old.length * 2 - 1;
    this.slots = new Array(old.length * 2);
    // Ids distinct modulo n stay distinct modulo 2n.
    for (const call of old) if (call !== undefined) this.slots[call.id & this.mask] = call;
  }
}

/** What a connection tells its owner. */
export interface ConnectionEvents {
  /** The server sent GOAWAY: it is draining, send nothing new here. */
  onGoAway(conn: Connection): void;
  /** The connection closed after having opened; its pending calls were already rejected. */
  onClosed(conn: Connection, error: Error): void;
  /** The server refused `call` with SHUTTING_DOWN: it never ran, so it may go elsewhere. */
  onRefused(call: PendingCall, error: RemoteError): void;
}

export interface ConnectionOptions {
  socket: string;
  /** The cell the socket must serve, checked against the server's HELLO; `undefined` accepts any (admin helpers). */
  cell: string | undefined;
  secret: string | undefined;
  handshakeTimeoutMs: number;
  events: ConnectionEvents | null;
}

const enum State {
  Connecting,
  Open,
  Draining,
  Closed,
}

/** One connection to one server. `open()` resolves after the handshake. */
export class Connection implements FrameSink {
  private state = State.Connecting;
  private readonly socket: net.Socket;
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  private readonly pending = new RequestTable();
  private maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  private lastError: Error | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private settleOpen: ((error: Error | null) => void) | null = null;
  readonly opened: Promise<void>;
  /** Settles (never rejects) once the socket is closed. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  /** The cell the server said it serves (from HELLO). */
  cell: string;

  constructor(private readonly options: ConnectionOptions) {
    this.cell = options.cell ?? '(unknown)';
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.opened = new Promise<void>((resolve, reject) => {
      this.settleOpen = (error) => {
        this.settleOpen = null;
        if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        if (error === null) resolve();
        else reject(error);
      };
    });
    this.reader = new FrameReader(this, DEFAULT_MAX_FRAME_BYTES);
    this.socket = net.connect(options.socket);
    this.writer = new FrameWriter(this.socket);
    this.socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    this.socket.on('error', (error) => {
      this.lastError ??= error;
    });
    this.socket.on('close', () => {
      this.onSocketClose();
      this.resolveClosed();
    });
    this.handshakeTimer = setTimeout(() => {
      this.fail(new HandshakeError(`no handshake from ${options.socket} within ${options.handshakeTimeoutMs} ms`, { cell: options.cell }));
    }, options.handshakeTimeoutMs);
  }

  get socketPath(): string {
    return this.options.socket;
  }

  /** Open and not draining: it may take new calls. */
  get isUsable(): boolean {
    return this.state === State.Open;
  }

  get isClosed(): boolean {
    return this.state === State.Closed;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends `call` (a CALL, or a PING / SCHEMA / SHUTDOWN with no input). Rejects it at once if it cannot be sent. */
  send(call: PendingCall): void {
    if (this.state === State.Closed || this.state === State.Draining) {
      call.reject(new ConnectionLostError(`connection to ${this.options.socket} is closed`, { cell: call.cell, method: call.method }));
      return;
    }
    const id = this.pending.add(call);
    call.id = id;
    let frame: EncodedFrame;
    try {
      frame = call.op === Op.CALL ? encodeCallInPlace(id, call.method, call.input) : encodeInPlace([call.op, id]);
    } catch (error) {
      this.pending.remove(call);
      call.id = 0;
      call.reject(new ProtocolError(`input of ${call.cell}.${call.method} cannot be encoded: ${(error as Error)?.message}`, { cell: call.cell, method: call.method, cause: error }));
      return;
    }
    const size = frame.end - frame.start - HEADER_BYTES;
    if (size > this.maxFrameBytes) {
      this.pending.remove(call);
      call.id = 0;
      call.reject(
        new ProtocolError(`input of ${call.cell}.${call.method} is ${size} bytes, over the server's ${this.maxFrameBytes}-byte frame limit`, {
          code: ErrorCode.FRAME_TOO_LARGE,
          cell: call.cell,
          method: call.method,
        }),
      );
      return;
    }
    call.conn = this;
    this.writer.pushEncoded(frame);
  }

  /** Called by a settling call. */
  forget(call: PendingCall): void {
    this.pending.remove(call);
  }

  /** Closes the connection; pending calls are rejected with `error`. */
  close(error: Error): void {
    this.fail(error);
  }

  onMessage(message: unknown): void {
    if (this.state === State.Closed) return;
    if (!Array.isArray(message) || message.length < 2 || typeof message[0] !== 'number') {
      this.fail(new ProtocolError(`${this.options.socket} sent a payload that is not [op, id, ...fields]`, { cell: this.cell }));
      return;
    }
    const op = message[0];
    const id = message[1];
    switch (op) {
      case Op.REPLY:
      case Op.PONG:
      case Op.SCHEMA_REPLY:
      case Op.SHUTDOWN_ACK: {
        const call = this.pending.get(id);
        if (call !== undefined) {
          // Forget it here rather than in detach(): one map lookup fewer on the hot path.
          this.pending.remove(call);
          call.conn = null;
          call.resolve(message[2]);
        }
        return;
      }
      case Op.ERROR:
        this.onError(id, message[2]);
        return;
      case Op.HELLO:
        this.onHello(message[2]);
        return;
      case Op.WELCOME:
        this.onWelcome(message[2]);
        return;
      case Op.GOAWAY:
        if (this.state === State.Open) {
          this.state = State.Draining;
          this.options.events?.onGoAway(this);
          // Nothing more will be sent here: say so, and the server closes once it has answered everything.
          this.writer.push(encodeFrame([Op.GOAWAY, 0]));
        }
        return;
      default:
        this.fail(new ProtocolError(`${this.options.socket} sent unknown op ${String(op)}`, { cell: this.cell }));
    }
  }

  /** A REPLY decoded by the reader's fast path; the same as onMessage([Op.REPLY, id, output]). */
  onReply(id: number, output: unknown): void {
    if (this.state === State.Closed) return;
    const call = this.pending.get(id);
    if (call !== undefined) {
      this.pending.remove(call);
      call.conn = null;
      call.resolve(output);
    }
  }

  onFrameError(error: Error, code: string): void {
    this.fail(new ProtocolError(`${this.options.socket}: ${error.message}`, { code, cell: this.cell, cause: error }));
  }

  private onHello(fields: unknown): void {
    const f = (fields !== null && typeof fields === 'object' ? fields : {}) as Record<string, unknown>;
    const cell = this.options.cell;
    if (this.settleOpen === null) {
      this.fail(new ProtocolError(`${this.options.socket} sent HELLO twice`, { cell }));
    } else if (f.v !== PROTOCOL_VERSION) {
      this.fail(new HandshakeError(`${this.options.socket} speaks protocol version ${JSON.stringify(f.v)}, this client speaks ${PROTOCOL_VERSION}`, { cell }));
    } else if (cell !== undefined && f.cell !== cell) {
      this.fail(new HandshakeError(`${this.options.socket} serves cell ${JSON.stringify(f.cell)}, not ${JSON.stringify(cell)}`, { cell }));
    } else {
      if (typeof f.cell === 'string') this.cell = f.cell;
      const secret = this.options.secret;
      const proof = secret === undefined ? '' : createHmac('sha256', secret).update(String(f.nonce ?? '')).digest('hex');
      this.writer.push(encodeFrame([Op.AUTH, 0, { v: PROTOCOL_VERSION, proof }]));
    }
  }

  private onWelcome(fields: unknown): void {
    if (this.settleOpen === null || this.state !== State.Connecting) {
      this.fail(new ProtocolError(`${this.options.socket} sent WELCOME out of turn`, { cell: this.cell }));
      return;
    }
    const f = (fields !== null && typeof fields === 'object' ? fields : {}) as Record<string, unknown>;
    if (typeof f.maxFrameBytes === 'number' && f.maxFrameBytes > 0) {
      this.maxFrameBytes = f.maxFrameBytes;
      this.reader.maxFrameBytes = Math.max(DEFAULT_MAX_FRAME_BYTES, f.maxFrameBytes);
    }
    this.state = State.Open;
    this.settleOpen(null);
  }

  private onError(id: unknown, fields: unknown): void {
    const wire = readWireError(fields);
    const cell = wire.cell ?? this.cell;
    if (id === 0 || typeof id !== 'number') {
      // A connection-level error; the server closes the connection after it.
      const options = { code: wire.code, cell };
      this.lastError =
        wire.code === ErrorCode.HANDSHAKE_FAILED || this.settleOpen !== null
          ? new HandshakeError(`${this.options.socket}: ${wire.message}`, options)
          : new ProtocolError(`${this.options.socket}: ${wire.message}`, options);
      if (this.settleOpen !== null) this.fail(this.lastError);
      return;
    }
    const call = this.pending.get(id);
    if (call === undefined) return;
    const error = new RemoteError(wire.message, { code: wire.code, cell, method: wire.method ?? call.method, remoteName: wire.name });
    if (wire.code === ErrorCode.SHUTTING_DOWN && call.op === Op.CALL && this.options.events !== null) {
      this.pending.remove(call);
      call.conn = null;
      call.id = 0;
      this.options.events.onRefused(call, error);
      return;
    }
    call.reject(error);
  }

  private fail(error: Error): void {
    if (this.state === State.Closed) return;
    this.lastError ??= error;
    this.shutDown();
    this.socket.destroy();
    this.afterClose(error);
  }

  private onSocketClose(): void {
    if (this.state === State.Closed) return;
    const cause = this.lastError;
    this.shutDown();
    const error =
      cause instanceof HandshakeError || cause instanceof ProtocolError
        ? cause
        : new ConnectionLostError(`connection to ${this.cell} at ${this.options.socket} ${this.settleOpen !== null ? 'failed' : 'was lost'}${cause ? `: ${cause.message}` : ''}`, {
            cell: this.cell,
            cause: cause ?? undefined,
          });
    this.afterClose(error);
  }

  private shutDown(): void {
    this.state = State.Closed;
    this.reader.stop();
    this.writer.close();
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  private afterClose(error: Error): void {
    const wasOpen = this.settleOpen === null;
    if (this.settleOpen !== null) {
      this.settleOpen(error);
      // Nobody may be waiting on `opened` any more (the client gave up); avoid an unhandled rejection.
      this.opened.catch(() => {});
    }
    for (const call of this.pending.drain()) {
      const options = { cell: call.cell, method: call.method, cause: error };
      call.reject(
        error instanceof ConnectionClosedError
          ? new ConnectionClosedError(`${call.cell}.${call.method}: the client was closed`, options)
          : new ConnectionLostError(`${call.cell}.${call.method}: ${error.message}`, options),
      );
    }
    if (wasOpen) this.options.events?.onClosed(this, error);
  }
}

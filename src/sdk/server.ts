/**
 * `serve()`: listens on a unix socket, authenticates each connection, validates every call's input
 * and output with the cell's schemas, and drains in-flight calls before it stops.
 *
 *   accept ─► HELLO ─► AUTH? ─► WELCOME ─► CALL… (pipelined; replies in completion order)
 *                                   │
 *   SHUTDOWN op / SIGTERM ─► GOAWAY to all, refuse new calls ─► wait in-flight ─► SHUTDOWN_ACK ─► close
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { z } from 'zod';
import { type CallContext, type CellDefinition, type Handlers, type MethodMap, assertCellName } from './define.js';
import { notifyReady } from './ready.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  type FrameSink,
  FrameReader,
  FrameWriter,
  HEADER_BYTES,
  Op,
  PROTOCOL_VERSION,
  encodeFrame,
  type EncodedFrame,
  encodeReplyInPlace,
  isRequestId,
} from './protocol.js';
import { type Checked, Validator } from './validate.js';

export interface ServeOptions {
  /** Unix socket path to listen on. Default: `process.env.CELL_SOCKET`. */
  socket?: string;
  /** Shared secret clients must prove they hold (HMAC of the server's nonce). Default: `process.env.CELL_SECRET`; none: no auth. */
  secret?: string;
  /** Largest frame accepted or sent, in bytes (default 4 MiB). */
  maxFrameBytes?: number;
  /** Stop reading a connection while it has this many calls in flight (default 1024). */
  maxInFlightPerConnection?: number;
  /** Called once the socket listens and the ready signal was sent. */
  onReady?: () => void;
  /** Drain and stop on SIGTERM (default true). */
  handleSignals?: boolean;
  /** `process.exit(0)` after a shutdown op or SIGTERM has drained (default: true when the socket came from CELL_SOCKET). */
  exitOnShutdown?: boolean;
  /** Longest wait for in-flight calls when draining; the rest are then answered SHUTTING_DOWN (default 30 s). */
  drainTimeoutMs?: number;
  /** A connection that has not authenticated within this time is closed (default 10 s). */
  handshakeTimeoutMs?: number;
}

/** A running server. */
export interface CellServer {
  readonly cell: string;
  /** The socket path it listens on. */
  readonly address: string;
  /** Calls being handled now, over all connections. */
  readonly inFlight: number;
  /** Open connections. */
  readonly connections: number;
  /** True once a shutdown op, SIGTERM or `close()` started draining. */
  readonly isDraining: boolean;
  /** Settles when the server has closed every connection and its socket. */
  readonly closed: Promise<void>;
  /** Drains (refuses new calls, finishes those in flight) and closes. Never exits the process. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface MethodEntry {
  readonly name: string;
  readonly input: Validator;
  readonly output: Validator;
  readonly handler: (input: unknown, ctx: CallContext) => unknown;
}

const WRITE_HIGH_WATER_BYTES = 1024 * 1024;
/**
 * After GOAWAY a connection stays open until the client answers with its own GOAWAY (SDK clients do
 * at once), so calls it sent before it saw ours are read and refused with SHUTTING_DOWN rather than
 * lost. A client that never answers is closed after this long.
 */
const GOAWAY_GRACE_MS = 1000;

/**
 * Serves `def` with `handlers` on a unix socket. Resolves once it listens and `notifyReady` was
 * sent. Throws a TypeError naming the option when an option or a handler is missing or invalid.
 */
export async function serve<const D extends CellDefinition<string, MethodMap>>(def: D, handlers: Handlers<D['methods']>, options: ServeOptions = {}): Promise<CellServer> {
  if (def === null || typeof def !== 'object') throw new TypeError(`serve(def): def must come from defineCell(), got ${String(def)}`);
  assertCellName(def.name, 'serve(def): def.name');
  const fromEnv = options.socket === undefined;
  const socket = options.socket ?? process.env.CELL_SOCKET;
  if (typeof socket !== 'string' || socket === '') {
    throw new TypeError(`serve('${def.name}'): no socket path: pass options.socket or set CELL_SOCKET (got ${JSON.stringify(socket) ?? 'undefined'})`);
  }
  const secret = options.secret ?? process.env.CELL_SECRET;
  if (secret !== undefined && typeof secret !== 'string') throw new TypeError(`serve('${def.name}'): options.secret must be a string, got ${typeof secret}`);
  const server = new Server(def, handlers as Record<string, unknown>, {
    socket,
    secret: secret === '' ? undefined : secret,
    maxFrameBytes: positiveInt('maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES),
    maxInFlight: positiveInt('maxInFlightPerConnection', options.maxInFlightPerConnection, 1024),
    drainTimeoutMs: positiveInt('drainTimeoutMs', options.drainTimeoutMs, 30_000),
    handshakeTimeoutMs: positiveInt('handshakeTimeoutMs', options.handshakeTimeoutMs, 10_000),
    exitOnShutdown: options.exitOnShutdown ?? fromEnv,
  });
  await server.listen();
  if (options.handleSignals !== false) server.handleSigterm();
  await notifyReady({ cell: def.name, socket });
  options.onReady?.();
  return server;
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new TypeError(`serve(): options.${name} must be a positive integer, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

interface ServerConfig {
  socket: string;
  secret: string | undefined;
  maxFrameBytes: number;
  maxInFlight: number;
  drainTimeoutMs: number;
  handshakeTimeoutMs: number;
  exitOnShutdown: boolean;
}

class Server implements CellServer {
  readonly cell: string;
  readonly address: string;
  readonly methods = new Map<string, MethodEntry>();
  inFlight = 0;
  isDraining = false;
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private readonly listener: net.Server;
  private readonly conns = new Set<ServerConnection>();
  private closing: Promise<void> | null = null;
  private drainWaiters: Array<() => void> = [];
  private sigtermListener: (() => void) | null = null;
  private schemaCache: unknown;

  constructor(
    readonly def: CellDefinition,
    handlers: Record<string, unknown>,
    readonly config: ServerConfig,
  ) {
    this.cell = def.name;
    this.address = config.socket;
    if (handlers === null || typeof handlers !== 'object') throw new TypeError(`serve('${def.name}'): handlers must be an object, got ${String(handlers)}`);
    for (const [name, spec] of Object.entries(def.methods)) {
      const handler = handlers[name];
      if (typeof handler !== 'function') throw new TypeError(`serve('${def.name}'): handlers.${name} must be a function, got ${typeof handler}`);
      this.methods.set(name, { name, input: new Validator(spec.input), output: new Validator(spec.output), handler: handler as MethodEntry['handler'] });
    }
    for (const name of Object.keys(handlers)) {
      if (!this.methods.has(name)) throw new TypeError(`serve('${def.name}'): handlers.${name} has no method in the definition`);
    }
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.listener = net.createServer((socket) => this.accept(socket));
  }

  get connections(): number {
    return this.conns.size;
  }

  async listen(): Promise<void> {
    try {
      await listenOn(this.listener, this.address);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || (await isSocketLive(this.address))) {
        throw new Error(`serve('${this.cell}'): cannot listen on ${this.address}: ${(error as Error).message}`, { cause: error });
      }
      // A socket file left by a process that died: nobody answers on it, so it is safe to replace.
      unlinkSync(this.address);
      await listenOn(this.listener, this.address);
    }
    try {
      chmodSync(this.address, 0o600);
    } catch {
      // Best effort: the directory's permissions are what really guard the socket.
    }
  }

  handleSigterm(): void {
    this.sigtermListener = () => void this.shutdown(null);
    process.once('SIGTERM', this.sigtermListener);
  }

  close(): Promise<void> {
    return this.stop(false);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The shutdown op (from `requester`, with request `id`) or SIGTERM (`null`): drain, acknowledge, close, maybe exit. */
  shutdown(requester: ServerConnection | null, id = 0): Promise<void> {
    // Acknowledged when the drain finishes, even if another shutdown (or close()) started it.
    if (requester !== null) requester.shutdownRequests.push(id);
    return this.stop(this.config.exitOnShutdown);
  }

  /** Idempotent: the first caller decides whether the process exits. */
  private stop(exit: boolean): Promise<void> {
    this.closing ??= this.runStop(exit);
    return this.closing;
  }

  private async runStop(exit: boolean): Promise<void> {
    this.isDraining = true;
    if (this.sigtermListener !== null) process.removeListener('SIGTERM', this.sigtermListener);
    this.listener.close();
    for (const conn of this.conns) conn.goAway();
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.drainWaiters.push(resolve);
        timer = setTimeout(resolve, this.config.drainTimeoutMs);
      });
      clearTimeout(timer);
    }
    await Promise.all([...this.conns].map((conn) => conn.finish()));
    this.resolveClosed();
    if (exit) process.exit(0);
  }

  accept(socket: net.Socket): void {
    if (this.isDraining) {
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket);
    this.conns.add(conn);
    socket.once('close', () => this.conns.delete(conn));
  }

  callStarted(): void {
    this.inFlight++;
  }

  callEnded(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** JSON schema of the methods, computed once. */
  schema(): unknown {
    if (this.schemaCache === undefined) {
      const methods: Record<string, { input: unknown; output: unknown }> = {};
      for (const [name, spec] of Object.entries(this.def.methods)) {
        methods[name] = { input: toJsonSchema(spec.input, 'input'), output: toJsonSchema(spec.output, 'output') };
      }
      this.schemaCache = { cell: this.cell, protocol: PROTOCOL_VERSION, methods };
    }
    return this.schemaCache;
  }
}

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): unknown {
  try {
    return z.toJSONSchema(schema, { io, unrepresentable: 'any' });
  } catch (error) {
    return { description: `not representable as JSON schema: ${(error as Error).message}` };
  }
}

function listenOn(listener: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    listener.once('error', onError);
    listener.listen(path, () => {
      listener.removeListener('error', onError);
      resolve();
    });
  });
}

function isSocketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** One call being handled; it is also the handler's `ctx`. */
class ServerCall implements CallContext {
  private controller: AbortController | null = null;
  /** In the connection's map of calls in flight: only once it went async (see ServerConnection.startCall). */
  isRegistered = false;
  isEnded = false;

  constructor(
    readonly conn: ServerConnection,
    readonly id: number,
    readonly entry: MethodEntry,
  ) {}

  get cell(): string {
    return this.conn.server.cell;
  }

  get method(): string {
    return this.entry.name;
  }

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  abort(reason: string): void {
    this.controller?.abort(new Error(reason));
  }
}

const enum ConnState {
  Handshaking,
  Open,
  Closed,
}

class ServerConnection implements FrameSink {
  private state = ConnState.Handshaking;
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  /**
   * Calls in flight that went async, by id (for DUPLICATE_ID and to abort them when the caller
   * leaves). A call that completes synchronously is never entered: nothing can arrive while it runs.
   * Id 0 (never a request id) holds a placeholder so the map never empties, which makes V8 rebuild it.
   */
  private readonly calls = new Map<number, ServerCall | null>([[0, null]]);
  /** All calls in flight, sync or not. */
  private callCount = 0;
  private readonly nonce = randomBytes(32).toString('hex');
  private handshakeTimer: NodeJS.Timeout | null;
  private isPaused = false;
  private isWriteBlocked = false;
  private hasSentGoAway = false;
  /** The client sent GOAWAY: no more frames will come. */
  private isPeerDone = false;
  /** Draining and the GOAWAY grace is over (or the connection never opened): close when idle. */
  private isGraceOver = false;
  private graceTimer: NodeJS.Timeout | null = null;
  shutdownRequests: number[] = [];
  private finished: Promise<void> | null = null;
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly server: Server,
    private readonly socket: net.Socket,
  ) {
    this.reader = new FrameReader(this, server.config.maxFrameBytes);
    this.writer = new FrameWriter(socket, () => {
      if (socket.writableLength > WRITE_HIGH_WATER_BYTES && !this.isWriteBlocked) {
        this.isWriteBlocked = true;
        this.updateReading();
      }
    });
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('error', () => {
      // 'close' follows; a reset by the peer is not the server's problem.
    });
    socket.on('close', () => this.onClose());
    socket.on('drain', () => {
      this.isWriteBlocked = false;
      this.updateReading();
    });
    this.handshakeTimer = setTimeout(() => this.fail(0, ErrorCode.HANDSHAKE_FAILED, 'no AUTH within the handshake timeout'), server.config.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.send([Op.HELLO, 0, { v: PROTOCOL_VERSION, nonce: this.nonce, cell: server.cell }]);
  }

  onMessage(message: unknown): void {
    if (this.state === ConnState.Closed) return;
    if (!Array.isArray(message) || message.length < 2 || typeof message[0] !== 'number') {
      this.sendError(0, ErrorCode.BAD_FRAME, 'a payload must be an array [op, id, ...fields]');
      return;
    }
    const op = message[0];
    const id = message[1];
    if (this.state === ConnState.Handshaking) {
      if (op === Op.AUTH) this.authenticate(message[2]);
      else this.fail(0, ErrorCode.HANDSHAKE_FAILED, `expected AUTH (op ${Op.AUTH}) first, got op ${String(op)}`);
      return;
    }
    switch (op) {
      case Op.CALL:
        if (!isRequestId(id)) this.sendError(0, ErrorCode.BAD_FRAME, 'CALL needs a request id in 1..2^32-1');
        else this.startCall(id, message[2], message[3]);
        return;
      case Op.PING:
        if (!isRequestId(id)) this.sendError(0, ErrorCode.BAD_FRAME, 'PING needs a request id in 1..2^32-1');
        else this.send([Op.PONG, id]);
        return;
      case Op.SCHEMA:
        if (!isRequestId(id)) this.sendError(0, ErrorCode.BAD_FRAME, 'SCHEMA needs a request id in 1..2^32-1');
        else this.send([Op.SCHEMA_REPLY, id, this.server.schema()]);
        return;
      case Op.SHUTDOWN:
        if (!isRequestId(id)) this.sendError(0, ErrorCode.BAD_FRAME, 'SHUTDOWN needs a request id in 1..2^32-1');
        else void this.server.shutdown(this, id);
        return;
      case Op.AUTH:
        this.sendError(isRequestId(id) ? id : 0, ErrorCode.BAD_FRAME, 'already authenticated');
        return;
      case Op.GOAWAY:
        // The client will send nothing more: close once its calls are answered (see closeIfDone).
        this.isPeerDone = true;
        this.closeIfDone();
        return;
      default:
        this.sendError(isRequestId(id) ? id : 0, ErrorCode.BAD_FRAME, `op ${String(op)} is not accepted by a server`);
    }
  }

  /** A CALL decoded by the reader's fast path; the same as onMessage([Op.CALL, id, method, input]). */
  onCall(id: number, method: string, input: unknown): void {
    if (this.state !== ConnState.Open || id === 0) {
      this.onMessage([Op.CALL, id, method, input]);
      return;
    }
    this.startCall(id, method, input);
  }

  onFrameError(error: Error, code: string, fatal: boolean): void {
    if (fatal) this.fail(0, code, error.message);
    else this.sendError(0, code, error.message);
  }

  private authenticate(fields: unknown): void {
    const f = fields !== null && typeof fields === 'object' ? (fields as Record<string, unknown>) : {};
    if (f.v !== PROTOCOL_VERSION) {
      this.fail(0, ErrorCode.HANDSHAKE_FAILED, `protocol version ${JSON.stringify(f.v) ?? 'undefined'} is not supported (this server speaks ${PROTOCOL_VERSION})`);
      return;
    }
    const secret = this.server.config.secret;
    if (secret !== undefined) {
      const expected = createHmac('sha256', secret).update(this.nonce).digest();
      const proof = typeof f.proof === 'string' && /^[0-9a-f]{64}$/i.test(f.proof) ? Buffer.from(f.proof, 'hex') : null;
      if (proof === null || !timingSafeEqual(proof, expected)) {
        this.fail(0, ErrorCode.HANDSHAKE_FAILED, 'authentication failed: the proof does not match this cell\'s secret');
        return;
      }
    }
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.state = ConnState.Open;
    this.send([Op.WELCOME, 0, { v: PROTOCOL_VERSION, cell: this.server.cell, maxFrameBytes: this.server.config.maxFrameBytes }]);
    if (this.server.isDraining) this.goAway();
  }

  private startCall(id: number, method: unknown, input: unknown): void {
    const server = this.server;
    if (typeof method !== 'string') {
      this.sendError(id, ErrorCode.BAD_FRAME, 'CALL needs a method name (string)');
      return;
    }
    if (server.isDraining) {
      this.sendError(id, ErrorCode.SHUTTING_DOWN, `${server.cell} is shutting down`, method);
      return;
    }
    const entry = server.methods.get(method);
    if (entry === undefined) {
      this.sendError(id, ErrorCode.UNKNOWN_METHOD, `${server.cell} has no method ${JSON.stringify(method).slice(0, 200)}`, method.slice(0, 200));
      return;
    }
    if (this.calls.has(id)) {
      this.sendError(id, ErrorCode.DUPLICATE_ID, `request id ${id} is already in flight on this connection`, method);
      return;
    }
    const call = new ServerCall(this, id, entry);
    this.callCount++;
    server.callStarted();
    if (this.callCount >= server.config.maxInFlight) this.updateReading();
    const checked = entry.input.check(input);
    if (checked instanceof Promise) {
      this.register(call);
      checked.then((c) => this.runHandler(call, c));
    } else {
      this.runHandler(call, checked);
    }
  }

  /** The call goes async: frames can arrive before it completes. */
  private register(call: ServerCall): void {
    if (call.isRegistered) return;
    call.isRegistered = true;
    this.calls.set(call.id, call);
  }

  private runHandler(call: ServerCall, checked: Checked): void {
    if (this.state === ConnState.Closed) {
      this.endCall(call);
      return;
    }
    if (!checked.ok) {
      this.endCall(call);
      this.sendError(call.id, ErrorCode.INVALID_INPUT, `invalid input for ${this.server.cell}.${call.entry.name}: ${checked.message}`, call.entry.name);
      return;
    }
    let result: unknown;
    try {
      result = call.entry.handler(checked.value, call);
    } catch (error) {
      this.handlerFailed(call, error);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      this.register(call);
      (result as PromiseLike<unknown>).then(
        (value) => this.handlerReturned(call, value),
        (error) => this.handlerFailed(call, error),
      );
    } else {
      this.handlerReturned(call, result);
    }
  }

  private handlerReturned(call: ServerCall, value: unknown): void {
    const checked = call.entry.output.check(value);
    if (checked instanceof Promise) {
      this.register(call);
      checked.then((c) => this.reply(call, c));
    } else {
      this.reply(call, checked);
    }
  }

  private reply(call: ServerCall, checked: Checked): void {
    if (!this.endCall(call)) return;
    if (!checked.ok) {
      this.sendError(call.id, ErrorCode.INVALID_OUTPUT, `invalid output from ${this.server.cell}.${call.entry.name}: ${checked.message}`, call.entry.name);
      return;
    }
    let frame: EncodedFrame;
    try {
      frame = encodeReplyInPlace(call.id, checked.value);
    } catch (error) {
      this.sendError(call.id, ErrorCode.INVALID_OUTPUT, `output of ${this.server.cell}.${call.entry.name} cannot be encoded: ${(error as Error)?.message}`, call.entry.name);
      return;
    }
    const size = frame.end - frame.start - HEADER_BYTES;
    if (size > this.server.config.maxFrameBytes) {
      this.sendError(call.id, ErrorCode.FRAME_TOO_LARGE, `output of ${this.server.cell}.${call.entry.name} is ${size} bytes, over the ${this.server.config.maxFrameBytes}-byte frame limit`, call.entry.name);
      return;
    }
    this.writer.pushEncoded(frame);
  }

  private handlerFailed(call: ServerCall, error: unknown): void {
    if (!this.endCall(call)) return;
    const e = (error !== null && typeof error === 'object' ? error : { message: describe(error) }) as { name?: unknown; message?: unknown; code?: unknown };
    const name = typeof e.name === 'string' ? e.name : 'Error';
    const message = typeof e.message === 'string' ? e.message : describe(error);
    const code = typeof e.code === 'string' ? e.code : ErrorCode.HANDLER_ERROR;
    this.send([Op.ERROR, call.id, { name, message, code, cell: this.server.cell, method: call.entry.name }]);
  }

  /**
   * Forgets a finished call. Returns false if the connection closed meanwhile (nothing to reply to).
   * Calls stay counted until their handler settles, even when their caller is gone, so a drain
   * waits for every handler.
   */
  private endCall(call: ServerCall): boolean {
    if (call.isEnded) return false;
    call.isEnded = true;
    if (call.isRegistered) this.calls.delete(call.id);
    this.callCount--;
    this.server.callEnded();
    if (this.isPaused) this.updateReading();
    // The reply is pushed after this returns; closeIfDone() flushes it before closing.
    if (this.callCount === 0 && (this.isPeerDone || this.isGraceOver)) setImmediate(() => this.closeIfDone());
    return this.state !== ConnState.Closed;
  }

  /** Pauses reading while too many calls are in flight or the socket's write buffer is full. */
  private updateReading(): void {
    const max = this.server.config.maxInFlight;
    const shouldPause = this.callCount >= max || this.isWriteBlocked;
    if (shouldPause && !this.isPaused) {
      this.isPaused = true;
      this.reader.pause();
      this.socket.pause();
    } else if (!shouldPause && this.isPaused && this.callCount <= max >> 1) {
      this.isPaused = false;
      // Held frames may start enough calls to pause it again.
      this.reader.resume();
      if (!this.isPaused && this.state !== ConnState.Closed) this.socket.resume();
    }
  }

  private send(payload: unknown[]): void {
    if (this.state === ConnState.Closed) return;
    this.writer.push(encodeFrame(payload));
  }

  private sendError(id: number, code: string, message: string, method?: string): void {
    const fields: Record<string, string> = { name: 'CellRpcError', message, code, cell: this.server.cell };
    if (method !== undefined) fields.method = method;
    this.send([Op.ERROR, id, fields]);
  }

  /** Sends a connection-level error and closes. */
  private fail(id: number, code: string, message: string): void {
    if (this.state === ConnState.Closed) return;
    this.sendError(id, code, message);
    this.closeGracefully();
  }

  goAway(): void {
    if (this.state !== ConnState.Open || this.hasSentGoAway) return;
    this.hasSentGoAway = true;
    this.send([Op.GOAWAY, 0]);
  }

  /**
   * Called by the draining server once the calls in flight are done: acknowledges the shutdown ops
   * received here, then closes when the client has ended its side (or after the GOAWAY grace).
   */
  finish(): Promise<void> {
    if (this.finished !== null) return this.finished;
    for (const id of this.shutdownRequests) this.send([Op.SHUTDOWN_ACK, id]);
    this.shutdownRequests = [];
    if (this.state === ConnState.Open && !this.isPeerDone) {
      this.graceTimer = setTimeout(() => {
        this.isGraceOver = true;
        this.closeIfDone();
      }, GOAWAY_GRACE_MS);
      this.graceTimer.unref();
    } else {
      this.isGraceOver = true;
    }
    this.closeIfDone();
    this.finished = Promise.race([this.closedPromise, delay(GOAWAY_GRACE_MS + 1000)]).then(() => {
      if (this.graceTimer !== null) clearTimeout(this.graceTimer);
      this.socket.destroy();
    });
    return this.finished;
  }

  /** Closes once nothing more can come (the client sent GOAWAY, or the grace is over) and no call is running. */
  private closeIfDone(): void {
    if (this.state === ConnState.Closed || this.callCount > 0) return;
    if (!this.isPeerDone && !this.isGraceOver) return;
    // A shutdown op is acknowledged by finish(), after the server-wide drain.
    if (this.shutdownRequests.length > 0) return;
    this.closeGracefully();
  }

  private closeGracefully(): void {
    if (this.state === ConnState.Closed) return;
    this.reader.stop();
    this.writer.flush();
    this.writer.close();
    this.state = ConnState.Closed;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.socket.end();
    // A peer that never reads would keep a half-closed socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private onClose(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.reader.stop();
    this.writer.close();
    this.state = ConnState.Closed;
    for (const call of this.calls.values()) call?.abort('the caller\'s connection closed');
  }
}

/** A string for any thrown value, even one that refuses to become a string. */
function describe(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

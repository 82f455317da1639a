/**
 * `connect()`: a client that keeps one connection per instance of a cell and spreads calls over
 * them round-robin.
 *
 *   call ─► live connection? ─yes─► CALL on the next one (round-robin) ─► REPLY / ERROR / drop
 *              │ no                                                               │ drop
 *              ▼                                                                  ▼
 *        waiting set ◄── flushed when a connection opens ◄── reconnect (50 ms doubling to 2 s)
 *                                                              └─ re-resolve endpoints when all are down
 */
import type { z } from 'zod';
import { Connection, type ConnectionEvents, type CallHost, Deadlines, PendingCall } from './connection.js';
import { type CallOptions, type CellDefinition, type MethodMap, type RemoteMethod, RESERVED_METHOD_NAMES, assertCellName } from './define.js';
import { resolveEndpoints } from './discovery.js';
import { AbortError, ConnectionClosedError, ConnectionLostError, HandshakeError, type RemoteError } from './errors.js';
import { Op } from './protocol.js';

export interface ConnectOptions {
  /** Socket paths of the cell's instances. Default: asked from discovery (`resolveEndpoints`). */
  sockets?: string[];
  /** The cell's secret. Default: the one discovery returns, else `process.env.CELL_SECRET`; none: no auth. */
  secret?: string;
  /** Default per-call timeout in ms (30 s). */
  timeoutMs?: number;
  /** Longest wait for one connection's handshake (default: the smaller of `timeoutMs` and 10 s). */
  handshakeTimeoutMs?: number;
}

/** What every client has, typed or not. */
export interface ClientCore<Methods extends MethodMap = MethodMap> {
  /** Calls `method` by name. */
  call<K extends keyof Methods & string>(method: K, input: z.input<Methods[K]['input']>, options?: CallOptions): Promise<z.output<Methods[K]['output']>>;
  /** Closes every connection; pending calls reject with `ConnectionClosedError`. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A typed client: one method per method of the definition. */
export type CellClient<D extends CellDefinition> = { readonly [K in keyof D['methods']]: RemoteMethod<D['methods'][K]> } & ClientCore<D['methods']>;

export type UntypedMethod = (input?: unknown, options?: CallOptions) => Promise<unknown>;

/** A client from a cell's name alone: any property is a method returning `Promise<unknown>`. */
export type UntypedCellClient = {
  call(method: string, input?: unknown, options?: CallOptions): Promise<unknown>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
} & { readonly [method: string]: UntypedMethod };

const DEFAULT_TIMEOUT_MS = 30_000;
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;
/** Attempts for a call that servers refuse with SHUTTING_DOWN (it never ran, so it may go elsewhere). */
const MAX_REFUSED_ATTEMPTS = 5;

/** How long `connect` waits for the other instances once one is connected. */
const START_GRACE_MS = 100;

/**
 * Connects to a cell. With a definition the client is typed; with a name it is not. Resolves once
 * one instance has completed the handshake and the others have too, or failed, or START_GRACE_MS
 * has passed; rejects if none can be reached on the first attempt (a `HandshakeError` when one
 * refused the secret or serves another cell).
 */
export function connect<const D extends CellDefinition>(def: D, options?: ConnectOptions): Promise<CellClient<D>>;
export function connect(cell: string, options?: ConnectOptions): Promise<UntypedCellClient>;
export async function connect(defOrName: CellDefinition | string, options: ConnectOptions = {}): Promise<CellClient<CellDefinition> | UntypedCellClient> {
  const def = typeof defOrName === 'string' ? null : defOrName;
  const cell = typeof defOrName === 'string' ? defOrName : defOrName?.name;
  assertCellName(cell, 'connect(): cell name');
  const timeoutMs = checkTimeout('connect(): options.timeoutMs', options.timeoutMs) ?? DEFAULT_TIMEOUT_MS;
  const handshakeTimeoutMs = checkTimeout('connect(): options.handshakeTimeoutMs', options.handshakeTimeoutMs) ?? Math.min(timeoutMs, 10_000);
  if (options.secret !== undefined && typeof options.secret !== 'string') throw new TypeError(`connect('${cell}'): options.secret must be a string, got ${typeof options.secret}`);
  let sockets = options.sockets;
  let secret = options.secret;
  const usesDiscovery = sockets === undefined;
  if (sockets === undefined) {
    const found = await resolveEndpoints(cell);
    sockets = found.sockets;
    secret ??= found.secret;
  }
  if (!Array.isArray(sockets) || sockets.length === 0 || sockets.some((s) => typeof s !== 'string' || s === '')) {
    throw new TypeError(`connect('${cell}'): ${usesDiscovery ? 'discovery returned' : 'options.sockets must be'} a non-empty array of socket paths, got ${JSON.stringify(sockets)}`);
  }
  secret ??= process.env.CELL_SECRET;
  const client = new Client(cell, secret === '' ? undefined : secret, timeoutMs, handshakeTimeoutMs, usesDiscovery);
  await client.start(sockets);
  return def === null ? untypedFacade(client) : typedFacade(client, def);
}

function checkTimeout(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw new TypeError(`${name} must be a positive number of milliseconds, got ${JSON.stringify(value) ?? String(value)}`);
  return value;
}

function typedFacade(client: Client, def: CellDefinition): CellClient<CellDefinition> {
  const facade: Record<string | symbol, unknown> = {
    call: (method: string, input: unknown, options?: CallOptions) => client.call(method, input, options),
    close: () => client.close(),
    [Symbol.asyncDispose]: () => client.close(),
  };
  for (const method of Object.keys(def.methods)) {
    facade[method] = (input: unknown, options?: CallOptions) => client.call(method, input, options);
  }
  return Object.freeze(facade) as unknown as CellClient<CellDefinition>;
}

function untypedFacade(client: Client): UntypedCellClient {
  const core: Record<string | symbol, unknown> = {
    call: (method: string, input?: unknown, options?: CallOptions) => client.call(method, input, options),
    close: () => client.close(),
    [Symbol.asyncDispose]: () => client.close(),
  };
  const methods = new Map<string, UntypedMethod>();
  return new Proxy(core, {
    get(target, prop) {
      if (typeof prop === 'symbol' || Object.hasOwn(target, prop)) return target[prop];
      // Not thenable: `await connect(...)` must not mistake the client for a promise.
      if (RESERVED_METHOD_NAMES.has(prop)) return undefined;
      let method = methods.get(prop);
      if (method === undefined) {
        method = (input?: unknown, options?: CallOptions) => client.call(prop, input, options);
        methods.set(prop, method);
      }
      return method;
    },
  }) as unknown as UntypedCellClient;
}

/** One instance's socket and the connection to it. */
class Endpoint {
  conn: Connection | null = null;
  failures = 0;
  reconnectTimer: NodeJS.Timeout | null = null;
  isRemoved = false;

  constructor(readonly socket: string) {}
}

class Client implements CallHost, ConnectionEvents {
  private readonly endpoints = new Map<string, Endpoint>();
  private live: Connection[] = [];
  private next = 0;
  private readonly waiting = new Set<PendingCall>();
  private readonly signals = new Map<AbortSignal, { calls: Set<PendingCall>; onAbort: () => void }>();
  private readonly deadlines: Deadlines;
  private isClosed = false;
  private lastError: Error | null = null;
  private resolving = false;
  private resolveFailures = 0;
  private resolveTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly cell: string,
    private secret: string | undefined,
    private readonly timeoutMs: number,
    private readonly handshakeTimeoutMs: number,
    private readonly usesDiscovery: boolean,
  ) {
    // A call that times out while no connection is up carries the last connection error as its cause.
    this.deadlines = new Deadlines((call) => (call.conn === null ? (this.lastError ?? undefined) : undefined));
  }

  /**
   * Opens a connection to every socket; resolves once the first is open and the others have
   * opened or failed (or after a short grace for stragglers), rejects if all fail.
   */
  async start(sockets: string[]): Promise<void> {
    const attempts = [...new Set(sockets)].map((socket) => {
      const endpoint = new Endpoint(socket);
      this.endpoints.set(socket, endpoint);
      return this.open(endpoint);
    });
    try {
      await Promise.any(attempts);
    } catch (error) {
      const errors = (error as AggregateError).errors as Error[];
      await this.close();
      const refused = errors.find((e) => e instanceof HandshakeError);
      if (refused !== undefined) throw refused;
      throw new ConnectionLostError(`cannot connect to ${this.cell} at ${sockets.join(', ')}: ${errors.map((e) => e.message).join('; ')}`, { cell: this.cell, cause: errors[0] });
    }
    // The other handshakes are local and take a millisecond or two: waiting for them lets the
    // first calls spread over every instance instead of all going to whichever answered first.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(attempts), new Promise<void>((r) => (grace = setTimeout(r, START_GRACE_MS)))]);
    clearTimeout(grace);
  }

  call(method: string, input: unknown, options?: CallOptions): Promise<unknown> {
    if (typeof method !== 'string') return Promise.reject(new TypeError(`${this.cell}.call(): method must be a string, got ${typeof method}`));
    let timeoutMs = this.timeoutMs;
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      if (options.timeoutMs !== undefined) {
        try {
          timeoutMs = checkTimeout(`${this.cell}.${method}(): options.timeoutMs`, options.timeoutMs)!;
        } catch (error) {
          return Promise.reject(error);
        }
      }
      signal = options.signal;
    }
    if (this.isClosed) return Promise.reject(new ConnectionClosedError(`${this.cell}.${method}: the client is closed`, { cell: this.cell, method }));
    if (signal?.aborted) return Promise.reject(new AbortError(`${this.cell}.${method} was aborted`, { cell: this.cell, method, cause: signal.reason }));
    return new Promise((resolve, reject) => {
      const call = new PendingCall(Op.CALL, this.cell, method, input, timeoutMs, signal, resolve, reject, this);
      this.deadlines.track(call);
      if (signal !== undefined) this.watch(call, signal);
      this.dispatch(call);
    });
  }

  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    this.isClosed = true;
    const error = new ConnectionClosedError(`the client of ${this.cell} was closed`, { cell: this.cell });
    for (const call of [...this.waiting]) call.reject(new ConnectionClosedError(`${this.cell}.${call.method}: the client was closed`, { cell: this.cell, method: call.method }));
    const closing: Promise<void>[] = [];
    for (const endpoint of this.endpoints.values()) {
      if (endpoint.reconnectTimer !== null) clearTimeout(endpoint.reconnectTimer);
      endpoint.reconnectTimer = null;
      const conn = endpoint.conn;
      if (conn !== null) {
        closing.push(conn.closed);
        conn.close(error);
      }
    }
    if (this.resolveTimer !== null) clearTimeout(this.resolveTimer);
    this.live = [];
    this.deadlines.clear(error);
    return Promise.all(closing).then(() => undefined);
  }

  /** Sends `call` on the next live connection, or parks it until one opens. */
  private dispatch(call: PendingCall): void {
    const live = this.live;
    if (live.length > 0) {
      let i = this.next;
      if (i >= live.length) i = 0;
      this.next = i + 1;
      live[i].send(call);
      return;
    }
    this.waiting.add(call);
    if (this.usesDiscovery && this.endpoints.size === 0) this.reresolve();
  }

  unqueue(call: PendingCall): void {
    this.waiting.delete(call);
  }

  /**
   * One 'abort' listener per signal, however many calls share it: a listener per call would trip
   * Node's leak warning once a signal guards more than 10 calls.
   */
  private watch(call: PendingCall, signal: AbortSignal): void {
    let watched = this.signals.get(signal);
    if (watched === undefined) {
      const calls = new Set<PendingCall>();
      const onAbort = () => {
        this.signals.delete(signal);
        for (const c of [...calls]) c.abort();
      };
      watched = { calls, onAbort };
      this.signals.set(signal, watched);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    watched.calls.add(call);
  }

  unwatch(call: PendingCall): void {
    const signal = call.signal!;
    const watched = this.signals.get(signal);
    if (watched === undefined) return;
    watched.calls.delete(call);
    if (watched.calls.size === 0) {
      this.signals.delete(signal);
      signal.removeEventListener('abort', watched.onAbort);
    }
  }

  onGoAway(conn: Connection): void {
    this.dropLive(conn);
  }

  onClosed(conn: Connection, error: Error): void {
    this.lastError = error;
    this.dropLive(conn);
    const endpoint = this.endpoints.get(conn.socketPath);
    if (endpoint === undefined || endpoint.conn !== conn) return;
    endpoint.conn = null;
    this.scheduleReconnect(endpoint);
  }

  onRefused(call: PendingCall, error: RemoteError): void {
    call.attempts++;
    if (call.attempts >= MAX_REFUSED_ATTEMPTS || this.isClosed) call.reject(error);
    else this.dispatch(call);
  }

  private dropLive(conn: Connection): void {
    const i = this.live.indexOf(conn);
    if (i >= 0) this.live = this.live.filter((c) => c !== conn);
  }

  private open(endpoint: Endpoint): Promise<void> {
    const conn = new Connection({ socket: endpoint.socket, cell: this.cell, secret: this.secret, handshakeTimeoutMs: this.handshakeTimeoutMs, events: this });
    endpoint.conn = conn;
    return conn.opened.then(
      () => {
        if (this.isClosed || endpoint.isRemoved) {
          conn.close(new ConnectionClosedError(`the client of ${this.cell} was closed`, { cell: this.cell }));
          return;
        }
        endpoint.failures = 0;
        this.resolveFailures = 0;
        this.live = [...this.live, conn];
        this.flushWaiting();
      },
      (error: Error) => {
        if (endpoint.conn === conn) endpoint.conn = null;
        this.lastError = error;
        if (!this.isClosed && !endpoint.isRemoved) {
          this.scheduleReconnect(endpoint);
          if (this.usesDiscovery && this.live.length === 0) this.reresolve();
        }
        throw error;
      },
    );
  }

  private scheduleReconnect(endpoint: Endpoint): void {
    if (this.isClosed || endpoint.isRemoved || endpoint.reconnectTimer !== null) return;
    const delay = Math.min(MIN_BACKOFF_MS * 2 ** endpoint.failures, MAX_BACKOFF_MS);
    endpoint.failures++;
    // Unref'd: an idle client must not hold the process open; a waiting call's deadline timer does.
    endpoint.reconnectTimer = setTimeout(() => {
      endpoint.reconnectTimer = null;
      if (this.isClosed || endpoint.isRemoved || endpoint.conn !== null) return;
      this.open(endpoint).catch(() => {});
    }, delay).unref();
  }

  private flushWaiting(): void {
    if (this.waiting.size === 0) return;
    const calls = [...this.waiting];
    this.waiting.clear();
    for (const call of calls) this.dispatch(call);
  }

  /** All instances are down: ask discovery again (with the same backoff), in case they moved. */
  private reresolve(): void {
    if (this.resolving || this.resolveTimer !== null || this.isClosed) return;
    const delay = this.resolveFailures === 0 ? 0 : Math.min(MIN_BACKOFF_MS * 2 ** this.resolveFailures, MAX_BACKOFF_MS);
    this.resolveFailures++;
    this.resolveTimer = setTimeout(() => {
      this.resolveTimer = null;
      this.resolving = true;
      resolveEndpoints(this.cell).then(
        (found) => {
          this.resolving = false;
          if (this.isClosed) return;
          if (this.secret === undefined && found.secret !== undefined) this.secret = found.secret;
          this.updateEndpoints(Array.isArray(found.sockets) ? found.sockets : []);
        },
        (error: Error) => {
          this.resolving = false;
          this.lastError = error;
          if (this.live.length === 0 && this.waiting.size > 0) this.reresolve();
        },
      );
    }, delay).unref();
  }

  private updateEndpoints(sockets: string[]): void {
    const wanted = new Set(sockets.filter((s) => typeof s === 'string' && s !== ''));
    for (const [socket, endpoint] of this.endpoints) {
      if (wanted.has(socket)) continue;
      endpoint.isRemoved = true;
      this.endpoints.delete(socket);
      if (endpoint.reconnectTimer !== null) clearTimeout(endpoint.reconnectTimer);
      if (endpoint.conn !== null) {
        this.dropLive(endpoint.conn);
        if (endpoint.conn.inFlight === 0) endpoint.conn.close(new ConnectionClosedError(`${socket} is no longer an instance of ${this.cell}`, { cell: this.cell }));
      }
    }
    for (const socket of wanted) {
      if (this.endpoints.has(socket)) continue;
      const endpoint = new Endpoint(socket);
      this.endpoints.set(socket, endpoint);
      this.open(endpoint).catch(() => {});
    }
    if (this.endpoints.size === 0 && this.waiting.size > 0) this.reresolve();
  }
}

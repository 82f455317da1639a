import { createServer, request, Agent, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import { KERNEL_CELLS as KERNEL_CELL_NAMES } from '../api/index.js';

/**
 * How long an instance may take to start its answer (the response head) after the last byte of
 * the request: past it the client gets a 504 instead of waiting on a hung instance for ever.
 * 60 s like nginx's proxy_read_timeout; only the head, a body may stream for as long as it likes.
 */
export const UPSTREAM_HEADERS_TIMEOUT_MS = 60_000;

/**
 * How long a request may wait for an instance of a cell that has none to send it to but one on
 * its way (restarting after a crash, a `cell restart`, a first start), or whose instances refuse
 * it because the routing table has not caught up yet. A restart takes a few hundred ms; past this
 * the client gets its 503/502.
 */
export const HOLD_TIMEOUT_MS = 10_000; // the manifest's default `gateway.hold`: until the daemon has said

/** The most requests held at once (across cells); more are answered at once. */
export const MAX_HELD_REQUESTS = 1024;

/**
 * The kernel's cells (src/api's list, the daemon's too): never routed, though the daemon lists
 * them among the mesh's cells and the gateway itself has an endpoint.
 */
export const KERNEL_CELLS: ReadonlySet<string> = new Set(KERNEL_CELL_NAMES);

/** Methods a request without a body of which may be sent again after a reset (RFC 9110 9.2.2, as nginx's proxy_next_upstream). */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Headers that concern one connection only and are never forwarded (RFC 9110 7.6.1), besides the
 * ones the `Connection` header names. Node writes its own framing and keep-alive headers.
 */
const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/** The headers of a request or response without its hop-by-hop ones. */
export function endToEndHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = (headers.connection ?? '').split(',').map((token) => token.trim().toLowerCase());
  const result: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP_HEADERS.has(name) && !named.includes(name)) result[name] = value;
  }
  return result;
}

function checkedMs(option: string, value: number, o: { zeroAllowed: boolean }): number {
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !o.zeroAllowed)) {
    throw new TypeError(`option ${option} must be a ${o.zeroAllowed ? 'non-negative' : 'positive'} number of milliseconds, got ${String(value)}`);
  }
  return value;
}

function requestHasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && Number(length) !== 0);
}

/** A connection error: refused, or reset or broken before the answer (an instance killed, restarting). */
function isConnectionError(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EPIPE';
}

/** One client request on its way through the gateway, across the instances it is tried on. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  cell: string;
  /** The path and query sent upstream. */
  path: string;
  /** The URLs of the instances tried already. */
  tried: Set<string>;
  upstream: ClientRequest | null;
  isClientGone: boolean;
  /**
   * When it stops waiting for an instance: the hold timeout after it first found none (null
   * until then: a long request whose instance dies mid-way gets its whole hold too).
   */
  holdUntil: number | null;
  /** The hold timeout it got (the manifest's may change while it waits). */
  holdMs: number;
  /** Ends the wait at `holdUntil`; set while the request is held. */
  holdTimer: NodeJS.Timeout | null;
}

export interface GatewayOptions {
  /** How long an instance may take to send its response head; default UPSTREAM_HEADERS_TIMEOUT_MS. */
  headersTimeoutMs?: number;
  /** How long a request may wait for an instance; default HOLD_TIMEOUT_MS. */
  holdTimeoutMs?: number;
}

export interface RouteEndpoint {
  cell: string;
  instance: number;
  url: string;
  port: number;
}

/**
 * The gateway (the seed's Axon / Edge): `GET /{cell}/rest` is proxied to `/rest` on one ready
 * instance of `cell`, round-robin, with an `X-Mycelium-Edge` header on the answer. Its routing
 * table is replaced as a whole whenever the registry changes, so a request never sees half an update.
 * A cell the mesh does not have is a 404 (so is a kernel cell). A request no instance could have
 * received is tried on the next: a refused connection (any method: the body is read from the
 * client only once a connection stands); a bodiless GET, HEAD or OPTIONS is also tried again
 * after a reset before its answer (safe to repeat). With no instance left to try, a request waits (up to
 * HOLD_TIMEOUT_MS) while its cell has one on its way, as the daemon says, or while the routing
 * table lags behind a crash; so a kill -9 of a cell's only instance costs its clients a short
 * wait, not an error. Then a cell with no ready instance is a 503, one whose instances all failed
 * the request a 502; an instance silent for too long is a 504. Hop-by-hop headers stay on their
 * side; X-Forwarded-For, -Host and -Proto are set.
 */
export class Gateway {
  private routes = new Map<string, RouteEndpoint[]>();
  /** The ports of the instances in `routes`. */
  private routedPorts = new Set<number>();
  /** The mesh's cells; null until the daemon has said (every cell counts as known then). */
  private cells: ReadonlySet<string> | null = null;
  /** The cells with no ready instance but one on its way (the daemon says which). */
  private starting: ReadonlySet<string> = new Set();
  /** Requests waiting for an instance, in the order they came. */
  private readonly held = new Set<Exchange>();
  /** Requests sent to each instance (by port) and not yet answered in full. */
  private readonly inFlight = new Map<number, number>();
  /** Told whenever a request in flight ends (see drained). */
  private readonly inFlightWaiters = new Set<() => void>();
  private counters = new Map<string, number>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private server: Server | null = null;
  private readonly edgeId = `${hostname()}/${process.pid}`;
  private readonly headersTimeoutMs: number;
  private holdTimeoutMs: number;

  constructor(options: GatewayOptions = {}) {
    // A socket to an instance that left the table while it served a request is not pooled when
    // that request ends: the instance is stopping, and its graceful close waits for every
    // connection it has (a pooled one would hold it until its own keep-alive timeout).
    const keepSocketAlive = this.agent.keepSocketAlive.bind(this.agent);
    this.agent.keepSocketAlive = (socket) => this.routedPorts.has((socket as Socket).remotePort ?? -1) && keepSocketAlive(socket);
    this.headersTimeoutMs = checkedMs('headersTimeoutMs', options.headersTimeoutMs ?? UPSTREAM_HEADERS_TIMEOUT_MS, { zeroAllowed: false });
    this.holdTimeoutMs = checkedMs('holdTimeoutMs', options.holdTimeoutMs ?? HOLD_TIMEOUT_MS, { zeroAllowed: true });
  }

  /**
   * Replaces the routing table. `cells`: every cell of the mesh, ready or not, so that a request
   * for another name is told the cell does not exist rather than that it is not ready; omitted,
   * the cells known before are kept (null: unknown, as from a daemon that does not send them).
   * `starting`: the cells with an instance on its way and none ready (omitted: none). Held
   * requests are tried again on the new table. Returns the ports of the instances that left it.
   */
  setEndpoints(endpoints: RouteEndpoint[], cells?: readonly string[] | null, starting: readonly string[] = []): Set<number> {
    const next = new Map<string, RouteEndpoint[]>();
    for (const e of endpoints) {
      const list = next.get(e.cell) ?? [];
      list.push(e);
      next.set(e.cell, list);
    }
    const gone = new Set([...this.routes.values()].flat().map((e) => e.port));
    for (const e of endpoints) gone.delete(e.port);
    this.routes = next;
    this.routedPorts = new Set(endpoints.map((e) => e.port));
    if (cells !== undefined) this.cells = cells === null ? null : new Set(cells);
    // Kept-alive sockets to instances that left the table: an instance stopping closes them,
    // and a request sent on one as it does could not be sent again (it may have been seen).
    if (gone.size > 0) this.closeIdleSocketsTo(gone);
    this.starting = new Set(starting);
    const waiting = [...this.held];
    this.held.clear();
    for (const x of waiting) {
      // A new table: the instances refused under the old one may be back (on the same port).
      x.tried.clear();
      this.forward(x);
    }
    return gone;
  }

  /**
   * Resolves once no request sent to an instance on `ports` is still unanswered, or after
   * `maxMs`. The gateway tells the daemon it has a new table only then: an instance taken out of
   * it (to be stopped) gets its stop signal after the requests it was serving, not during them.
   */
  drained(ports: ReadonlySet<number>, maxMs: number): Promise<void> {
    const busy = () => [...ports].some((port) => (this.inFlight.get(port) ?? 0) > 0);
    if (!busy()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.inFlightWaiters.delete(check);
        resolve();
      };
      const check = () => {
        if (!busy()) done();
      };
      const timer = setTimeout(done, maxMs);
      this.inFlightWaiters.add(check);
    });
  }

  /** Counts a request to `port` until `upstream` closes (answered in full, failed or aborted). */
  private track(port: number, upstream: ClientRequest): void {
    this.inFlight.set(port, (this.inFlight.get(port) ?? 0) + 1);
    upstream.once('close', () => {
      const left = (this.inFlight.get(port) ?? 1) - 1;
      if (left > 0) this.inFlight.set(port, left);
      else this.inFlight.delete(port);
      for (const check of [...this.inFlightWaiters]) check();
    });
  }

  /** How long a request that comes from now on may wait for an instance (0: not at all). */
  setHoldTimeout(ms: number): void {
    this.holdTimeoutMs = checkedMs('holdTimeoutMs', ms, { zeroAllowed: true });
  }

  private isUnknownCell(cell: string): boolean {
    return this.cells !== null && !this.cells.has(cell) && !this.routes.has(cell);
  }

  private pick(cell: string, skip: Set<string>): RouteEndpoint | undefined {
    const list = (this.routes.get(cell) ?? []).filter((e) => !skip.has(e.url));
    if (list.length === 0) return undefined;
    const n = this.counters.get(cell) ?? 0;
    this.counters.set(cell, n + 1);
    return list[n % list.length];
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const match = /^\/([a-z][a-z0-9-]*)(\/.*)?$/.exec(url.split('?')[0]);
    if (!match) {
      this.fail(res, 404, `no cell in path ${JSON.stringify(url)}: use /{cell}/...`);
      return;
    }
    const cell = match[1];
    // The kernel's cells have endpoints too (the gateway's own: /gateway/ would call itself).
    if (KERNEL_CELLS.has(cell)) {
      this.fail(res, 404, `no cell named ${JSON.stringify(cell)}`);
      return;
    }
    const rest = url.slice(cell.length + 1) || '/';
    const exchange: Exchange = {
      req,
      res,
      cell,
      path: rest.startsWith('/') ? rest : `/${rest}`,
      tried: new Set(),
      upstream: null,
      isClientGone: false,
      holdUntil: null,
      holdMs: this.holdTimeoutMs,
      holdTimer: null,
    };
    // A client that goes away before its answer is complete aborts the upstream request.
    res.once('close', () => {
      if (res.writableFinished) return;
      exchange.isClientGone = true;
      exchange.upstream?.destroy();
      this.unhold(exchange);
    });
    this.forward(exchange);
  }

  private forward(x: Exchange): void {
    const { req, res, cell } = x;
    const target = this.pick(cell, x.tried);
    if (!target) {
      this.noInstance(x);
      return;
    }
    this.unhold(x);
    const hasBody = requestHasBody(req);
    const upstream = request({ host: '127.0.0.1', port: target.port, path: x.path, method: req.method, headers: this.upstreamHeaders(req, hasBody), agent: this.agent });
    x.upstream = upstream;
    this.track(target.port, upstream);
    let isAnswered = false;
    let timedOut = false;
    // Whether a connection to the instance stood: before it, nothing of the request was sent.
    let isConnected = false;
    // Whether the client's whole body came: an upload that stalls is the client's doing, not the instance's.
    let bodyDone = !hasBody;
    const headersTimer = setTimeout(() => {
      timedOut = true;
      upstream.destroy();
      if (res.headersSent) return;
      if (isConnected && !bodyDone) this.fail(res, 408, `the request body stopped coming: nothing for ${this.headersTimeoutMs / 1000} s`);
      else this.fail(res, 504, `${cell}.${target.instance} sent no response within ${this.headersTimeoutMs / 1000} s`);
    }, this.headersTimeoutMs);

    upstream.on('response', (up) => {
      isAnswered = true;
      clearTimeout(headersTimer);
      // An answer cut short (the instance died, closed or reset the connection mid-body) cuts the
      // client's connection too, at once: it sees a truncated response, as it would from the instance.
      const cutClient = () => {
        if (!up.complete) res.destroy();
      };
      up.on('error', cutClient);
      up.on('close', cutClient);
      res.writeHead(up.statusCode ?? 502, { ...endToEndHeaders(up.headers), 'x-mycelium-edge': this.edgeId });
      up.pipe(res);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(headersTimer);
      if (timedOut || x.isClientGone) return;
      // Refused, or reset while connecting: the instance never saw the request, whatever its
      // method. A reset later may come after the instance acted on it: only a safe one is sent again.
      const neverSent = isConnectionError(err) && !isConnected;
      if (!isAnswered && (neverSent || (!hasBody && SAFE_METHODS.has(req.method ?? '') && isConnectionError(err)))) {
        x.tried.add(target.url);
        this.forward(x);
        return;
      }
      if (!res.headersSent) this.fail(res, 502, `${cell}.${target.instance}: ${err.message}`);
      else res.destroy();
    });
    // The body is read from the client only once a connection to the instance stands: a refused
    // one then leaves it unread, and the request can go to another instance whatever its method.
    const sendBody = () => {
      // A slow upload is not a silent instance: the wait for the answer counts from the last byte sent.
      req.on('data', () => {
        if (!isAnswered && !timedOut) headersTimer.refresh();
      });
      req.once('end', () => (bodyDone = true));
      req.pipe(upstream);
    };
    upstream.once('socket', (socket) => {
      const connected = () => {
        isConnected = true;
        if (hasBody) sendBody();
      };
      if (socket.connecting) socket.once('connect', connected);
      else connected();
    });
    if (!hasBody) upstream.end();
  }

  /**
   * No instance of `x`'s cell to send it to (none ready, or all refused it): it waits for the
   * next routing table while its cell has an instance on its way, or while the table may be
   * behind (an instance refused it: it died, and the daemon's word of it is still coming), up
   * to its hold deadline; else it gets its answer now.
   */
  private noInstance(x: Exchange): void {
    const { res, cell } = x;
    if (this.isUnknownCell(cell)) {
      this.unhold(x);
      this.fail(res, 404, `no cell named ${JSON.stringify(cell)}`);
      return;
    }
    const mayCome = this.starting.has(cell) || x.tried.size > 0;
    x.holdUntil ??= Date.now() + x.holdMs;
    const remainingMs = x.holdUntil - Date.now();
    if (mayCome && remainingMs > 0 && (x.holdTimer !== null || this.held.size < MAX_HELD_REQUESTS)) {
      this.held.add(x);
      x.holdTimer ??= setTimeout(() => {
        if (!this.held.delete(x)) return;
        x.holdTimer = null;
        this.answerNoInstance(x, ` (waited ${x.holdMs / 1000} s)`);
      }, remainingMs);
      return;
    }
    this.unhold(x);
    this.answerNoInstance(x, '');
  }

  private answerNoInstance(x: Exchange, waited: string): void {
    if (x.tried.size > 0) this.fail(x.res, 502, `no instance of ${x.cell} answered${waited}`);
    else this.fail(x.res, 503, `no ready instance of cell ${x.cell}${waited}`);
  }

  private closeIdleSocketsTo(ports: Set<number>): void {
    for (const [name, sockets] of Object.entries(this.agent.freeSockets)) {
      // The agent names a pool `host:port:` (and more options after).
      if (ports.has(Number(name.split(':')[1]))) for (const socket of sockets ?? []) socket.destroy();
    }
  }

  private unhold(x: Exchange): void {
    this.held.delete(x);
    if (x.holdTimer) clearTimeout(x.holdTimer);
    x.holdTimer = null;
  }

  /** The request's end-to-end headers, with the X-Forwarded-* set of a proxy that serves plain HTTP. */
  private upstreamHeaders(req: IncomingMessage, hasBody: boolean): OutgoingHttpHeaders {
    const headers = endToEndHeaders(req.headers);
    const client = req.socket.remoteAddress ?? '';
    const forwardedFor = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = forwardedFor ? `${forwardedFor}, ${client}` : client;
    if (req.headers.host !== undefined) headers['x-forwarded-host'] = req.headers.host;
    headers['x-forwarded-proto'] = 'http';
    // Node frames the body again (its chunked encoding, not the client's): without the header it
    // would send the body of a DELETE or an OPTIONS unframed.
    if (hasBody && headers['content-length'] === undefined) headers['transfer-encoding'] = 'chunked';
    return headers;
  }

  private fail(res: ServerResponse, status: number, message: string): void {
    const body = JSON.stringify({ error: { name: 'GatewayError', message } });
    const headers: OutgoingHttpHeaders = { 'content-type': 'application/json', 'x-mycelium-edge': this.edgeId, 'content-length': Buffer.byteLength(body) };
    // A request whose body was not read to its end (an upload cut off by the instance's reset)
    // leaves the connection with bytes of it pending: the next request on it would never parse.
    if (!res.req.complete) headers.connection = 'close';
    res.writeHead(status, headers).end(body);
  }

  listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = createServer((req, res) => this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  close(): Promise<void> {
    for (const x of [...this.held]) {
      this.unhold(x);
      this.answerNoInstance(x, ' (the gateway is stopping)');
    }
    return new Promise((resolve) => {
      this.agent.destroy();
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }
}

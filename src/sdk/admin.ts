/**
 * One-shot requests for the supervisor and tools: each opens a connection, does the handshake,
 * sends one PING / SHUTDOWN / SCHEMA and closes. `timeoutMs` bounds the whole exchange.
 */
import { Connection, PendingCall } from './connection.js';
import { CallTimeoutError } from './errors.js';
import { Op } from './protocol.js';

export interface AdminOptions {
  /** The cell's secret. Default: `process.env.CELL_SECRET`; none: no auth. */
  secret?: string;
  /** Bound on connect, handshake and reply together (default 5000 ms). */
  timeoutMs?: number;
  /** When set, the socket must serve this cell (else `HandshakeError`). */
  cell?: string;
}

/** Pings a cell's socket. Resolves with the round trip of the PING alone; rejects on any failure. */
export async function pingCell(socket: string, options: AdminOptions = {}): Promise<{ rttMs: number; cell: string }> {
  return withConnection(socket, options, 'ping', async (conn) => {
    const start = performance.now();
    await request(conn, Op.PING, 'ping');
    return { rttMs: performance.now() - start, cell: conn.cell };
  });
}

/**
 * Asks a cell to drain and stop. Resolves once the server acknowledged (after its calls in flight
 * finished) and closed the connection.
 */
export async function shutdownCell(socket: string, options: AdminOptions = {}): Promise<void> {
  return withConnection(socket, options, 'shutdown', async (conn) => {
    await request(conn, Op.SHUTDOWN, 'shutdown');
    await conn.closed;
  });
}

/** The JSON schema of a cell's methods: `{ cell, protocol, methods: { name: { input, output } } }`. */
export async function fetchSchema(socket: string, options: AdminOptions = {}): Promise<CellSchema> {
  return withConnection(socket, options, 'schema', async (conn) => (await request(conn, Op.SCHEMA, 'schema')) as CellSchema);
}

export interface CellSchema {
  cell: string;
  protocol: number;
  methods: Record<string, { input: Record<string, unknown>; output: Record<string, unknown> }>;
}

async function withConnection<T>(socket: string, options: AdminOptions, what: string, use: (conn: Connection) => Promise<T>): Promise<T> {
  if (typeof socket !== 'string' || socket === '') throw new TypeError(`${what}: socket must be a non-empty path, got ${JSON.stringify(socket)}`);
  const timeoutMs = options.timeoutMs ?? 5000;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw new TypeError(`${what}: options.timeoutMs must be a positive number, got ${JSON.stringify(timeoutMs)}`);
  const secret = options.secret ?? process.env.CELL_SECRET;
  const conn = new Connection({ socket, cell: options.cell, secret: secret === '' ? undefined : secret, handshakeTimeoutMs: timeoutMs * 2, events: null });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallTimeoutError(`${what} of ${socket} got no answer within ${timeoutMs} ms`, { cell: options.cell, method: what })), timeoutMs);
  });
  try {
    return await Promise.race([conn.opened.then(() => use(conn)), timeout]);
  } finally {
    clearTimeout(timer);
    conn.close(new CallTimeoutError(`${what} of ${socket} is over`, { cell: options.cell, method: what }));
  }
}

function request(conn: Connection, op: number, what: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    conn.send(new PendingCall(op, conn.cell, what, undefined, 0, undefined, resolve, reject, null));
  });
}

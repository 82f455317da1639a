import net from 'node:net';

/**
 * HTTP health checks over one kept-alive raw socket per instance, with the request prebuilt.
 *
 * Why not node:http: on the machines we measure, its client costs ~370 µs of CPU per request,
 * and a daemon checking 100 cells every second must stay under 1% of a core. A check needs only
 * the status code and the end of the response (to reuse the socket), so this reads exactly that:
 * the status line, Content-Length or chunked framing, and `Connection: close`.
 */

export interface HttpCheckResult {
  /** HTTP status, or 0 when no response came. */
  status: number;
  /** Whether a TCP connection was made at all (for the level of a failure). */
  connected: boolean;
  /** Why there is no status (connection refused, reset, timeout, bad response). */
  error?: string;
}

const MAX_HEAD_BYTES = 16 * 1024;
const MAX_BODY_BYTES = 64 * 1024;

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked'; tail: string } | { kind: 'until-close' } | { kind: 'none' };

class ProbeConnection {
  private socket: net.Socket | null = null;
  private connected = false;
  private head = '';
  private status = 0;
  private framing: Framing | null = null;
  private closeAfter = false;
  private bodyBytes = 0;
  private pending: ((r: HttpCheckResult) => void) | null = null;

  constructor(
    private readonly port: number,
    private readonly request: Buffer,
    private readonly onIdleClose: () => void,
  ) {}

  check(timeoutMs: number, signal?: AbortSignal): Promise<HttpCheckResult> {
    if (this.pending) return Promise.resolve({ status: 0, connected: this.connected, error: 'a check is already in flight' });
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.fail(`timed out after ${timeoutMs}ms`), timeoutMs);
      const onAbort = () => this.fail('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending = (r) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pending = null;
        resolve(r);
      };
      this.head = '';
      this.status = 0;
      this.framing = null;
      this.bodyBytes = 0;
      if (!this.socket) this.open();
      else this.socket.write(this.request);
    });
  }

  private open(): void {
    const socket = net.connect({ host: '127.0.0.1', port: this.port });
    this.socket = socket;
    this.connected = false;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connected = true;
      socket.write(this.request);
    });
    // Events of a socket we already let go of (closed after a response) concern no check.
    socket.on('data', (chunk: Buffer) => this.socket === socket && this.onData(chunk));
    socket.on('error', (err) => this.socket === socket && this.fail(err.message));
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.pending) {
        if (this.framing?.kind === 'until-close') this.finish();
        else this.fail('connection closed before a complete response');
      } else {
        this.onIdleClose();
      }
    });
    // An idle kept-alive socket must not keep the daemon alive on exit.
    socket.unref();
  }

  private onData(chunk: Buffer): void {
    if (!this.pending) return;
    let body: Buffer;
    if (this.framing === null) {
      this.head += chunk.toString('latin1');
      const end = this.head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.head.length > MAX_HEAD_BYTES) this.fail('response head too large');
        return;
      }
      if (!this.parseHead(this.head.slice(0, end))) return;
      body = Buffer.from(this.head.slice(end + 4), 'latin1');
    } else {
      body = chunk;
    }
    this.consumeBody(body);
  }

  /** Status line and the few headers that decide framing. Returns false after failing. */
  private parseHead(head: string): boolean {
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) {
      this.fail(`not an HTTP response: ${JSON.stringify(lines[0].slice(0, 60))}`);
      return false;
    }
    this.status = Number(m[1]);
    let length: number | null = null;
    let chunked = false;
    this.closeAfter = lines[0].startsWith('HTTP/1.0');
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon < 0) continue;
      const name = lines[i].slice(0, colon).trim().toLowerCase();
      const value = lines[i].slice(colon + 1).trim().toLowerCase();
      if (name === 'content-length') length = Number(value);
      else if (name === 'transfer-encoding') chunked = value.includes('chunked');
      else if (name === 'connection') this.closeAfter = value.includes('close') ? true : value.includes('keep-alive') ? false : this.closeAfter;
    }
    const bodyless = this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200);
    if (bodyless) this.framing = { kind: 'none' };
    else if (chunked) this.framing = { kind: 'chunked', tail: '' };
    else if (length !== null && Number.isFinite(length)) this.framing = { kind: 'length', remaining: length };
    else this.framing = { kind: 'until-close' };
    return true;
  }

  private consumeBody(body: Buffer): void {
    const framing = this.framing!;
    this.bodyBytes += body.length;
    if (this.bodyBytes > MAX_BODY_BYTES) {
      // A huge health body is not worth draining: answer now, drop the socket.
      this.closeAfter = true;
      this.finish();
      return;
    }
    if (framing.kind === 'none') return this.finish();
    if (framing.kind === 'length') {
      framing.remaining -= body.length;
      if (framing.remaining <= 0) this.finish();
      return;
    }
    if (framing.kind === 'chunked') {
      // The terminating zero-size chunk ends the body (trailers are not expected from a health check).
      framing.tail = (framing.tail + body.toString('latin1')).slice(-64);
      if (/(^|\r\n)0\r\n\r\n$/.test(framing.tail)) this.finish();
    }
  }

  private finish(): void {
    const socket = this.socket;
    const done = this.pending;
    if (this.closeAfter && socket) {
      this.socket = null;
      socket.destroy();
    }
    done?.({ status: this.status, connected: true });
  }

  private fail(error: string): void {
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    const done = this.pending;
    done?.({ status: 0, connected: this.connected, error });
  }

  destroy(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}

const connections = new Map<string, ProbeConnection>();

/** GET `path` on 127.0.0.1:`port`, reusing the instance's kept-alive probe socket. */
export function checkHttp(port: number, path: string, timeoutMs: number, signal?: AbortSignal): Promise<HttpCheckResult> {
  const key = `${port} ${path}`;
  let conn = connections.get(key);
  if (!conn) {
    const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: cell-health\r\nConnection: keep-alive\r\n\r\n`, 'latin1');
    conn = new ProbeConnection(port, request, () => connections.delete(key));
    connections.set(key, conn);
  }
  return conn.check(timeoutMs, signal);
}

/** Closes every kept-alive probe socket (daemon shutdown, tests). */
export function closeHttpProbeConnections(): void {
  for (const conn of connections.values()) conn.destroy();
  connections.clear();
}

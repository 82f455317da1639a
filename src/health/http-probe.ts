import net from 'node:net';

/**
 * HTTP health checks over one kept-alive raw socket per instance, with the request prebuilt.
 *
 * Why so low-level: a daemon checking 100 cells every second must stay under 1% of a core, and
 * on the machines we measure node:http costs ~370 µs of CPU per request, a stream socket ~90 µs.
 * Here a check is one write and one read: sockets read into one shared buffer (`onread`, no
 * Buffer or 'data' event per response), results go to a callback (no promise per check), and the
 * timeouts of all checks in flight share one timer. A check needs only the status code and the
 * end of the response (to reuse the socket), so this reads exactly that: the status line,
 * Content-Length or chunked framing, and `Connection: close`.
 */

export interface HttpCheckResult {
  /** HTTP status, or 0 when no response came. */
  status: number;
  /** Whether a TCP connection was made at all (for the level of a failure). */
  connected: boolean;
  /** Why there is no status (connection refused, reset, timeout, bad response). */
  error?: string;
}

export type HttpCheckCallback = (result: HttpCheckResult) => void;

const MAX_HEAD_BYTES = 16 * 1024;
const MAX_BODY_BYTES = 64 * 1024;

/** Every probe socket reads into this; a response is parsed before the next read can happen. */
const readBuffer = Buffer.allocUnsafe(16 * 1024);

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked'; tail: string } | { kind: 'until-close' } | { kind: 'none' };

/**
 * The deadlines of all checks in flight, on one timer armed for the earliest. A round of checks
 * started together shares a deadline, and the timer is cleared once they have all answered.
 */
class Deadlines {
  private readonly pending = new Set<ProbeConnection>();
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;

  add(conn: ProbeConnection): void {
    this.pending.add(conn);
    if (conn.deadline < this.armedFor) this.arm(conn.deadline);
  }

  remove(conn: ProbeConnection): void {
    if (!this.pending.delete(conn) || this.pending.size > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Infinity;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - Date.now()));
    // A check in flight must not keep the daemon alive on exit.
    this.timer.unref();
  }

  private expire(): void {
    this.timer = null;
    this.armedFor = Infinity;
    const now = Date.now();
    for (const conn of [...this.pending]) if (conn.deadline <= now) conn.timeOut();
    // A check started meanwhile (a retry from a callback) may have armed the timer already.
    let next = Infinity;
    for (const conn of this.pending) next = Math.min(next, conn.deadline);
    if (next < this.armedFor) this.arm(next);
  }
}

const deadlines = new Deadlines();

/** The trimmed value of a header in a lowered response head; `needle` is `\r\n<name>:`. */
function headerValue(lowerHead: string, needle: string): string | undefined {
  const at = lowerHead.indexOf(needle);
  if (at < 0) return undefined;
  const start = at + needle.length;
  const end = lowerHead.indexOf('\r\n', start);
  return lowerHead.slice(start, end < 0 ? undefined : end).trim();
}

class ProbeConnection {
  private socket: net.Socket | null = null;
  private connected = false;
  private head = '';
  private status = 0;
  private framing: Framing | null = null;
  private closeAfter = false;
  private bodyBytes = 0;
  private pending: HttpCheckCallback | null = null;
  private timeoutMs = 0;
  private signal: AbortSignal | undefined;
  deadline = Infinity;

  constructor(
    private readonly port: number,
    private readonly request: Buffer,
    private readonly onIdleClose: () => void,
  ) {}

  check(timeoutMs: number, done: HttpCheckCallback, signal?: AbortSignal): void {
    if (this.pending) return done({ status: 0, connected: this.connected, error: 'a check is already in flight' });
    if (signal?.aborted) return done({ status: 0, connected: this.connected, error: 'aborted' });
    this.pending = done;
    this.timeoutMs = timeoutMs;
    this.deadline = Date.now() + timeoutMs;
    deadlines.add(this);
    if (signal) {
      this.signal = signal;
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.head = '';
    this.status = 0;
    this.framing = null;
    this.bodyBytes = 0;
    if (!this.socket) this.open();
    else this.socket.write(this.request);
  }

  timeOut(): void {
    this.fail(`timed out after ${this.timeoutMs}ms`);
  }

  private readonly onAbort = () => this.fail('aborted');

  private open(): void {
    const socket = net.connect({
      host: '127.0.0.1',
      port: this.port,
      // Events of a socket we already let go of (closed after a response) concern no check.
      onread: {
        buffer: readBuffer,
        callback: (n: number) => {
          if (this.socket === socket) this.onData(readBuffer, n);
          return true;
        },
      },
    });
    this.socket = socket;
    this.connected = false;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connected = true;
      socket.write(this.request);
    });
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

  private onData(buf: Buffer, n: number): void {
    if (!this.pending) return;
    let bodyStart = 0;
    if (this.framing === null) {
      // Usually the whole response is one read: parse the head straight from the buffer.
      const text = buf.toString('latin1', 0, n);
      const end = this.head === '' ? text.indexOf('\r\n\r\n') : -1;
      if (end >= 0) {
        if (!this.parseHead(text.slice(0, end))) return;
        bodyStart = end + 4;
      } else {
        this.head += text;
        const joinedEnd = this.head.indexOf('\r\n\r\n');
        if (joinedEnd < 0) {
          if (this.head.length > MAX_HEAD_BYTES) this.fail('response head too large');
          return;
        }
        if (!this.parseHead(this.head.slice(0, joinedEnd))) return;
        // The body bytes of this read follow the head's end within it.
        bodyStart = n - (this.head.length - joinedEnd - 4);
      }
    }
    this.consumeBody(buf, bodyStart, n);
  }

  /** Status line and the few headers that decide framing. Returns false after failing. */
  private parseHead(head: string): boolean {
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(head);
    if (!m) {
      const firstLine = head.split('\r\n', 1)[0];
      this.fail(`not an HTTP response: ${JSON.stringify(firstLine.slice(0, 60))}`);
      return false;
    }
    this.status = Number(m[2]);
    // Three lookups in the lowered head instead of splitting it into lines: this runs 100 times
    // a second in an idle daemon.
    const lower = head.toLowerCase();
    const length = headerValue(lower, '\r\ncontent-length:');
    const chunked = headerValue(lower, '\r\ntransfer-encoding:')?.includes('chunked') ?? false;
    const connection = headerValue(lower, '\r\nconnection:');
    this.closeAfter = connection?.includes('close') ? true : connection?.includes('keep-alive') ? false : m[1] === '0';
    const bodyless = this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200);
    const contentLength = length === undefined ? NaN : Number(length);
    if (bodyless) this.framing = { kind: 'none' };
    else if (chunked) this.framing = { kind: 'chunked', tail: '' };
    else if (length !== undefined && Number.isFinite(contentLength)) this.framing = { kind: 'length', remaining: contentLength };
    else this.framing = { kind: 'until-close' };
    return true;
  }

  private consumeBody(buf: Buffer, start: number, end: number): void {
    const framing = this.framing!;
    const bytes = end - start;
    this.bodyBytes += bytes;
    if (this.bodyBytes > MAX_BODY_BYTES) {
      // A huge health body is not worth draining: answer now, drop the socket.
      this.closeAfter = true;
      this.finish();
      return;
    }
    if (framing.kind === 'none') return this.finish();
    if (framing.kind === 'length') {
      framing.remaining -= bytes;
      if (framing.remaining <= 0) this.finish();
      return;
    }
    if (framing.kind === 'chunked') {
      // The terminating zero-size chunk ends the body (trailers are not expected from a health check).
      framing.tail = (framing.tail + buf.toString('latin1', start, end)).slice(-64);
      if (/(^|\r\n)0\r\n\r\n$/.test(framing.tail)) this.finish();
    }
  }

  private settle(result: HttpCheckResult): void {
    const done = this.pending;
    if (!done) return;
    this.pending = null;
    deadlines.remove(this);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.signal = undefined;
    done(result);
  }

  private finish(): void {
    const socket = this.socket;
    if (this.closeAfter && socket) {
      this.socket = null;
      socket.destroy();
    }
    this.settle({ status: this.status, connected: true });
  }

  private fail(error: string): void {
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    this.settle({ status: 0, connected: this.connected, error });
  }

  destroy(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}

const connections = new Map<string, ProbeConnection>();

function connectionFor(port: number, path: string): ProbeConnection {
  const key = `${port} ${path}`;
  let conn = connections.get(key);
  if (!conn) {
    const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: cell-health\r\nConnection: keep-alive\r\n\r\n`, 'latin1');
    conn = new ProbeConnection(port, request, () => connections.delete(key));
    connections.set(key, conn);
  }
  return conn;
}

/**
 * GET `path` on 127.0.0.1:`port` over the instance's kept-alive probe socket and calls `done`
 * once with the result. A kept-alive socket the server closed just as it was reused gets one
 * fresh attempt.
 */
export function checkHttpThen(port: number, path: string, timeoutMs: number, done: HttpCheckCallback, signal?: AbortSignal): void {
  connectionFor(port, path).check(
    timeoutMs,
    (result) => {
      if (result.error && result.connected && /ECONNRESET|EPIPE|closed before/.test(result.error)) connectionFor(port, path).check(timeoutMs, done, signal);
      else done(result);
    },
    signal,
  );
}

/** Closes every kept-alive probe socket (daemon shutdown, tests). */
export function closeHttpProbeConnections(): void {
  for (const conn of connections.values()) conn.destroy();
  connections.clear();
}

/**
 * A client that speaks the wire protocol byte by byte, for tests that must send what the SDK's
 * own client never would (fuzz, out-of-order ops, duplicate ids).
 */
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { Packr } from 'msgpackr';
import { FrameReader, Op } from '../../src/sdk/protocol.js';

const packr = new Packr({ useRecords: false });

/** Encodes `payload` as one frame: 4-byte big-endian length, then msgpack. */
export function frame(payload: unknown): Buffer {
  const body = packr.pack(payload);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export class RawConnection {
  readonly messages: unknown[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private waiters: Array<() => void> = [];
  private readonly reader: FrameReader;

  private constructor(readonly socket: net.Socket) {
    this.reader = new FrameReader(
      {
        onMessage: (message) => {
          this.messages.push(message);
          this.wake();
        },
        onFrameError: (error) => {
          throw error;
        },
      },
      64 * 1024 * 1024,
    );
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Connects; with `authenticate` it completes the handshake (HELLO, AUTH, WELCOME) first. */
  static async open(socket: string, options: { secret?: string; authenticate?: boolean } = {}): Promise<RawConnection> {
    const sock = net.connect(socket);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const conn = new RawConnection(sock);
    const hello = (await conn.next((m) => Array.isArray(m) && m[0] === Op.HELLO)) as [number, number, { nonce: string }];
    if (options.authenticate !== false) {
      const proof = options.secret === undefined ? '' : createHmac('sha256', options.secret).update(hello[2].nonce).digest('hex');
      conn.write(frame([Op.AUTH, 0, { v: 1, proof }]));
      await conn.next((m) => Array.isArray(m) && (m[0] === Op.WELCOME || m[0] === Op.ERROR));
    }
    return conn;
  }

  write(bytes: Buffer): void {
    if (!this.isClosed) this.socket.write(bytes);
  }

  send(payload: unknown): void {
    this.write(frame(payload));
  }

  /**
   * Resolves with the first message (received from `from` on) that matches, or with `undefined`
   * when the connection closes first; rejects after `timeoutMs`.
   */
  async next(match: (message: unknown) => boolean, timeoutMs = 5000, from = 0): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.messages.length; i++) if (match(this.messages[i])) return this.messages[i];
      if (this.isClosed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

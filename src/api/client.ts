import { request } from 'node:http';
import { dirname } from 'node:path';
import { ApiError, CellHomeNotADirectoryError, CellHomeTooLongError, DaemonNotRunningError } from './errors.js';
import { MAX_SOCKET_PATH_BYTES, fileInPathOf } from './paths.js';

/**
 * A small client for the daemon API over its unix socket. node:http only: the CLI must start
 * fast (`cell status` is budgeted at 150 ms), so no heavier HTTP client is loaded here.
 */
export class ApiClient {
  constructor(readonly socket: string) {}

  /**
   * Why nothing answers on the socket: no daemon, or (a socket path past the kernel's limit) no
   * daemon can ever run for this home, which `cell up` would not fix.
   */
  private unreachable(err: NodeJS.ErrnoException): Error {
    const bytes = Buffer.byteLength(this.socket);
    if (bytes > MAX_SOCKET_PATH_BYTES) return new CellHomeTooLongError(dirname(dirname(this.socket)), this.socket, bytes, MAX_SOCKET_PATH_BYTES, { cause: err });
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return new DaemonNotRunningError(this.socket, { cause: err });
    const home = dirname(dirname(this.socket));
    const file = err.code === 'ENOTDIR' ? fileInPathOf(home) : undefined;
    if (file !== undefined) return new CellHomeNotADirectoryError(home, file, { cause: err });
    return err;
  }

  get<T>(path: string, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.call<T>('GET', path, undefined, opts);
  }

  post<T>(path: string, body: unknown = {}, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.call<T>('POST', path, body, opts);
  }

  call<T>(method: string, path: string, body: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        {
          socketPath: this.socket,
          path,
          method,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
          timeout: opts.timeoutMs ?? 120_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              reject(new ApiError(`daemon sent a non-JSON reply to ${method} ${path}: ${text.slice(0, 200)}`, res.statusCode ?? 0, 'ProtocolError'));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const err = (parsed as { error?: { name?: string; message?: string } })?.error ?? {};
              const { name, message, ...fields } = err as Record<string, unknown>;
              reject(new ApiError(String(message ?? `HTTP ${res.statusCode}`), res.statusCode ?? 500, String(name ?? 'Error'), fields));
              return;
            }
            resolve(parsed as T);
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`daemon did not answer ${method} ${path} within ${opts.timeoutMs ?? 120_000}ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.unreachable(err)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** Streams a chunked text response (logs --follow) to `onChunk` until it ends or `signal` aborts. */
  stream(path: string, onChunk: (text: string) => void, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, path, method: 'GET', signal }, (res) => {
        if ((res.statusCode ?? 500) >= 400) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            try {
              const err = JSON.parse(Buffer.concat(chunks).toString('utf8')).error;
              reject(new ApiError(err.message, res.statusCode ?? 500, err.name));
            } catch {
              reject(new ApiError(`HTTP ${res.statusCode}`, res.statusCode ?? 500, 'Error'));
            }
          });
          return;
        }
        res.setEncoding('utf8');
        res.on('data', onChunk);
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') resolve();
        else reject(this.unreachable(err));
      });
      req.end();
    });
  }
}

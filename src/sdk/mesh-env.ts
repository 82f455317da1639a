import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * What a cell (or a client script) knows of the mesh it runs in: its CELL_HOME, the daemon's
 * socket, the mesh secret. Kept here, inside the SDK, so a cell never imports daemon code.
 */
export function meshHome(): string {
  return process.env.CELL_HOME ?? join(homedir(), '.cell');
}

/** The mesh secret: CELL_SECRET for cells, else `$CELL_HOME/keys/mesh.secret` (same user only). */
export function meshSecret(home = meshHome()): string | undefined {
  if (process.env.CELL_SECRET) return process.env.CELL_SECRET;
  try {
    return readFileSync(join(home, 'keys/mesh.secret'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** A JSON POST to the daemon API on its unix socket. Rejects on network errors and 4xx/5xx. */
export function postToDaemon<T>(path: string, body: unknown, timeoutMs: number, home = meshHome()): Promise<T> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    const req = request(
      { socketPath: join(home, 'run/daemon.sock'), path, method: 'POST', timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: { error?: { message?: string } } & Record<string, unknown>;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(new Error(`daemon sent a non-JSON reply to ${path}`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) reject(new Error(parsed.error?.message ?? `daemon answered ${res.statusCode}`));
          else resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`daemon did not answer ${path} within ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

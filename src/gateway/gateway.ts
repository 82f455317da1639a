import { createServer, request, Agent, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { hostname } from 'node:os';

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
 * A cell the mesh does not have is a 404; a cell it has, with no ready instance, a 503.
 */
export class Gateway {
  private routes = new Map<string, RouteEndpoint[]>();
  /** The mesh's cells; null until the daemon has said (every cell counts as known then). */
  private cells: ReadonlySet<string> | null = null;
  private counters = new Map<string, number>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private server: Server | null = null;
  private readonly edgeId = `${hostname()}/${process.pid}`;

  /**
   * Replaces the routing table. `cells`: every cell of the mesh, ready or not, so that a request
   * for another name is told the cell does not exist rather than that it is not ready; omitted,
   * the cells known before are kept (null: unknown, as from a daemon that does not send them).
   */
  setEndpoints(endpoints: RouteEndpoint[], cells?: readonly string[] | null): void {
    const next = new Map<string, RouteEndpoint[]>();
    for (const e of endpoints) {
      const list = next.get(e.cell) ?? [];
      list.push(e);
      next.set(e.cell, list);
    }
    this.routes = next;
    if (cells !== undefined) this.cells = cells === null ? null : new Set(cells);
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
    const rest = url.slice(cell.length + 1) || '/';
    this.forward(req, res, cell, rest.startsWith('/') ? rest : `/${rest}`, new Set());
  }

  private forward(req: IncomingMessage, res: ServerResponse, cell: string, path: string, tried: Set<string>): void {
    const target = this.pick(cell, tried);
    if (!target) {
      if (tried.size > 0) this.fail(res, 502, `no instance of ${cell} answered`);
      else if (this.isUnknownCell(cell)) this.fail(res, 404, `no cell named ${JSON.stringify(cell)}`);
      else this.fail(res, 503, `no ready instance of cell ${cell}`);
      return;
    }
    const upstream = request(
      { host: '127.0.0.1', port: target.port, path, method: req.method, headers: { ...req.headers, 'x-forwarded-for': req.socket.remoteAddress ?? '' }, agent: this.agent },
      (up) => {
        res.writeHead(up.statusCode ?? 502, { ...up.headers, 'x-mycelium-edge': this.edgeId });
        up.pipe(res);
      },
    );
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      // A refused connection sent nothing upstream: safe to try another instance for bodiless requests.
      if (err.code === 'ECONNREFUSED' && !res.headersSent && (req.method === 'GET' || req.method === 'HEAD')) {
        tried.add(target.url);
        this.forward(req, res, cell, path, tried);
        return;
      }
      if (!res.headersSent) this.fail(res, 502, `${cell}.${target.instance}: ${err.message}`);
      else res.destroy();
    });
    if (req.method === 'GET' || req.method === 'HEAD') upstream.end();
    else req.pipe(upstream);
  }

  private fail(res: ServerResponse, status: number, message: string): void {
    const body = JSON.stringify({ error: { name: 'GatewayError', message } });
    res.writeHead(status, { 'content-type': 'application/json', 'x-mycelium-edge': this.edgeId, 'content-length': Buffer.byteLength(body) }).end(body);
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
    return new Promise((resolve) => {
      this.agent.destroy();
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }
}

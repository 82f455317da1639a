import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, unlinkSync, existsSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { createHash } from 'node:crypto';
import { instanceLogFilesOnDisk, readLastLines } from '../api/index.js';
import { followFile } from '../supervisor/index.js';
import { GRAPH_FORMATS, type GraphFormat } from '../graph/index.js';
import type { Daemon } from './daemon.js';
import { BadRequestError, ShuttingDownError, UnknownInstanceError } from './errors.js';

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, body: Record<string, unknown>) => Promise<unknown> | unknown;

const MAX_BODY = 1024 * 1024;

function statusOf(err: unknown): number {
  const name = err instanceof Error ? err.name : '';
  if (name === 'UnknownCellError' || name === 'UnknownInstanceError') return 404;
  if (['ManifestError', 'BadRequestError', 'KernelCellError', 'DependencyCycleError', 'UnknownDependencyError', 'BuildError'].includes(name)) return 400;
  if (name === 'ShuttingDownError') return 503;
  return 500;
}

function errorBody(err: unknown): { error: Record<string, unknown> } {
  if (err instanceof Error) {
    const withJson = err as unknown as { toJSON?: () => Record<string, unknown> };
    const json = typeof withJson.toJSON === 'function' ? withJson.toJSON() : {};
    return { error: { ...json, name: err.name, message: err.message } };
  }
  return { error: { name: 'Error', message: String(err) } };
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let size = 0;
    let isOversize = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        // Keep reading (and dropping) the rest, so the client gets our answer, not a reset.
        if (!isOversize) reject(new BadRequestError(`request body over ${MAX_BODY} bytes`, 'body'));
        isOversize = true;
        chunks = [];
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (isOversize) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) return resolve({});
      try {
        const parsed = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        resolve(parsed);
      } catch {
        reject(new BadRequestError('request body is not a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

/**
 * `body[field]`, undefined when absent. A null is refused: `{"cell": null}` (a script's unset
 * variable) is no "no cell", which would mean every cell.
 */
function fieldValue(body: Record<string, unknown>, field: string): unknown {
  const value = body[field];
  if (value === null) throw new BadRequestError(`field "${field}" is null (leave it out instead)`, field);
  return value;
}

function stringField(body: Record<string, unknown>, field: string, required: true): string;
function stringField(body: Record<string, unknown>, field: string, required?: false): string | undefined;
function stringField(body: Record<string, unknown>, field: string, required = false): string | undefined {
  const value = fieldValue(body, field);
  if (value === undefined) {
    if (required) throw new BadRequestError(`missing field "${field}"`, field);
    return undefined;
  }
  if (typeof value !== 'string') throw new BadRequestError(`field "${field}" must be a string, got ${typeof value}`, field);
  // An empty name is a caller's unset variable, never "every cell".
  if (value === '') throw new BadRequestError(`field "${field}" is empty`, field);
  return value;
}

/**
 * Refuses a body with a field the route does not take: `{"name": "web"}` for `{"cell": "web"}`
 * would otherwise read as no cell at all, and restart every one.
 */
function onlyFields(body: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  const unknown = Object.keys(body).find((k) => !fields.includes(k));
  if (unknown !== undefined) {
    throw new BadRequestError(`unknown field ${shortJson(unknown)}${fields.length > 0 ? ` (fields: ${fields.join(', ')})` : ' (this request takes none)'}`, unknown);
  }
  return body;
}

/** `true`, `false`, or absent; anything else (`"yes"`, `1`, null) is a bad request, never read as false. */
function booleanField(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = fieldValue(body, field);
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new BadRequestError(`field "${field}" must be true or false, got ${typeof value} ${shortJson(value)}`, field);
  return value;
}

/** A finite number from `min` up, or absent; a string of digits is not a number. */
function numberField(body: Record<string, unknown>, field: string, opts: { min: number; isInteger?: boolean }): number | undefined {
  const value = fieldValue(body, field);
  if (value === undefined) return undefined;
  const kind = opts.isInteger ? 'an integer' : 'a number';
  if (typeof value !== 'number' || !Number.isFinite(value) || (opts.isInteger && !Number.isInteger(value)) || value < opts.min) {
    throw new BadRequestError(`field "${field}" must be ${kind} >= ${opts.min}, got ${typeof value} ${shortJson(value)}`, field);
  }
  return value;
}

/** A query flag: absent, `1`/`true` or `0`/`false`; `?follow=yes` is a bad request, not a silent no. */
function queryFlag(url: URL, name: string): boolean {
  const value = url.searchParams.get(name);
  if (value === null || value === '0' || value === 'false') return false;
  if (value === '1' || value === 'true') return true;
  throw new BadRequestError(`${name} must be 1 or 0, got ${shortJson(value)}`, name);
}

/** An integer query parameter from `min` up; `fallback` when absent. */
function queryInteger(url: URL, name: string, min: number, fallback: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < min) throw new BadRequestError(`${name} must be an integer >= ${min}, got ${shortJson(text)}`, name);
  return value;
}

/** A value as JSON for a message, cut short: a request body may be up to 1 MiB. */
function shortJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/** How often `logs --follow` of a whole cell looks for instances that came after it began. */
const LOG_FOLLOW_NEW_INSTANCES_MS = 1000;

/**
 * The daemon API: HTTP/JSON on a unix socket (mode 0600) in `$CELL_HOME/run/`. Every route
 * answers JSON; errors are `{ error: { name, message, ...fields } }` with a 4xx/5xx status, and a
 * bad request never changes state.
 */
export class ApiServer {
  private server: Server | null = null;
  private readonly routes = new Map<string, Handler>();
  /** Endpoint long polls that also wait for the set of cells to change (see waitEndpointsOrCells). */
  private readonly cellsWaiters = new Set<(cellsDigest: string) => void>();
  /** Called once `cell down` has answered: the process exits then. */
  onShutdown: () => void = () => {};

  constructor(private readonly daemon: Daemon) {
    const d = daemon;
    this.routes.set('GET /v1/status', async (_q, _r, url) => {
      // ?wait_settled=MS: answer once every applied cell is ready or one has failed, or after MS.
      const waitSettled = url.searchParams.get('wait_settled');
      if (waitSettled !== null) {
        const waitMs = Number(waitSettled);
        if (!Number.isInteger(waitMs) || waitMs < 0) throw new BadRequestError(`wait_settled must be a number of milliseconds, got ${JSON.stringify(waitSettled)}`, 'wait_settled');
        await d.waitSettled(Math.min(waitMs, 60_000));
      }
      return d.status(queryFlag(url, 'verbose'));
    });
    this.routes.set('GET /v1/ps', (_q, _r, url) => d.ps(queryFlag(url, 'usage')));
    this.routes.set('GET /v1/health', (_q, _r, url) => d.health(url.searchParams.get('cell') ?? undefined));
    this.routes.set('GET /v1/events', (_q, _r, url) => {
      const since = url.searchParams.get('since');
      const sinceMs = since ? Date.parse(since) : undefined;
      if (Number.isNaN(sinceMs)) throw new BadRequestError(`since must be an ISO-8601 time, got ${JSON.stringify(since)}`, 'since');
      return d.eventsView(url.searchParams.get('cell') ?? undefined, sinceMs);
    });
    this.routes.set('GET /v1/graph', (_q, _r, url) => {
      const format = (url.searchParams.get('format') ?? 'text') as GraphFormat;
      if (!GRAPH_FORMATS.includes(format)) throw new BadRequestError(`unknown graph format "${format}" (use ${GRAPH_FORMATS.join(', ')})`, 'format');
      // The rendering, and the same graph as data for scripts (`cell graph --json`).
      return { format, graph: d.renderGraph(format), ...d.graphData() };
    });
    this.routes.set('GET /v1/endpoints', async (_q, _r, url) => {
      const after = queryInteger(url, 'after', -1, -1);
      const waitMs = Math.min(queryInteger(url, 'wait', 0, 0), 60_000);
      // cells=DIGEST: the cells the caller knows (the gateway, to tell an unknown cell from one
      // with no ready instance); a different set answers at once, like a new endpoint revision.
      const knownCells = url.searchParams.get('cells');
      d.endpointsFollowed(after);
      if (waitMs > 0 && (knownCells === null || knownCells === this.cellsView().cells_digest)) await this.waitEndpointsOrCells(after, waitMs, knownCells);
      return { revision: d.endpointsRevision, endpoints: d.registry.endpoints(Date.now()), ...this.cellsView(), starting: d.startingCells(), hold_ms: d.gatewayHoldMs() };
    });
    this.routes.set('POST /v1/apply', async (_q, _r, _u, raw) => {
      this.refuseWhileShuttingDown();
      const body = onlyFields(raw, ['file']);
      const file = stringField(body, 'file', true);
      // Relative to what? The daemon's working directory is no one's.
      if (!isAbsolute(file)) throw new BadRequestError(`field "file" must be an absolute path, got ${shortJson(file)}`, 'file');
      const result = await d.apply(file);
      this.cellsMayHaveChanged();
      return result;
    });
    this.routes.set('POST /v1/scale', (_q, _r, _u, raw) => {
      this.refuseWhileShuttingDown();
      const body = onlyFields(raw, ['cell', 'instances']);
      const instances = body.instances;
      if (typeof instances !== 'number') throw new BadRequestError('field "instances" must be a number', 'instances');
      return d.scale(stringField(body, 'cell', true), instances);
    });
    this.routes.set('POST /v1/restart', (_q, _r, _u, raw) => {
      this.refuseWhileShuttingDown();
      const body = onlyFields(raw, ['cell', 'wait']);
      // wait=false: answered once the restart is under way (a rolling one goes on in the background).
      return d.restart(stringField(body, 'cell'), { waitForRoll: booleanField(body, 'wait') ?? true });
    });
    this.routes.set('POST /v1/prune', async (_q, _r, _u, raw) => {
      this.refuseWhileShuttingDown();
      const body = onlyFields(raw, ['dry_run']);
      const dryRun = booleanField(body, 'dry_run') ?? false;
      const victims = await d.prune(dryRun);
      if (!dryRun) this.cellsMayHaveChanged();
      return { dry_run: dryRun, instances: victims.map((v) => ({ cell: v.cell, instance: v.index, pid: v.pid })) };
    });
    this.routes.set('POST /v1/down', async (_q, _r, _u, body) => {
      onlyFields(body, []);
      const result = await d.shutdown();
      setImmediate(() => this.onShutdown());
      // The caller waits for this process to be gone: its socket goes a moment before it does.
      return { ...result, pid: process.pid };
    });
    this.routes.set('POST /v1/ready', (_q, _r, _u, raw) => {
      const body = onlyFields(raw, ['cell', 'instance', 'pid', 'socket']);
      const instance = body.instance;
      const pid = body.pid;
      if (typeof instance !== 'number' || !Number.isInteger(instance)) throw new BadRequestError('field "instance" must be an integer', 'instance');
      if (typeof pid !== 'number' || !Number.isInteger(pid)) throw new BadRequestError('field "pid" must be an integer', 'pid');
      const cell = stringField(body, 'cell', true);
      d.requireCell(cell);
      return { accepted: d.supervisor.announceReady(cell, instance, pid, stringField(body, 'socket', true)) };
    });
    this.routes.set('POST /v1/discover', (_q, _r, _u, raw) => {
      const body = onlyFields(raw, ['cell', 'timeout_ms', 'spawn']);
      const timeoutMs = Math.min(numberField(body, 'timeout_ms', { min: 0 }) ?? 30_000, 120_000);
      const spawn = booleanField(body, 'spawn') ?? true;
      return d.discover(stringField(body, 'cell', true), { spawn, timeoutMs });
    });
    this.routes.set('GET /v1/nucleus', () => d.nucleus());
    this.routes.set('GET /v1/logs', (req, res, url) => this.logs(req, res, url));
  }

  /**
   * A change asked for while a `cell down` stops everything would be undone by it at once (or
   * wait on cells that never come back): refused, saying why.
   */
  private refuseWhileShuttingDown(): void {
    if (this.daemon.shuttingDown) throw new ShuttingDownError();
  }

  /**
   * The mesh's cells as the gateway sees them: those of the desired state (kernel cells too) and
   * those with instances left from an earlier manifest; and a digest of that set.
   */
  private cellsView(): { cells: string[]; cells_digest: string } {
    const names = new Set(this.daemon.supervisor.desiredCells.keys());
    for (const r of this.daemon.supervisor.instances()) names.add(r.cell);
    const cells = [...names].sort();
    return { cells, cells_digest: createHash('sha256').update(cells.join('\n')).digest('base64url').slice(0, 16) };
  }

  /**
   * The endpoints long poll, also woken when the set of cells changes from `knownCells`. The
   * daemon bumps the endpoint revision only for endpoints; apply and prune, which change the
   * cells, go through this server, so it wakes the polls itself.
   */
  private waitEndpointsOrCells(after: number, waitMs: number, knownCells: string | null): Promise<void> {
    if (knownCells === null) return this.daemon.waitEndpoints(after, waitMs);
    return new Promise((resolve) => {
      const wake = () => {
        this.cellsWaiters.delete(onCellsChange);
        resolve();
      };
      const onCellsChange = (digest: string) => {
        if (digest !== knownCells) wake();
      };
      this.cellsWaiters.add(onCellsChange);
      void this.daemon.waitEndpoints(after, waitMs).then(wake, wake);
    });
  }

  private cellsMayHaveChanged(): void {
    if (this.cellsWaiters.size === 0) return;
    const digest = this.cellsView().cells_digest;
    for (const waiter of [...this.cellsWaiters]) waiter(digest);
  }

  private async logs(req: IncomingMessage, res: ServerResponse, url: URL): Promise<undefined> {
    const cell = url.searchParams.get('cell');
    if (!cell) throw new BadRequestError('missing query parameter "cell"', 'cell');
    const nText = url.searchParams.get('n') ?? '50';
    const n = Number(nText);
    if (nText.trim() === '' || !Number.isInteger(n) || n < 0) throw new BadRequestError(`-n must be a non-negative integer, got ${shortJson(nText)}`, 'n');
    // instance=I: that instance's log only (`cell logs <cell>.<i>`).
    const instance = url.searchParams.has('instance') ? queryInteger(url, 'instance', 0, 0) : undefined;
    const format = url.searchParams.get('format') ?? 'text';
    if (format !== 'text' && format !== 'json') throw new BadRequestError(`unknown logs format ${shortJson(format)} (use text, json)`, 'format');
    const follow = queryFlag(url, 'follow');
    let files = this.daemon.instanceLogFiles(cell);
    if (instance !== undefined) {
      const known = files.map((f) => f.instance);
      files = files.filter((f) => f.instance === instance);
      if (files.length === 0) throw new UnknownInstanceError(cell, instance, known);
    }
    // format=json: one {cell, instance, line} object a line (NDJSON), in the order of the text.
    const json = format === 'json';
    // Instances followed so far (a scale up while following adds some).
    const followed = new Set<number>();
    const prefix = (i: number) => (files.length > 1 || followed.size > 1 ? `[${cell}.${i}] ` : '');
    const emit = (instance: number, line: string) => res.write(json ? `${JSON.stringify({ cell, instance, line })}\n` : `${prefix(instance)}${line}\n`);
    res.writeHead(200, { 'content-type': json ? 'application/x-ndjson' : 'text/plain; charset=utf-8' });
    // Rotated copies (`.1`, `.2`, ...) fill in what the current file lacks. A follow goes on from
    // where this read ended: what comes in between is neither skipped nor shown twice.
    const tailEnds = new Map<string, number>();
    for (const { instance, file } of files) {
      let end = 0;
      try {
        end = statSync(file).size;
      } catch {
        // Not written yet.
      }
      tailEnds.set(file, end);
      for (const line of readLastLines(file, n, end)) emit(instance, line);
    }
    if (!follow) {
      res.end();
      return undefined;
    }
    const abort = new AbortController();
    req.on('close', () => abort.abort());
    res.on('close', () => abort.abort());
    const followers: Promise<void>[] = [];
    const followOne = (index: number, file: string, fromOffset?: number) => {
      followed.add(index);
      let partial = '';
      const onChunk = (chunk: string | Buffer) => {
        const text = partial + chunk.toString();
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) emit(index, line);
      };
      followers.push(followFile(file, onChunk, abort.signal, fromOffset === undefined ? {} : { fromOffset }).catch(() => {}));
    };
    for (const { instance: index, file } of files) followOne(index, file, tailEnds.get(file));
    if (instance === undefined) {
      // Instances that come while following (a scale up) are followed too, from what their file
      // (an earlier instance's, reused) held when this follow began.
      const sizeAtStart = new Map<string, number>();
      for (const { file } of instanceLogFilesOnDisk(this.daemon.paths, cell)) {
        try {
          sizeAtStart.set(file, statSync(file).size);
        } catch {
          // Gone meanwhile: it is new when it comes back.
        }
      }
      const timer = setInterval(() => {
        let current: { instance: number; file: string }[];
        try {
          current = this.daemon.instanceLogFiles(cell);
        } catch {
          return; // the cell went away meanwhile
        }
        for (const f of current) if (!followed.has(f.instance)) followOne(f.instance, f.file, sizeAtStart.get(f.file) ?? 0);
      }, LOG_FOLLOW_NEW_INSTANCES_MS);
      abort.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
    }
    await new Promise<void>((resolve) => (abort.signal.aborted ? resolve() : abort.signal.addEventListener('abort', () => resolve(), { once: true })));
    await Promise.all(followers);
    res.end();
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url = new URL('http://cell/');
    try {
      try {
        url = new URL(req.url ?? '/', 'http://cell');
      } catch {
        throw new BadRequestError(`invalid request target ${JSON.stringify(req.url)}`, 'url');
      }
      const route = this.routes.get(`${req.method} ${url.pathname}`);
      if (!route) {
        const e = new BadRequestError(`no such API route: ${req.method} ${url.pathname}`);
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify(errorBody(e)));
        return;
      }
      const body = req.method === 'POST' ? await readBody(req) : {};
      const result = await route(req, res, url, body);
      if (result === undefined && res.headersSent) return;
      const text = JSON.stringify(result ?? {});
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    } catch (err) {
      if (res.headersSent) {
        res.end();
        return;
      }
      const status = statusOf(err);
      if (status >= 500) this.daemon.log.error({ err: String(err), route: `${req.method} ${url.pathname}` }, 'API error');
      const text = JSON.stringify(errorBody(err));
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
    }
  }

  listen(socket: string): Promise<void> {
    if (existsSync(socket)) unlinkSync(socket);
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        this.daemon.log.error({ err: String(err) }, 'API handler failed');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 1000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // Created 0600 from the start: no window in which another user could connect.
      const oldMask = process.umask(0o177);
      server.listen(socket, () => {
        process.umask(oldMask);
        chmodSync(socket, 0o600);
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

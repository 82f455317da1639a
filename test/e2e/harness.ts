import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync, readFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { request } from 'node:http';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CELL_BIN = join(ROOT, 'bin/cell.js');
/** The `cell` command as npm installs it: the shell wrapper around bin/cell.js. */
export const CELL_COMMAND = join(ROOT, 'bin/cell');
export const FIXTURES = join(ROOT, 'test/fixtures');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Ps {
  cell: string;
  instance: number;
  pid: number | null;
  port: number | null;
  state: string;
  health: string;
  restarts: number;
  version: string;
  started_at: string | null;
}

/** Processes (not zombies) whose environment carries CELL_HOME=<home>: every cell and its children. */
export function processesOfHome(home: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      if (!env.includes(`CELL_HOME=${home}`)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * Homes of meshes not disposed yet. A test that times out never reaches its disposal: when the
 * test process exits, whatever still carries one of these homes is killed, so no run leaves a
 * mesh behind.
 */
const liveHomes = new Set<string>();
function killLiveMeshes(): void {
  for (const home of liveHomes) {
    for (const pid of processesOfHome(home)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dirname(home), { recursive: true, force: true });
  }
}
process.on('exit', killLiveMeshes);
// The test runner ends a file that ran out of time with SIGTERM, which skips 'exit' handlers.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killLiveMeshes();
    process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
  });
}

/**
 * A mesh in a temp folder with its own CELL_HOME, driven through the real `cell` command.
 * Disposal runs `cell down` and then kills whatever still carries this home (and fails loudly
 * in the test that checks it, not here).
 */
export class MeshHarness implements AsyncDisposable {
  readonly dir: string;
  readonly home: string;

  private readonly scratch: string;

  /**
   * `opts.dir` runs the mesh in an existing folder (an example of the repository) instead of a
   * fresh temp folder; CELL_HOME is always a fresh temp folder.
   */
  constructor(manifest: string | null, files: Record<string, string> = {}, opts: { dir?: string } = {}) {
    this.scratch = mkdtempSync(join(tmpdir(), 'cell-e2e-'));
    this.dir = opts.dir ?? this.scratch;
    this.home = join(this.scratch, 'home');
    liveHomes.add(this.home);
    if (!opts.dir) cpSync(FIXTURES, join(this.dir, 'fixtures'), { recursive: true });
    if (manifest !== null) writeFileSync(join(this.dir, 'cell.yaml'), manifest);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, name), text);
  }

  writeManifest(text: string, name = 'cell.yaml'): string {
    const file = isAbsolute(name) ? name : join(this.dir, name);
    writeFileSync(file, text);
    return file;
  }

  /** Runs `node bin/cell.js <args>`, or with `command: true` the installed `bin/cell` wrapper. */
  cell(args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; command?: boolean } = {}): Promise<CliResult> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(opts.command ? CELL_COMMAND : process.execPath, opts.command ? args : [CELL_BIN, ...args], {
        cwd: this.dir,
        env: { ...process.env, ...opts.env, CELL_HOME: this.home },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`cell ${args.join(' ')} did not finish within ${opts.timeoutMs ?? 90_000}ms\n${stdout}\n${stderr}`));
      }, opts.timeoutMs ?? 90_000);
      // 'close', not 'exit': the process can exit before its output has been read to the end
      // (seen under load: `cell ps --json` resolved with an empty stdout).
      child.on('close', (code) => {
        clearTimeout(timer);
        resolvePromise({ code: code ?? 1, stdout, stderr });
      });
    });
  }

  /** Runs `cell <args>` and fails with its output unless it exits 0. */
  async ok(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.cell(args, opts);
    if (r.code !== 0) throw new Error(`cell ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.ok([...args, '--json'])) as T;
  }

  ps(): Promise<Ps[]> {
    return this.json<Ps[]>(['ps']);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cell(['down'], { timeoutMs: 60_000 }).catch(() => undefined);
    for (const pid of processesOfHome(this.home)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    liveHomes.delete(this.home);
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/** GET http://127.0.0.1:<port><path>; resolves with status and body, rejects on network errors. */
export function httpGet(port: number, path = '/', timeoutMs = 2000): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end();
  });
}

export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small healthy mesh (db, and api ×2 depending on it) with fast checks, shared by several tests. */
export const DB_API_MESH = `
cells:
  db:
    run: node fixtures/service.mjs
    health: { tcp: {}, interval: 200ms }
  api:
    run: node fixtures/service.mjs
    depends_on: [db]
    instances: 2
    health: { http: { path: / }, interval: 200ms }
`;

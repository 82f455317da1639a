/**
 * Helpers for the SDK tests: temporary socket folders and fixture servers in child processes.
 * Every process a helper starts is killed by its `[Symbol.asyncDispose]` (use `await using`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/sdk/${name}`, import.meta.url));
}

/** A temporary folder for sockets, removed on dispose. */
export function socketDir(): { path: string; socket(name: string): string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), 'cell-sdk-'));
  return {
    path,
    socket: (name: string) => join(path, `${name}.sock`),
    [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }),
  };
}

export interface FixtureProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles with the exit code (or the signal's name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Spawns `node --import tsx <fixture>` and waits for its `ready` line on stdout. */
export async function startFixture(name: string, env: Record<string, string | undefined>, readyTimeoutMs = 15_000): Promise<FixtureProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture(name)], {
    env: { ...process.env, CELL_SOCKET: undefined, CELL_SECRET: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const handle: FixtureProcess = {
    child,
    pid: child.pid!,
    exited,
    stderr: () => stderr,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async [Symbol.asyncDispose]() {
      handle.kill('SIGKILL');
      await exited;
    },
  };
  let stdout = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready within ${readyTimeoutMs} ms; stderr: ${stderr}`)), readyTimeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (/^ready\b/m.test(stdout)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before it was ready; stderr: ${stderr}`));
      });
    });
  } catch (error) {
    await handle[Symbol.asyncDispose]();
    throw error;
  }
  return handle;
}

/** Starts the Greeter fixture server on `socket`. */
export function startGreeter(socket: string, options: { secret?: string; instance?: string; env?: Record<string, string> } = {}): Promise<FixtureProcess> {
  return startFixture('greeter-server.ts', { CELL_SOCKET: socket, CELL_SECRET: options.secret, INSTANCE: options.instance ?? '', ...options.env });
}

/** Starts several Greeter servers at once; disposing kills them all (as does a failure to start one). */
export async function startGreeters(specs: Array<{ socket: string; instance: string }>): Promise<FixtureProcess[] & AsyncDisposable> {
  const settled = await Promise.allSettled(specs.map((spec) => startGreeter(spec.socket, { instance: spec.instance })));
  const started = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const disposeAll = async () => {
    await Promise.all(started.map((p) => p[Symbol.asyncDispose]()));
  };
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await disposeAll();
    throw failed.reason;
  }
  return Object.assign(started, { [Symbol.asyncDispose]: disposeAll });
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resident set size of `pid` in bytes, from /proc/<pid>/status. */
export function readRss(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

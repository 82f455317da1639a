/**
 * One health probe of one instance: an HTTP GET, a TCP connect, or a command. Probes never throw;
 * a failure is a result with `ok: false` and a one-line `detail`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { CheckPort } from '../manifest/index.js';
import type { ProbeResult, ProbeTarget } from './types.js';

export interface ProbeOptions {
  /** Cancels the probe; it then resolves with `ok: false, detail: 'aborted'`. */
  signal?: AbortSignal;
}

// One keep-alive connection per instance, reused across probes, so probing 100 cells every second
// does not open and close 100 sockets a second. Idle sockets are unref'd by the agent.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });

// Output of an exec check kept for the failure detail.
const OUTPUT_LIMIT = 4096;
// A health response body larger than this is not drained: its socket is dropped instead.
const BODY_LIMIT = 64 * 1024;

/** The port a check connects to: its own number, or the instance's port for `$PORT`. */
export function resolveCheckPort(spec: { port: CheckPort }, instancePort: number): number {
  return spec.port === '$PORT' ? instancePort : spec.port;
}

/** Closes the kept-alive probe connections (daemon shutdown, tests). Later probes open new ones. */
export function closeProbeConnections(): void {
  agent.destroy();
}

/**
 * Runs the check of `target.spec` once, within `spec.timeoutMs`.
 *
 * `level` is the highest level reached: a passing http check reports 'http'; one that got a 503
 * reports 'socket' (the port accepted); one refused reports 'process'. A 'process' check passes
 * at once: the caller checks that the pid is alive.
 */
export async function probe(target: ProbeTarget, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const started = performance.now();
  let outcome: Outcome;
  try {
    const spec = target.spec;
    switch (spec.kind) {
      case 'http':
        outcome = await probeHttp(resolveCheckPort(spec, target.port), spec.path, spec.timeoutMs, opts.signal);
        break;
      case 'tcp':
        outcome = await probeTcp(resolveCheckPort(spec, target.port), spec.timeoutMs, opts.signal);
        break;
      case 'exec':
        outcome = await probeExec(spec.command, target.cwd, target.env, spec.timeoutMs, opts.signal);
        break;
      case 'process':
        outcome = { ok: true, level: 'process' };
        break;
      default:
        outcome = { ok: false, level: 'process', detail: `unknown check kind ${(spec as { kind: string }).kind}` };
    }
  } catch (err) {
    outcome = { ok: false, level: 'process', detail: oneLine((err as Error)?.message ?? String(err)) };
  }
  const result: ProbeResult = { ok: outcome.ok, level: outcome.level, durationMs: Math.round(performance.now() - started) };
  if (outcome.detail !== undefined) result.detail = outcome.detail;
  return result;
}

type Outcome = Omit<ProbeResult, 'durationMs'>;

/**
 * Calls `run` with a `finish` that settles the outcome once; the timeout and the abort signal
 * settle it with `onStop(reason)` instead, if they come first.
 */
function withDeadline(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  run: (finish: (o: Outcome) => void) => void,
  onStop: (reason: 'timeout' | 'abort') => Outcome,
): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const onAbort = () => finish(onStop('abort'));
    const timer = setTimeout(() => finish(onStop('timeout')), timeoutMs);
    if (signal?.aborted) return finish(onStop('abort'));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      run(finish);
    } catch (err) {
      // Bad input thrown synchronously (a port out of range, a path with spaces).
      finish({ ok: false, level: 'process', detail: oneLine((err as Error).message) });
    }
  });
}

function stopDetail(reason: 'timeout' | 'abort', timeoutMs: number): string {
  return reason === 'abort' ? 'aborted' : `timed out after ${timeoutMs}ms`;
}

function probeHttp(port: number, path: string, timeoutMs: number, signal: AbortSignal | undefined, isRetry = false): Promise<Outcome> {
  let req: http.ClientRequest | undefined;
  let connected = false;
  const request = `GET ${path}`;
  return withDeadline(
    timeoutMs,
    signal,
    (finish) => {
      req = http.get({ host: '127.0.0.1', port, path, agent, headers: { 'user-agent': 'cell-health' } });
      req.on('socket', (socket) => {
        if (!socket.connecting) connected = true;
        else socket.once('connect', () => (connected = true));
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const ok = status >= 200 && status < 300;
        const result: Outcome = ok ? { ok, level: 'http' } : { ok, level: 'socket', detail: `${request} -> ${status}` };
        // Drained so the connection can be reused; a huge body costs a new connection instead.
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > BODY_LIMIT) {
            res.destroy();
            finish(result);
          }
        });
        res.on('end', () => finish(result));
        res.on('error', () => finish(result));
        res.on('close', () => finish(result));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive socket the server closed just as we reused it: one fresh attempt.
        if (!isRetry && err.code === 'ECONNRESET' && req?.reusedSocket) {
          void probeHttp(port, path, timeoutMs, signal, true).then(finish);
          return;
        }
        finish({ ok: false, level: connected ? 'socket' : 'process', detail: oneLine(err.message) });
      });
    },
    (reason) => {
      // A hung server (or body) loses its socket, so the next probe starts on a fresh one.
      req?.destroy();
      return { ok: false, level: connected ? 'socket' : 'process', detail: stopDetail(reason, timeoutMs) };
    },
  );
}

function probeTcp(port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<Outcome> {
  let socket: net.Socket | undefined;
  return withDeadline(
    timeoutMs,
    signal,
    (finish) => {
      socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => finish({ ok: true, level: 'socket' }));
      socket.once('error', (err) => finish({ ok: false, level: 'process', detail: oneLine(err.message) }));
    },
    (reason) => ({ ok: false, level: 'process', detail: stopDetail(reason, timeoutMs) }),
  ).finally(() => socket?.destroy());
}

function probeExec(command: string, cwd: string, env: Record<string, string>, timeoutMs: number, signal: AbortSignal | undefined): Promise<Outcome> {
  let child: ChildProcess | undefined;
  let output = '';
  return withDeadline(
    timeoutMs,
    signal,
    (finish) => {
      // Its own process group, so a timeout kills whatever the command started as well.
      child = spawn('/bin/sh', ['-c', command], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      const collect = (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
      };
      child.stdout?.on('data', collect);
      child.stderr?.on('data', collect);
      child.once('error', (err) => {
        const detail = existsSync(cwd) ? err.message : `cwd ${cwd} does not exist`;
        finish({ ok: false, level: 'process', detail: oneLine(detail) });
      });
      child.once('exit', (code, sig) => {
        if (code === 0) return finish({ ok: true, level: 'exec' });
        const how = code !== null ? `exit ${code}` : `killed by ${sig}`;
        const last = lastLine(output);
        finish({ ok: false, level: 'process', detail: last ? `${how}: ${last}` : how });
      });
    },
    (reason) => ({ ok: false, level: 'process', detail: stopDetail(reason, timeoutMs) }),
  ).finally(() => {
    // Also after a normal exit: background jobs the command left in its group must not pile up.
    if (child?.pid !== undefined) killGroup(child.pid);
    child?.stdout?.destroy();
    child?.stderr?.destroy();
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // ESRCH: the group is already gone.
  }
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines.at(-1) ?? '';
  return last.length > 200 ? last.slice(0, 200) + '…' : last;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

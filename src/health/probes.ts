/**
 * One health probe of one instance: an HTTP GET, a TCP connect, or a command. Probes never throw;
 * a failure is a result with `ok: false` and a one-line `detail`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { CheckPort } from '../manifest/index.js';
import type { ProbeResult, ProbeTarget } from './types.js';
import { checkHttpThen, closeHttpProbeConnections, type HttpCheckResult } from './http-probe.js';

export interface ProbeOptions {
  /** Cancels the probe; it then resolves with `ok: false, detail: 'aborted'`. */
  signal?: AbortSignal;
}


// Output of an exec check kept for the failure detail.
const OUTPUT_LIMIT = 4096;

/** The port a check connects to: its own number, or the instance's port for `$PORT`. */
export function resolveCheckPort(spec: { port: CheckPort }, instancePort: number): number {
  return spec.port === '$PORT' ? instancePort : spec.port;
}

/** Closes the kept-alive probe connections (daemon shutdown, tests). Later probes open new ones. */
export function closeProbeConnections(): void {
  closeHttpProbeConnections();
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
      case 'ping':
        outcome = await probePing(target.socket, target.secret, spec.timeoutMs);
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

/** Level 3, "Protocol Valid": the cell answers the SDK's ping on its unix socket. */
async function probePing(socket: string | null | undefined, secret: string | undefined, timeoutMs: number): Promise<Outcome> {
  if (!socket) return { ok: false, level: 'process', detail: 'no CELL_SOCKET for a ping check' };
  if (!existsSync(socket)) return { ok: false, level: 'process', detail: `not listening: ${socket} does not exist` };
  try {
    // Loaded on the first ping check: a mesh without SDK cells never loads the SDK (and zod).
    const { pingCell } = await import('../sdk/index.js');
    await pingCell(socket, { secret, timeoutMs });
    return { ok: true, level: 'protocol' };
  } catch (err) {
    return { ok: false, level: 'socket', detail: oneLine(`ping: ${(err as Error)?.message ?? String(err)}`) };
  }
}

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

function probeHttp(port: number, path: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<Outcome> {
  return new Promise((resolve) => checkHttpOutcome(port, path, timeoutMs, signal, resolve));
}

/** The one http check behind both `probe` and `probeHttpThen`: the outcome goes to `done`. */
function checkHttpOutcome(port: number, path: string, timeoutMs: number, signal: AbortSignal | undefined, done: (outcome: Outcome) => void): void {
  if (signal?.aborted) return done({ ok: false, level: 'process', detail: 'aborted' });
  if (!Number.isInteger(port) || port < 1 || port > 65535) return done({ ok: false, level: 'process', detail: `port out of range: ${port}` });
  checkHttpThen(port, path, timeoutMs, (result) => done(httpOutcome(result, path)), signal);
}

function httpOutcome(result: HttpCheckResult, path: string): Outcome {
  if (result.error) return { ok: false, level: result.connected ? 'socket' : 'process', detail: oneLine(result.error) };
  const ok = result.status >= 200 && result.status < 300;
  return ok ? { ok, level: 'http' } : { ok, level: 'socket', detail: `GET ${path} -> ${result.status}` };
}

/**
 * An http check with its result passed to `done` (no promise): the supervisor's probe rounds use
 * this for the checks of ready instances, the bulk of a daemon's steady work.
 */
export function probeHttpThen(spec: { port: CheckPort; path: string; timeoutMs: number }, instancePort: number, done: (result: ProbeResult) => void): void {
  const started = Date.now();
  checkHttpOutcome(resolveCheckPort(spec, instancePort), spec.path, spec.timeoutMs, undefined, (outcome) => {
    const result: ProbeResult = { ok: outcome.ok, level: outcome.level, durationMs: Date.now() - started };
    if (outcome.detail !== undefined) result.detail = outcome.detail;
    done(result);
  });
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

/**
 * Warm spares: after a node program crashes, the daemon keeps one node process booted ahead of
 * need, so the next crash's restart skips node's own boot (~60-90 ms of CPU here, most of a
 * crash recovery). The spare takes on the crashed instance's identity at once: cwd, environment,
 * log file as stdout and stderr, argv, and the command line `ps` shows; then it loads the
 * program as `node <script>` would (see warm-node-prelude.cjs). Its pid and process group are its
 * own, like a cold start's.
 *
 * Only for what a spare can become exactly: the daemon's own node binary running a script with
 * no node flags and no NODE_OPTIONS (its preloads would run in the spare, before the cell's cwd
 * and environment), in an environment that agrees with the spare's on every variable node reads
 * while it boots (NODE_PATH, HOME, locale...). Anything else starts cold.
 *
 * A spare appears only after a failure restart (crashes come in runs: a poison request, a bad
 * dependency) and is let go after `keepMs` without another: an idle mesh pays nothing for it.
 * What a user can tell from a cold start: the program's /proc/<pid>/environ is the spare's boot
 * environment (process.env is right, and children inherit process.env); /proc/<pid>/cmdline is
 * the command line as one argument, and comm its first 15 bytes (`pgrep -x node` misses it);
 * process.title reads as the whole line; process.uptime() and performance.now() count from the
 * spare's boot; a stack trace from the program's first tick ends in the prelude.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, realpathSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WARM_SPARE_VAR } from '../api/index.js';
import type { ExitInfo, ProcessHandle, SpawnRequest } from './driver.js';
import { readProcStat } from './proc.js';

/** Where the spare's code is (a sibling of this file in dist, at the same depth when bundled). */
const PRELUDE = fileURLToPath(new URL('../supervisor/warm-node-prelude.cjs', import.meta.url));


/** Variables node, its libraries or the dynamic linker read while node boots: a spare booted with other values is not the same process. */
const BOOT_VARIABLE = /^(?:NODE_|UV_|OPENSSL_|SSL_CERT_|LD_|MALLOC_|GLIBC_|V8_|LC_)|^(?:HOME|TZ|LANG|LANGUAGE)$/;

/** Room in the spare's argv for the command line it is to show (process.title cannot grow past it). */
const TITLE_ROOM = 4096;

/** How long a handoff may take before the spare is given up and the start goes cold. */
const HANDOFF_TIMEOUT_MS = 2000;

export interface WarmSpareOptions {
  /** How long a spare is kept after the last failure restart of a node program. */
  keepMs: number;
  /** How long after a failure restart the next spare is booted: the restart gets the CPU first. */
  bootDelayMs: number;
}

export const DEFAULT_WARM_SPARES: WarmSpareOptions = { keepMs: 60_000, bootDelayMs: 150 };

/** What a spare needs to become a start: the script, and the boot environment it must match. */
export interface WarmPlan {
  /** The command word as written (`node`, `/usr/bin/node`): the program's process.argv0. */
  argv0: string;
  script: string;
  args: string[];
  bootEnv: Record<string, string>;
  /** Same key, same spare: argv0 and the boot environment (the binary is always the daemon's). */
  key: string;
}

let ownNode: string | null = null;
function ownNodeBinary(): string {
  ownNode ??= realpathSync(process.execPath);
  return ownNode;
}

/** Resolutions of a command word, kept a minute: a node installed or switched meanwhile is seen. */
const resolvedPrograms = new Map<string, { path: string | null; at: number }>();
const RESOLUTION_TTL_MS = 60_000;

/** The real path of the program `argv0` names, as execvp would find it with this PATH and cwd. */
function resolveProgram(argv0: string, path: string, cwd: string): string | null {
  const cacheKey = `${argv0}\0${argv0.includes('/') ? cwd : path}`;
  const cached = resolvedPrograms.get(cacheKey);
  if (cached && Date.now() - cached.at < RESOLUTION_TTL_MS) return cached.path;
  let found: string | null = null;
  const candidates = argv0.includes('/') ? [isAbsolute(argv0) ? argv0 : resolve(cwd, argv0)] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, argv0));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      found = realpathSync(candidate);
      break;
    } catch {
      // not this one
    }
  }
  if (resolvedPrograms.size > 256) resolvedPrograms.clear();
  resolvedPrograms.set(cacheKey, { path: found, at: Date.now() });
  return found;
}

/**
 * The plan for starting `argv` from a spare, or null when a spare could not become it exactly:
 * another node binary, node flags (`node --inspect app.js`), a subcommand (`node inspect`), or
 * nothing but node.
 */
export function warmPlan(argv: string[], req: Pick<SpawnRequest, 'env' | 'cwd'>): WarmPlan | null {
  if (argv.length < 2 || argv[1].startsWith('-') || argv[1] === 'inspect') return null;
  // Its --require and --import run while node boots: in a spare, before the cell's cwd and
  // environment are in place (a tracer or dotenv/config would read the spare's).
  if (req.env.NODE_OPTIONS) return null;
  if (resolveProgram(argv[0], req.env.PATH ?? '', req.cwd) !== ownNodeBinary()) return null;
  const bootEnv: Record<string, string> = {};
  for (const name of Object.keys(req.env).sort()) if (BOOT_VARIABLE.test(name)) bootEnv[name] = req.env[name];
  if (req.env.CELL_HOME !== undefined) bootEnv.CELL_HOME = req.env.CELL_HOME;
  return { argv0: argv[0], script: argv[1], args: argv.slice(2), bootEnv, key: JSON.stringify([argv[0], bootEnv]) };
}

interface Spare {
  key: string;
  child: ChildProcess;
  channel: Socket;
  pid: number;
  startTicks: number;
  exited: Promise<ExitInfo>;
  ready: boolean;
  /** Lines the spare sent that no one has read yet, and who waits for the next. */
  lines: string[];
  waiter: ((line: string | null) => void) | null;
  gone: boolean;
}

export type SpareLog = (level: 'info' | 'warn', fields: Record<string, unknown>, message: string) => void;

/** At most one spare at a time: the boot environment of the last node program that failed. */
export class WarmNodeSpares {
  private spare: Spare | null = null;
  private bootTimer: NodeJS.Timeout | null = null;
  private retireTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly o: WarmSpareOptions,
    private readonly log: SpareLog = () => {},
  ) {}

  /**
   * Starts `req` from the spare when one of this plan's is ready: resolves with the handle of the
   * process that now runs the program, or null when there was none or it could not take the job
   * (the caller then starts cold). Either way, a spare for the next failure is booted soon.
   */
  async take(plan: WarmPlan, req: SpawnRequest, argv: string[]): Promise<ProcessHandle | null> {
    const spare = this.spare;
    const usable = spare !== null && spare.ready && !spare.gone && spare.key === plan.key;
    if (usable) this.spare = null;
    this.arm(plan);
    if (!usable) return null;
    const job = { script: plan.script, args: plan.args, cwd: req.cwd, env: req.env, logFile: req.logFile, title: argv.join(' ') };
    spare.channel.write(`${JSON.stringify(job)}\n`);
    const answer = await nextLine(spare, HANDOFF_TIMEOUT_MS);
    spare.channel.destroy();
    if (answer !== 'ok') {
      this.log('warn', { cell: req.cell, instance: req.instance, spare: spare.pid, answer }, 'warm spare could not take the start; starting cold');
      killGroup(spare.pid);
      return null;
    }
    return { pid: spare.pid, startTicks: spare.startTicks, exited: spare.exited, warm: true };
  }

  /** Keeps (or soon boots) a spare for this plan, for `keepMs` from now. */
  arm(plan: WarmPlan): void {
    if (this.closed) return;
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = setTimeout(() => this.retire('no failure restart for a while'), this.o.keepMs);
    this.retireTimer.unref();
    if (this.spare && !this.spare.gone && this.spare.key === plan.key) return;
    if (this.spare) this.retire('another boot environment is wanted');
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = setTimeout(() => {
      this.bootTimer = null;
      if (!this.closed && !this.spare) this.spare = this.boot(plan);
    }, this.o.bootDelayMs);
    this.bootTimer.unref();
  }

  /** Ends the spare (the daemon is leaving or `cell down` runs); none is booted after this. */
  close(): void {
    this.closed = true;
    if (this.bootTimer) clearTimeout(this.bootTimer);
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retire('daemon closing');
  }

  /** The pid of the spare ready for work, if any. */
  get readySparePid(): number | null {
    return this.spare && this.spare.ready && !this.spare.gone ? this.spare.pid : null;
  }

  private retire(why: string): void {
    const spare = this.spare;
    this.spare = null;
    if (!spare || spare.gone) return;
    this.log('info', { spare: spare.pid, why }, 'warm spare let go');
    spare.channel.destroy();
    killGroup(spare.pid);
  }

  private boot(plan: WarmPlan): Spare | null {
    let child: ChildProcess;
    try {
      child = spawn(ownNodeBinary(), [PRELUDE, `--warm-spare${' '.repeat(TITLE_ROOM)}`], {
        argv0: plan.argv0,
        cwd: '/',
        env: { ...plan.bootEnv, [WARM_SPARE_VAR]: '1' },
        detached: true,
        stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      });
    } catch (err) {
      this.log('warn', { err: (err as Error).message }, 'cannot boot a warm spare');
      return null;
    }
    const channel = child.stdio[3] as Socket;
    const spare: Spare = {
      key: plan.key,
      child,
      channel,
      pid: 0,
      startTicks: 0,
      exited: new Promise<ExitInfo>((resolveExit) => child.once('exit', (code, signal) => resolveExit({ code, signal }))),
      ready: false,
      lines: [],
      waiter: null,
      gone: false,
    };
    child.on('error', () => {});
    void spare.exited.then(() => {
      spare.gone = true;
      spare.waiter?.(null);
      if (this.spare === spare) this.spare = null;
    });
    child.once('spawn', () => {
      spare.pid = child.pid!;
      spare.startTicks = readProcStat(spare.pid)?.startTicks ?? 0;
    });
    let pending = '';
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line === 'ready' && !spare.ready) {
          spare.ready = true;
          this.log('info', { spare: spare.pid }, 'warm spare ready');
        } else if (spare.waiter) spare.waiter(line);
        else spare.lines.push(line);
      }
    });
    channel.on('error', () => {});
    channel.on('close', () => spare.waiter?.(null));
    // Neither the spare nor its channel keeps the daemon's event loop alive.
    child.unref();
    channel.unref();
    return spare;
  }
}

function nextLine(spare: Spare, timeoutMs: number): Promise<string | null> {
  if (spare.lines.length > 0) return Promise.resolve(spare.lines.shift()!);
  if (spare.gone) return Promise.resolve(null);
  return new Promise((resolveLine) => {
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (line: string | null) => {
      clearTimeout(timer);
      spare.waiter = null;
      resolveLine(line);
    };
    spare.waiter = done;
  });
}

function killGroup(pid: number): void {
  if (pid <= 1) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

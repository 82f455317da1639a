/**
 * The real `ProcessDriver`: plain child processes, each the leader of its own process group,
 * writing straight into its log file. Linux only (it reads /proc).
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ExitInfo, ProcessDriver, ProcessHandle, SpawnRequest } from './driver.js';
import { SignalError, SpawnError } from './errors.js';
import { findPortHolder, type PortHolder } from './port-holder.js';
import { isDeadState, processIds, readProcStat } from './proc.js';
import { DEFAULT_WARM_SPARES, WarmNodeSpares, warmPlan, type SpareLog, type WarmSpareOptions } from './warm-node.js';

/** How often an adopted process (not our child, so no 'exit' event) is checked for being gone. */
export const ADOPT_POLL_MS = 250;

/** Words of a command line that needs nothing of a shell but `$NAME` / `${NAME}` expansion. */
const PLAIN_COMMAND = /^[A-Za-z0-9_\-./:=@%+,${} ]+$/;
const EXPANSION = /\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})/g;

/**
 * Words that `exec` cannot run as a program: reserved words (they open compound commands) and
 * builtins with no program of the same name (they act on the shell itself, or exist only in it).
 */
const SHELL_ONLY = new Set([
  'if', 'then', 'else', 'elif', 'fi', 'for', 'while', 'until', 'do', 'done', 'case', 'esac', '!', '{', '}',
  '.', 'source', 'cd', 'export', 'unset', 'set', 'eval', 'trap', 'ulimit', 'umask', 'alias', 'unalias',
  'readonly', 'local', 'shift', 'return', 'exit', 'exec', 'wait', ':', 'command', 'read', 'type', 'hash',
  'getopts', 'times', 'jobs', 'fg', 'bg', 'break', 'continue',
]);

/**
 * The argv of a `run` line that a shell would only split on spaces and expand variables in
 * (`node server.js --port $PORT`), or null when it needs a shell (quotes, operators, globs, a
 * leading assignment, a variable whose value sh would split or glob, anything unusual). Such
 * lines are started directly: the same process a shell's `exec` would leave, without the shell's
 * own fork-exec first (~2 ms of CPU each, which adds up in a burst of 100 starts and is on the
 * path of every crash recovery).
 */
export function directArgv(command: string, env: Record<string, string>): string[] | null {
  if (!PLAIN_COMMAND.test(command)) return null;
  const words: string[] = [];
  for (const word of command.split(' ')) {
    if (word === '') continue;
    const rest = word.replace(EXPANSION, '');
    // A `$` or brace left over is syntax this does not handle ($1, $$, ${X:-y}, {a,b}).
    if (rest.includes('$') || rest.includes('{') || rest.includes('}')) return null;
    let splits = false;
    const expanded = word.replace(EXPANSION, (_m, a: string | undefined, b: string | undefined) => {
      const value = env[(a ?? b)!] ?? '';
      // sh would split an unquoted value on blanks and expand globs in it: leave those to sh.
      if (/[\s*?[\]]/.test(value)) splits = true;
      return value;
    });
    if (splits) return null;
    // An unquoted expansion to nothing is no word at all, as in sh.
    if (expanded !== '') words.push(expanded);
  }
  // `NAME=value cmd` is an assignment to a shell; `exec cmd`, `cd dir` and the like are the shell's own.
  if (words.length === 0 || words[0].includes('=') || SHELL_ONLY.has(words[0])) return null;
  return words;
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;
/** A redirection word; `target` is empty when the file or descriptor is the next word (`> log`). */
const REDIRECTION = /^[0-9]*(?:<<-?|>>|<>|<&|>&|>\||<|>)(?<target>.*)$/s;

/**
 * The script `/bin/sh -c` runs for a `run` line. A line that is one simple command gets `exec`
 * in front of its program (after any `NAME=value` prefix, which sh then exports to it), so the
 * pid we hold and signal is the program's own, not a shell waiting on it. Anything else (`a && b`,
 * `cd dir; cmd`, several lines, a subshell, a builtin, a line that already says `exec`) runs as
 * written: an `exec` there would cut the line short or fail outright, and since stop signals the
 * whole process group, the shell's pid is as good a handle. A line this cannot scan (an unclosed
 * quote) is left to sh too, which reports the error.
 */
export function shellLine(command: string): string {
  const s = command;
  const words: { start: number; text: string }[] = [];
  let wordStart = -1;
  // A newline ended a command: any further word begins a second one.
  let afterNewline = false;
  // The previous character was an unquoted `<` or `>`: a `&` or `|` now is part of a redirection.
  let redirect = '';
  let i = 0;
  const endWord = () => {
    if (wordStart >= 0) words.push({ start: wordStart, text: s.slice(wordStart, i) });
    wordStart = -1;
  };
  while (i < s.length) {
    const c = s[i];
    if (c === ' ' || c === '\t' || c === '\n') {
      endWord();
      if (c === '\n' && words.length > 0) afterNewline = true;
      redirect = '';
      i++;
      continue;
    }
    if (c === '#' && wordStart < 0) {
      const eol = s.indexOf('\n', i);
      i = eol < 0 ? s.length : eol;
      continue;
    }
    if (c === '\\' && s[i + 1] === '\n') {
      // A line continuation: sh removes it, so it neither ends nor starts a word.
      i += 2;
      continue;
    }
    if (c === ';' || c === '(' || c === ')') return command;
    if (c === '&' && redirect === '') return command;
    if (c === '|' && redirect !== '>') return command;
    if (wordStart < 0) {
      if (afterNewline) return command;
      wordStart = i;
    }
    let next: number;
    if (c === "'") next = skipSingleQuoted(s, i);
    else if (c === '"') next = skipDoubleQuoted(s, i);
    else if (c === '`') next = skipBackquoted(s, i);
    else if (c === '$' && (s[i + 1] === '(' || s[i + 1] === '{')) next = skipDollar(s, i);
    else if (c === '\\') next = i + 2;
    else next = i + 1;
    if (next < 0) return command;
    redirect = c === '<' || c === '>' ? c : '';
    i = next;
  }
  endWord();

  if (words.some((w) => w.text === '{' || w.text === '}')) return command;
  // The command word follows any assignments and redirections (`X=1 >log cmd`).
  let k = 0;
  while (k < words.length) {
    const text = words[k].text;
    if (ASSIGNMENT.test(text)) k++;
    else {
      const redirection = REDIRECTION.exec(text);
      if (!redirection) break;
      k += redirection.groups!.target === '' ? 2 : 1;
    }
  }
  if (k >= words.length || SHELL_ONLY.has(words[k].text)) return command;
  const at = words[k].start;
  return s.slice(0, at) + 'exec ' + s.slice(at);
}

// Each skip* takes the index of an opening quote or `$` and returns the index just past its end,
// or -1 when it is not closed.

function skipSingleQuoted(s: string, i: number): number {
  const close = s.indexOf("'", i + 1);
  return close < 0 ? -1 : close + 1;
}

function skipDoubleQuoted(s: string, i: number): number {
  let j = i + 1;
  while (j < s.length) {
    const c = s[j];
    if (c === '"') return j + 1;
    if (c === '\\') j += 2;
    else if (c === '`') j = skipBackquoted(s, j);
    else if (c === '$' && (s[j + 1] === '(' || s[j + 1] === '{')) j = skipDollar(s, j);
    else j++;
    if (j < 0) return -1;
  }
  return -1;
}

function skipBackquoted(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') j++;
    else if (s[j] === '`') return j + 1;
  }
  return -1;
}

/** `$(…)`, `$((…))` or `${…}`, counting nested brackets outside quotes. */
function skipDollar(s: string, i: number): number {
  const open = s[i + 1];
  const close = open === '(' ? ')' : '}';
  let depth = 1;
  let j = i + 2;
  while (j < s.length) {
    const c = s[j];
    if (c === open) depth++;
    else if (c === close && --depth === 0) return j + 1;
    if (c === "'") j = skipSingleQuoted(s, j);
    else if (c === '"') j = skipDoubleQuoted(s, j);
    else if (c === '`') j = skipBackquoted(s, j);
    else if (c === '$' && (s[j + 1] === '(' || s[j + 1] === '{')) j = skipDollar(s, j);
    else if (c === '\\') j += 2;
    else j++;
    if (j < 0) return -1;
  }
  return -1;
}

export interface ChildProcessDriverOptions {
  /** Warm spares for failure restarts of node programs (see warm-node.ts); false: always cold. */
  warmSpares?: WarmSpareOptions | false;
  log?: SpareLog;
}

export class ChildProcessDriver implements ProcessDriver {
  private readonly spares: WarmNodeSpares | null;

  constructor(o: ChildProcessDriverOptions = {}) {
    this.spares = o.warmSpares === false ? null : new WarmNodeSpares(o.warmSpares ?? DEFAULT_WARM_SPARES, o.log);
  }

  /** The warm spare ready for work, if any. */
  get warmSparePid(): number | null {
    return this.spares?.readySparePid ?? null;
  }

  close(): void {
    this.spares?.close();
  }

  /**
   * Starts the command (from a warm spare when it follows a failure and a spare can become it,
   * see warm-node.ts; else directly when it needs no shell, see directArgv; else through
   * `/bin/sh -c`, see shellLine) detached (setsid: its own session and process group, so
   * it outlives the daemon and a group signal reaches its descendants). The log file is opened
   * O_APPEND, so copytruncate rotation leaves the child's later writes at the start of the file.
   * Resolves once the process runs (the pid may still show /bin/sh for a moment, until its exec;
   * for a line of several commands it stays the shell's); rejects with `SpawnError` naming the
   * cell when it cannot start.
   *
   * The child is unref'd so the daemon can exit while cells run on: awaiting `exited` alone does not
   * keep the event loop alive (the daemon's servers or a timer must).
   */
  spawn(req: SpawnRequest): Promise<ProcessHandle> {
    const fail = (cause: unknown, reason?: string) => new SpawnError(req, { cause, reason });

    // Checked first because a missing cwd otherwise surfaces as a misleading "spawn /bin/sh ENOENT".
    try {
      if (!statSync(req.cwd).isDirectory()) return Promise.reject(fail(undefined, `cwd ${req.cwd} is not a directory`));
    } catch (cause) {
      return Promise.reject(fail(cause, `cwd ${req.cwd} does not exist or is not accessible`));
    }

    try {
      mkdirSync(dirname(req.logFile), { recursive: true });
    } catch (cause) {
      return Promise.reject(fail(cause, `cannot open log file ${req.logFile}: ${(cause as Error).message}`));
    }

    const argv = directArgv(req.command, req.env);
    const plan = this.spares && req.afterFailure && argv ? warmPlan(argv, req) : null;
    // The spare opens the log itself: one that cannot is refused, and the start goes cold, which
    // reports why.
    if (!plan) return this.spawnCold(req, argv);
    return this.spares!.take(plan, req, argv!).then((handle) => handle ?? this.spawnCold(req, argv));
  }

  /** A start of our own, with the log file opened here for the child. */
  private spawnCold(req: SpawnRequest, argv: string[] | null): Promise<ProcessHandle> {
    const fail = (cause: unknown, reason?: string) => new SpawnError(req, { cause, reason });
    let fd: number;
    try {
      fd = openSync(req.logFile, 'a');
    } catch (cause) {
      return Promise.reject(fail(cause, `cannot open log file ${req.logFile}: ${(cause as Error).message}`));
    }

    return new Promise<ProcessHandle>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawnChild(argv ? argv[0] : '/bin/sh', argv ? argv.slice(1) : ['-c', shellLine(req.command)], {
          cwd: req.cwd,
          env: req.env,
          detached: true,
          stdio: ['ignore', fd, fd],
        });
      } catch (cause) {
        reject(fail(cause));
        return;
      } finally {
        // The child holds its own copy of the descriptor; the daemon needs none.
        closeSync(fd);
      }

      const exited = new Promise<ExitInfo>((resolveExit) => {
        child.once('exit', (code, signal) => resolveExit({ code, signal }));
      });
      // Kept for the child's lifetime: a later 'error' (a failed kill) must not crash the daemon.
      child.on('error', (cause) => reject(fail(cause)));
      child.once('spawn', () => {
        const pid = child.pid!;
        // The child is at worst a zombie here (it is reaped only after this event), so /proc has it.
        const startTicks = readProcStat(pid)?.startTicks ?? 0;
        child.unref();
        resolve({ pid, startTicks, exited });
      });
    });
  }

  /**
   * Returns a handle for a live process with this pid and start time (from an earlier daemon), or
   * undefined. Its exit is noticed by polling every 250 ms (see startAdoptPoller); the exit code is then unknown
   * (`{ code: null, signal: null }`), since only the parent can learn it.
   */
  adopt(pid: number, startTicks: number): ProcessHandle | undefined {
    if (!this.isAlive(pid, startTicks)) return undefined;
    const exited = new Promise<ExitInfo>((resolve) => {
      this.adopted.set(pid, { startTicks, polls: 0, resolve });
      this.startAdoptPoller();
    });
    return { pid, startTicks, exited, adopted: true };
  }

  private readonly adopted = new Map<number, { startTicks: number; polls: number; resolve: (info: ExitInfo) => void }>();
  private adoptPoller: NodeJS.Timeout | null = null;

  /**
   * One timer for every adopted process: kill(pid, 0) each round (a cheap syscall), and the full
   * /proc check (zombie, reused pid) every fourth round, so 100 adopted cells cost 100 cheap
   * syscalls and 25 file reads per round instead of 100 reads and 100 timers.
   */
  private startAdoptPoller(): void {
    if (this.adoptPoller) return;
    this.adoptPoller = setInterval(() => {
      for (const [pid, entry] of this.adopted) {
        entry.polls++;
        let gone: boolean;
        try {
          process.kill(pid, 0);
          gone = entry.polls % 4 === 0 && !this.isAlive(pid, entry.startTicks);
        } catch (err) {
          gone = (err as NodeJS.ErrnoException).code === 'ESRCH';
        }
        if (!gone) continue;
        this.adopted.delete(pid);
        entry.resolve({ code: null, signal: null });
      }
      if (this.adopted.size === 0 && this.adoptPoller) {
        clearInterval(this.adoptPoller);
        this.adoptPoller = null;
      }
    }, ADOPT_POLL_MS);
    this.adoptPoller.unref();
  }

  /** Sends `signal` to every process of the group led by `pid`; a gone group is not an error. */
  signalGroup(pid: number, signal: NodeJS.Signals): void {
    if (!Number.isInteger(pid) || pid <= 1) throw new TypeError(`signalGroup: pid must be an integer > 1, got ${pid}`);
    try {
      process.kill(-pid, signal);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw new SignalError({ pid, signal }, { cause });
    }
  }

  isAlive(pid: number, startTicks: number): boolean {
    const stat = readProcStat(pid);
    return stat !== undefined && !isDeadState(stat.state) && stat.startTicks === startTicks;
  }

  portHolder(pgid: number, port: number): PortHolder {
    return findPortHolder(pgid, port);
  }

  /** Scans /proc for a non-zombie member of the group (kill(-pgid, 0) would count zombies too). */
  groupAlive(pgid: number): boolean {
    if (!Number.isInteger(pgid) || pgid <= 1) return false;
    // Fast path: no member at all, not even a zombie.
    try {
      process.kill(-pgid, 0);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ESRCH') return false;
    }
    for (const pid of processIds()) {
      const stat = readProcStat(pid);
      if (stat && stat.pgrp === pgid && !isDeadState(stat.state)) return true;
    }
    return false;
  }
}

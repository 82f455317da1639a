/** Helpers shared by the benchmarks: timing, statistics, logging, how busy the machine is. */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = () => performance.now();
export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 23)}] ${line}\n`);
}

/** Share of all CPUs busy (any process, this one included) over `ms`, from /proc/stat. */
export async function machineBusyPercent(ms: number): Promise<number> {
  const read = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return b.total === a.total ? 0 : round((1 - (b.idle - a.idle) / (b.total - a.total)) * 100, 1);
}

/**
 * Waits until the machine is quiet (under `threshold` % busy over a 500 ms window), at most
 * `maxMs`; returns the last reading. After a tool's 100 processes are killed, the kernel is
 * still freeing their ~5 GB for a while: the next cold start would pay for it.
 */
export async function waitQuiet(threshold = 10, maxMs = 10_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const busy = await machineBusyPercent(500);
    if (busy < threshold || Date.now() >= deadline) return busy;
  }
}

/** A numeric command-line value of at least `min`; throws naming the option and what it got. */
export function numberArg(name: string, value: string | undefined, min: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n) || n < min) throw new Error(`${name} needs a number >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

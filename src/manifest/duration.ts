/**
 * Durations and sizes as written in `cell.yaml`. A duration is a whole number of milliseconds or
 * a string of `<number><unit>` parts, unit ms|s|m|h (`500ms`, `1.5s`, `1m30s`); a size is a whole
 * number of bytes or `<number>KB|MB|GB` (1024-based).
 *
 * The parsers throw a `RangeError` whose message is the reason shown to the user.
 */
import { quoteSnippet } from './errors.js';

/** Longest duration a Node timer can wait (2^31 - 1 ms, about 24.8 days); longer ones would fire at once. */
export const MAX_DURATION_MS = 2_147_483_647;

export const DURATION_HINT = 'use e.g. 500ms, 2s, 1m';
export const SIZE_HINT = 'use e.g. 512KB, 10MB, 1GB';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/gy;

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i;

function show(value: string | number): string {
  return typeof value === 'string' ? quoteSnippet(value) : String(value);
}

/** Milliseconds from `500`, `"500ms"`, `"1.5s"`, `"2m"`, `"1h30m"`. Rounds to the nearest ms. */
export function parseDuration(value: string | number): number {
  let ms: number | undefined;
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0) ms = value;
  } else {
    const text = value.trim();
    DURATION_PART.lastIndex = 0;
    let total = 0;
    let matched = 0;
    let m: RegExpExecArray | null;
    while ((m = DURATION_PART.exec(text)) !== null) {
      total += Number(m[1]) * DURATION_UNITS[m[2]];
      matched = DURATION_PART.lastIndex;
    }
    if (text.length > 0 && matched === text.length) ms = Math.round(total);
  }
  if (ms === undefined) throw new RangeError(`invalid duration ${show(value)} (${DURATION_HINT})`);
  if (ms > MAX_DURATION_MS) throw new RangeError(`duration ${show(value)} is too long (at most ${formatDuration(MAX_DURATION_MS)})`);
  return ms;
}

/**
 * The shortest readable form that `parseDuration` reads back to the same value:
 * 0 → `0ms`, 500 → `500ms`, 1500 → `1.5s`, 90000 → `1m30s`, 3600000 → `1h`.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  ms = Math.round(ms);
  if (ms < 1_000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1_000;
  let out = '';
  if (h > 0) out += `${h}h`;
  if (m > 0) out += `${m}m`;
  if (s > 0) out += `${s}s`;
  return out;
}

/** Bytes from `1048576`, `"512KB"`, `"10MB"`, `"1.5GB"`. Rounds down to a whole byte. */
export function parseSize(value: string | number): number {
  let bytes: number | undefined;
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0) bytes = value;
  } else {
    const m = SIZE_PATTERN.exec(value.trim());
    if (m) bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  }
  if (bytes === undefined || !Number.isSafeInteger(bytes)) throw new RangeError(`invalid size ${show(value)} (${SIZE_HINT})`);
  return bytes;
}

/** `10485760` → `10MB`, `1536` → `1.5KB`, `100` → `100B`. */
export function formatSize(bytes: number): string {
  for (const unit of ['GB', 'MB', 'KB'] as const) {
    const size = SIZE_UNITS[unit.toLowerCase()];
    if (bytes >= size) return `${Math.round((bytes / size) * 100) / 100}${unit}`;
  }
  return `${bytes}B`;
}

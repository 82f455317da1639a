/** How long `cell up` waits for every cell to be healthy, unless told (`--timeout`). */
export const UP_TIMEOUT = '120s';

/** A `--timeout` value (`500ms`, `30s`, `2m`, a bare number of seconds) in ms, or null when it is not one. */
export function timeoutMs(value: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return Math.round(m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000);
}

/**
 * The shape of `cell.yaml` as zod schemas over the parsed YAML (snake_case keys, as the user
 * writes them). Leaves are converted on the way (durations to ms, sizes to bytes, env values to
 * strings, signals to `SIG...`) and defaults are filled in; `load.ts` then turns the result into a
 * `MeshSpec` and checks what needs more than one value (the file system, the dependency graph).
 *
 * Every message produced here is the `reason` of a ManifestError: one line, no location.
 */
// A namespace import lets esbuild drop what the schema does not use: `import { z }` kept all of
// zod's locales (~360 KB) in the bundle that `cell up` and the daemon's parser load.
import * as z from 'zod';
import { formatDuration, parseDuration, parseSize } from './duration.js';
import { quoteSnippet } from './errors.js';

export const CELL_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
/** Names of the kernel cells; a user cell may not take them. */
export const RESERVED_CELL_NAMES: readonly string[] = ['builder', 'supervisor', 'registry', 'graph', 'gateway', 'observer', 'daemon'];
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGKILL'];
export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const;
/** What a cell waits for of a dependency: its instances ready (or done), or its one-shot run completed. */
export const DEPENDENCY_CONDITIONS = ['healthy', 'completed'] as const;

export const DEFAULTS = {
  gatewayPort: 0,
  /** How long the gateway holds a request for a cell that is coming back (src/gateway says why). */
  gatewayHoldMs: 10_000,
  versionCheckIntervalMs: 60_000,
  logMaxBytes: 10 * 1024 * 1024,
  logKeep: 3,
  instances: 1,
  health: { intervalMs: 5_000, timeoutMs: 2_000, retries: 3, graceMs: 30_000 },
  restart: { policy: 'always' as const, backoffMs: 2_000, maxBackoffMs: 60_000, maxRetries: 5, resetAfterMs: 30_000, warm: true },
  buildTimeoutMs: 10 * 60_000,
  stop: { signal: 'SIGTERM' as const, timeoutMs: 5_000, killAfterMs: 2_000 },
  httpPath: '/',
} as const;

/** How a value is named in "expected X, got Y" messages. */
export function describeValue(value: unknown): string {
  if (value === undefined || value === null) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return quoteSnippet(value);
  return String(value);
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a map',
  record: 'a map',
  array: 'a list',
};

/**
 * The per-parse error map: turns zod's issues into reasons. Schemas with a message of their own
 * (custom checks, `error` options) never reach it.
 */
export const reasonFor: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'required key is missing';
      return `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${describeValue(iss.input)}`;
    }
    case 'too_small': {
      if (iss.origin === 'string') return 'must not be empty';
      if (iss.origin === 'array') return 'must not be empty';
      return `must be ${iss.inclusive === false ? 'greater than' : 'at least'} ${String(iss.minimum)}, got ${describeValue(iss.input)}`;
    }
    case 'too_big':
      return `must be ${iss.inclusive === false ? 'less than' : 'at most'} ${String(iss.maximum)}, got ${describeValue(iss.input)}`;
    case 'invalid_value':
      return `expected one of ${iss.values.map(String).join(', ')}, got ${describeValue(iss.input)}`;
    case 'invalid_key':
      return iss.issues[0]?.message ?? 'invalid key';
    case 'invalid_element':
      return iss.issues[0]?.message ?? 'invalid value';
    case 'unrecognized_keys':
      // Expanded into one error per key by load.ts, which knows the positions.
      return `unknown key ${quoteSnippet(String(iss.keys[0]))}`;
    default:
      return 'invalid value';
  }
};

/** A leaf whose conversion throws a RangeError/TypeError carrying the reason. */
function converted<T>(convert: (value: unknown) => T) {
  return z.unknown().transform((value, ctx): T => {
    try {
      return convert(value);
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message, input: value });
      return z.NEVER;
    }
  });
}

function integer(min: number, max?: number) {
  const int = z.int({
    error: (iss) => (iss.code === 'invalid_type' && iss.input !== undefined ? `expected an integer, got ${describeValue(iss.input)}` : undefined),
  });
  return max === undefined ? int.min(min) : int.min(min).max(max);
}

const nonEmptyString = z.string().refine((s) => s.trim() !== '', { error: 'must not be empty' });

/**
 * The longest `run` line. The kernel refuses a single argument over 128 KiB (E2BIG), which the
 * line is for `/bin/sh -c`: refused here, at its key, instead of a crash loop of failed spawns.
 */
export const MAX_RUN_BYTES = 64 * 1024;
const runLine = nonEmptyString.refine((s) => Buffer.byteLength(s) <= MAX_RUN_BYTES, { error: (issue) => `is too long: ${Buffer.byteLength(String(issue.input))} bytes (at most ${MAX_RUN_BYTES})` });

function duration(opts: { positive?: boolean; minMs?: number; why?: string } = {}) {
  return converted((value) => {
    if (typeof value !== 'number' && typeof value !== 'string') {
      throw new TypeError(`expected a duration like 500ms, 2s or 1m, got ${describeValue(value)}`);
    }
    const ms = parseDuration(value);
    if (opts.positive && ms === 0) throw new RangeError('must be longer than 0ms');
    if (opts.minMs !== undefined && ms < opts.minMs) throw new RangeError(`must be at least ${opts.minMs}ms${opts.why ? ` (${opts.why})` : ''}`);
    return ms;
  });
}

const size = converted((value) => {
  if (typeof value !== 'number' && typeof value !== 'string') {
    throw new TypeError(`expected a size like 512KB, 10MB or 1GB, got ${describeValue(value)}`);
  }
  const bytes = parseSize(value);
  if (bytes === 0) throw new RangeError('must be at least 1 byte');
  return bytes;
});

const checkPort = converted((value): number | '$PORT' => {
  if (value === '$PORT') return value;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`expected a port number or "$PORT", got ${describeValue(value)}`);
  }
  if (value < 1 || value > 65535) throw new RangeError(`port must be between 1 and 65535, got ${value}`);
  return value;
});

const signal = converted((value): NodeJS.Signals => {
  if (typeof value !== 'string') throw new TypeError(`expected a signal name like SIGTERM, got ${describeValue(value)}`);
  const upper = value.trim().toUpperCase();
  const name = (upper.startsWith('SIG') ? upper : `SIG${upper}`) as NodeJS.Signals;
  if (!STOP_SIGNALS.includes(name)) throw new RangeError(`invalid signal ${describeValue(value)} (use one of ${STOP_SIGNALS.join(', ')})`);
  return name;
});

const envValue = converted((value): string => {
  const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
  if (text === undefined) throw new TypeError(`expected a string, number or boolean, got ${describeValue(value)}`);
  // The kernel refuses a variable over 128 KiB, and all of them over ~2 MiB, at exec (E2BIG).
  if (Buffer.byteLength(text) > MAX_ENV_VALUE_BYTES) throw new RangeError(`is too long: ${Buffer.byteLength(text)} bytes (at most ${MAX_ENV_VALUE_BYTES})`);
  return text;
});

/** The longest value of one `env` variable (see MAX_RUN_BYTES), and of all of a cell's together. */
const MAX_ENV_VALUE_BYTES = 64 * 1024;
const MAX_ENV_BYTES = 512 * 1024;

const envName = z.string().regex(ENV_NAME_PATTERN, {
  error: (iss) => `invalid environment variable name ${describeValue(iss.input)} (use letters, digits and _, not starting with a digit)`,
});

const cellName = z.string().superRefine((name, ctx) => {
  if (!CELL_NAME_PATTERN.test(name)) {
    ctx.addIssue({
      code: 'custom',
      message: `invalid cell name ${describeValue(name)} (use lowercase letters, digits and -, starting with a letter, at most 63 characters)`,
    });
  } else if (RESERVED_CELL_NAMES.includes(name)) {
    ctx.addIssue({ code: 'custom', message: `cell name ${quoteSnippet(name)} is reserved for a kernel cell (reserved: ${RESERVED_CELL_NAMES.join(', ')})` });
  }
});

/** `key:` with nothing after it means "not set" for optional maps and lists. */
function absentIfNull<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? undefined : v), schema);
}

/** For checks, `tcp:` with nothing after it means "a tcp check with the defaults". */
function emptyIfNull<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? {} : v), schema);
}

export const httpCheckObject = z.strictObject({
  path: z
    .string()
    .refine((p) => p.startsWith('/'), { error: (iss) => `path must start with "/", got ${describeValue(iss.input)}` })
    .default(DEFAULTS.httpPath),
  port: checkPort.default('$PORT'),
});

export const tcpCheckObject = z.strictObject({
  port: checkPort.default('$PORT'),
});

/** `ping: {}`: the SDK's protocol ping over the instance's CELL_SOCKET (seed level 3). */
export const pingCheckObject = z.strictObject({});

export const CHECK_KINDS = ['http', 'tcp', 'exec', 'ping'] as const;

/** The reason for a health map with two check kinds, `first` being the one that stays. */
export function exclusiveChecksReason(first: string): string {
  return `only one of ${CHECK_KINDS.join(', ')} may be set, and ${first} is already set`;
}

export const healthObject = z.strictObject({
  http: emptyIfNull(httpCheckObject.optional()),
  tcp: emptyIfNull(tcpCheckObject.optional()),
  exec: nonEmptyString.optional(),
  ping: emptyIfNull(pingCheckObject.optional()),
  interval: duration({ positive: true }).default(DEFAULTS.health.intervalMs),
  timeout: duration({ positive: true }).default(DEFAULTS.health.timeoutMs),
  retries: integer(1).default(DEFAULTS.health.retries),
  grace: duration({ positive: true }).default(DEFAULTS.health.graceMs),
});

const health = healthObject.superRefine((h, ctx) => {
  const set = CHECK_KINDS.filter((k) => h[k] !== undefined);
  if (set.length === 0) {
    ctx.addIssue({ code: 'custom', message: `needs one of ${CHECK_KINDS.join(', ')} (or remove health to only check that the process is alive)` });
  }
  if (set.length > 1) {
    // Reported at the second kind in schema order; load.ts moves it to the second in file order,
    // which it can see and this check cannot (the parsed object has the schema's key order).
    ctx.addIssue({
      code: 'custom',
      path: [set[1]],
      message: exclusiveChecksReason(set[0]),
      params: { exclusiveChecks: set },
    });
  }
});

export const restartObject = z.strictObject({
  policy: z.enum(RESTART_POLICIES).default(DEFAULTS.restart.policy),
  backoff: duration().default(DEFAULTS.restart.backoffMs),
  // No default here: when unset it follows `backoff` up (see load.ts), so `backoff: 90s` alone is valid.
  max_backoff: duration().optional(),
  max_retries: integer(0).default(DEFAULTS.restart.maxRetries),
  reset_after: duration().default(DEFAULTS.restart.resetAfterMs),
  // A failure restart of a node program may start from a warm spare (supervisor/warm-node.ts).
  warm: z.boolean().default(DEFAULTS.restart.warm),
});

const restart = restartObject.superRefine((r, ctx) => {
  if (r.max_backoff !== undefined && r.max_backoff < r.backoff) {
    ctx.addIssue({
      code: 'custom',
      path: ['max_backoff'],
      message: `must be at least backoff (${formatDuration(r.backoff)}), got ${formatDuration(r.max_backoff)}`,
    });
  }
});

export const stopObject = z.strictObject({
  signal: signal.default(DEFAULTS.stop.signal),
  timeout: duration().default(DEFAULTS.stop.timeoutMs),
  kill_after: duration().default(DEFAULTS.stop.killAfterMs),
});

const globs = z.preprocess(
  (v) => (typeof v === 'string' ? [v] : v === null ? undefined : v),
  z
    .array(nonEmptyString, {
      error: (iss) => (iss.code === 'invalid_type' && iss.input !== undefined ? `expected a glob or a list of globs, got ${describeValue(iss.input)}` : undefined),
    })
    .default([]),
);

/** One entry of `depends_on`, with the key it has in the file (index in a list, name in a map) for messages. */
export interface RawDependency {
  name: string;
  condition: (typeof DEPENDENCY_CONDITIONS)[number];
  key: string | number;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * `depends_on`: a list of cell names (each waited for healthy), or compose's long form, a map of
 * cell name to `{ condition: healthy | completed }` (an empty entry: healthy). Checked by hand
 * rather than as a union of the two shapes, so that each problem is reported at its own key
 * (a union can only say that neither shape fits).
 */
const dependsOn = z.unknown().transform((deps, ctx): RawDependency[] => {
  const problem = (path: (string | number)[], message: string, input: unknown) => ctx.addIssue({ code: 'custom', message, input, path });
  const out: RawDependency[] = [];
  if (deps === undefined || deps === null) return out;
  if (Array.isArray(deps)) {
    deps.forEach((name, key) => {
      if (typeof name === 'string' && name !== '') out.push({ name, condition: 'healthy', key });
      else if (name === '') problem([key], 'must not be empty', name);
      else if (isPlainObject(name)) problem([key], 'expected a cell name; the long form with conditions is a map of its own: depends_on: { db: { condition: completed } }', name);
      else problem([key], `expected a cell name, got ${describeValue(name)}`, name);
    });
    return out;
  }
  if (!isPlainObject(deps)) {
    problem([], `expected a list of cell names or a map of cell name to { condition: ${DEPENDENCY_CONDITIONS.join(' | ')} }, got ${describeValue(deps)}`, deps);
    return out;
  }
  for (const [name, entry] of Object.entries(deps)) {
    if (name === '') {
      problem([name], 'a cell name must not be empty', name);
      continue;
    }
    if (entry === null || entry === undefined) {
      out.push({ name, condition: 'healthy', key: name });
      continue;
    }
    if (!isPlainObject(entry)) {
      problem([name], `expected { condition: ${DEPENDENCY_CONDITIONS.join(' | ')} }, got ${describeValue(entry)}`, entry);
      continue;
    }
    const unknown = Object.keys(entry).filter((k) => k !== 'condition');
    if (unknown.length > 0) ctx.addIssue({ code: 'unrecognized_keys', keys: unknown, input: entry, path: [name] });
    const condition = entry.condition ?? 'healthy';
    if (!(DEPENDENCY_CONDITIONS as readonly unknown[]).includes(condition)) {
      problem([name, 'condition'], `expected ${DEPENDENCY_CONDITIONS.join(' or ')}, got ${describeValue(condition)}`, condition);
      continue;
    }
    out.push({ name, condition: condition as RawDependency['condition'], key: name });
  }
  return out;
});

export const cellObject = z.strictObject({
  run: runLine,
  cwd: nonEmptyString.optional(),
  env: absentIfNull(
    z
      .record(envName, envValue)
      .default({})
      .refine((env) => Object.entries(env).reduce((sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(v) + 2, 0) <= MAX_ENV_BYTES, {
        error: `is too large: its variables come to more than ${MAX_ENV_BYTES} bytes together`,
      }),
  ),
  depends_on: dependsOn.default([]),
  // 0: the cell is in the mesh with nothing running (a `cell scale` starts it), as Nomad's count = 0.
  instances: integer(0, 1000).default(DEFAULTS.instances),
  health: absentIfNull(health.optional()),
  restart: absentIfNull(restart.prefault({})),
  stop: absentIfNull(stopObject.prefault({})),
  source: globs,
  build: nonEmptyString.optional(),
  build_timeout: duration({ positive: true }).default(DEFAULTS.buildTimeoutMs),
  lazy: z.boolean({ error: (iss) => `expected true or false, got ${describeValue(iss.input)}` }).default(false),
});

export const gatewayObject = z.strictObject({
  port: integer(0, 65535).default(DEFAULTS.gatewayPort),
  hold: duration().default(DEFAULTS.gatewayHoldMs),
});

export const logsObject = z.strictObject({
  max_size: size.default(DEFAULTS.logMaxBytes),
  keep: integer(0, 1000).default(DEFAULTS.logKeep),
});

export const manifestObject = z.strictObject({
  gateway: absentIfNull(gatewayObject.prefault({})),
  version_check_interval: duration({ positive: true, minMs: 100, why: 'each check looks at every source file' }).default(DEFAULTS.versionCheckIntervalMs),
  logs: absentIfNull(logsObject.prefault({})),
  cells: z.record(cellName, cellObject).refine((cells) => Object.keys(cells).length > 0, { error: 'must define at least one cell' }),
});

export type RawManifest = z.output<typeof manifestObject>;
export type RawCell = z.output<typeof cellObject>;

function keysOf(o: { shape: Record<string, unknown> }): string[] {
  return Object.keys(o.shape);
}

/** The keys allowed in the map at `path` (snake_case), for "did you mean" hints. */
export function knownKeysAt(path: readonly PropertyKey[]): string[] {
  const p = path.map(String);
  if (p.length === 0) return keysOf(manifestObject);
  if (p.length === 1 && p[0] === 'gateway') return keysOf(gatewayObject);
  if (p.length === 1 && p[0] === 'logs') return keysOf(logsObject);
  if (p[0] !== 'cells') return [];
  if (p.length === 2) return keysOf(cellObject);
  if (p.length === 3 && p[2] === 'health') return keysOf(healthObject);
  if (p.length === 3 && p[2] === 'restart') return keysOf(restartObject);
  if (p.length === 3 && p[2] === 'stop') return keysOf(stopObject);
  if (p.length === 4 && p[2] === 'health' && p[3] === 'http') return keysOf(httpCheckObject);
  if (p.length === 4 && p[2] === 'health' && p[3] === 'tcp') return keysOf(tcpCheckObject);
  if (p.length === 4 && p[2] === 'depends_on') return ['condition'];
  return [];
}

/**
 * A cell's contract: its name and, for each method, a zod schema for the input and the output.
 * Both sides import the same definition, so a wrong payload fails to compile.
 */
import { z } from 'zod';

/** One method: what it takes and what it returns. */
export interface MethodSpec<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  input: I;
  output: O;
}

export type MethodMap = Record<string, MethodSpec>;

/** The value `defineCell` returns; pass it to `serve` and `connect`. */
export interface CellDefinition<Name extends string = string, Methods extends MethodMap = MethodMap> {
  readonly name: Name;
  readonly methods: Methods;
}

/** What a handler receives besides its input. */
export interface CallContext {
  /** The cell's name. */
  readonly cell: string;
  readonly method: string;
  /** The request id, unique among the calls in flight on one connection. */
  readonly id: number;
  /** Aborted when the caller's connection drops or the server stops waiting for the call. */
  readonly signal: AbortSignal;
}

/** The handler of one method: its input is the parsed input, it returns what the output schema accepts. */
export type Handler<M extends MethodSpec> = (
  input: z.output<M['input']>,
  ctx: CallContext,
) => Promise<z.input<M['output']>> | z.input<M['output']>;

export type Handlers<Methods extends MethodMap> = { [K in keyof Methods]: Handler<Methods[K]> };

/** Per-call options of a client. */
export interface CallOptions {
  /** Reject with `CallTimeoutError` after this long (default: the client's `timeoutMs`, 30 s). */
  timeoutMs?: number;
  /** Reject with `AbortError` when it fires. The server is not told; it may still run the call. */
  signal?: AbortSignal;
}

/** A typed remote method. */
export type RemoteMethod<M extends MethodSpec> = (input: z.input<M['input']>, options?: CallOptions) => Promise<z.output<M['output']>>;

const CELL_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Names the client object uses itself, so a method cannot take them. */
export const RESERVED_METHOD_NAMES: ReadonlySet<string> = new Set(['call', 'close', 'then', 'constructor', 'toJSON']);

/** Throws a TypeError naming the value when `name` is not a valid cell name. */
export function assertCellName(name: unknown, what = 'cell name'): asserts name is string {
  if (typeof name !== 'string' || !CELL_NAME.test(name)) {
    throw new TypeError(`${what} must match ${CELL_NAME} (lowercase letters, digits, '-', starting with a letter, at most 63 characters), got ${JSON.stringify(name) ?? String(name)}`);
  }
}

/**
 * Defines a cell: `name` is its mesh-wide name, `methods` maps each method to its input and output
 * schemas. Throws a TypeError naming the bad value when a name or a schema is invalid.
 */
export function defineCell<const Name extends string, const Methods extends MethodMap>(name: Name, methods: Methods): CellDefinition<Name, Methods> {
  assertCellName(name);
  if (methods === null || typeof methods !== 'object') throw new TypeError(`defineCell('${name}', methods): methods must be an object, got ${String(methods)}`);
  for (const [method, spec] of Object.entries(methods)) {
    if (!METHOD_NAME.test(method) || RESERVED_METHOD_NAMES.has(method)) {
      throw new TypeError(`defineCell('${name}'): method name must match ${METHOD_NAME} and not be one of ${[...RESERVED_METHOD_NAMES].join(', ')}, got ${JSON.stringify(method)}`);
    }
    for (const side of ['input', 'output'] as const) {
      const schema = (spec as Partial<MethodSpec> | null)?.[side];
      if (!(schema instanceof z.ZodType)) {
        throw new TypeError(`defineCell('${name}'): methods.${method}.${side} must be a zod schema, got ${schema === null ? 'null' : typeof schema}`);
      }
    }
  }
  return Object.freeze({ name, methods: Object.freeze({ ...methods }) as Methods });
}

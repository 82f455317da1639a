/**
 * Errors of the graph part. Each carries the cells it concerns and survives a trip over the API as
 * JSON (`toJSON` / `fromJSON`); a cause is kept as its message only.
 */

interface SerializedCause {
  name?: string;
  message: string;
}

function serializeCause(cause: unknown): SerializedCause | undefined {
  if (cause === undefined) return undefined;
  if (cause instanceof Error) return { name: cause.name, message: cause.message };
  return { message: String(cause) };
}

function reviveCause(cause: SerializedCause | undefined): Error | undefined {
  return cause ? Object.assign(new Error(cause.message), cause) : undefined;
}

/** The cells depend on each other in a loop, so no start order exists. */
export class DependencyCycleError extends Error {
  override readonly name = 'DependencyCycleError';
  /** The loop, closed: its first cell is repeated at the end (`['a', 'b', 'c', 'a']`). */
  readonly cycle: string[];

  constructor(cycle: string[], options?: ErrorOptions) {
    super(`dependency cycle: ${cycle.join(' -> ')}`, options);
    this.cycle = [...cycle];
  }

  toJSON() {
    return { name: this.name, message: this.message, cycle: this.cycle, cause: serializeCause(this.cause) };
  }

  static fromJSON(json: ReturnType<DependencyCycleError['toJSON']>): DependencyCycleError {
    return new DependencyCycleError(json.cycle, { cause: reviveCause(json.cause) });
  }
}

/** A cell depends on a name that is not a cell of the graph. */
export class UnknownDependencyError extends Error {
  override readonly name = 'UnknownDependencyError';
  readonly cell: string;
  readonly dependency: string;

  constructor(fields: { cell: string; dependency: string }, options?: ErrorOptions) {
    super(`cell "${fields.cell}" depends on unknown cell "${fields.dependency}"`, options);
    this.cell = fields.cell;
    this.dependency = fields.dependency;
  }

  toJSON() {
    return {
      name: this.name,
      message: this.message,
      cell: this.cell,
      dependency: this.dependency,
      cause: serializeCause(this.cause),
    };
  }

  static fromJSON(json: ReturnType<UnknownDependencyError['toJSON']>): UnknownDependencyError {
    return new UnknownDependencyError(json, { cause: reviveCause(json.cause) });
  }
}

/** A query named a cell that is not in the graph (a caller bug, not a manifest error). */
export class UnknownCellError extends Error {
  override readonly name = 'UnknownCellError';
  readonly cell: string;

  constructor(cell: string, options?: ErrorOptions) {
    super(`unknown cell "${cell}"`, options);
    this.cell = cell;
  }

  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, cause: serializeCause(this.cause) };
  }

  static fromJSON(json: ReturnType<UnknownCellError['toJSON']>): UnknownCellError {
    return new UnknownCellError(json.cell, { cause: reviveCause(json.cause) });
  }
}

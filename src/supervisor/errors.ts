/**
 * Errors of the supervisor part. Each carries the fields it concerns and survives a trip over the
 * API as JSON (`toJSON` / `fromJSON`); the cause is kept as its message only.
 */

interface SerializedCause {
  name?: string;
  message: string;
  code?: string;
}

function serializeCause(cause: unknown): SerializedCause | undefined {
  if (cause === undefined) return undefined;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return { name: cause.name, message: cause.message, ...(code ? { code } : {}) };
  }
  return { message: String(cause) };
}

function errnoCode(cause: unknown): string | undefined {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

export interface SpawnErrorFields {
  cell: string;
  instance: number;
  command: string;
}

/** A cell's process could not be started (missing cwd, unwritable log file, fork failure...). */
export class SpawnError extends Error {
  override readonly name = 'SpawnError';
  readonly cell: string;
  readonly instance: number;
  readonly command: string;
  /** The errno code of the cause when there is one (`ENOENT`, `EACCES`, `EAGAIN`...). */
  readonly code: string | undefined;

  constructor(fields: SpawnErrorFields, options?: ErrorOptions & { reason?: string }) {
    const reason =
      options?.reason ??
      (options?.cause instanceof Error ? options.cause.message : options?.cause !== undefined ? String(options.cause) : 'unknown error');
    // The command as far as it says which one: a reason is shown in `cell status` and stored with each attempt.
    super(`cannot start ${fields.cell}#${fields.instance} (${fields.command.length > 200 ? `${fields.command.slice(0, 200)}…` : fields.command}): ${reason}`, options);
    this.cell = fields.cell;
    this.instance = fields.instance;
    this.command = fields.command;
    this.code = errnoCode(options?.cause);
  }

  toJSON() {
    return {
      name: this.name,
      message: this.message,
      cell: this.cell,
      instance: this.instance,
      command: this.command,
      code: this.code,
      cause: serializeCause(this.cause),
    };
  }

  static fromJSON(json: ReturnType<SpawnError['toJSON']>): SpawnError {
    const err = new SpawnError(json, { cause: json.cause ? Object.assign(new Error(json.cause.message), json.cause) : undefined });
    err.message = json.message;
    return err;
  }
}

/** A signal could not be delivered to a process group for a reason other than it being gone. */
export class SignalError extends Error {
  override readonly name = 'SignalError';
  readonly pid: number;
  readonly signal: NodeJS.Signals;
  readonly code: string | undefined;

  constructor(fields: { pid: number; signal: NodeJS.Signals }, options?: ErrorOptions) {
    const reason = options?.cause instanceof Error ? options.cause.message : 'unknown error';
    super(`cannot send ${fields.signal} to process group ${fields.pid}: ${reason}`, options);
    this.pid = fields.pid;
    this.signal = fields.signal;
    this.code = errnoCode(options?.cause);
  }

  toJSON() {
    return {
      name: this.name,
      message: this.message,
      pid: this.pid,
      signal: this.signal,
      code: this.code,
      cause: serializeCause(this.cause),
    };
  }

  static fromJSON(json: ReturnType<SignalError['toJSON']>): SignalError {
    const err = new SignalError(json, { cause: json.cause ? Object.assign(new Error(json.cause.message), json.cause) : undefined });
    err.message = json.message;
    return err;
  }
}

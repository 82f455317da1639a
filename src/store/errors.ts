/**
 * Errors of the store part. Each carries the file or key it concerns, chains its `cause`, and
 * serializes across the wire with `toJSON()` / `fromJSON()` (the cause travels as name + message).
 */

/** The serializable shape of a cause: enough to print it, not to rebuild the original class. */
export interface SerializedCause {
  name: string;
  message: string;
  code?: string;
}

function serializeCause(cause: unknown): SerializedCause | undefined {
  if (cause === undefined) return undefined;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return { name: cause.name, message: cause.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: String(cause) };
}

function reviveCause(cause: SerializedCause | undefined): ErrorOptions | undefined {
  if (!cause) return undefined;
  const error = new Error(cause.message) as NodeJS.ErrnoException;
  error.name = cause.name;
  if (cause.code !== undefined) error.code = cause.code;
  return { cause: error };
}

export interface StoreOpenErrorJSON {
  name: 'StoreOpenError';
  message: string;
  path: string;
  reason?: string;
  isCorrupt?: boolean;
  cause?: SerializedCause;
}

/** SQLite's codes for a file that is not a database, or one whose pages are damaged. */
function isCorruptCode(code: unknown): boolean {
  return typeof code === 'string' && (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'));
}

/** The database file could not be opened: missing directory, not a database, corrupt, newer schema. */
export class StoreOpenError extends Error {
  override readonly name = 'StoreOpenError';
  /** The database file that was being opened. */
  readonly path: string;
  /** Why, without the path: e.g. `file is not a database`. */
  readonly reason: string;
  /**
   * The file is not a database or its pages are damaged (SQLite's NOTADB or CORRUPT, or a failed
   * integrity check): only moving it aside helps. False for a missing directory, a permission,
   * a newer schema: the file itself may be sound.
   */
  readonly isCorrupt: boolean;

  constructor(path: string, reason: string, options?: ErrorOptions & { isCorrupt?: boolean }) {
    super(`cannot open store ${path}: ${reason}`, options);
    this.path = path;
    this.reason = reason;
    const code = (options?.cause as NodeJS.ErrnoException | undefined)?.code;
    this.isCorrupt = options?.isCorrupt ?? isCorruptCode(code);
  }

  toJSON(): StoreOpenErrorJSON {
    const cause = serializeCause(this.cause);
    return { name: this.name, message: this.message, path: this.path, reason: this.reason, isCorrupt: this.isCorrupt, ...(cause ? { cause } : {}) };
  }

  static fromJSON(json: StoreOpenErrorJSON): StoreOpenError {
    const error = new StoreOpenError(json.path, json.reason ?? '', { ...reviveCause(json.cause), isCorrupt: json.isCorrupt === true });
    error.message = json.message;
    return error;
  }
}

export interface StoreClosedErrorJSON {
  name: 'StoreClosedError';
  message: string;
  path: string;
  operation: string;
}

/** An operation was called after `close()`. */
export class StoreClosedError extends Error {
  override readonly name = 'StoreClosedError';
  readonly path: string;
  /** The method that was called, e.g. `put`. */
  readonly operation: string;

  constructor(path: string, operation: string, options?: ErrorOptions) {
    super(`store ${path} is closed (called ${operation})`, options);
    this.path = path;
    this.operation = operation;
  }

  toJSON(): StoreClosedErrorJSON {
    return { name: this.name, message: this.message, path: this.path, operation: this.operation };
  }

  static fromJSON(json: StoreClosedErrorJSON): StoreClosedError {
    const error = new StoreClosedError(json.path, json.operation);
    error.message = json.message;
    return error;
  }
}

export interface StoreValueErrorJSON {
  name: 'StoreValueError';
  message: string;
  key: string;
  cause?: SerializedCause;
}

/**
 * A stored value could not be decoded (the row holds text that is not JSON). Only a file edited or
 * damaged outside the store produces this; values written through the store always decode.
 */
export class StoreValueError extends Error {
  override readonly name = 'StoreValueError';
  readonly key: string;

  constructor(key: string, message: string, options?: ErrorOptions) {
    super(`value of key ${JSON.stringify(key)}: ${message}`, options);
    this.key = key;
  }

  toJSON(): StoreValueErrorJSON {
    const cause = serializeCause(this.cause);
    return { name: this.name, message: this.message, key: this.key, ...(cause ? { cause } : {}) };
  }

  static fromJSON(json: StoreValueErrorJSON): StoreValueError {
    const error = new StoreValueError(json.key, '', reviveCause(json.cause));
    error.message = json.message;
    return error;
  }
}

/** What was being done to a state file when it failed. */
export type StateFileOperation = 'read' | 'parse' | 'write';

export interface StateFileErrorJSON {
  name: 'StateFileError';
  message: string;
  path: string;
  operation: StateFileOperation;
  cause?: SerializedCause;
}

/** A JSON state file (e.g. `control-plane.json`) could not be read, parsed or written. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
  readonly path: string;
  readonly operation: StateFileOperation;

  constructor(path: string, operation: StateFileOperation, options?: ErrorOptions) {
    const reason = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`cannot ${operation} state file ${path}${reason}`, options);
    this.path = path;
    this.operation = operation;
  }

  toJSON(): StateFileErrorJSON {
    const cause = serializeCause(this.cause);
    return {
      name: this.name,
      message: this.message,
      path: this.path,
      operation: this.operation,
      ...(cause ? { cause } : {}),
    };
  }

  static fromJSON(json: StateFileErrorJSON): StateFileError {
    const error = new StateFileError(json.path, json.operation, reviveCause(json.cause));
    error.message = json.message;
    return error;
  }
}

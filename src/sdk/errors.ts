/**
 * Errors of the SDK. Every class extends {@link CellRpcError}, sets `name`, accepts `{ cause }`,
 * carries the `cell` and `method` it concerns where known, and round-trips through
 * `toJSON()` / `fromJSON()` so a supervisor or a gateway can pass it on unchanged.
 */

/** The shape an SDK error takes in JSON and on the wire (the ERROR op's fields). */
export interface CellErrorJSON {
  name: string;
  message: string;
  code: string;
  cell?: string;
  method?: string;
  /** Only for {@link RemoteError}: the `name` of the error the handler threw. */
  remoteName?: string;
}

export interface CellRpcErrorOptions {
  cause?: unknown;
  code?: string;
  cell?: string;
  method?: string;
}

type ErrorClass = new (message: string, options?: CellRpcErrorOptions & { remoteName?: string }) => CellRpcError;

const classesByName = new Map<string, ErrorClass>();

/** Base class of every error the SDK throws or rejects with. */
export class CellRpcError extends Error {
  /** A stable machine-readable code, e.g. `TIMEOUT`, `INVALID_INPUT`, `HANDSHAKE_FAILED`. */
  readonly code: string;
  readonly cell: string | undefined;
  readonly method: string | undefined;

  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CellRpcError';
    this.code = options.code ?? 'CELL_RPC_ERROR';
    this.cell = options.cell;
    this.method = options.method;
  }

  toJSON(): CellErrorJSON {
    const json: CellErrorJSON = { name: this.name, message: this.message, code: this.code };
    if (this.cell !== undefined) json.cell = this.cell;
    if (this.method !== undefined) json.method = this.method;
    return json;
  }

  /**
   * Rebuilds an error from its JSON. Called on `CellRpcError` it picks the subclass named by
   * `json.name` (an unknown name gives a `CellRpcError`); called on a subclass it builds that subclass.
   */
  static fromJSON(json: CellErrorJSON): CellRpcError {
    const Class: ErrorClass = this === CellRpcError ? (classesByName.get(json.name) ?? CellRpcError) : (this as unknown as ErrorClass);
    return new Class(String(json.message ?? ''), {
      code: json.code,
      cell: json.cell,
      method: json.method,
      remoteName: json.remoteName,
    });
  }
}

/**
 * The remote handler failed, or the server refused the call (`INVALID_INPUT`, `UNKNOWN_METHOD`,
 * `SHUTTING_DOWN`, ...). `remoteName` is the `name` of the error on the server side.
 */
export class RemoteError extends CellRpcError {
  readonly remoteName: string;

  constructor(message: string, options: CellRpcErrorOptions & { remoteName?: string } = {}) {
    super(message, { code: 'HANDLER_ERROR', ...options });
    this.name = 'RemoteError';
    this.remoteName = options.remoteName ?? 'Error';
  }

  override toJSON(): CellErrorJSON {
    return { ...super.toJSON(), remoteName: this.remoteName };
  }

  static override fromJSON(json: CellErrorJSON): RemoteError {
    return new RemoteError(String(json.message ?? ''), {
      code: json.code,
      cell: json.cell,
      method: json.method,
      remoteName: json.remoteName ?? json.name,
    });
  }
}

/** The call got no reply within its `timeoutMs`. The server may still run it. */
export class CallTimeoutError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'TIMEOUT', ...options });
    this.name = 'CallTimeoutError';
  }
}

/** The connection carrying the call dropped before its reply came; the call may or may not have run. */
export class ConnectionLostError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'CONNECTION_LOST', ...options });
    this.name = 'ConnectionLostError';
  }
}

/** The client was closed (by `close()`) while the call was pending, or before it was made. */
export class ConnectionClosedError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'CONNECTION_CLOSED', ...options });
    this.name = 'ConnectionClosedError';
  }
}

/** The peer broke the wire protocol (bad frame, oversize frame, unexpected op). */
export class ProtocolError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'BAD_FRAME', ...options });
    this.name = 'ProtocolError';
  }
}

/** The handshake failed: wrong secret, protocol version mismatch, or the socket serves another cell. */
export class HandshakeError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'HANDSHAKE_FAILED', ...options });
    this.name = 'HandshakeError';
  }
}

/** The call's `AbortSignal` fired. `cause` is the signal's reason. */
export class AbortError extends CellRpcError {
  constructor(message: string, options: CellRpcErrorOptions = {}) {
    super(message, { code: 'ABORTED', ...options });
    this.name = 'AbortError';
  }
}

const registered: Array<[string, ErrorClass]> = [
  ['CellRpcError', CellRpcError],
  ['RemoteError', RemoteError],
  ['CallTimeoutError', CallTimeoutError],
  ['ConnectionLostError', ConnectionLostError],
  ['ConnectionClosedError', ConnectionClosedError],
  ['ProtocolError', ProtocolError],
  ['HandshakeError', HandshakeError],
  ['AbortError', AbortError],
];
for (const [name, Class] of registered) classesByName.set(name, Class);

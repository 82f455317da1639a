/** A CELL_HOME no daemon can use: nothing is started or created there (a usage error, exit 2). */
export abstract class CellHomeError extends Error {
  abstract readonly home: string;
}

/**
 * A CELL_HOME whose daemon socket (`run/daemon.sock`) would be longer than a unix socket path may
 * be (`limit` bytes, without the NUL): no daemon can run there, so nothing is started.
 */
export class CellHomeTooLongError extends CellHomeError {
  override name = 'CellHomeTooLongError';
  constructor(
    readonly home: string,
    readonly socket: string,
    readonly bytes: number,
    readonly limit: number,
    options?: ErrorOptions,
  ) {
    super(
      `CELL_HOME ${home} is too long: its socket $CELL_HOME/run/daemon.sock would be ${bytes} bytes, over the ${limit}-byte limit of unix socket paths; use a shorter CELL_HOME`,
      options,
    );
  }
  toJSON() {
    return { name: this.name, message: this.message, home: this.home, socket: this.socket, bytes: this.bytes, limit: this.limit };
  }
}

/** A CELL_HOME that is a file, or lies under one (`path` is that file). */
export class CellHomeNotADirectoryError extends CellHomeError {
  override name = 'CellHomeNotADirectoryError';
  constructor(
    readonly home: string,
    readonly path: string,
    options?: ErrorOptions,
  ) {
    super(`CELL_HOME ${home} is not a directory${path === home ? '' : ` (${path} is a file)`}; use a directory (it is created if missing)`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, home: this.home, path: this.path };
  }
}

/** The daemon is not running (no socket, or nothing listens on it). */
export class DaemonNotRunningError extends Error {
  override name = 'DaemonNotRunningError';
  constructor(readonly socket: string, options?: ErrorOptions) {
    super(`the cell daemon is not running (no answer on ${socket}); start it with \`cell up\``, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, socket: this.socket };
  }
}

/** The daemon answered with an error; `remoteName` and `fields` are what it sent. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly remoteName: string,
    readonly fields: Record<string, unknown> = {},
  ) {
    super(message);
  }
  toJSON() {
    return { name: this.remoteName, message: this.message, status: this.status, ...this.fields };
  }
}

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

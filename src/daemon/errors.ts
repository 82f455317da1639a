/** A cell name that the desired state does not have. */
export class UnknownCellError extends Error {
  override name = 'UnknownCellError';
  constructor(
    readonly cell: string,
    readonly known: string[],
    options?: ErrorOptions,
  ) {
    super(`unknown cell "${cell}" (cells: ${known.length ? known.join(', ') : 'none; run `cell up` first'})`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, known: this.known };
  }
}

/** Another daemon already owns this CELL_HOME. */
export class DaemonAlreadyRunningError extends Error {
  override name = 'DaemonAlreadyRunningError';
  constructor(
    readonly home: string,
    readonly pid: number,
    options?: ErrorOptions,
  ) {
    super(`a cell daemon (pid ${pid}) already runs for ${home}`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, home: this.home, pid: this.pid };
  }
}

/** A request the API cannot take (bad JSON, missing field); `field` names what is wrong. */
export class BadRequestError extends Error {
  override name = 'BadRequestError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
  toJSON() {
    return { name: this.name, message: this.message, field: this.field };
  }
}

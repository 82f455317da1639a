import { listNames, suggestKey } from '../api/index.js';

/** The manifest's fixed `gateway.port` is taken by another program when the gateway is to start. */
export class GatewayPortInUseError extends Error {
  override name = 'GatewayPortInUseError';
  constructor(
    readonly port: number,
    options?: ErrorOptions,
  ) {
    super(`gateway port ${port} (the manifest's gateway.port) is in use by another program, another mesh's gateway perhaps; free it, or set gateway.port to another port (0 picks a free one)`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, port: this.port };
  }
}

/** A cell name that the desired state does not have. */
export class UnknownCellError extends Error {
  override name = 'UnknownCellError';
  constructor(
    readonly cell: string,
    readonly known: string[],
    options?: ErrorOptions,
  ) {
    super(`unknown cell "${cell}" (${unknownCellHint(cell, known)})`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, known: this.known };
  }
}

/**
 * A kernel cell named where only application cells go (`cell scale gateway 2`): the daemon runs
 * the kernel itself, so the manifest's commands do not apply to it. `reason` says what to do instead.
 */
export class KernelCellError extends Error {
  override name = 'KernelCellError';
  constructor(
    readonly cell: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`"${cell}" is a kernel cell that the daemon runs itself: ${reason}`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, cell: this.cell, reason: this.reason };
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

/** `cell logs <cell>.<i>` for an instance the cell does not have. */
export class UnknownInstanceError extends Error {
  override name = 'UnknownInstanceError';
  readonly field = 'instance';
  constructor(
    readonly cell: string,
    readonly instance: number,
    readonly known: number[],
    options?: ErrorOptions,
  ) {
    super(`cell "${cell}" has no instance ${instance} (instances: ${known.length ? known.map((i) => `${cell}.${i}`).join(', ') : 'none'})`, options);
  }
  toJSON() {
    return { name: this.name, message: this.message, field: this.field, cell: this.cell, instance: this.instance, known: this.known };
  }
}

function unknownCellHint(cell: string, known: string[]): string {
  if (known.length === 0) return 'cells: none; run `cell up` first';
  const meant = suggestKey(cell, known);
  return `${meant ? `did you mean ${meant}? ` : ''}cells: ${listNames(known)}`;
}

/** A change asked of a daemon that a `cell down` is stopping (HTTP 503). */
export class ShuttingDownError extends Error {
  override name = 'ShuttingDownError';
  constructor() {
    super('the cell daemon is shutting down (a `cell down` is under way); run `cell up` once it is done');
  }
  toJSON() {
    return { name: this.name, message: this.message };
  }
}

import { postToDaemon } from './mesh-env.js';

/**
 * The ready signal (the seed's Cytokinesis): a cell started by the supervisor tells the daemon
 * that it listens, so it counts as ready at once and is then checked with the protocol ping.
 * Outside a mesh (no CELL_NAME / CELL_INSTANCE / CELL_HOME) it does nothing. Never throws: a
 * daemon that is away (restarting) finds the cell through its health probe instead.
 */
export async function notifyReady(info: { cell: string; socket: string }): Promise<boolean> {
  const cell = process.env.CELL_NAME;
  const instance = process.env.CELL_INSTANCE;
  if (!cell || instance === undefined || !process.env.CELL_HOME) return false;
  try {
    const result = await postToDaemon<{ accepted: boolean }>('/v1/ready', { cell, instance: Number(instance), pid: process.pid, socket: info.socket }, 2000);
    return result.accepted;
  } catch {
    return false;
  }
}

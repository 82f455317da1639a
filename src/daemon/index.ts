import { unlinkSync } from 'node:fs';
import { systemClock } from '../clock/index.js';
import { cellHomePaths, type ParsedManifest } from '../api/index.js';
import { removeStaleTempFiles } from '../store/index.js';
import { Daemon } from './daemon.js';
import { ApiServer } from './api-server.js';
import { acquireDaemonLock } from './lock.js';
import { ManifestParser } from './parse-manifest.js';

export { Daemon } from './daemon.js';
export { KERNEL_CELLS, isKernelCell } from './kernel.js';
export { UnknownCellError, DaemonAlreadyRunningError, KernelCellError } from './errors.js';

export interface RunDaemonOptions {
  home: string;
  gatewayPort?: number;
  /** The manifest about to be applied, parsed while the kernel boots. */
  manifestHint?: string;
  /**
   * That manifest as `cell up` parsed it already: the first apply takes it while the file keeps
   * that text, and no parser process starts for it.
   */
  parsed?: ParsedManifest;
  /** A manifest parser already begun (see DaemonOptions.manifests); else one is begun as above. */
  manifests?: ManifestParser;
  /** In the foreground, Ctrl-C (SIGINT) runs a full `cell down`; in the background it only detaches. */
  foreground?: boolean;
}

export interface RunningDaemon {
  daemon: Daemon;
  /** Resolves when the daemon has stopped (after `cell down` or a signal). */
  stopped: Promise<void>;
}

/**
 * Runs a daemon for `home` in this process: takes the lock, boots the kernel, serves the API.
 * SIGTERM stops the daemon but leaves the cells running (the next `cell up` readopts them).
 */
export async function runDaemon(o: RunDaemonOptions): Promise<RunningDaemon> {
  const paths = cellHomePaths(o.home);
  const manifests = o.manifests ?? new ManifestParser();
  const daemon = new Daemon({ home: o.home, clock: systemClock, gatewayPort: o.gatewayPort ?? 0, manifests });
  const releaseLock = acquireDaemonLock(paths.lock, o.home);
  removeStaleTempFiles(paths.controlPlane);
  // Clock timers and children are unref'd; this keeps the process alive until the daemon stops.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r)).finally(() => clearInterval(keepAlive));
  const api = new ApiServer(daemon);
  const finish = async (code: number) => {
    await api.close().catch(() => {});
    try {
      unlinkSync(paths.socket);
    } catch {
      // Already gone.
    }
    releaseLock();
    daemon.log.info({ code }, 'daemon stopped');
    resolveStopped();
  };
  try {
    // `cell up` sends a manifest right after boot: it is parsed (or at least the parser loaded)
    // meanwhile, on the other core. A parser the caller passed in is begun already.
    if (!o.manifests) {
      if (o.parsed) manifests.adopt(o.parsed);
      else manifests.begin(o.manifestHint);
    }
    await daemon.boot();
    // Set before the API serves: a `cell down` may arrive while the gateway still boots.
    api.onShutdown = () => void finish(0);
    await api.listen(paths.socket);
    await daemon.bootEdge();
  } catch (err) {
    clearInterval(keepAlive);
    releaseLock();
    throw err;
  }
  daemon.log.info({ home: o.home, socket: paths.socket }, 'daemon ready');
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    daemon.log.info({ signal }, 'signal received');
    // A foreground daemon is the mesh's lifetime (a terminal's Ctrl-C, or systemd's and
    // `docker stop`'s SIGTERM): it stops the cells with it. A background one detaches instead.
    if (o.foreground) {
      void daemon.shutdown().then(() => finish(0));
    } else {
      // Detach: cells keep running and are readopted by the next daemon.
      void daemon.close().then(() => finish(0));
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A write that fails for want of space (or a failing disk) somewhere off the paths that handle
  // it themselves must not end the daemon: every cell would go unwatched. Any other error still
  // ends it, as node would (a bug must not run on in an unknown state).
  const onUncaught = (err: unknown) => {
    if (!isResourceError(err)) {
      process.stderr.write(`cell daemon: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    }
    daemon.log.error({ err: describe(err) }, 'a write failed (disk full?); the daemon goes on');
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  return { daemon, stopped };
}

/** Error codes of a full or failing disk, from node (errno) and SQLite. */
const RESOURCE_ERROR_CODE = /^(ENOSPC|EDQUOT|EIO|EROFS|SQLITE_FULL|SQLITE_IOERR|SQLITE_READONLY)/;

/** Whether `err`, or an error it was caused by, is a full or failing disk. */
export function isResourceError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && RESOURCE_ERROR_CODE.test(code)) return true;
  }
  return false;
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

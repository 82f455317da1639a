/**
 * The gateway process, run by the supervisor as the kernel cell `gateway`. It follows the
 * registry through the daemon API (long poll) and keeps serving its last routing table while
 * the daemon is away.
 */
import { ApiClient, cellHomePaths, resolveCellHome, type EndpointsView } from '../api/index.js';
import { Gateway } from './gateway.js';

const home = resolveCellHome();
const port = Number(process.env.GATEWAY_PORT ?? process.env.PORT ?? '0');
const api = new ApiClient(cellHomePaths(home).socket);
const gateway = new Gateway();
let stopping = false;
/** The longest the gateway waits for the requests in flight to instances that left its table. */
const DRAIN_MAX_MS = 900;


async function follow(): Promise<void> {
  let revision = -1;
  // The digest of the cells last heard of: the daemon answers at once when its cells differ.
  let cellsDigest: string | undefined;
  while (!stopping) {
    try {
      const known = cellsDigest === undefined ? '' : `&cells=${encodeURIComponent(cellsDigest)}`;
      const view = await api.get<EndpointsView>(`/v1/endpoints?after=${revision}&wait=25000${known}`, { timeoutMs: 30_000 });
      revision = view.revision;
      cellsDigest = view.cells_digest;
      if (view.hold_ms !== undefined) gateway.setHoldTimeout(view.hold_ms);
      const gone = gateway.setEndpoints(view.endpoints, view.cells ?? null, view.starting ?? []);
      // The next poll tells the daemon this table is in use, and a stopping instance is then
      // signalled: first let it finish the requests it has from us (the daemon waits 1 s at most).
      if (gone.size > 0) await gateway.drained(gone, DRAIN_MAX_MS);
    } catch {
      // Daemon restarting or away: keep the last routes and try again shortly.
      revision = -1;
      cellsDigest = undefined;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const shutdown = () => {
  stopping = true;
  void gateway.close().then(() => process.exit(0));
  setTimeout(() => process.exit(0), 1500).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

gateway.listen(port).then(
  (bound) => {
    process.stdout.write(`gateway listening on http://127.0.0.1:${bound}\n`);
    void follow();
  },
  (err) => {
    process.stderr.write(`gateway: cannot listen on port ${port}: ${err.message}\n`);
    process.exit(1);
  },
);

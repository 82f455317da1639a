/**
 * Parses a manifest in a worker thread. The daemon never loads the YAML parser and zod into its
 * own isolate: they would stay resident for its whole life (~15 MB) for a few parses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadManifest } from '../manifest/index.js';

try {
  parentPort!.postMessage({ ok: true, mesh: loadManifest(workerData as string) });
} catch (err) {
  const json = typeof (err as { toJSON?: () => unknown }).toJSON === 'function' ? (err as { toJSON: () => object }).toJSON() : {};
  parentPort!.postMessage({ ok: false, error: { ...json, name: (err as Error).name, message: (err as Error).message } });
}

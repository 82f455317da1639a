import { Worker } from 'node:worker_threads';
import type { MeshSpec } from '../manifest/index.js';

/** An error thrown in the manifest worker, rebuilt with its name and fields (e.g. ManifestError). */
class WorkerError extends Error {
  constructor(private readonly fields: { name: string; message: string; [key: string]: unknown }) {
    super(fields.message);
    this.name = fields.name;
  }
  toJSON() {
    return this.fields;
  }
}

/** `loadManifest(file)` run in a short-lived worker thread (see manifest-worker.ts for why). */
export function parseManifestInWorker(file: string): Promise<MeshSpec> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./manifest-worker.js', import.meta.url), { workerData: file });
    worker.once('message', (msg: { ok: true; mesh: MeshSpec } | { ok: false; error: { name: string; message: string } }) => {
      if (msg.ok) resolve(msg.mesh);
      else reject(new WorkerError(msg.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`manifest worker exited with code ${code}`));
    });
  });
}

/**
 * Parses a manifest in a child process of the daemon. Why not in the daemon, or in a worker
 * thread: the YAML parser and zod, once run, leave ~17 MB resident in the process that ran them
 * (a worker's isolate is freed, but the code pages it touched and the malloc arena it grew are
 * not given back), for a few parses in the daemon's whole life.
 *
 * The process loads the parser first and then waits for one file name over IPC, so the daemon
 * can start it while it boots (see ManifestParser): by the time `cell up` sends the manifest, the
 * module loading is done. It parses one file and exits; an unused one exits on its own.
 */
import { loadManifest, parseManifest } from '../manifest/index.js';

/** A warm parser nobody asked to parse anything stops holding its memory after this long. */
const IDLE_EXIT_MS = 15_000;

// The daemon went away (its end of the channel closed): nothing left to parse for. It may have
// gone while this module loaded, before a 'disconnect' listener could hear it.
if (!process.connected) process.exit(0);
process.once('disconnect', () => process.exit(0));
const idle = setTimeout(() => process.exit(0), IDLE_EXIT_MS);
// A file name to read, or the text the daemon read (a prefetch, compared again at apply time).
process.once('message', (msg: string | { file: string; text: string }) => {
  clearTimeout(idle);
  let reply: object;
  try {
    reply = { ok: true, mesh: typeof msg === 'string' ? loadManifest(msg) : parseManifest(msg.text, msg.file) };
  } catch (err) {
    const json = typeof (err as { toJSON?: () => unknown }).toJSON === 'function' ? (err as { toJSON: () => object }).toJSON() : {};
    reply = { ok: false, error: { ...json, name: (err as Error).name, message: (err as Error).message } };
  }
  process.send!(reply, () => process.exit(0));
});

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MeshSpec } from '../manifest/index.js';

/** An error thrown in the manifest parser, rebuilt with its name and fields (e.g. ManifestError). */
class ParserError extends Error {
  constructor(private readonly fields: { name: string; message: string; [key: string]: unknown }) {
    super(fields.message);
    this.name = fields.name;
  }
  toJSON() {
    return this.fields;
  }
}

class ParserGoneError extends Error {
  override name = 'ParserGoneError';
}

type ParserReply = { ok: true; mesh: MeshSpec } | { ok: false; error: { name: string; message: string } };

/**
 * `loadManifest(file)` run in a short-lived child process (see manifest-process.ts for why), one
 * process per parse. `prewarm()` starts the next one ahead of time, so that its start-up overlaps
 * the daemon's boot instead of delaying the first apply.
 */
export class ManifestParser {
  private warm: ChildProcess | null = null;

  prewarm(): void {
    if (!this.warm) this.warm = this.start();
  }

  parse(file: string): Promise<MeshSpec> {
    const warm = this.warm;
    this.warm = null;
    // A warm parser may be on its way out after its idle timeout: then parse in a fresh one.
    if (warm) return this.parseIn(warm, file).catch((err) => (err instanceof ParserGoneError ? this.parseIn(this.start(), file) : Promise.reject(err)));
    return this.parseIn(this.start(), file);
  }

  /** Stops a warm parser that was never used (daemon shutdown). */
  close(): void {
    this.warm?.kill('SIGKILL');
    this.warm = null;
  }

  private parseIn(child: ChildProcess, file: string): Promise<MeshSpec> {
    return new Promise((resolve, reject) => {
      let settled = false;
      child.once('message', (msg: ParserReply) => {
        settled = true;
        if (msg.ok) resolve(msg.mesh);
        else reject(new ParserError(msg.error));
      });
      child.once('exit', (code, signal) => {
        if (!settled) reject(new ParserGoneError(`manifest parser exited (${signal ?? `code ${code}`}) before parsing ${file}`));
      });
      if (!child.connected) reject(new ParserGoneError(`manifest parser exited before parsing ${file}`));
      else child.send(file);
    });
  }

  private start(): ChildProcess {
    const child = fork(fileURLToPath(new URL('../daemon/manifest-process.js', import.meta.url)), [], {
      // The daemon's own flags (--max-semi-space-size) suit the parser too; its environment is
      // the daemon's, already tuned (api/paths.ts).
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    // An idle warm parser exits by itself; it must not keep the daemon alive or crash it.
    child.unref();
    child.channel?.unref();
    child.on('error', () => {});
    child.on('exit', () => {
      if (this.warm === child) this.warm = null;
    });
    return child;
  }
}

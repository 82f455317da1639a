import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MAX_MANIFEST_BYTES, readRegularTextFile, type ParsedManifest } from '../api/index.js';
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
  private prefetched: { file: string; text: string; mesh: Promise<MeshSpec> } | null = null;

  /**
   * Gets a parser going while the daemon boots: the manifest `cell up` is about to apply is
   * parsed at once (`prefetch`), or, with none named, a parser is just loaded (`prewarm`).
   */
  begin(manifestHint: string | undefined): void {
    if (manifestHint) this.prefetch(manifestHint);
    else this.prewarm();
  }

  prewarm(): void {
    if (!this.warm) this.warm = this.start();
  }

  /**
   * Starts parsing `file` now, ahead of its apply: `cell up` names the manifest when it starts the
   * daemon, so the parse runs while the kernel boots. `parse(file)` takes this result only if the
   * file still has the same text (and the parse succeeded: a failure is redone, in case a `cwd` it
   * found missing exists by then).
   */
  prefetch(file: string): void {
    let text: string;
    try {
      text = readRegularTextFile(file, MAX_MANIFEST_BYTES);
    } catch {
      return; // The apply will report it, with the parser's own words.
    }
    const child = this.warm ?? this.start();
    this.warm = null;
    const mesh = this.parseIn(child, file, { file, text });
    mesh.catch(() => {});
    this.prefetched = { file, text, mesh };
  }

  /**
   * Takes a manifest `cell up` parsed and validated already (its `go` line), as if prefetched:
   * `parse(file)` returns it while the file has the same text, with no parser process at all.
   */
  adopt(parsed: ParsedManifest): void {
    this.prefetched = { file: parsed.file, text: parsed.text, mesh: Promise.resolve(parsed.mesh) };
  }

  async parse(file: string): Promise<MeshSpec> {
    const prefetched = this.prefetched;
    this.prefetched = null;
    if (prefetched && prefetched.file === file) {
      let text: string | null = null;
      try {
        text = readRegularTextFile(file, MAX_MANIFEST_BYTES);
      } catch {
        // Gone or unreadable now: the fresh parse below says so.
      }
      if (text === prefetched.text) {
        try {
          return await prefetched.mesh;
        } catch {
          // Parsed again below, with what is on disk now.
        }
      }
    }
    return this.parseFresh(file);
  }

  private parseFresh(file: string): Promise<MeshSpec> {
    const warm = this.warm;
    this.warm = null;
    // A warm parser may be on its way out after its idle timeout: then parse in a fresh one. A
    // fresh one gone without an answer (seen once in CI, with two `cell up` at once) gets one
    // more try too.
    return this.parseIn(warm ?? this.start(), file).catch((err) => (err instanceof ParserGoneError ? this.parseIn(this.start(), file) : Promise.reject(err)));
  }

  /** Stops a warm parser that was never used (daemon shutdown). */
  close(): void {
    this.warm?.kill('SIGKILL');
    this.warm = null;
  }

  private parseIn(child: ChildProcess, file: string, message: string | { file: string; text: string } = file): Promise<MeshSpec> {
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
      else child.send(message);
    });
  }

  private start(): ChildProcess {
    const child = fork(fileURLToPath(new URL('../daemon/manifest-process.js', import.meta.url)), [], {
      // It inherits the daemon's node options (--v8-pool-size=1) but none of its V8 flags, which
      // the daemon sets at run time (daemon/main.ts); its environment is the daemon's, already
      // tuned (api/paths.ts).
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

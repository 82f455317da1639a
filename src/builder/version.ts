import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { blake3 } from '@noble/hashes/blake3.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import type { CellSpec } from '../manifest/index.js';

const VERSION_LENGTH = 12;

/**
 * A file whose mtime or ctime is this close to the moment it was hashed may still change within
 * the same timestamp tick (coarse kernel clocks, 1-2 s on some file systems) without its stat
 * changing: its digest is not trusted on the next call (git's "racily clean" entries).
 */
export const RACY_WINDOW_MS = 2_000;

/** Source sets remembered (one per distinct cwd + globs); the oldest is dropped past this. */
const MAX_SOURCE_SETS = 1_024;

/** Reading files synchronously blocks the daemon: yield to the event loop after this long. */
const MAX_BLOCK_MS = 20;

/** What identifies a file's content without reading it, as git's index does. */
export interface FileStat {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** The file system and clock a `SourceHasher` uses; tests replace them to count or pin. */
export interface SourceHasherIo {
  /** The stat of a file, or undefined when it no longer exists. */
  stat(path: string): FileStat | undefined;
  readFile(path: string): Uint8Array;
  /** The BLAKE3 digest of a large file (see largeFileBytes), or undefined when it cannot be read. */
  hashLargeFile(path: string): Promise<Uint8Array | undefined>;
  /** Files of this size and more are hashed by `hashLargeFile`. */
  largeFileBytes: number;
  /** Wall-clock milliseconds, compared with file timestamps. */
  now(): number;
}

const STAT_OPTIONS = { throwIfNoEntry: false } as const;

/**
 * BLAKE3 is plain JavaScript here (@noble/hashes): ~25 MB/s with V8's optimizing compiler, but
 * ~1.7 MB/s in the daemon, which runs without it (see daemon/main.ts). A 20 MB source file held
 * the daemon for 12 s (no status, no probe): files from 1 MiB up are hashed by a node process of
 * their own, with the compiler, while the daemon goes on.
 */
const LARGE_FILE_BYTES = 1024 * 1024;

const HASH_FILE_SCRIPT = `
import { blake3 } from ${JSON.stringify(import.meta.resolve('@noble/hashes/blake3.js'))};
import { closeSync, openSync, readSync } from 'node:fs';
const hasher = blake3.create({});
const fd = openSync(process.argv[1], 'r');
const chunk = Buffer.allocUnsafe(1 << 20);
for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hasher.update(chunk.subarray(0, n));
closeSync(fd);
process.stdout.write(Buffer.from(hasher.digest()).toString('hex'));
`;

function hashFileInChild(path: string): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', HASH_FILE_SCRIPT, path], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } }, (err, stdout) => {
      // Unreadable or gone: as a file that vanished between the glob and the read.
      resolve(err || !/^[0-9a-f]{64}$/.test(stdout) ? undefined : Uint8Array.from(Buffer.from(stdout, 'hex')));
    });
  });
}

const realIo: SourceHasherIo = {
  stat: (path) => statSync(path, STAT_OPTIONS),
  readFile: (path) => readFileSync(path),
  hashLargeFile: hashFileInChild,
  largeFileBytes: LARGE_FILE_BYTES,
  now: () => Date.now(),
};

interface FileEntry extends FileStat {
  digest: Uint8Array;
  /** Hashed too close to its last change: read it again next time. */
  racy: boolean;
}

/** What the last call saw for one cwd + globs. */
interface SourceSet {
  /** Sorted relative paths. */
  files: string[];
  entries: Map<string, FileEntry>;
  how: string;
  version: string;
}

type VersionSpec = Pick<CellSpec, 'cwd' | 'source' | 'run' | 'env' | 'build'>;

const ZERO = new Uint8Array([0]);

function sourceSetKey(spec: Pick<CellSpec, 'cwd' | 'source'>): string {
  return `${spec.cwd}\0${spec.source.join('\0')}`;
}

/**
 * Computes cell versions, remembering each source file's stat and digest between calls so that
 * only new and changed files are read again: the daemon's version loop recomputes every cell's
 * version every `version_check_interval`.
 *
 * Each source set (cwd + globs) keeps only the files its last call saw, and at most
 * MAX_SOURCE_SETS sets are kept. Calls may overlap (the version loop and an apply): each builds
 * its own entries and commits them whole at its end; whichever commits last, the cache is valid.
 */
export class SourceHasher {
  private readonly sets = new Map<string, SourceSet>();
  private readonly io: SourceHasherIo;

  constructor(io: Partial<SourceHasherIo> = {}) {
    this.io = { ...realIo, ...io };
  }

  /**
   * The version of a cell: BLAKE3 over its spec (run, env, build) and, for each of its `source`
   * files in sorted order, its relative path, a 0 byte and the BLAKE3 digest of its content.
   * The same tree run the same way always gives the same version.
   */
  /** How many files the `source` globs of `spec` matched at its last version (undefined: not computed yet). */
  sourceFileCount(spec: Pick<CellSpec, 'cwd' | 'source'>): number | undefined {
    return this.sets.get(sourceSetKey(spec))?.files.length;
  }

  async version(spec: VersionSpec): Promise<string> {
    // How the cell is built and run is part of what it is: changing either makes a new version.
    const howJson = JSON.stringify({ run: spec.run, env: spec.env, build: spec.build ?? null });
    // One-shot BLAKE3: about half the cost of the incremental hasher, and `cell up` hashes every
    // cell of the manifest before the first start.
    if (spec.source.length === 0) return bytesToHex(blake3(utf8ToBytes(howJson))).slice(0, VERSION_LENGTH);
    // Taken before any stat: a file changed after this moment, minus the window, is racy.
    const startedAt = this.io.now();
    // Loaded here, for cells that list source files: ~100 KB of code (tinyglobby, picomatch, fdir)
    // the daemon would otherwise load on the path of every start.
    const { glob } = await import('tinyglobby');
    const files = (await glob(spec.source, { cwd: spec.cwd, onlyFiles: true, dot: false, ignore: ['**/node_modules/**'] })).sort();

    const key = sourceSetKey(spec);
    const previous = this.sets.get(key);
    const before = previous?.entries ?? new Map<string, FileEntry>();
    const entries = new Map<string, FileEntry>();
    const present: string[] = [];
    let changed = previous === undefined || previous.files.length !== files.length;
    let blockedSince = performance.now();
    for (const rel of files) {
      const path = `${spec.cwd}/${rel}`;
      const stat = this.io.stat(path);
      // Removed since the glob: as if the glob had not seen it.
      if (stat === undefined) {
        changed = true;
        continue;
      }
      const cached = before.get(rel);
      if (cached && !cached.racy && sameStat(cached, stat)) {
        entries.set(rel, cached);
        present.push(rel);
        if (!changed && previous!.files[present.length - 1] !== rel) changed = true;
        continue;
      }
      let digest: Uint8Array | undefined;
      if (stat.size >= this.io.largeFileBytes) {
        digest = await this.io.hashLargeFile(path);
      } else {
        const content = readIfPresent(this.io, path);
        digest = content === undefined ? undefined : blake3(content);
      }
      if (digest === undefined) {
        changed = true;
        continue;
      }
      const entry: FileEntry = {
        dev: stat.dev,
        ino: stat.ino,
        size: stat.size,
        mtimeMs: stat.mtimeMs,
        ctimeMs: stat.ctimeMs,
        digest,
        racy: Math.max(stat.mtimeMs, stat.ctimeMs) > startedAt - RACY_WINDOW_MS,
      };
      entries.set(rel, entry);
      present.push(rel);
      if (!changed && (cached === undefined || !equalBytes(cached.digest, digest) || previous!.files[present.length - 1] !== rel)) changed = true;
      if (performance.now() - blockedSince > MAX_BLOCK_MS) {
        await nextTurn();
        blockedSince = performance.now();
      }
    }

    let version: string;
    if (!changed && previous!.how === howJson) {
      version = previous!.version;
    } else {
      // NOTE: since the stat cache, sources enter the version as per-file digests rather than
      // their raw bytes: every cell with sources got a new version string once, at that upgrade.
      const hasher = blake3.create({});
      hasher.update(utf8ToBytes(howJson));
      for (const rel of present) {
        hasher.update(utf8ToBytes(rel));
        hasher.update(ZERO);
        hasher.update(entries.get(rel)!.digest);
      }
      version = bytesToHex(hasher.digest()).slice(0, VERSION_LENGTH);
    }
    // Replacing the set drops the entries of files this call did not see.
    this.sets.delete(key);
    this.sets.set(key, { files: present, entries, how: howJson, version });
    if (this.sets.size > MAX_SOURCE_SETS) this.sets.delete(this.sets.keys().next().value!);
    return version;
  }
}

function sameStat(a: FileStat, b: FileStat): boolean {
  return a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.size === b.size && a.ino === b.ino && a.dev === b.dev;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function readIfPresent(io: SourceHasherIo, path: string): Uint8Array | undefined {
  try {
    return io.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

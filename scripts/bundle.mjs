// Bundles each process entry point (CLI, daemon, manifest parser, gateway) into one file, written
// over tsc's output at the same path under dist/. Why: node 20 loads an ESM graph file by file
// (zod alone is ~100 files and 120 ms here); one file per process starts 3-4x faster, which is
// most of `cell status` and of the time before the first cell is spawned. tsc still emits every
// module (and the .d.ts files of the SDK, which cells import unbundled).
//
// Paths that code computes from import.meta.url stay right because every bundle lands at the
// depth of its entry (dist/<part>/<file>.js) and such paths are written as '../<part>/<file>.js'.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entries = ['cli/quick', 'cli/main', 'daemon/main', 'daemon/manifest-process', 'gateway/main'];

const sdkAsExternal = {
  name: 'sdk-as-external',
  setup(b) {
    b.onResolve({ filter: /\/sdk\/index\.js$/ }, (args) => (args.importer.includes('/src/sdk/') ? undefined : { path: args.path, external: true }));
  },
};

// Chunk names carry a content hash: drop the previous build's, or they pile up.
rmSync(join(root, 'dist', 'chunks'), { recursive: true, force: true });

await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(entries.map((e) => [e, `src/${e}.ts`])),
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  // Code reached only through import() (the manifest parser, the foreground daemon) goes in
  // shared chunks loaded on demand: `cell --help` should not compile zod. Chunks sit at depth 1
  // too (dist/chunks/), so the '../<part>/<file>.js' rule holds for code that lands in them.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  target: 'node20',
  // Native addons stay in node_modules, loaded by their own require at run time.
  external: ['better-sqlite3', 'msgpackr-extract'],
  // Bundled CommonJS packages (pino, yaml, commander) call require() for node's builtins.
  banner: { js: "import { createRequire as __cellCreateRequire } from 'node:module'; const require = __cellCreateRequire(import.meta.url);" },
  // The SDK stays its own (unbundled) module: the daemon loads it only for meshes with SDK cells,
  // and cells import it from dist/sdk themselves.
  plugins: [sdkAsExternal],
  allowOverwrite: true,
  logLevel: 'warning',
});

// Plain JavaScript that tsc does not emit: the warm spare's prelude (src/supervisor/warm-node.ts
// finds it beside itself, in src when tests run the sources, in dist when the build runs).
mkdirSync(join(root, 'dist', 'supervisor'), { recursive: true });
copyFileSync(join(root, 'src', 'supervisor', 'warm-node-prelude.cjs'), join(root, 'dist', 'supervisor', 'warm-node-prelude.cjs'));

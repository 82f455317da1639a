// The quick reading of cell.yaml (js-yaml) must read every manifest it does not give up on
// exactly as the positioned parse (the `yaml` library) does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { parse as parseWithYamlLibrary } from 'yaml';
import { parseManifest, parseWithPositions } from '../../src/manifest/load.js';
import { readYamlQuickly } from '../../src/manifest/quick-yaml.js';

const root = path.resolve(import.meta.dirname, '../..');

const MANIFESTS: Record<string, string> = {
  demo: readFileSync(path.join(root, 'examples/demo/cell.yaml'), 'utf8'),
  greeter: readFileSync(path.join(root, 'examples/greeter/cell.yaml'), 'utf8'),
  'every key': `# all of it
gateway: { port: 0 }
version_check_interval: 30s
logs: { max_size: 5MB, keep: 2 }
cells:
  db:
    run: python3 -m http.server $PORT
    env: { GREETING: "hello world", QUOTED_NUMBER: "1.10", FLAG: true, EMPTY: "" }
    health: { tcp: {}, interval: 500ms, timeout: 1s, retries: 2, grace: 5s }
    restart: { policy: on-failure, backoff: 1s, max_backoff: 8s, max_retries: 3, reset_after: 10s, warm: false }
    stop: { signal: SIGINT, timeout: 2s, kill_after: 1s }
  api:
    run: |
      node server.js --port "$PORT"
    depends_on: [db]
    instances: 2
    source: ['src/**/*.ts', "package.json"]
    health:
      http: { path: /healthz }
  worker:
    run: >-
      node worker.js
      --verbose
    depends_on:
      - api
      - db
    health: { exec: "test -f /tmp/ready" }
    build: npm run build && echo 'built'
    lazy: false
`,
  'flow style': '{cells: {a: {run: "node a.js", depends_on: [b]}, b: {run: node b.js, instances: 0x3}}}\n',
};

test('quick yaml - reads the example and test manifests, and as the yaml library does', () => {
  for (const [name, text] of Object.entries(MANIFESTS)) {
    const quick = readYamlQuickly(text);
    assert.notEqual(quick, undefined, `${name}: the quick reading gave up`);
    assert.deepEqual(quick, parseWithYamlLibrary(text), name);
  }
});

test('quick yaml - a manifest gives the same MeshSpec on both paths', () => {
  for (const [name, text] of Object.entries(MANIFESTS)) {
    const file = path.join(root, 'examples/demo/cell.yaml');
    assert.deepEqual(parseManifest(text, file), parseWithPositions(text, file), name);
  }
});

test('quick yaml - gives up where only the positioned parse can be sure', () => {
  const cases: Record<string, string> = {
    'a syntax error': 'cells:\n  web:\n    run: "node\n',
    'a duplicate key': 'cells:\n  web: {run: a}\n  web: {run: b}\n',
    'two documents': 'cells: {}\n---\ncells: {}\n',
    'an alias to a map': 'base: &b {run: x}\ncells:\n  web: *b\n',
    'a merge key': 'base: &b {run: x}\ncells:\n  web: {<<: *b}\n',
    'a number-looking env value': 'cells:\n  web:\n    run: x\n    env: { VERSION: 1.10 }\n',
    'a tag': 'cells:\n  web: !thing {run: x}\n',
    'an anchor': 'cells:\n  web: &w {run: x}\n',
    'a null key': 'cells:\n  web: {run: x}\n  ~: {run: y}\n',
    'an empty list entry': 'cells:\n  web:\n    run: x\n    depends_on:\n    -\n  -\n',
    'a quoted scalar over two lines': "cells:\n  web:\n    run: 'node\n      server.js'\n",
    'a flow map over two lines': 'cells:\n  web: {run: x,\n    instances: 2}\n',
    'a tab': 'cells:\n  web:\n    run: x\t\n',
    'an explicit key': 'cells:\n  ? web\n  : {run: x}\n',
  };
  for (const [name, text] of Object.entries(cases)) assert.equal(readYamlQuickly(text), undefined, name);
});

test('quick yaml - numbers, booleans and nulls resolve as YAML 1.2 core (not YAML 1.1)', () => {
  for (const scalar of ['1_000', '0b101', '-0x1A', '0x1A', '0o17', '017', '1e3', '.5', '1.', '+12', '-.inf', '.NaN', 'yes', 'on', 'No', '~', 'Null', '', 'TRUE', 'tRue', '2001-12-14', '1:20', '=']) {
    const text = `a: ${scalar}\n`;
    assert.deepEqual(readYamlQuickly(text), parseWithYamlLibrary(text), JSON.stringify(scalar));
  }
});

/** The reading of `text` by the yaml library, or undefined where it finds an error. */
function yamlLibraryReading(text: string): { value: unknown } | undefined {
  try {
    return { value: parseWithYamlLibrary(text) };
  } catch {
    return undefined;
  }
}

/** Where the yaml library finds an error the quick reading gives up; elsewhere it reads the same or gives up. */
function assertAgrees(text: string): void {
  const expected = yamlLibraryReading(text);
  const quick = readYamlQuickly(text);
  if (expected === undefined) assert.equal(quick, undefined, `read what the yaml library rejects: ${JSON.stringify(text)}`);
  else if (quick !== undefined) assert.deepEqual(quick, expected.value, JSON.stringify(text));
}

test('quick yaml - generated documents: rejected where the yaml library rejects them, else read alike', () => {
  const piece = fc.constantFrom(
    ...['a', 'b', 'x1', '-', '- ', ': ', ':', ' ', '  ', '    ', '\n', '\n  ', '\n    ', '\n      ', '"', "'", '[', ']', '{', '}', ','],
    ...['#', ' #c', '|', '>', '|-', '1', '0x1', '.5', 'true', '~', '&&', '*', '&a', '*a', '?', '!', '\\', 'é', '---', '...', '%'],
  );
  const previousWarn = process.emitWarning;
  process.emitWarning = () => {}; // the yaml library warns on odd anchors and tags
  try {
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 24 }), (pieces) => assertAgrees(`cells:\n  w:\n    run: ${pieces.join('')}\n`)),
      { numRuns: 5000, seed: 3 },
    );
  } finally {
    process.emitWarning = previousWarn;
  }
});

test('quick yaml - random plain scalars resolve as the yaml library resolves them', () => {
  const chars = fc.constantFrom(...'0123456789+-._eExXoOabfinNtTlsuyY~: '.split(''));
  fc.assert(
    fc.property(fc.string({ unit: chars, minLength: 1, maxLength: 8 }), (scalar) => assertAgrees(`a: ${scalar}\n`)),
    { numRuns: 3000, seed: 42 },
  );
});

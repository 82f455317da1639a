import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadManifest, parseManifest, type CellSpec, type MeshSpec } from '../../src/manifest/index.js';

function cell(mesh: MeshSpec, name: string): CellSpec {
  const found = mesh.cells.find((c) => c.name === name);
  assert.ok(found, `no cell ${name}`);
  return found;
}

test('manifest parse - a minimal manifest gets every default', () => {
  const mesh = parseManifest('cells:\n  web:\n    run: node server.js\n', 'cell.yaml');
  const dir = process.cwd();
  assert.deepEqual(mesh, {
    file: path.join(dir, 'cell.yaml'),
    dir,
    cells: [
      {
        name: 'web',
        run: 'node server.js',
        cwd: dir,
        env: {},
        dependsOn: [],
        awaitsCompletionOf: [],
        instances: 1,
        health: { kind: 'process', intervalMs: 5000, timeoutMs: 2000, retries: 3, graceMs: 30000 },
        restart: { policy: 'always', backoffMs: 2000, maxBackoffMs: 60000, maxRetries: 5, resetAfterMs: 30000, warm: true },
        stop: { signal: 'SIGTERM', timeoutMs: 5000, killAfterMs: 2000 },
        source: [],
      },
    ],
    gateway: { port: 0, holdMs: 10_000 },
    versionCheckIntervalMs: 60000,
    logs: { maxBytes: 10 * 1024 * 1024, keep: 3 },
  });
});

test('manifest parse - a full manifest maps snake_case to the normalized spec', () => {
  const mesh = parseManifest(
    `gateway:
  port: 8080
  hold: 0
version_check_interval: 90s
logs: { max_size: 512KB, keep: 0 }
cells:
  db:
    run: postgres
    health:
      exec: pg_isready
      interval: 1.5s
      timeout: 250ms
      retries: 5
      grace: 2m
  api:
    run: node api.js
    depends_on: [db]
    instances: 3
    restart: { policy: on-failure, backoff: 500ms, max_backoff: 10s, max_retries: 0, reset_after: 1m30s, warm: false }
    stop: { signal: INT, timeout: 1s, kill_after: 0 }
    source: "src/**/*.ts"
    build: npm run build
`,
    'cell.yaml',
  );
  assert.deepEqual(mesh.gateway, { port: 8080, holdMs: 0 });
  assert.equal(mesh.versionCheckIntervalMs, 90_000);
  assert.deepEqual(mesh.logs, { maxBytes: 512 * 1024, keep: 0 });
  assert.deepEqual(cell(mesh, 'db').health, { kind: 'exec', command: 'pg_isready', intervalMs: 1500, timeoutMs: 250, retries: 5, graceMs: 120_000 });
  const api = cell(mesh, 'api');
  assert.deepEqual(api.dependsOn, ['db']);
  assert.deepEqual(api.awaitsCompletionOf, []);
  assert.equal(api.instances, 3);
  assert.deepEqual(api.restart, { policy: 'on-failure', backoffMs: 500, maxBackoffMs: 10_000, maxRetries: 0, resetAfterMs: 90_000, warm: false });
  assert.deepEqual(api.stop, { signal: 'SIGINT', timeoutMs: 1000, killAfterMs: 0 });
  assert.deepEqual(api.source, ['src/**/*.ts']);
  assert.equal(api.build, 'npm run build');
  assert.equal('build' in cell(mesh, 'db'), false);
});

test('manifest parse - cells keep file order', () => {
  const mesh = parseManifest(
    `# comment
cells:
  zeta:
    run: x

  alpha: { run: y }
  mid:
    run: z
`,
    'cell.yaml',
  );
  assert.deepEqual(
    mesh.cells.map((c) => c.name),
    ['zeta', 'alpha', 'mid'],
  );
});

test('manifest parse - http and tcp checks default to the instance $PORT', () => {
  const mesh = parseManifest(
    `cells:
  a: { run: x, health: { http: {} } }
  b: { run: x, health: { http: { path: /healthz, port: 9000 } } }
  c: { run: x, health: { tcp: {} } }
  d:
    run: x
    health:
      tcp:
      retries: 1
  e: { run: x, health: { tcp: { port: $PORT } } }
`,
    'cell.yaml',
  );
  const timing = { intervalMs: 5000, timeoutMs: 2000, retries: 3, graceMs: 30000 };
  assert.deepEqual(cell(mesh, 'a').health, { kind: 'http', path: '/', port: '$PORT', ...timing });
  assert.deepEqual(cell(mesh, 'b').health, { kind: 'http', path: '/healthz', port: 9000, ...timing });
  assert.deepEqual(cell(mesh, 'c').health, { kind: 'tcp', port: '$PORT', ...timing });
  assert.deepEqual(cell(mesh, 'd').health, { kind: 'tcp', port: '$PORT', ...timing, retries: 1 });
  assert.deepEqual(cell(mesh, 'e').health, { kind: 'tcp', port: '$PORT', ...timing });
});

test('manifest parse - env values are stringified and numbers keep their spelling', () => {
  const mesh = parseManifest(
    `cells:
  web:
    run: x
    env:
      NAME: web
      PORT_OFFSET: 5
      DEBUG: true
      VERSION: 1.10
      RATIO: 0.5
      QUOTED: "007"
      _private: ""
`,
    'cell.yaml',
  );
  assert.deepEqual(cell(mesh, 'web').env, {
    NAME: 'web',
    PORT_OFFSET: '5',
    DEBUG: 'true',
    VERSION: '1.10',
    RATIO: '0.5',
    QUOTED: '007',
    _private: '',
  });
});

test('manifest parse - cwd resolves against the manifest directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cell-manifest-'));
  try {
    mkdirSync(path.join(dir, 'web'));
    mkdirSync(path.join(dir, 'shared'));
    const file = path.join(dir, 'cell.yaml');
    writeFileSync(
      file,
      `cells:
  web: { run: x, cwd: ./web }
  api: { run: x }
  abs: { run: x, cwd: ${JSON.stringify(path.join(dir, 'shared'))} }
`,
    );
    const mesh = loadManifest(file);
    assert.equal(mesh.file, file);
    assert.equal(mesh.dir, dir);
    assert.equal(cell(mesh, 'web').cwd, path.join(dir, 'web'));
    assert.equal(cell(mesh, 'api').cwd, dir);
    assert.equal(cell(mesh, 'abs').cwd, path.join(dir, 'shared'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('manifest parse - empty optional maps and lists mean their defaults', () => {
  const mesh = parseManifest(
    `gateway:
logs:
cells:
  web:
    run: x
    env:
    depends_on:
    restart:
    stop:
    health:
`,
    'cell.yaml',
  );
  const web = cell(mesh, 'web');
  assert.deepEqual(web.env, {});
  assert.deepEqual(web.dependsOn, []);
  assert.equal(web.health.kind, 'process');
  assert.equal(web.restart.policy, 'always');
  assert.equal(web.stop.signal, 'SIGTERM');
  assert.deepEqual(mesh.gateway, { port: 0, holdMs: 10_000 });
});

test('manifest parse - max_backoff follows a long backoff when not set', () => {
  const mesh = parseManifest('cells:\n  web:\n    run: x\n    restart: { backoff: 90s }\n', 'cell.yaml');
  assert.equal(cell(mesh, 'web').restart.maxBackoffMs, 90_000);
});

test('manifest parse - stop signals are normalized to SIG names', () => {
  for (const [written, signal] of [
    ['TERM', 'SIGTERM'],
    ['sigquit', 'SIGQUIT'],
    ['SIGUSR2', 'SIGUSR2'],
    ['KILL', 'SIGKILL'],
  ]) {
    const mesh = parseManifest(`cells:\n  web:\n    run: x\n    stop: { signal: ${written} }\n`, 'cell.yaml');
    assert.equal(cell(mesh, 'web').stop.signal, signal);
  }
});

test('manifest parse - merge keys share settings between cells', () => {
  const mesh = parseManifest(
    `cells:
  api: &service
    run: node api.js
    instances: 2
    restart: { policy: never }
  worker:
    <<: *service
    run: node worker.js
`,
    'cell.yaml',
  );
  const worker = cell(mesh, 'worker');
  assert.equal(worker.run, 'node worker.js');
  assert.equal(worker.instances, 2);
  assert.equal(worker.restart.policy, 'never');
});

test('manifest parse - a byte order mark is ignored', () => {
  const mesh = parseManifest('\uFEFFcells:\n  web:\n    run: x\n', 'cell.yaml');
  assert.equal(cell(mesh, 'web').run, 'x');
  assert.throws(() => parseManifest('\uFEFFcells:\n  web:\n    rn: x\n', 'cell.yaml'), /cell\.yaml:2:3: cells\.web\.run: required key is missing$/);
});

test('manifest parse - depends_on in compose\'s long form: a map of cell name to { condition }', () => {
  const mesh = parseManifest(
    `cells:
  migrate:
    run: ./migrate
    restart: { policy: on-failure }
  seed:
    run: ./seed
    restart: { policy: never }
  db:
    run: postgres
  api:
    run: node api.js
    depends_on:
      db:
      migrate: { condition: completed }
      seed: { condition: healthy }
`,
    'cell.yaml',
  );
  const api = cell(mesh, 'api');
  assert.deepEqual(api.dependsOn, ['db', 'migrate', 'seed']);
  assert.deepEqual(api.awaitsCompletionOf, ['migrate']);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DependencyCycleError } from '../../src/graph/index.js';
import { ManifestError, loadManifest, parseManifest } from '../../src/manifest/index.js';

interface Expected {
  key: string | undefined;
  line: number;
  column?: number;
  /** A distinctive part of the one-line message. */
  says: string;
  /** And what it must not say. */
  not?: string;
}

function expectManifestError(yaml: string, expected: Expected, file = 'cell.yaml'): ManifestError {
  let caught: unknown;
  try {
    parseManifest(yaml, file);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ManifestError, `expected a ManifestError, got ${String(caught)}`);
  const err = caught;
  assert.equal(err.name, 'ManifestError');
  assert.equal(err.key, expected.key, err.message);
  assert.equal(err.line, expected.line, err.message);
  if (expected.column !== undefined) assert.equal(err.column, expected.column, err.message);
  assert.ok(!err.message.includes('\n'), `message has a newline: ${JSON.stringify(err.message)}`);
  assert.ok(err.message.includes(expected.says), `"${err.message}" should include "${expected.says}"`);
  if (expected.not) assert.ok(!err.message.includes(expected.not), err.message);
  const where = `${file}:${expected.line}:${err.column}: `;
  assert.ok(err.message.startsWith(expected.key ? `${where}${expected.key}: ` : where), err.message);
  return err;
}

test('manifest errors - an invalid duration names file, line, column and key on one line', () => {
  const err = expectManifestError(
    `cells:
  db:
    run: postgres
  api:
    run: node api.js
    health:
      http: { path: /health }
      interval: 5 parsecs
`,
    { key: 'cells.api.health.interval', line: 8, column: 7, says: 'invalid duration' },
  );
  assert.equal(err.message, 'cell.yaml:8:7: cells.api.health.interval: invalid duration "5 parsecs" (use e.g. 500ms, 2s, 1m)');
  assert.equal(err.reason, 'invalid duration "5 parsecs" (use e.g. 500ms, 2s, 1m)');
});

test('manifest errors - the file is shown as given', () => {
  expectManifestError('cells: {}\n', { key: 'cells', line: 1, says: 'at least one cell' }, './deploy/cell.yaml');
});

test('manifest errors - a misspelt key suggests the known one', () => {
  expectManifestError(
    `cells:
  web:
    run: node web.js
    helth:
      http: {}
`,
    { key: 'cells.web.helth', line: 4, column: 5, says: 'unknown key "helth" (did you mean "health"?)' },
  );
});

test('manifest errors - a misspelt cells key is reported as unknown at its line, not as cells missing', () => {
  const err = expectManifestError('cels:\n  web:\n    run: x\n', { key: 'cels', line: 1, column: 1, says: 'unknown key "cels" (did you mean "cells"?)' });
  assert.equal(err.message, 'cell.yaml:1:1: cels: unknown key "cels" (did you mean "cells"?)');
  expectManifestError('# my mesh\ngateway: { port: 80 }\ncels:\n  web:\n    run: x\n', { key: 'cels', line: 3, column: 1, says: 'unknown key "cels" (did you mean "cells"?)', not: 'required' });
  // Nothing close to "cells": the missing key is still what to fix.
  expectManifestError('services:\n  web:\n    run: x\n', { key: 'cells', line: 1, says: 'required key is missing' });
});

test('manifest errors - a camelCase key suggests its snake_case spelling', () => {
  expectManifestError(
    `cells:
  web:
    run: node web.js
    restart:
      maxBackoff: 10s
`,
    { key: 'cells.web.restart.maxBackoff', line: 5, says: '(did you mean "max_backoff"?)' },
  );
});

test('manifest errors - an unknown key far from any known key has no suggestion', () => {
  expectManifestError(
    `gatway:
  port: 80
cells:
  web:
    run: x
    colour: red
`,
    { key: 'gatway', line: 1, column: 1, says: 'unknown key "gatway" (did you mean "gateway"?)' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    colour: red
`,
    { key: 'cells.web.colour', line: 4, says: 'unknown key "colour"', not: 'did you mean' },
  );
});

test('manifest errors - a duplicate key points at the repeat and at the first definition', () => {
  expectManifestError(
    `cells:
  web:
    run: a
    instances: 2
    run: b
`,
    { key: 'cells.web.run', line: 5, column: 5, says: 'duplicate key "run" (first defined on line 3)' },
  );
});

test('manifest errors - a YAML syntax error keeps the position the parser found', () => {
  expectManifestError(
    `cells:
  web:
    run: "unterminated
    instances: 2
`,
    { key: undefined, line: 3, says: 'invalid YAML: ' },
  );
  expectManifestError('cells:\n\tweb:\n', { key: undefined, line: 2, says: 'Tabs are not allowed' });
  expectManifestError('cells: {}\n---\ncells: {}\n', { key: undefined, line: 2, says: 'single document' });
});

test('manifest errors - a wrong type says what was expected and what was found', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    instances: two
`,
    { key: 'cells.web.instances', line: 4, column: 5, says: 'expected an integer, got "two"' },
  );
  expectManifestError(
    `cells:
  web:
    run: [node, web.js]
`,
    { key: 'cells.web.run', line: 3, says: 'expected a string, got a list' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    source: 5
`,
    { key: 'cells.web.source', line: 4, says: 'expected a glob or a list of globs, got 5' },
  );
});

test('manifest errors - numbers out of range', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    instances: -1
`,
    { key: 'cells.web.instances', line: 4, says: 'must be at least 0, got -1' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    instances: 1001
`,
    { key: 'cells.web.instances', line: 4, says: 'must be at most 1000, got 1001' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    health:
      http: { port: 70000 }
`,
    { key: 'cells.web.health.http.port', line: 5, says: 'port must be between 1 and 65535, got 70000' },
  );
});

test('manifest errors - a cell without run, or with an empty one', () => {
  expectManifestError(
    `cells:
  web:
    cwd: .
`,
    { key: 'cells.web.run', line: 2, column: 3, says: 'required key is missing' },
  );
  expectManifestError(
    `cells:
  web:
    run: "  "
`,
    { key: 'cells.web.run', line: 3, says: 'must not be empty' },
  );
});

test('manifest errors - invalid and reserved cell names', () => {
  expectManifestError(
    `cells:
  web:
    run: x
  Web_2:
    run: x
`,
    { key: 'cells.Web_2', line: 4, column: 3, says: 'invalid cell name "Web_2"' },
  );
  expectManifestError(
    `cells:
  gateway:
    run: x
`,
    { key: 'cells.gateway', line: 2, says: 'cell name "gateway" is reserved' },
  );
});

test('manifest errors - health needs exactly one check', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    health:
      http: {}
      tcp: {}
`,
    { key: 'cells.web.health.tcp', line: 6, says: 'only one of http, tcp, exec, ping may be set, and http is already set' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    health:
      interval: 1s
`,
    { key: 'cells.web.health', line: 4, says: 'needs one of http, tcp, exec, ping' },
  );
});

test('manifest errors - an http path must start with a slash', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    health: { http: { path: health } }
`,
    { key: 'cells.web.health.http.path', line: 4, says: 'path must start with "/", got "health"' },
  );
});

test('manifest errors - restart policy, backoff ordering and stop signal', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    restart: { policy: sometimes }
`,
    { key: 'cells.web.restart.policy', line: 4, says: 'expected one of always, on-failure, never, got "sometimes"' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    restart:
      backoff: 5s
      max_backoff: 1s
`,
    { key: 'cells.web.restart.max_backoff', line: 6, says: 'must be at least backoff (5s), got 1s' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    stop: { signal: SIGSTOP }
`,
    { key: 'cells.web.stop.signal', line: 4, says: 'invalid signal "SIGSTOP" (use one of SIGTERM' },
  );
});

test('manifest errors - env names and values', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    env:
      OK: 1
      1BAD: x
`,
    { key: 'cells.web.env.1BAD', line: 6, column: 7, says: 'invalid environment variable name "1BAD"' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    env:
      NESTED: { a: 1 }
`,
    { key: 'cells.web.env.NESTED', line: 5, says: 'expected a string, number or boolean, got a map' },
  );
});

test('manifest errors - unknown, self and repeated dependencies', () => {
  expectManifestError(
    `cells:
  web:
    run: x
    depends_on: [api, db]
  api:
    run: x
`,
    { key: 'cells.web.depends_on[1]', line: 4, column: 23, says: 'unknown cell "db" (cells: api, web)' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    depends_on:
      - web
`,
    { key: 'cells.web.depends_on[0]', line: 5, says: 'cannot depend on itself' },
  );
  expectManifestError(
    `cells:
  api: { run: x }
  web: { run: x, depends_on: [api, api] }
`,
    { key: 'cells.web.depends_on[1]', line: 3, says: '"api" is listed twice' },
  );
});

test('manifest errors - a dependency cycle points at its first cell', () => {
  const err = expectManifestError(
    `cells:
  lone:
    run: x
  a:
    run: x
    depends_on: [b]
  b:
    run: x
    depends_on: [c]
  c:
    run: x
    depends_on: [a]
`,
    { key: 'cells', line: 4, column: 3, says: 'cells: dependency cycle: a -> b -> c -> a' },
  );
  assert.equal(err.reason, 'dependency cycle: a -> b -> c -> a');
  assert.ok(err.cause instanceof DependencyCycleError);
  assert.deepEqual(err.cause.cycle, ['a', 'b', 'c', 'a']);
});

test('manifest errors - cwd must exist and be a directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cell-manifest-'));
  try {
    writeFileSync(path.join(dir, 'notes.txt'), 'x');
    const file = path.join(dir, 'cell.yaml');
    expectManifestError(
      `cells:
  web:
    run: x
    cwd: ./missing
`,
      { key: 'cells.web.cwd', line: 4, says: 'directory "./missing" does not exist' },
      file,
    );
    expectManifestError(
      `cells:
  web:
    run: x
    cwd: notes.txt
`,
      { key: 'cells.web.cwd', line: 4, says: '"notes.txt" is not a directory' },
      file,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('manifest errors - an empty file, a list, and a missing or empty cells map', () => {
  expectManifestError('', { key: undefined, line: 1, says: 'the manifest is empty' });
  expectManifestError('- web\n', { key: undefined, line: 1, says: 'must be a map with a "cells" key, got a list' });
  expectManifestError('gateway: { port: 80 }\n', { key: 'cells', line: 1, says: 'required key is missing' });
  expectManifestError('gateway:\n  port: 80\ncells: {}\n', { key: 'cells', line: 3, says: 'must define at least one cell' });
  expectManifestError('cells: [web, api]\n', { key: 'cells', line: 1, says: 'expected a map, got a list' });
});

test('manifest errors - top-level settings: sizes, durations and ports', () => {
  expectManifestError(
    `logs:
  max_size: 10 MiB
cells:
  web: { run: x }
`,
    { key: 'logs.max_size', line: 2, says: 'invalid size "10 MiB" (use e.g. 512KB, 10MB, 1GB)' },
  );
  expectManifestError(
    `version_check_interval: 0
cells:
  web: { run: x }
`,
    { key: 'version_check_interval', line: 1, says: 'must be longer than 0ms' },
  );
  expectManifestError(
    `version_check_interval: 1ms
cells:
  web: { run: x }
`,
    { key: 'version_check_interval', line: 1, says: 'must be at least 100ms (each check looks at every source file)' },
  );
  // No time to become healthy: every start would fail, a crash loop by configuration.
  expectManifestError(
    `cells:
  web:
    run: x
    health: { tcp: {}, grace: 0 }
`,
    { key: 'cells.web.health.grace', line: 4, says: 'must be longer than 0ms' },
  );
  expectManifestError(
    `gateway: { port: "eighty" }
cells:
  web: { run: x }
`,
    { key: 'gateway.port', line: 1, says: 'expected an integer, got "eighty"' },
  );
  expectManifestError(
    `cells:
  web:
    run: x
    restart: { backoff: 1000h }
`,
    { key: 'cells.web.restart.backoff', line: 4, says: 'duration "1000h" is too long' },
  );
});

test('manifest errors - the error earliest in the file wins, whatever the schema order', () => {
  // `instances` comes before `build` in the schema, but `build` comes first in the file.
  expectManifestError(
    `cells:
  web:
    build: ""
    run: x
    instances: two
  api:
    run: [1]
`,
    { key: 'cells.web.build', line: 3, says: 'must not be empty' },
  );
  // Checks that need the file system come after shape errors anywhere in the file.
  expectManifestError(
    `cells:
  web:
    run: x
    cwd: ./does-not-exist
    depends_on: [nope]
  api:
    run: x
    health: { tcp: { port: 0 } }
`,
    { key: 'cells.api.health.tcp.port', line: 8, says: 'port must be between 1 and 65535, got 0' },
  );
});

test('manifest errors - loadManifest reports a missing file as a ManifestError', () => {
  const file = path.join(tmpdir(), 'cell-no-such-dir', 'cell.yaml');
  assert.throws(
    () => loadManifest(file),
    (err: unknown) => {
      assert.ok(err instanceof ManifestError);
      assert.equal(err.message, `${file}: file not found`);
      assert.equal(err.line, undefined);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
      return true;
    },
  );
});

test('manifest errors - ManifestError survives a round trip through JSON', () => {
  const err = expectManifestError('cells:\n  web:\n    run: x\n    instances: two\n', {
    key: 'cells.web.instances',
    line: 4,
    says: 'expected an integer',
  });
  const json = JSON.parse(JSON.stringify(err));
  assert.equal(json.name, 'ManifestError');
  const back = ManifestError.fromJSON(json);
  assert.ok(back instanceof ManifestError);
  assert.deepEqual(
    { message: back.message, file: back.file, line: back.line, column: back.column, key: back.key, reason: back.reason },
    { message: err.message, file: err.file, line: err.line, column: err.column, key: err.key, reason: err.reason },
  );
});

test('manifest errors - a reason with a newline is still a one-line message', () => {
  const err = new ManifestError({ file: 'cell.yaml', line: 1, column: 1, key: 'cells', reason: 'two\nlines' });
  assert.equal(err.message, 'cell.yaml:1:1: cells: two lines');
});

test('manifest errors - a file that is one long scalar (cell -f /etc/passwd) is quoted cut to 80 characters', () => {
  const passwd = Array.from({ length: 30 }, (_, i) => `user${i}:x:${1000 + i}:${1000 + i}:User ${i}:/home/user${i}:/bin/bash`).join('\n') + '\n';
  const err = expectManifestError(passwd, { key: undefined, line: 1, column: 1, says: 'the manifest must be a map with a "cells" key, got "user0:x:1000' });
  const quoted = err.reason.slice(err.reason.indexOf('got ') + 4);
  assert.equal(quoted, JSON.stringify(`${passwd.replace(/\n/g, ' ').slice(0, 80)}...`));
  assert.ok(err.message.length < 200, `message of ${err.message.length} characters: ${err.message}`);
});

test('manifest errors - every quoted piece of the source is cut to 80 characters with an ellipsis', () => {
  const long = 'x'.repeat(500);
  const cut = `${'x'.repeat(80)}...`;
  const cases: [string, Expected][] = [
    [`cells:\n  db:\n    run: node x\n    depends_on: [${long}]\n`, { key: 'cells.db.depends_on[0]', line: 4, says: `unknown cell "${cut}" (cells: db)` }],
    [`cells:\n  db:\n    run: node x\n    health: { interval: ${long} }\n`, { key: 'cells.db.health.interval', line: 4, says: `invalid duration "${cut}" (use` }],
    [`cells:\n  db:\n    run: node x\n    cwd: ./${'x'.repeat(200)}\n`, { key: 'cells.db.cwd', line: 4, says: `directory "./${'x'.repeat(78)}..." does not exist` }],
    // Too long a name for the file system: its message names the whole path, cut too.
    [`cells:\n  db:\n    run: node x\n    cwd: ./${long}\n`, { key: 'cells.db.cwd', line: 4, says: `cannot use directory "./${'x'.repeat(78)}...": ENAMETOOLONG` }],
    [`cells:\n  db:\n    run: node x\n    ${long}: 1\n`, { key: `cells.db["${cut}"]`, line: 4, says: `unknown key "${cut}"` }],
    [`cells:\n  db:\n    run: node x\n    env: { "a ${long}": 1 }\n`, { key: `cells.db.env["a ${'x'.repeat(78)}..."]`, line: 4, says: `invalid environment variable name "a ${'x'.repeat(78)}..."` }],
    [`cells:\n  db:\n    run: node x\n    restart: { policy: ${long} }\n`, { key: 'cells.db.restart.policy', line: 4, says: `got "${cut}"` }],
  ];
  for (const [yaml, expected] of cases) {
    const err = expectManifestError(yaml, expected);
    assert.ok(err.message.length < 400, `message of ${err.message.length} characters: ${err.message}`);
  }
});

test('manifest errors - depends_on in its long form: a bad condition, a completion that never comes, an unknown or repeated cell', () => {
  const mesh = (deps: string, migrateRestart = 'restart: { policy: on-failure }') => `cells:
  migrate:
    run: ./migrate
    ${migrateRestart}
  api:
    run: node api.js
    depends_on:
${deps}
`;
  expectManifestError(mesh('      migrate: { condition: done }'), {
    key: 'cells.api.depends_on.migrate.condition',
    line: 8,
    says: 'expected healthy or completed, got "done"',
  });
  expectManifestError(mesh('      migrate: [completed]'), { key: 'cells.api.depends_on.migrate', line: 8, says: 'expected { condition: healthy | completed }, got a list' });
  expectManifestError(mesh('      "": {}'), { key: 'cells.api.depends_on[""]', line: 8, says: 'a cell name must not be empty' });
  expectManifestError(mesh('      migrate: { conditon: completed }'), { key: 'cells.api.depends_on.migrate.conditon', line: 8, says: 'unknown key "conditon" (did you mean "condition"?)' });
  // A list that mixes names and the long form: the item is named.
  expectManifestError(mesh('      - db\n      - migrate: { condition: completed }'), {
    key: 'cells.api.depends_on[1]',
    line: 9,
    says: 'expected a cell name; the long form with conditions is a map of its own',
  });
  expectManifestError(mesh('      migrate: { condition: completed }', ''), {
    key: 'cells.api.depends_on.migrate.condition',
    line: 8,
    says: 'migrate never completes: its restart policy is always',
  });
  expectManifestError(mesh('      migrate: { condition: completed }', 'restart: { policy: never }\n    lazy: true'), {
    key: 'cells.api.depends_on.migrate.condition',
    line: 9,
    says: 'migrate is lazy (it starts on its first discovery)',
  });
  expectManifestError(mesh('      migrate: { condition: completed }\n      cache: {}'), {
    key: 'cells.api.depends_on.cache',
    line: 9,
    says: 'unknown cell "cache" (cells: api, migrate)',
  });
  expectManifestError(mesh('      api: { condition: healthy }'), { key: 'cells.api.depends_on.api', line: 8, says: 'a cell cannot depend on itself ("api")' });
  expectManifestError(mesh('      migrate: { wait: completed }'), { key: 'cells.api.depends_on.migrate.wait', line: 8, says: 'unknown key "wait"' });
  expectManifestError('cells:\n  api:\n    run: x\n    depends_on: 5\n', {
    key: 'cells.api.depends_on',
    line: 4,
    says: 'expected a list of cell names or a map of cell name to { condition: healthy | completed }, got 5',
  });
});

test('manifest errors - an unknown dependency in a mesh of many cells lists the first 20 and how many there are, as the daemon does', () => {
  const names = Array.from({ length: 30 }, (_, i) => `c${String(i + 1).padStart(2, '0')}`);
  const text = `cells:\n${names.map((n) => `  ${n}:\n    run: node x\n`).join('')}  web:\n    run: node x\n    depends_on: [nope]\n`;
  assert.throws(
    () => parseManifest(text, 'cell.yaml'),
    (err: Error) => {
      assert.ok(err instanceof ManifestError);
      assert.match(err.message, /unknown cell "nope" \(cells: c01, c02, .*, c20, … \(31 in all\)\)/);
      assert.equal(err.message.includes('c21'), false);
      return true;
    },
  );
});

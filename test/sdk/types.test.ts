/**
 * Runs the type checker over the project, which includes test/sdk/types.test-d.ts: a wrong payload
 * that compiles (an unused `@ts-expect-error`) fails this test.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('sdk - type expectations hold (tsc --noEmit over the project, including types.test-d.ts)', () => {
  const result = spawnSync('node_modules/.bin/tsc', ['--noEmit', '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  const output = `${result.stdout}${result.stderr}`;
  const sdkErrors = output.split('\n').filter((line) => /(src|test)\/sdk\//.test(line));
  assert.deepEqual(sdkErrors, [], output);
  assert.equal(result.status, 0, output);
});

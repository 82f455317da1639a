/**
 * The SDK is what a cell's own code imports, so it stays light: zod, msgpackr, node built-ins and
 * its own files, never another part of cell.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SDK = fileURLToPath(new URL('../../src/sdk', import.meta.url));

test('sdk - imports only zod, msgpackr, node built-ins and files of src/sdk', () => {
  const offending: string[] = [];
  for (const name of readdirSync(SDK).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(join(SDK, name), 'utf8');
    for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
      const spec = match[1] ?? match[2];
      const allowed = spec === 'zod' || spec === 'msgpackr' || spec.startsWith('node:') || /^\.\/[a-z-]+\.js$/.test(spec);
      if (!allowed) offending.push(`${name}: ${spec}`);
    }
  }
  assert.deepEqual(offending, []);
});

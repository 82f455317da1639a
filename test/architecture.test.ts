import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const imports = (text: string) => [...text.matchAll(/(?:import|export)[^'"]*?from\s+'([^']+)'|import\('([^']+)'\)/g)].map((m) => m[1] ?? m[2]);

test('architecture - parts import each other only through index.ts', () => {
  const violations: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const part = relative(SRC, file).split('/')[0];
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = relative(SRC, resolve(dirname(file), spec));
      const [targetPart, ...rest] = target.split('/');
      if (targetPart === part) continue;
      if (rest.join('/') !== 'index.js') violations.push(`${relative(SRC, file)} imports ${spec}`);
    }
  }
  assert.deepEqual(violations, []);
});

test('architecture - decision code never reads the wall clock', () => {
  for (const file of sourceFiles(join(SRC, 'reconciler'))) {
    const text = readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /Date\.now\(\)|new Date\(|performance\.now\(\)|setTimeout|setInterval/, relative(SRC, file));
  }
});

test('architecture - the CLI never imports daemon internals, and the sdk imports no daemon code', () => {
  for (const file of sourceFiles(join(SRC, 'cli'))) {
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      assert.ok(!/\/(supervisor|store|reconciler|registry|observer|health|builder)\//.test(spec), `${relative(SRC, file)} imports ${spec}`);
    }
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DependencyGraph, renderGraph } from '../../src/graph/index.js';

const diamond = () =>
  new DependencyGraph([
    { name: 'web', dependsOn: ['api', 'cache'] },
    { name: 'cache', dependsOn: ['db'] },
    { name: 'api', dependsOn: ['db'] },
    { name: 'db', dependsOn: [] },
  ]);

test('graph render - text lists each cell in start order with its dependencies', () => {
  assert.equal(renderGraph(diamond(), 'text'), 'db\napi -> db\ncache -> db\nweb -> api, cache\n');
});

test('graph render - dot is a digraph with edges from dependent to dependency', () => {
  const dot = renderGraph(diamond(), 'dot');
  const lines = dot.trimEnd().split('\n');
  assert.equal(lines[0], 'digraph mesh {');
  assert.equal(lines.at(-1), '}');
  for (const name of ['db', 'api', 'cache', 'web']) assert.ok(lines.includes(`  "${name}";`), name);
  const edges = lines.filter((l) => l.includes('->'));
  assert.deepEqual(edges, ['  "api" -> "db";', '  "cache" -> "db";', '  "web" -> "api";', '  "web" -> "cache";']);
});

test('graph render - dot quotes names that Graphviz would misread', () => {
  const g = new DependencyGraph([
    { name: 'my-api', dependsOn: [] },
    { name: 'a"b', dependsOn: ['my-api'] },
  ]);
  assert.match(renderGraph(g, 'dot'), /^ {2}"a\\"b" -> "my-api";$/m);
});

test('graph render - mermaid is a graph TD with one arrow per dependency', () => {
  const lines = renderGraph(diamond(), 'mermaid').trimEnd().split('\n');
  assert.equal(lines[0], 'graph TD');
  assert.deepEqual(
    lines.filter((l) => l.includes('-->')),
    ['  api --> db', '  cache --> db', '  web --> api', '  web --> cache'],
  );
});

test('graph render - mermaid gives odd or reserved names a generated id and a label', () => {
  const g = new DependencyGraph([
    { name: 'end', dependsOn: [] },
    { name: 'my-web', dependsOn: ['end'] },
  ]);
  assert.equal(renderGraph(g, 'mermaid'), 'graph TD\n  n0["end"]\n  n1["my-web"]\n  n1 --> n0\n');
});

test('graph render - a cyclic graph still renders, in input order', () => {
  const g = new DependencyGraph([
    { name: 'b', dependsOn: ['a'] },
    { name: 'a', dependsOn: ['b'] },
  ]);
  assert.equal(renderGraph(g, 'text'), 'b -> a\na -> b\n');
});

test('graph render - an unknown format is a TypeError', () => {
  assert.throws(() => renderGraph(diamond(), 'svg' as never), TypeError);
});

test('graph render - an edge that waits for completion is labelled in text, dot and mermaid', () => {
  const graph = new DependencyGraph([
    { name: 'migrate', dependsOn: [] },
    { name: 'db', dependsOn: [] },
    { name: 'app', dependsOn: ['db', 'migrate'] },
  ]);
  const completed = (from: string, to: string) => (from === 'app' && to === 'migrate' ? 'completed' : undefined);
  assert.equal(renderGraph(graph, 'text', completed), 'db\nmigrate\napp -> db, migrate (completed)\n');
  const dot = renderGraph(graph, 'dot', completed);
  assert.match(dot, /^ {2}"app" -> "db";$/m);
  assert.match(dot, /^ {2}"app" -> "migrate" \[label="completed", style=dashed\];$/m);
  const mermaid = renderGraph(graph, 'mermaid', completed);
  assert.match(mermaid, /^ {2}app --> db$/m);
  assert.match(mermaid, /^ {2}app -\. completed \.-> migrate$/m);
});

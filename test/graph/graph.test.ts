import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DependencyCycleError, DependencyGraph, UnknownCellError, UnknownDependencyError } from '../../src/graph/index.js';

// web needs api and cache, both of which need db.
const diamond = () =>
  new DependencyGraph([
    { name: 'web', dependsOn: ['api', 'cache'] },
    { name: 'cache', dependsOn: ['db'] },
    { name: 'api', dependsOn: ['db'] },
    { name: 'db', dependsOn: [] },
  ]);

const loop = () =>
  new DependencyGraph([
    { name: 'x', dependsOn: [] },
    { name: 'a', dependsOn: ['b'] },
    { name: 'b', dependsOn: ['c'] },
    { name: 'c', dependsOn: ['a'] },
  ]);

test('graph - topoOrder puts dependencies first on a diamond', () => {
  assert.deepEqual(diamond().topoOrder(), ['db', 'api', 'cache', 'web']);
});

test('graph - topoOrder breaks ties alphabetically whatever the input order', () => {
  const g = new DependencyGraph([
    { name: 'zeta', dependsOn: [] },
    { name: 'beta', dependsOn: ['zeta'] },
    { name: 'alpha', dependsOn: [] },
    { name: 'mu', dependsOn: [] },
  ]);
  assert.deepEqual(g.topoOrder(), ['alpha', 'mu', 'zeta', 'beta']);
});

test('graph - levels group cells that may start in parallel', () => {
  assert.deepEqual(diamond().levels(), [['db'], ['api', 'cache'], ['web']]);
  const g = new DependencyGraph([
    { name: 'a', dependsOn: [] },
    { name: 'b', dependsOn: ['a'] },
    { name: 'c', dependsOn: ['a', 'b'] },
    { name: 'd', dependsOn: [] },
  ]);
  assert.deepEqual(g.levels(), [['a', 'd'], ['b'], ['c']]);
});

test('graph - reverseTopoOrder starts with the leaves and ends with the roots', () => {
  assert.deepEqual(diamond().reverseTopoOrder(), ['web', 'api', 'cache', 'db']);
});

test('graph - direct dependencies keep declared order, dependents are alphabetical', () => {
  const g = diamond();
  assert.deepEqual(g.dependenciesOf('web'), ['api', 'cache']);
  assert.deepEqual(g.dependentsOf('db'), ['api', 'cache']);
  assert.deepEqual(g.dependentsOf('web'), []);
});

test('graph - transitive dependents and dependencies come in start order', () => {
  const g = diamond();
  assert.deepEqual(g.transitiveDependents('db'), ['api', 'cache', 'web']);
  assert.deepEqual(g.transitiveDependents('api'), ['web']);
  assert.deepEqual(g.transitiveDependencies('web'), ['db', 'api', 'cache']);
});

test('graph - findCycle returns the closed loop starting at the first cell in input order', () => {
  assert.deepEqual(loop().findCycle(), ['a', 'b', 'c', 'a']);
  assert.equal(diamond().findCycle(), undefined);
  const rotated = new DependencyGraph([
    { name: 'c', dependsOn: ['a'] },
    { name: 'b', dependsOn: ['c'] },
    { name: 'a', dependsOn: ['b'] },
  ]);
  assert.deepEqual(rotated.findCycle(), ['c', 'a', 'b', 'c']);
});

test('graph - a self dependency is a cycle of one', () => {
  const g = new DependencyGraph([{ name: 'a', dependsOn: ['a'] }]);
  assert.deepEqual(g.findCycle(), ['a', 'a']);
});

test('graph - ordering a cyclic graph throws DependencyCycleError with the cycle text', () => {
  for (const order of [() => loop().topoOrder(), () => loop().levels(), () => loop().reverseTopoOrder()]) {
    assert.throws(order, (err: unknown) => {
      assert.ok(err instanceof DependencyCycleError);
      assert.equal(err.name, 'DependencyCycleError');
      assert.deepEqual(err.cycle, ['a', 'b', 'c', 'a']);
      assert.equal(err.message, 'dependency cycle: a -> b -> c -> a');
      return true;
    });
  }
});

test('graph - an unknown dependency is rejected when the graph is built', () => {
  assert.throws(
    () => new DependencyGraph([{ name: 'web', dependsOn: ['api'] }]),
    (err: unknown) => err instanceof UnknownDependencyError && err.cell === 'web' && err.dependency === 'api',
  );
});

test('graph - asking about a cell that is not there throws UnknownCellError', () => {
  assert.throws(() => diamond().dependentsOf('nope'), UnknownCellError);
});

test('graph - duplicate node names are a TypeError', () => {
  assert.throws(() => new DependencyGraph([{ name: 'a', dependsOn: [] }, { name: 'a', dependsOn: [] }]), TypeError);
});

test('graph - repeated dependencies count once', () => {
  const g = new DependencyGraph([
    { name: 'a', dependsOn: [] },
    { name: 'b', dependsOn: ['a', 'a'] },
  ]);
  assert.deepEqual(g.dependenciesOf('b'), ['a']);
  assert.deepEqual(g.reverseTopoOrder(), ['b', 'a']);
});

test('graph - errors keep their cause and survive JSON', () => {
  const cause = new Error('root');
  const cycle = new DependencyCycleError(['a', 'b', 'a'], { cause });
  assert.equal(cycle.cause, cause);
  const back = DependencyCycleError.fromJSON(JSON.parse(JSON.stringify(cycle)));
  assert.ok(back instanceof DependencyCycleError);
  assert.deepEqual(back.cycle, ['a', 'b', 'a']);
  assert.equal(back.message, cycle.message);
  assert.equal((back.cause as Error).message, 'root');

  const unknown = UnknownDependencyError.fromJSON(JSON.parse(JSON.stringify(new UnknownDependencyError({ cell: 'web', dependency: 'db' }))));
  assert.equal(unknown.cell, 'web');
  assert.equal(unknown.dependency, 'db');
  assert.equal(unknown.message, 'cell "web" depends on unknown cell "db"');
});

import { DependencyCycleError, UnknownCellError, UnknownDependencyError } from './errors.js';

/** What the graph needs of a cell: its name and the names it depends on. */
export interface GraphNode {
  name: string;
  dependsOn: readonly string[];
}

/**
 * The dependency graph of a mesh: an edge `web -> api` means web depends on api, so api starts
 * first and stops last. Pure and immutable; every order it returns is deterministic (ties are
 * broken alphabetically), so two daemons given the same manifest make the same decisions.
 *
 * The constructor checks that every dependency names a node (`UnknownDependencyError`); cycles
 * are allowed in the value and reported by `findCycle`, and by the ordering methods, which throw
 * `DependencyCycleError`.
 */
export class DependencyGraph {
  /** Node names in input order. */
  readonly names: readonly string[];
  private readonly deps = new Map<string, string[]>();
  private readonly rdeps = new Map<string, string[]>();
  private readonly inputIndex = new Map<string, number>();

  constructor(nodes: Iterable<GraphNode>) {
    const list = [...nodes];
    for (const [i, node] of list.entries()) {
      if (this.deps.has(node.name)) throw new TypeError(`duplicate cell name "${node.name}" in dependency graph`);
      // Repeated dependencies collapse to one edge; declared order is kept for display.
      this.deps.set(node.name, [...new Set(node.dependsOn)]);
      this.rdeps.set(node.name, []);
      this.inputIndex.set(node.name, i);
    }
    for (const node of list) {
      for (const dep of this.deps.get(node.name)!) {
        if (!this.deps.has(dep)) throw new UnknownDependencyError({ cell: node.name, dependency: dep });
        this.rdeps.get(dep)!.push(node.name);
      }
    }
    for (const dependents of this.rdeps.values()) dependents.sort(compareNames);
    this.names = list.map((n) => n.name);
  }

  get size(): number {
    return this.names.length;
  }

  has(name: string): boolean {
    return this.deps.has(name);
  }

  /** Direct dependencies of `name`, in declared order. */
  dependenciesOf(name: string): string[] {
    return [...this.edgesOf(this.deps, name)];
  }

  /** Cells that depend directly on `name`, alphabetically. */
  dependentsOf(name: string): string[] {
    return [...this.edgesOf(this.rdeps, name)];
  }

  /** Everything `name` needs, directly or not, in start order (excluding `name`). */
  transitiveDependencies(name: string): string[] {
    return this.orderSubset(this.reach(this.deps, name));
  }

  /**
   * Everything that needs `name`, directly or not, in start order (excluding `name`): the cells
   * to restart or drain when `name` goes away.
   */
  transitiveDependents(name: string): string[] {
    return this.orderSubset(this.reach(this.rdeps, name));
  }

  /**
   * The first dependency cycle found, closed (`['a', 'b', 'c', 'a']`), or `undefined`. The search
   * walks nodes and dependencies in input order, and the cycle is rotated to start at the node
   * that comes first in the input, so the answer is stable.
   */
  findCycle(): string[] | undefined {
    const state = new Map<string, 'visiting' | 'done'>();
    const stack: string[] = [];
    const visit = (name: string): string[] | undefined => {
      state.set(name, 'visiting');
      stack.push(name);
      for (const dep of this.deps.get(name)!) {
        const s = state.get(dep);
        if (s === 'visiting') return stack.slice(stack.indexOf(dep));
        if (s === undefined) {
          const found = visit(dep);
          if (found) return found;
        }
      }
      stack.pop();
      state.set(name, 'done');
      return undefined;
    };
    for (const name of this.names) {
      if (state.has(name)) continue;
      const loop = visit(name);
      if (loop) {
        let first = 0;
        for (let i = 1; i < loop.length; i++) {
          if (this.inputIndex.get(loop[i])! < this.inputIndex.get(loop[first])!) first = i;
        }
        const rotated = [...loop.slice(first), ...loop.slice(0, first)];
        return [...rotated, rotated[0]];
      }
    }
    return undefined;
  }

  /** Throws `DependencyCycleError` if the graph has a cycle. */
  assertAcyclic(): void {
    const cycle = this.findCycle();
    if (cycle) throw new DependencyCycleError(cycle);
  }

  /**
   * Start order: every cell after all of its dependencies; among cells that could go next, the
   * alphabetically first. Throws `DependencyCycleError`.
   */
  topoOrder(): string[] {
    return this.kahn(this.deps, this.rdeps);
  }

  /**
   * Stop order: every cell before all of its dependencies, so leaves (cells nothing depends on)
   * come first; ties alphabetical. Throws `DependencyCycleError`.
   */
  reverseTopoOrder(): string[] {
    return this.kahn(this.rdeps, this.deps);
  }

  /**
   * Groups that may start in parallel: level 0 has no dependencies, level n depends on at least
   * one cell of level n-1 and nothing at level n or later. Each level is alphabetical.
   * Throws `DependencyCycleError`.
   */
  levels(): string[][] {
    const level = new Map<string, number>();
    for (const name of this.topoOrder()) {
      let l = 0;
      for (const dep of this.deps.get(name)!) l = Math.max(l, level.get(dep)! + 1);
      level.set(name, l);
    }
    const out: string[][] = [];
    for (const [name, l] of level) (out[l] ??= []).push(name);
    return out.map((group) => group.sort(compareNames));
  }

  private edgesOf(edges: Map<string, string[]>, name: string): string[] {
    const list = edges.get(name);
    if (!list) throw new UnknownCellError(name);
    return list;
  }

  private reach(edges: Map<string, string[]>, start: string): Set<string> {
    const seen = new Set<string>();
    const queue = [...this.edgesOf(edges, start)];
    while (queue.length > 0) {
      const name = queue.pop()!;
      if (seen.has(name) || name === start) continue;
      seen.add(name);
      queue.push(...edges.get(name)!);
    }
    return seen;
  }

  private orderSubset(subset: Set<string>): string[] {
    if (this.findCycle()) return [...subset].sort(compareNames);
    return this.topoOrder().filter((n) => subset.has(n));
  }

  /** Kahn's algorithm: `before(n)` must all come before n; `after(n)` are released by n. */
  private kahn(before: Map<string, string[]>, after: Map<string, string[]>): string[] {
    const waiting = new Map<string, number>();
    const ready: string[] = [];
    for (const name of this.names) {
      const n = before.get(name)!.length;
      waiting.set(name, n);
      if (n === 0) ready.push(name);
    }
    const order: string[] = [];
    while (ready.length > 0) {
      ready.sort(compareNames);
      const name = ready.shift()!;
      order.push(name);
      for (const next of after.get(name)!) {
        const n = waiting.get(next)! - 1;
        waiting.set(next, n);
        if (n === 0) ready.push(next);
      }
    }
    if (order.length < this.names.length) throw new DependencyCycleError(this.findCycle()!);
    return order;
  }
}

/** Code-unit order, not locale order: the same on every machine. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

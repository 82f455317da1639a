import type { DependencyGraph } from './graph.js';

export type GraphFormat = 'text' | 'dot' | 'mermaid';

export const GRAPH_FORMATS: readonly GraphFormat[] = ['text', 'dot', 'mermaid'];

/**
 * Renders the graph for `cell graph`. Cells appear in start order (or input order when the graph
 * has a cycle, so a broken mesh can still be looked at); edges go from dependent to dependency.
 * - text: one line per cell, `web -> api, cache`, or the bare name when it has no dependencies.
 * - dot: a Graphviz `digraph mesh { ... }`.
 * - mermaid: a `graph TD` flowchart.
 * `conditionOf` names what an edge waits for when it is not plain health (`completed`: the
 * dependent waits for the dependency's run to complete); such an edge is labelled, and dashed in
 * dot and mermaid. The output ends with a newline.
 */
export function renderGraph(graph: DependencyGraph, format: GraphFormat, conditionOf: EdgeCondition = () => undefined): string {
  const order = graph.findCycle() ? [...graph.names] : graph.topoOrder();
  switch (format) {
    case 'text':
      return renderText(graph, order, conditionOf);
    case 'dot':
      return renderDot(graph, order, conditionOf);
    case 'mermaid':
      return renderMermaid(graph, order, conditionOf);
    default:
      throw new TypeError(`unknown graph format "${String(format)}" (use one of ${GRAPH_FORMATS.join(', ')})`);
  }
}

/** What the edge from `dependent` to `dependency` waits for, when not plain health. */
export type EdgeCondition = (dependent: string, dependency: string) => string | undefined;

function renderText(graph: DependencyGraph, order: string[], conditionOf: EdgeCondition): string {
  return order
    .map((name) => {
      const deps = graph.dependenciesOf(name).map((dep) => {
        const condition = conditionOf(name, dep);
        return condition ? `${dep} (${condition})` : dep;
      });
      return deps.length === 0 ? name : `${name} -> ${deps.join(', ')}`;
    })
    .map((line) => `${line}\n`)
    .join('');
}

function dotId(name: string): string {
  return `"${name.replace(/["\\]/g, '\\$&')}"`;
}

function renderDot(graph: DependencyGraph, order: string[], conditionOf: EdgeCondition): string {
  const lines = ['digraph mesh {', '  rankdir=LR;', '  node [shape=box];'];
  for (const name of order) lines.push(`  ${dotId(name)};`);
  for (const name of order) {
    for (const dep of graph.dependenciesOf(name)) {
      const condition = conditionOf(name, dep);
      lines.push(`  ${dotId(name)} -> ${dotId(dep)}${condition ? ` [label=${dotId(condition)}, style=dashed]` : ''};`);
    }
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

// Words Mermaid's flowchart grammar treats specially; a node with such a name gets a generated id.
const MERMAID_RESERVED = new Set(['end', 'graph', 'subgraph', 'flowchart', 'style', 'class', 'classdef', 'click', 'linkstyle', 'direction', 'default']);

function renderMermaid(graph: DependencyGraph, order: string[], conditionOf: EdgeCondition): string {
  const ids = new Map<string, string>();
  order.forEach((name, i) => {
    const plain = /^[A-Za-z][A-Za-z0-9_]*$/.test(name) && !MERMAID_RESERVED.has(name.toLowerCase());
    ids.set(name, plain ? name : `n${i}`);
  });
  // A generated id could collide with a cell literally named "n3"; give that cell a generated id too.
  const taken = new Set<string>();
  for (const name of order) {
    let id = ids.get(name)!;
    while (taken.has(id)) id = `${id}_`;
    taken.add(id);
    ids.set(name, id);
  }
  const lines = ['graph TD'];
  for (const name of order) {
    const id = ids.get(name)!;
    lines.push(id === name ? `  ${id}` : `  ${id}["${name.replace(/"/g, '#quot;')}"]`);
  }
  for (const name of order) {
    for (const dep of graph.dependenciesOf(name)) {
      const condition = conditionOf(name, dep);
      lines.push(`  ${ids.get(name)} ${condition ? `-. ${condition} .->` : '-->'} ${ids.get(dep)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * The graph part: the dependency graph of a mesh (start and stop order, parallel start levels,
 * cycle reports) and its renderings for `cell graph`. Pure: no I/O, no clock.
 */
export { DependencyGraph, compareNames } from './graph.js';
export type { GraphNode } from './graph.js';
export { renderGraph, GRAPH_FORMATS } from './render.js';
export type { EdgeCondition, GraphFormat } from './render.js';
export { DependencyCycleError, UnknownDependencyError, UnknownCellError } from './errors.js';

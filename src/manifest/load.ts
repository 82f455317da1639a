/**
 * `cell.yaml` → `MeshSpec`, in four steps, each stopping at its first error:
 *
 *   YAML syntax (yaml) → shape and leaf values (zod) → file system and dependencies → cycles
 *
 * Within a step the error reported is the one earliest in the file, so the same manifest always
 * gives the same message and fixing errors top to bottom works. A quicker reading without node
 * positions (js-yaml, quick-yaml.ts) goes first; at any doubt or problem these four steps run.
 */
import { statSync } from 'node:fs';
import { MAX_MANIFEST_BYTES, TextFileError, listNames, readRegularTextFile, suggestKey } from '../api/index.js';
import path from 'node:path';
import { LineCounter, isScalar, parseDocument, visit, type Document, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { DependencyCycleError, DependencyGraph, UnknownDependencyError, compareNames } from '../graph/index.js';
import { ManifestError, cutSnippet, quoteSnippet } from './errors.js';
import { CHECK_KINDS, DEFAULTS, exclusiveChecksReason, knownKeysAt, manifestObject, reasonFor, type RawCell } from './schema.js';
import type { CellSpec, HealthSpec, MeshSpec } from './types.js';
import { readYamlQuickly } from './quick-yaml.js';
import { formatKeyPath, locatePath, nodeAtPath, pathAtOffset, type KeyPath } from './yaml-path.js';

/** One thing wrong with the manifest, before it gets a line and column. */
interface Problem {
  path: KeyPath;
  reason: string;
  cause?: unknown;
  /** Report at this path's position instead of `path`'s (the key shown stays `path`). */
  at?: KeyPath;
}

/**
 * Reads and validates the manifest at `file`. A missing or unreadable file is a ManifestError
 * too, so callers handle one error type. Relative paths resolve against the process cwd.
 */
export function loadManifest(file: string): MeshSpec {
  return parseManifest(readManifestText(file), file);
}

/**
 * The text of the manifest at `file`. A missing or unreadable file, one that is not a regular
 * file (a FIFO, /dev/zero) or one over MAX_MANIFEST_BYTES is a ManifestError.
 */
export function readManifestText(file: string): string {
  try {
    return readRegularTextFile(file, MAX_MANIFEST_BYTES);
  } catch (err) {
    // The errno error, when there is one, stays the cause (ENOENT, EACCES...).
    if (err instanceof TextFileError) throw new ManifestError({ file, reason: err.reason }, { cause: err.cause ?? err });
    throw err;
  }
}

/**
 * Validates manifest `text` as if read from `file`: `file` is shown as given in messages, and its
 * directory (resolved against the process cwd) is the base of relative `cwd`s, which must exist.
 * Throws ManifestError for the first problem found.
 */
export function parseManifest(text: string, file: string): MeshSpec {
  const source = text.startsWith('\uFEFF') ? text.slice(1) : text;
  return parseQuickly(source, file) ?? parseWithPositions(source, file);
}

/**
 * The common case, a manifest with nothing wrong, read without node positions (quick-yaml.ts).
 * `undefined` at the first doubt or problem: parseWithPositions then decides, and names the place.
 */
function parseQuickly(source: string, file: string): MeshSpec | undefined {
  const raw = readYamlQuickly(source);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const parsed = manifestObject.safeParse(raw, { error: reasonFor });
  if (!parsed.success) return undefined;
  const data = parsed.data;
  const absFile = path.resolve(file);
  const dir = path.dirname(absFile);
  if (checkDirectories(data.cells, dir).length > 0 || checkDependencies(data.cells).length > 0) return undefined;
  const cells = Object.entries(data.cells).map(([name, cell]) => toCellSpec(name, cell, dir));
  let graph: DependencyGraph;
  try {
    graph = new DependencyGraph(cells);
  } catch {
    return undefined;
  }
  if (graph.findCycle()) return undefined;
  return toMeshSpec(absFile, cells, data);
}

/**
 * The same reading with the `yaml` library, which keeps every node's position: slower, and the
 * one that reports problems, at the line, column and key they are at.
 */
export function parseWithPositions(source: string, file: string): MeshSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });

  const fail = (problem: Problem): never => {
    const pos = lineCounter.linePos(locatePath(doc, problem.at ?? problem.path).offset);
    throw new ManifestError(
      { file, line: pos.line, column: pos.col, key: problem.path.length > 0 ? formatKeyPath(problem.path) : undefined, reason: problem.reason },
      problem.cause !== undefined ? { cause: problem.cause } : undefined,
    );
  };

  if (doc.errors.length > 0) {
    const first = [...doc.errors].sort((a, b) => a.pos[0] - b.pos[0])[0];
    const pos = lineCounter.linePos(yamlErrorOffset(doc, first));
    throw new ManifestError(
      { file, line: pos.line, column: pos.col, ...describeYamlError(doc, first, lineCounter) },
      { cause: first },
    );
  }

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    fail({ path: [], reason: `invalid YAML: ${(err as Error).message}`, cause: err });
  }
  if (raw === null || raw === undefined) fail({ path: [], reason: 'the manifest is empty (it needs a "cells" map)' });
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    fail({ path: [], reason: `the manifest must be a map with a "cells" key, got ${Array.isArray(raw) ? 'a list' : typeof raw === 'string' ? quoteSnippet(raw) : JSON.stringify(raw)}` });
  }

  const parsed = manifestObject.safeParse(raw, { error: reasonFor });
  if (!parsed.success) fail(firstByPosition(doc, issuesToProblems(doc, parsed.error.issues)));
  const data = parsed.data!;

  const absFile = path.resolve(file);
  const dir = path.dirname(absFile);
  const cells = Object.entries(data.cells).map(([name, cell]) => {
    const spec = toCellSpec(name, cell, dir);
    keepNumbersAsWritten(doc, source, name, spec.env);
    return spec;
  });

  const problems = [...checkDirectories(data.cells, dir), ...checkDependencies(data.cells)];
  let graph: DependencyGraph | undefined;
  try {
    graph = new DependencyGraph(cells);
  } catch (err) {
    if (!(err instanceof UnknownDependencyError)) throw err;
    const index = data.cells[err.cell].depends_on.find((d) => d.name === err.dependency)!.key;
    const names = cells.map((c) => c.name).sort(compareNames);
    problems.push({
      path: ['cells', err.cell, 'depends_on', index],
      reason: `unknown cell ${quoteSnippet(err.dependency)} (cells: ${listNames(names)})`,
      cause: err,
    });
  }
  if (problems.length > 0) fail(firstByPosition(doc, problems));

  const cycle = graph!.findCycle();
  if (cycle) {
    const cause = new DependencyCycleError(cycle);
    fail({ path: ['cells'], at: ['cells', cycle[0]], reason: cause.message, cause });
  }

  return toMeshSpec(absFile, cells, data);
}

function toMeshSpec(absFile: string, cells: CellSpec[], data: z.output<typeof manifestObject>): MeshSpec {
  return {
    file: absFile,
    dir: path.dirname(absFile),
    cells,
    gateway: { port: data.gateway.port, holdMs: data.gateway.hold },
    versionCheckIntervalMs: data.version_check_interval,
    logs: { maxBytes: data.logs.max_size, keep: data.logs.keep },
  };
}

/**
 * Where to point for a YAML error. The parser reports an unclosed quote where the input ends;
 * the quote that was opened is the useful place.
 */
function yamlErrorOffset(doc: Document, err: YAMLError): number {
  const at = err.pos[0];
  if (err.code !== 'MISSING_CHAR' || !/quote/i.test(err.message)) return at;
  let opened: number | undefined;
  visit(doc, {
    Scalar(_key, node) {
      const range = node.range;
      if ((node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') && range && range[0] < at && at <= range[2]) opened = range[0];
    },
  });
  return opened ?? at;
}

function describeYamlError(doc: Document, err: YAMLError, lineCounter: LineCounter): { key?: string; reason: string } {
  if (err.code === 'DUPLICATE_KEY') {
    const keyPath = pathAtOffset(doc, err.pos[0]);
    const name = keyPath.at(-1);
    // locatePath finds the first of equal keys, which is the definition this one repeats.
    const firstAt = locatePath(doc, keyPath);
    const first = firstAt.depth === keyPath.length ? ` (first defined on line ${lineCounter.linePos(firstAt.offset).line})` : '';
    return { key: keyPath.length > 0 ? formatKeyPath(keyPath) : undefined, reason: `duplicate key${name === undefined ? '' : ` ${quoteSnippet(String(name))}`}${first}` };
  }
  if (err.code === 'MULTIPLE_DOCS') return { reason: 'invalid YAML: the manifest must be a single document (remove the extra "---")' };
  // The yaml library appends "at line L, column C" and a source excerpt; we show our own position.
  const firstLine = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '').trim();
  return { reason: `invalid YAML: ${firstLine}` };
}

function issuesToProblems(doc: Document, issues: z.core.$ZodIssue[]): Problem[] {
  const problems: Problem[] = [];
  // A misspelt top-level key (`cels:`) leaves the key it meant missing too. The misspelling is
  // the thing to fix, at its own line; "cells: required key is missing" would point at line 1.
  const meant = new Set(issues.flatMap((i) => (i.code === 'unrecognized_keys' && i.path.length === 0 ? i.keys.map((k) => suggestKey(k, knownKeysAt([]))) : [])));
  for (const issue of issues) {
    const issuePath = issue.path.map((s) => (typeof s === 'number' ? s : String(s)));
    if (issue.code === 'invalid_type' && issuePath.length === 1 && meant.has(String(issuePath[0])) && !doc.has(issuePath[0])) continue;
    const exclusive = issue.code === 'custom' ? (issue.params?.exclusiveChecks as string[] | undefined) : undefined;
    if (exclusive) {
      // Two check kinds in one health map: blame the one written second, whatever the schema's order.
      const healthPath = issuePath.slice(0, -1);
      const [first, second] = [...exclusive].sort((a, b) => locatePath(doc, [...healthPath, a]).offset - locatePath(doc, [...healthPath, b]).offset);
      problems.push({ path: [...healthPath, second], reason: exclusiveChecksReason(first) });
    } else if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(issuePath);
      for (const key of issue.keys) {
        const suggestion = suggestKey(key, known);
        problems.push({
          path: [...issuePath, key],
          reason: `unknown key ${quoteSnippet(key)}${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`,
        });
      }
    } else {
      problems.push({ path: issuePath, reason: issue.message });
    }
  }
  return problems;
}

/** The problem earliest in the file; among problems at the same place, the first found. */
function firstByPosition(doc: Document, problems: Problem[]): Problem {
  let best = problems[0];
  let bestOffset = locatePath(doc, best.at ?? best.path).offset;
  for (const problem of problems.slice(1)) {
    const offset = locatePath(doc, problem.at ?? problem.path).offset;
    if (offset < bestOffset) {
      best = problem;
      bestOffset = offset;
    }
  }
  return best;
}

function checkDirectories(cells: Record<string, RawCell>, dir: string): Problem[] {
  const problems: Problem[] = [];
  for (const [name, cell] of Object.entries(cells)) {
    if (cell.cwd === undefined) continue;
    const resolved = path.resolve(dir, cell.cwd);
    const at: KeyPath = ['cells', name, 'cwd'];
    try {
      const stat = statSync(resolved, { throwIfNoEntry: false });
      if (!stat) problems.push({ path: at, reason: `directory ${quoteSnippet(cell.cwd)} does not exist (resolved to ${cutSnippet(resolved, 200)})` });
      else if (!stat.isDirectory()) problems.push({ path: at, reason: `${quoteSnippet(cell.cwd)} is not a directory (resolved to ${cutSnippet(resolved, 200)})` });
    } catch (err) {
      problems.push({ path: at, reason: `cannot use directory ${quoteSnippet(cell.cwd)}: ${cutSnippet((err as Error).message, 200)}`, cause: err });
    }
  }
  return problems;
}

/**
 * What the graph does not report the way a manifest author needs: self and repeated
 * dependencies, and a completion awaited of a cell that never completes.
 */
function checkDependencies(cells: Record<string, RawCell>): Problem[] {
  const problems: Problem[] = [];
  for (const [name, cell] of Object.entries(cells)) {
    cell.depends_on.forEach((dep, i) => {
      const at: KeyPath = ['cells', name, 'depends_on', dep.key];
      if (dep.name === name) problems.push({ path: at, reason: `a cell cannot depend on itself ("${name}")` });
      else if (cell.depends_on.findIndex((d) => d.name === dep.name) < i) problems.push({ path: at, reason: `${quoteSnippet(dep.name)} is listed twice` });
      else if (dep.condition === 'completed' && cells[dep.name]?.lazy) {
        problems.push({ path: [...at, 'condition'], reason: `${dep.name} is lazy (it starts on its first discovery): no start of it would come for this cell to wait on; drop lazy from it` });
      } else if (dep.condition === 'completed' && cells[dep.name]?.restart.policy === 'always') {
        problems.push({
          path: [...at, 'condition'],
          reason: `${dep.name} never completes: its restart policy is always (a clean exit starts it again); give it restart: { policy: on-failure } or never, or wait for it healthy`,
        });
      }
    });
  }
  return problems;
}

/**
 * An env value written as a plain number keeps its spelling: `VERSION: 1.10` is "1.10", not the
 * "1.1" that a round trip through a JS number would give.
 */
function keepNumbersAsWritten(doc: Document, source: string, cell: string, env: Record<string, string>): void {
  for (const key of Object.keys(env)) {
    const node = nodeAtPath(doc, ['cells', cell, 'env', key]);
    if (isScalar(node) && typeof node.value === 'number' && node.type === 'PLAIN' && node.range) {
      env[key] = source.slice(node.range[0], node.range[1]);
    }
  }
}

function toHealth(h: RawCell['health']): HealthSpec {
  if (!h) return { kind: 'process', ...DEFAULTS.health };
  const timing = { intervalMs: h.interval, timeoutMs: h.timeout, retries: h.retries, graceMs: h.grace };
  const kind = CHECK_KINDS.find((k) => h[k] !== undefined);
  if (kind === 'http') return { kind, path: h.http!.path, port: h.http!.port, ...timing };
  if (kind === 'tcp') return { kind, port: h.tcp!.port, ...timing };
  if (kind === 'ping') return { kind, ...timing };
  return { kind: 'exec', command: h.exec!, ...timing };
}

function toCellSpec(name: string, cell: RawCell, dir: string): CellSpec {
  const spec: CellSpec = {
    name,
    run: cell.run,
    cwd: cell.cwd === undefined ? dir : path.resolve(dir, cell.cwd),
    env: { ...cell.env },
    dependsOn: cell.depends_on.map((d) => d.name),
    awaitsCompletionOf: cell.depends_on.filter((d) => d.condition === 'completed').map((d) => d.name),
    instances: cell.instances,
    health: toHealth(cell.health),
    restart: {
      policy: cell.restart.policy,
      backoffMs: cell.restart.backoff,
      maxBackoffMs: cell.restart.max_backoff ?? Math.max(DEFAULTS.restart.maxBackoffMs, cell.restart.backoff),
      maxRetries: cell.restart.max_retries,
      resetAfterMs: cell.restart.reset_after,
      warm: cell.restart.warm,
    },
    stop: { signal: cell.stop.signal, timeoutMs: cell.stop.timeout, killAfterMs: cell.stop.kill_after },
    source: [...cell.source],
  };
  if (cell.build !== undefined) {
    spec.build = cell.build;
    spec.buildTimeoutMs = cell.build_timeout;
  }
  if (cell.lazy) spec.lazy = true;
  return spec;
}

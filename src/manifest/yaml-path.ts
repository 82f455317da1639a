/**
 * Between a key path (`['cells', 'api', 'depends_on', 0]`) and a place in the YAML source, in
 * both directions. Errors point at the key of a map entry (the column where `interval:` starts)
 * and at the item itself in a list.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import { MAX_QUOTED, quoteSnippet } from './errors.js';

export type KeyPath = readonly (string | number)[];

function keyText(key: unknown): string {
  if (isScalar(key)) return String(key.value);
  return String(key);
}

function startOf(node: unknown): number | undefined {
  return (node as Node | null)?.range?.[0];
}

function deref(doc: Document, node: unknown): unknown {
  return isAlias(node) ? node.resolve(doc) : node;
}

export interface Located {
  /** Offset of the deepest node found along the path. */
  offset: number;
  /** How many segments of the path were found (a missing key stops the walk at its map). */
  depth: number;
}

/** Where `path` is in the source; missing keys resolve to their closest existing ancestor. */
export function locatePath(doc: Document, path: KeyPath): Located {
  let node: unknown = doc.contents;
  let offset = startOf(node) ?? 0;
  let depth = 0;
  for (const segment of path) {
    node = deref(doc, node);
    let next: { at: number | undefined; node: unknown } | undefined;
    if (isMap(node)) {
      // With a duplicated key (an error of its own) this finds the first definition.
      const pair = node.items.find((p) => keyText(p.key) === String(segment));
      if (pair) next = { at: startOf(pair.key) ?? startOf(pair.value), node: pair.value };
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment];
      if (item !== undefined) next = { at: startOf(item), node: item };
    }
    if (!next) break;
    if (next.at !== undefined) offset = next.at;
    node = next.node;
    depth++;
  }
  return { offset, depth };
}

/** The value node at `path`, or undefined when some segment is missing. */
export function nodeAtPath(doc: Document, path: KeyPath): unknown {
  let node: unknown = doc.contents;
  for (const segment of path) {
    node = deref(doc, node);
    if (isMap(node)) node = node.items.find((p) => keyText(p.key) === String(segment))?.value;
    else if (isSeq(node) && typeof segment === 'number') node = node.items[segment];
    else return undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

/** The key path of the deepest map key or list item that contains `offset`. */
export function pathAtOffset(doc: Document, offset: number): (string | number)[] {
  const path: (string | number)[] = [];
  const contains = (node: unknown) => {
    const range = (node as Node | null)?.range;
    return range != null && range[0] <= offset && offset < Math.max(range[2], range[0] + 1);
  };
  let node: unknown = doc.contents;
  for (;;) {
    let next: unknown;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (contains(pair.key)) return [...path, keyText(pair.key)];
        if (contains(pair.value)) {
          path.push(keyText(pair.key));
          next = pair.value;
          break;
        }
      }
    } else if (isSeq(node)) {
      for (const [i, item] of node.items.entries()) {
        if (contains(item)) {
          path.push(i);
          next = item;
          break;
        }
      }
    }
    if (next === undefined) return path;
    node = next;
  }
}

/** `cells.api.depends_on[0]`; odd keys are quoted (`env["A.B"]`), and long ones cut (`["aaaa..."]`). */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    const text = String(segment);
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[^\s.[\]"'\\]+$/.test(text) && text.length <= MAX_QUOTED) out += out === '' ? text : `.${text}`;
    else out += `[${quoteSnippet(text)}]`;
  }
  return out;
}

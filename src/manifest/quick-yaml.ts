/**
 * A fast first reading of `cell.yaml` for the common case, a manifest with nothing wrong in it.
 *
 * The `yaml` library keeps every node's position, which the error messages need, but it takes
 * ~100 ms to read a 100-cell manifest in a fresh process (~25 ms once warm), and `cell up` reads
 * the manifest twice on its critical path (the CLI validates it, the daemon's parser reads it
 * again). js-yaml reads the same text in ~20 ms. So the manifest is read with js-yaml first, and
 * with `yaml` only when this reading gives up or what it read does not validate: the positioned
 * parse then has the last word, and the message.
 *
 * Giving up is always safe, so this reading gives up at the first doubt: a syntax error, several
 * documents, a duplicate key, a tag, an anchor or alias (the positioned parse bounds alias
 * expansion), a construct js-yaml reads more leniently than YAML 1.2 (below), or a number-looking
 * env value (its spelling, which a number loses, is the value). The tests compare both readings
 * on generated documents.
 */
import jsYaml from 'js-yaml';

// YAML 1.2's core schema, as the `yaml` library reads it. js-yaml's own CORE_SCHEMA keeps some
// YAML 1.1 forms (`1_000`, `0b101`, `-0x1A` as numbers) that YAML 1.2 reads as strings.
const NULL = /^(?:~|null|Null|NULL)?$/;
const BOOL = /^(?:true|True|TRUE|false|False|FALSE)$/;
const INT = /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$/;
const FLOAT = /^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;

const coreNull = new jsYaml.Type('tag:yaml.org,2002:null', {
  kind: 'scalar',
  resolve: (data: string | null) => data === null || NULL.test(data),
  construct: () => null,
});

const coreBool = new jsYaml.Type('tag:yaml.org,2002:bool', {
  kind: 'scalar',
  resolve: (data: string | null) => data !== null && BOOL.test(data),
  construct: (data: string) => data[0] === 't' || data[0] === 'T',
});

const coreInt = new jsYaml.Type('tag:yaml.org,2002:int', {
  kind: 'scalar',
  resolve: (data: string | null) => data !== null && INT.test(data),
  construct: (data: string) => (data.startsWith('0o') ? parseInt(data.slice(2), 8) : data.startsWith('0x') ? parseInt(data.slice(2), 16) : Number(data)),
});

const coreFloat = new jsYaml.Type('tag:yaml.org,2002:float', {
  kind: 'scalar',
  resolve: (data: string | null) => data !== null && FLOAT.test(data),
  construct: (data: string) => {
    const lower = data.toLowerCase();
    if (lower.endsWith('.nan')) return NaN;
    if (lower.endsWith('.inf')) return lower.startsWith('-') ? -Infinity : Infinity;
    return parseFloat(data);
  },
});

/**
 * Text where js-yaml reads more leniently than the `yaml` library, or differently: tabs,
 * directives, explicit keys (`? k`), empty keys (`: v`), tags (`!t`), aliases (`*a`), block
 * scalars with an indentation indicator (`|2`), a comment right after a quote or a flow
 * collection (`"a"#c`). Also found in comments and commands: those manifests just take the
 * positioned reading.
 */
const BEYOND_QUICK_READING = /\t|^%|(?:^|[\s[{,])(?:[?!*]|:(?=[\s,\]}]|$))|(?:^|\s)[|>](?:[-+]?[1-9]|[1-9][-+])|["'\]}]#/m;

const CORE_1_2 = jsYaml.FAILSAFE_SCHEMA.extend({ implicit: [coreNull, coreBool, coreInt, coreFloat] });

/**
 * The manifest text as plain data, or `undefined` when this reading cannot be sure it reads it
 * as the positioned parse would (see the file comment).
 */
export function readYamlQuickly(source: string): unknown {
  if (BEYOND_QUICK_READING.test(source)) return undefined;
  const nodes = new NodeDoubts(source);
  let raw: unknown;
  try {
    raw = jsYaml.load(source, { schema: CORE_1_2, listener: nodes.listener });
  } catch {
    return undefined;
  }
  if (nodes.found || hasDoubtfulNodes(raw) || hasNumericEnv(raw)) return undefined;
  return raw;
}

/** What js-yaml's state holds of the node just read, beyond what @types/js-yaml declares. */
interface NodeProperties {
  anchor: string | null;
}

/**
 * Nodes the quick reading is not sure of, seen through js-yaml's listener: with an anchor (`&a`),
 * and quoted or plain scalars and flow collections (`[..]`, `{..}`) that span lines (how far
 * their continuation lines must be indented is where js-yaml is laxer than YAML 1.2; block
 * scalars `|`, `>` and block collections span lines by design).
 */
class NodeDoubts {
  found = false;
  private readonly opened: { first: string; line: number }[] = [];

  constructor(private readonly source: string) {}

  readonly listener = (event: jsYaml.EventType, state: jsYaml.State & NodeProperties): void => {
    if (event === 'open') {
      // The reader may stand on the blanks before the node: its first character is further on.
      let at = state.position;
      let line = state.line;
      while (at < this.source.length && /\s/.test(this.source[at])) if (this.source[at++] === '\n') line++;
      this.opened.push({ first: this.source[at] ?? '', line });
      return;
    }
    const node = this.opened.pop();
    if (state.anchor !== null) this.found = true;
    if (!node || state.line <= node.line) return;
    const block = state.kind === 'scalar' ? node.first === '|' || node.first === '>' : node.first !== '[' && node.first !== '{';
    if (!block) this.found = true;
  };
}

/**
 * A map or list that appears twice (an alias), a null key (js-yaml names it "null", the `yaml`
 * library ""), or an empty list entry (`-` alone: js-yaml then lets the next entries be indented
 * anyhow).
 */
function hasDoubtfulNodes(root: unknown): boolean {
  const seen = new Set<object>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    if (seen.has(node) || (Array.isArray(node) ? node.includes(null) : Object.hasOwn(node, 'null'))) return true;
    seen.add(node);
    for (const child of Object.values(node)) stack.push(child);
  }
  return false;
}

function hasNumericEnv(raw: unknown): boolean {
  const cells = (raw as { cells?: unknown } | null)?.cells;
  if (cells === null || typeof cells !== 'object') return false;
  for (const cell of Object.values(cells)) {
    const env = (cell as { env?: unknown } | null)?.env;
    if (env !== null && typeof env === 'object' && Object.values(env).some((v) => typeof v === 'number')) return true;
  }
  return false;
}

/**
 * "did you mean" hints for unknown keys and names: a camelCase or kebab-case spelling of a known key, else
 * the known key within two edits (insertions, deletions, substitutions, swaps of neighbours).
 */

/** Optimal string alignment distance: Levenshtein plus transposition of two adjacent characters. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

function toSnakeCase(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/-/g, '_')
    .toLowerCase();
}

/** The known key the user most likely meant, or undefined. Ties go to the first in `known`. */
export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  const snake = toSnakeCase(unknown);
  if (snake !== unknown && known.includes(snake)) return snake;
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(unknown.toLowerCase(), candidate);
    // A two-letter typo of a three-letter key is a different word, not a typo.
    if (distance < bestDistance && distance < Math.max(unknown.length, candidate.length) - 1) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Names listed in an "unknown cell" message before it is cut short (a mesh of 100 cells is one long line otherwise). */
const MAX_LISTED_NAMES = 20;

/** `names` joined for a message, the first 20 only when there are more: `a, b, … (100 in all)`. */
export function listNames(names: readonly string[]): string {
  return names.length > MAX_LISTED_NAMES ? `${names.slice(0, MAX_LISTED_NAMES).join(', ')}, … (${names.length} in all)` : names.join(', ');
}

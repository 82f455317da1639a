/**
 * `text` with its control characters written out (`\x1b`, `\n`): what a cell's program printed
 * (an exec check's output, a crash reason) reaches the terminal as text, not as escape sequences
 * that recolour it, move the cursor or break a table's lines.
 */
export function printable(text: string): string {
  // Also the invisible format characters that reorder or hide text (bidi overrides, zero widths).
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Renders rows as left-aligned columns with a header, like `docker ps`. */
export function renderTable(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => printable(String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

export function formatAge(iso: string | null, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)}K`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}M`;
  return `${(n / 1024 ** 3).toFixed(2)}G`;
}

/**
 * `text` cut to a terminal of `columns` x `rows`: lines that would wrap are cut (an ellipsis at
 * the end), and the lines that would scroll the header away are left out but counted.
 */
export function fitTerminal(text: string, columns: number | undefined, rows: number | undefined): string {
  let lines = text.replace(/\n$/, '').split('\n');
  if (rows && rows > 2 && lines.length > rows - 1) {
    const hidden = lines.length - (rows - 2);
    lines = [...lines.slice(0, rows - 2), `… ${hidden} more line${hidden === 1 ? '' : 's'}`];
  }
  if (columns && columns > 1) lines = lines.map((l) => ([...l].length > columns ? [...l].slice(0, columns - 1).join('') + '…' : l));
  return lines.join('\n') + '\n';
}

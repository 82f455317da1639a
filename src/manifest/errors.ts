/**
 * Errors of the manifest part. A `ManifestError` points at one place in `cell.yaml` and its
 * message is a single line an editor can jump to:
 *
 *   cell.yaml:12:5: cells.api.health.interval: invalid duration "5 parsecs" (use e.g. 500ms, 2s, 1m)
 *
 * It survives a trip over the daemon API as JSON (`toJSON` / `fromJSON`).
 */

export interface ManifestErrorFields {
  /** The manifest path as the user gave it (shown as is in the message). */
  file: string;
  /** 1-based; absent when the error is about the file as a whole (missing, unreadable). */
  line?: number;
  /** 1-based; present whenever `line` is. */
  column?: number;
  /** Dotted path of the offending key as written in YAML (`cells.api.depends_on[0]`); absent for YAML syntax errors. */
  key?: string;
  /** What is wrong, without the location. One line. */
  reason: string;
}

interface SerializedCause {
  name?: string;
  message: string;
  code?: string;
}

/** Longest piece of the manifest (a value, a key, a whole file read as one string) quoted in a message. */
export const MAX_QUOTED = 80;

/** `text` cut to `max` characters with "..." when longer (never between the halves of a surrogate pair). */
export function cutSnippet(text: string, max = MAX_QUOTED): string {
  if (text.length <= max) return text;
  const end = /[\uDC00-\uDFFF]/.test(text[max]) ? max - 1 : max;
  return `${text.slice(0, end)}...`;
}

/**
 * `text` as a JSON string for a message, cut to `MAX_QUOTED` characters: a whole file that parses
 * as one scalar (`cell -f /etc/passwd up`) must not become the message.
 */
export function quoteSnippet(text: string, max = MAX_QUOTED): string {
  return JSON.stringify(cutSnippet(text, max));
}

/** Keeps the message on one line whatever a value or a library message contained. */
function oneLine(text: string): string {
  return text.replace(/\r?\n|\r/g, ' ').replace(/\s+$/, '');
}

function formatManifestMessage(f: ManifestErrorFields): string {
  let where = f.file;
  if (f.line !== undefined) where += `:${f.line}:${f.column ?? 1}`;
  return oneLine(f.key ? `${where}: ${f.key}: ${f.reason}` : `${where}: ${f.reason}`);
}

/** `cell.yaml` is missing, unreadable, not YAML, or does not describe a valid mesh. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly key: string | undefined;
  readonly reason: string;

  constructor(fields: ManifestErrorFields, options?: ErrorOptions) {
    super(formatManifestMessage(fields), options);
    this.file = fields.file;
    this.line = fields.line;
    this.column = fields.line !== undefined ? (fields.column ?? 1) : undefined;
    this.key = fields.key;
    this.reason = oneLine(fields.reason);
  }

  toJSON() {
    let cause: SerializedCause | undefined;
    if (this.cause instanceof Error) {
      const code = (this.cause as NodeJS.ErrnoException).code;
      cause = { name: this.cause.name, message: this.cause.message, ...(typeof code === 'string' ? { code } : {}) };
    } else if (this.cause !== undefined) {
      cause = { message: String(this.cause) };
    }
    return {
      name: this.name,
      message: this.message,
      file: this.file,
      line: this.line,
      column: this.column,
      key: this.key,
      reason: this.reason,
      cause,
    };
  }

  static fromJSON(json: ReturnType<ManifestError['toJSON']>): ManifestError {
    const cause = json.cause ? Object.assign(new Error(json.cause.message), json.cause) : undefined;
    return new ManifestError(
      { file: json.file, line: json.line ?? undefined, column: json.column ?? undefined, key: json.key ?? undefined, reason: json.reason },
      cause ? { cause } : undefined,
    );
  }
}

/**
 * Schema checks on the hot path: one `safeParse` per value, falling back to `safeParseAsync` for
 * schemas that turn out to need it (async refinements), and zod issues folded into one line.
 */
import type { z } from 'zod';

export type Checked = { ok: true; value: unknown } | { ok: false; message: string };

/** Wraps one schema; remembers whether it needs async parsing. */
export class Validator {
  private isAsync = false;

  constructor(private readonly schema: z.ZodType) {}

  /** Returns a result, or a promise of one for async schemas. Never throws. */
  check(value: unknown): Checked | Promise<Checked> {
    if (this.isAsync) return this.checkAsync(value);
    let result: z.ZodSafeParseResult<unknown>;
    try {
      result = this.schema.safeParse(value);
    } catch (error) {
      // zod throws (rather than returning issues) when it meets a promise in a sync parse.
      if ((error as Error)?.constructor?.name === '$ZodAsyncError' || /async/i.test((error as Error)?.message ?? '')) {
        this.isAsync = true;
        return this.checkAsync(value);
      }
      return { ok: false, message: `schema check failed: ${(error as Error)?.message ?? String(error)}` };
    }
    return result.success ? { ok: true, value: result.data } : { ok: false, message: formatIssues(result.error.issues) };
  }

  private async checkAsync(value: unknown): Promise<Checked> {
    try {
      const result = await this.schema.safeParseAsync(value);
      return result.success ? { ok: true, value: result.data } : { ok: false, message: formatIssues(result.error.issues) };
    } catch (error) {
      return { ok: false, message: `schema check failed: ${(error as Error)?.message ?? String(error)}` };
    }
  }
}

/** `name: Invalid input: expected string, received number (+1 more issue)` */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  const first = issues[0];
  if (first === undefined) return 'invalid';
  const path = first.path.length > 0 ? first.path.map((p) => (typeof p === 'symbol' ? p.toString() : String(p))).join('.') : '(root)';
  const more = issues.length > 1 ? ` (+${issues.length - 1} more issue${issues.length > 2 ? 's' : ''})` : '';
  return `${path}: ${first.message.replace(/\s+/g, ' ')}${more}`;
}

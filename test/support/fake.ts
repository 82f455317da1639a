import type { CellSpec } from '../../src/manifest/types.js';
import type { Desired } from '../../src/reconciler/index.js';

/** Factories for decision tests: a plausible cell with every default filled in. */
export const fake = {
  cell(name: string, overrides: Partial<CellSpec> = {}): CellSpec {
    return {
      name,
      run: `node ${name}.js`,
      cwd: '/tmp',
      env: {},
      dependsOn: [],
      instances: 1,
      health: { kind: 'tcp', port: '$PORT', intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 30_000 },
      restart: { policy: 'always', backoffMs: 2000, maxBackoffMs: 60_000, maxRetries: 5, resetAfterMs: 30_000 },
      stop: { signal: 'SIGTERM', timeoutMs: 5000, killAfterMs: 2000 },
      source: [],
      ...overrides,
    };
  },
  desired(...cells: CellSpec[]): Desired {
    return { cells: new Map(cells.map((c) => [c.name, { spec: c, version: `v-${c.name}` }])) };
  },
};

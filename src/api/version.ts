import { readFileSync } from 'node:fs';

/**
 * cellmesh's version, from its package.json. Every module that calls this sits two levels under
 * the package root (src/<part>/ or dist/<part>/, bundles included), hence the fixed path.
 */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    return String(pkg.version);
  } catch {
    return '0.0.0';
  }
}

/**
 * The manifest part: reads `cell.yaml` into a validated, normalized `MeshSpec`, or throws a
 * `ManifestError` that names the file, line, column and key of the first problem.
 */
export { loadManifest, parseManifest, readManifestText } from './load.js';
export { ManifestError } from './errors.js';
export type { ManifestErrorFields } from './errors.js';
export { formatDuration, parseDuration, formatSize, parseSize, MAX_DURATION_MS } from './duration.js';
export { CELL_NAME_PATTERN, RESERVED_CELL_NAMES, STOP_SIGNALS, DEFAULTS, DEPENDENCY_CONDITIONS } from './schema.js';
export type * from './types.js';

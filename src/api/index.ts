export * from './types.js';
export { ApiClient } from './client.js';
export { ApiError, DaemonNotRunningError } from './errors.js';
export { INHERITED_ARENA_VAR, cellBaseEnv, cellHomePaths, instanceLogFile, resolveCellHome, type CellHomePaths } from './paths.js';

export * from './types.js';
export { ApiClient } from './client.js';
export { ApiError, DaemonNotRunningError } from './errors.js';
export { DAEMON_ENV_TUNING, USER_CA_CERTS_VAR, USER_ENV_VAR, cellBaseEnv, daemonEnv, cellHomePaths, instanceLogFile, resolveCellHome, type CellHomePaths } from './paths.js';
export { packageVersion } from './version.js';

export * from './types.js';
export { ApiClient } from './client.js';
export { ApiError, CellHomeError, CellHomeNotADirectoryError, CellHomeTooLongError, DaemonNotRunningError } from './errors.js';
export { DAEMON_ENV_TUNING, MAX_SOCKET_PATH_BYTES, USER_CA_CERTS_VAR, USER_ENV_VAR, cellBaseEnv, checkCellHome, daemonEnv, cellHomePaths, socketPathTooLong, instanceLogFile, instanceLogFilesOnDisk, resolveCellHome, type CellHomePaths } from './paths.js';
export { packageVersion } from './version.js';
export { instanceProcessesOfHome, WARM_SPARE_VAR, WARM_STARTED, type InstanceProcess } from './home-processes.js';
export { MAX_MANIFEST_BYTES, TextFileError, readRegularTextFile } from './text-file.js';
export { editDistance, listNames, suggestKey } from './suggest.js';
export { readLastLines } from './log-tail.js';

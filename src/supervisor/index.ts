export type { ExitInfo, ProcessDriver, ProcessHandle, SpawnRequest } from './driver.js';
export { Supervisor, type SupervisorOptions, type Logger, type LastProbe } from './supervisor.js';
export { ChildProcessDriver } from './child-process-driver.js';
export { RotationSchedule, rotateIfLarger, followFile } from './log-rotation.js';
export { SpawnError } from './errors.js';
export { PortAllocator } from './ports.js';
export { readProcStat, isDeadState, clockTicksPerSecond, type ProcStat } from './proc.js';

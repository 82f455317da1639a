export type {
  Action,
  Desired,
  DesiredCell,
  ExitEvent,
  HealthStatus,
  InstanceRecord,
  InstanceState,
  ReconcileResult,
  TransitionEvent,
} from './types.js';
export { reconcile, instanceKey, isCellCompleted, isCellHealthy, isDependencyMet, readyCount, servingCount } from './reconcile.js';
export {
  announcedReady,
  backoffDelay,
  describeExit,
  draining,
  exitedUnexpectedly,
  launched,
  newInstanceRecord,
  pausedFor,
  probeFailed,
  probePassed,
  released,
  resumed,
  spawnFailed,
  stoppedOnRequest,
} from './transitions.js';

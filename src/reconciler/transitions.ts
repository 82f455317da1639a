import type { CellSpec } from '../manifest/index.js';
import type { ExitEvent, InstanceRecord, InstanceState } from './types.js';

/**
 * Pure state transitions of one instance. Each takes the record and returns the next one; the
 * supervisor persists it and records the change as an event. None reads the clock: `now` travels in.
 */

export function newInstanceRecord(cell: string, index: number, port: number, version: string, now: number): InstanceRecord {
  return {
    cell,
    index,
    state: 'stopped',
    pid: null,
    startTicks: null,
    port,
    health: 'unknown',
    healthDetail: null,
    restarts: 0,
    failures: 0,
    version,
    startedAt: null,
    readyAt: null,
    stateSince: now,
    retryAt: null,
    reason: null,
    hold: false,
    killedForHealth: false,
  };
}

function moveTo(rec: InstanceRecord, state: InstanceState, now: number, patch: Partial<InstanceRecord>): InstanceRecord {
  return { ...rec, ...patch, state, stateSince: rec.state === state ? rec.stateSince : now };
}

/** The process was spawned. */
export function launched(
  rec: InstanceRecord,
  p: { pid: number; startTicks: number; version: string; isRestart: boolean },
  now: number,
): InstanceRecord {
  return moveTo(rec, 'launching', now, {
    pid: p.pid,
    startTicks: p.startTicks,
    version: p.version,
    restarts: p.isRestart ? rec.restarts + 1 : rec.runEnded ? 0 : rec.restarts,
    failures: rec.runEnded ? 0 : rec.failures,
    runEnded: false,
    completed: false,
    startedAt: now,
    readyAt: null,
    retryAt: null,
    health: 'unknown',
    healthDetail: null,
    reason: null,
    hold: false,
    killedForHealth: false,
  });
}

/** The instance announced it serves through the SDK (the ready signal): it is ready now. */
export function announcedReady(rec: InstanceRecord, socket: string, now: number): InstanceRecord {
  const next = { ...rec, sdk: true, socket };
  return rec.state === 'launching' ? probePassed(next, now) : next;
}

/** A probe passed. Launching becomes ready; a ready instance records the pass. */
export function probePassed(rec: InstanceRecord, now: number): InstanceRecord {
  if (rec.state === 'launching') {
    return moveTo(rec, 'ready', now, { readyAt: now, health: 'passing', healthDetail: null, reason: null });
  }
  return { ...rec, health: 'passing', healthDetail: null };
}

/** A probe failed (`unhealthy` once `retries` failures in a row were seen by the health loop). */
export function probeFailed(rec: InstanceRecord, detail: string): InstanceRecord {
  return { ...rec, health: 'failing', healthDetail: detail };
}

export function pausedFor(rec: InstanceRecord, reason: string, now: number): InstanceRecord {
  return moveTo(rec, 'paused', now, { reason, health: 'unknown' });
}

/** Resumed after a pause: probes confirm readiness again before it counts as ready. */
export function resumed(rec: InstanceRecord, now: number): InstanceRecord {
  return moveTo(rec, 'launching', now, { reason: null, health: 'unknown' });
}

export function draining(rec: InstanceRecord, reason: string, now: number): InstanceRecord {
  return moveTo(rec, 'draining', now, { reason });
}

/**
 * Stopped on request (down, prune, restart): held, it stays down until released. Not held
 * (`hold` false), the reconciler decides: a scale-down's instance is forgotten, or started again
 * if the cell was scaled back up meanwhile. A stop asked for ends a streak of failures: the next
 * start (`cell restart` after a fix, a new version) gets all of `max_retries` again.
 */
export function stoppedOnRequest(rec: InstanceRecord, reason: string, now: number, hold = true): InstanceRecord {
  return moveTo(rec, 'stopped', now, { pid: null, startTicks: null, health: 'unknown', reason, hold, retryAt: null, completed: false, failures: 0 });
}

/** Puts an instance back under the reconciler (cell up / cell restart): a failed one starts afresh. */
export function released(rec: InstanceRecord, now: number): InstanceRecord {
  if (rec.state === 'failed') return moveTo(rec, 'stopped', now, { hold: false, failures: 0, reason: 'released after failure' });
  return { ...rec, hold: false };
}

export function describeExit(exit: ExitEvent): string {
  if (exit.signal) return `killed by ${exit.signal}`;
  // Adopted processes are not our children: their exit status cannot be known.
  if (exit.code === null) return 'exited (status unknown)';
  return `exit code ${exit.code}`;
}

/** Delay before the n-th consecutive failure's restart: at once, then backoff, 2×backoff, … capped. */
export function backoffDelay(failures: number, spec: CellSpec): number {
  if (failures <= 1) return 0;
  const delay = spec.restart.backoffMs * 2 ** (failures - 2);
  return Math.min(delay, spec.restart.maxBackoffMs);
}

/**
 * The process went away without being asked to (crash, kill -9, or killed by us for failing
 * health). Applies the restart policy, the backoff schedule and the crash-loop limit.
 */
export function exitedUnexpectedly(rec: InstanceRecord, exit: ExitEvent, spec: CellSpec, now: number): InstanceRecord {
  const why = rec.killedForHealth && rec.healthDetail ? `unhealthy: ${rec.healthDetail}` : describeExit(exit);
  const failedRun = rec.killedForHealth || exit.code !== 0 || exit.signal !== null;
  const cleared = { pid: null, startTicks: null, health: 'unknown' as const, killedForHealth: false };
  if (!failedRun && spec.restart.policy !== 'always') {
    return moveTo(rec, 'stopped', now, { ...cleared, hold: true, completed: true, reason: `completed: ${why} (restart policy ${spec.restart.policy})` });
  }
  // A failed run that may not be restarted is a failure to show and to stop waiting for (as
  // systemd's failed unit with Restart=no), not a quiet stop: `cell up` names it at once.
  if (spec.restart.policy === 'never') {
    return moveTo(rec, 'failed', now, { ...cleared, hold: true, retryAt: null, reason: `${why} (restart policy never)` });
  }
  // A run that stayed ready long enough resets the count: the crash is a new incident, not a loop.
  const wasStable = rec.readyAt !== null && now - rec.readyAt >= spec.restart.resetAfterMs;
  const failures = (wasStable ? 0 : rec.failures) + 1;
  if (failures > spec.restart.maxRetries) {
    return moveTo(rec, 'failed', now, {
      ...cleared,
      failures,
      hold: true,
      retryAt: null,
      reason: `crash loop: ${failures} failure${failures === 1 ? '' : 's'} in a row, last: ${why}`,
    });
  }
  return moveTo(rec, 'backoff', now, { ...cleared, failures, retryAt: now + backoffDelay(failures, spec), reason: why });
}

/** An instance could not be spawned at all (missing binary dir, fork failure). */
export function spawnFailed(rec: InstanceRecord, detail: string, spec: CellSpec, now: number): InstanceRecord {
  const failed = exitedUnexpectedly({ ...rec, killedForHealth: false }, { code: 127, signal: null }, spec, now);
  return { ...failed, reason: failed.reason?.replace('exit code 127', `spawn failed: ${detail}`) ?? detail };
}

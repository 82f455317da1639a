import type { Action, Desired, DesiredCell, InstanceRecord, ReconcileResult } from './types.js';

/** Key of an instance in maps and in the store: `<cell>/<index>`. */
export function instanceKey(cell: string, index: number): string {
  return `${cell}/${index}`;
}

/** Ready instances of `cell` among the ones the manifest asks for. */
export function readyCount(cell: string, desired: Desired, observed: Map<string, InstanceRecord>): number {
  const want = desired.cells.get(cell)?.spec.instances ?? 0;
  let ready = 0;
  for (let i = 0; i < want; i++) {
    if (observed.get(instanceKey(cell, i))?.state === 'ready') ready++;
  }
  return ready;
}

/**
 * Instances of `cell` (among the ones the manifest asks for) that serve its dependents: ready
 * ones, and completed ones (a one-shot job that exited cleanly is done, not down).
 */
export function servingCount(cell: string, desired: Desired, observed: Map<string, InstanceRecord>): number {
  const want = desired.cells.get(cell)?.spec.instances ?? 0;
  let serving = 0;
  for (let i = 0; i < want; i++) {
    const rec = observed.get(instanceKey(cell, i));
    if (rec?.state === 'ready' || (rec?.state === 'stopped' && rec.completed === true)) serving++;
  }
  return serving;
}

/**
 * Whether every instance of `cell` the manifest asks for has completed its run (a one-shot job
 * done) on the version the manifest asks for now: a run of an older version is to be done again
 * (its run line, env or sources changed), and what waits for it waits for that run.
 */
export function isCellCompleted(cell: string, desired: Desired, observed: Map<string, InstanceRecord>): boolean {
  const d = desired.cells.get(cell);
  const want = d?.spec.instances ?? 0;
  if (want === 0) return false;
  for (let i = 0; i < want; i++) {
    const rec = observed.get(instanceKey(cell, i));
    if (rec?.state !== 'stopped' || rec.completed !== true || rec.version !== d!.version) return false;
  }
  return true;
}

/**
 * Whether `dependent` may start as far as its dependency `dep` goes: `dep` completed, when
 * `dependent` waits for that (`depends_on: {dep: {condition: completed}}`), else healthy.
 */
export function isDependencyMet(dependent: DesiredCell['spec'], dep: string, desired: Desired, observed: Map<string, InstanceRecord>): boolean {
  return dependent.awaitsCompletionOf?.includes(dep) ? isCellCompleted(dep, desired, observed) : isCellHealthy(dep, desired, observed);
}

/** The dependencies of `spec` it needs running (all but those it only waited to see complete). */
function runningDeps(spec: DesiredCell['spec'] | undefined): string[] {
  if (!spec) return [];
  const completion = spec.awaitsCompletionOf ?? [];
  return completion.length === 0 ? spec.dependsOn : spec.dependsOn.filter((d) => !completion.includes(d));
}

/** A cell is healthy when every instance the manifest asks for is ready (or has completed its run). */
export function isCellHealthy(cell: string, desired: Desired, observed: Map<string, InstanceRecord>): boolean {
  const want = desired.cells.get(cell)?.spec.instances ?? 0;
  return want > 0 && servingCount(cell, desired, observed) >= want;
}

/**
 * The one decision function: given what the manifest asks for, what runs, and the time, which
 * actions bring the two closer. Pure: no I/O, no clock, no randomness, so it is tested with
 * thousands of fabricated states.
 *
 * Rules, per instance of each desired cell:
 * - absent or due in backoff → start, once every dependency is healthy (all its instances ready),
 *   or completed where the cell waits for that (a one-shot job such as a migration);
 * - launching for longer than the health grace → kill (counted as a failure);
 * - launching or ready while a dependency it needs running is down (no ready instance, or itself
 *   paused for a dependency of its own: transitively, in the same pass; a completed job is not
 *   down, and a job waited for to complete is not needed running) → pause; paused while every
 *   dependency is met again → resume (hysteresis: pause on "down", resume on "healthy");
 * - beyond the wanted instance count → stop, then forget once stopped.
 * Instances that hold (failed, stopped by policy or request) are left alone.
 */
export function reconcile(desired: Desired, observed: Map<string, InstanceRecord>, now: number): ReconcileResult {
  const actions: Action[] = [];
  let wakeAt: number | null = null;
  const wake = (t: number) => {
    if (wakeAt === null || t < wakeAt) wakeAt = t;
  };

  // Down: nothing serves, or it is being paused for a down dependency of its own. Worked out
  // through the whole graph at once, so that a crash pauses every level below it in this pass,
  // not one level per pass from the state before it. A completed job is never down: its work is
  // done, whatever its own dependencies do now. And a cell that waited for a job's completion
  // does not depend on the job running: a re-run of the job (or its failure) pauses nothing.
  const down = new Map<string, boolean>();
  const isDown = (name: string): boolean => {
    const known = down.get(name);
    if (known !== undefined) return known;
    down.set(name, false); // dependency cycles are refused by the manifest; this only guards
    const spec = desired.cells.get(name)?.spec;
    const result = !isCellCompleted(name, desired, observed) && (servingCount(name, desired, observed) === 0 || runningDeps(spec).some(isDown));
    down.set(name, result);
    return result;
  };

  for (const [name, cell] of desired.cells) {
    // A lazy cell waits for its first discovery (socket activation).
    if (cell.spec.lazy && !cell.activated) continue;
    const deps = cell.spec.dependsOn;
    const depsHealthy = deps.every((d) => isDependencyMet(cell.spec, d, desired, observed));
    const downDep = runningDeps(cell.spec).find(isDown);

    for (let i = 0; i < cell.spec.instances; i++) {
      const rec = observed.get(instanceKey(name, i));
      if (!rec) {
        if (depsHealthy) actions.push({ type: 'start', cell: name, index: i, isRestart: false });
        continue;
      }
      if (rec.hold) continue;
      switch (rec.state) {
        case 'stopped':
          if (depsHealthy) actions.push({ type: 'start', cell: name, index: i, isRestart: !rec.runEnded });
          break;
        case 'backoff':
          if (rec.retryAt !== null && rec.retryAt > now) wake(rec.retryAt);
          else if (depsHealthy) actions.push({ type: 'start', cell: name, index: i, isRestart: true });
          break;
        case 'launching':
        case 'ready':
          if (downDep !== undefined) {
            actions.push({ type: 'pause', cell: name, index: i, reason: `dependency ${downDep} is down` });
          } else if (rec.state === 'launching' && rec.pid !== null && !rec.killedForHealth) {
            // Grace counts from entering `launching` (a start, or a resume after a pause).
            const deadline = rec.stateSince + cell.spec.health.graceMs;
            if (now >= deadline) {
              actions.push({
                type: 'kill-unhealthy',
                cell: name,
                index: i,
                reason: `not healthy within grace ${cell.spec.health.graceMs}ms${rec.healthDetail ? ` (${rec.healthDetail})` : ''}`,
              });
            } else {
              wake(deadline);
            }
          }
          break;
        case 'paused':
          if (depsHealthy) actions.push({ type: 'resume', cell: name, index: i });
          break;
        case 'draining':
        case 'failed':
          break;
      }
    }
  }

  // Instances beyond the wanted count (scale down), or of a cell with fewer instances now. A
  // ready one stays while none of those kept is ready yet but one is on its way (a scale-down
  // in the middle of a rolling restart): the cell keeps an instance to serve with.
  const servingKept = new Set<string>();
  const comingKept = new Set<string>();
  for (const rec of observed.values()) {
    const cell = desired.cells.get(rec.cell);
    if (!cell || rec.index >= cell.spec.instances) continue;
    if (rec.state === 'ready') servingKept.add(rec.cell);
    // Draining: a kept instance is only drained to be replaced (a restart, a new version, a
    // failed check); a down stops the whole mesh anyway.
    else if (rec.state === 'launching' || rec.state === 'backoff' || rec.state === 'draining' || (rec.state === 'stopped' && !rec.hold)) comingKept.add(rec.cell);
  }
  for (const rec of observed.values()) {
    const cell = desired.cells.get(rec.cell);
    if (!cell || rec.index < cell.spec.instances) continue;
    if (rec.state === 'stopped' || rec.state === 'failed') {
      actions.push({ type: 'forget', cell: rec.cell, index: rec.index });
    } else if (rec.state === 'ready' && !servingKept.has(rec.cell) && comingKept.has(rec.cell)) {
      continue;
    } else if (rec.state !== 'draining') {
      actions.push({ type: 'stop', cell: rec.cell, index: rec.index, reason: 'scaled down' });
    }
  }
  return { actions, wakeAt };
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffDelay,
  draining,
  exitedUnexpectedly,
  instanceKey,
  launched,
  newInstanceRecord,
  pausedFor,
  probePassed,
  reconcile,
  resumed,
  type Action,
  type Desired,
  type InstanceRecord,
} from '../../src/reconciler/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { fake } from '../support/fake.js';

/**
 * A tiny world for decision tests: a manual clock, a process table of records, and an executor
 * that applies actions at once (spawn succeeds; `healthy` decides whether probes pass).
 */
class World {
  clock = new ManualClock();
  observed = new Map<string, InstanceRecord>();
  healthy = new Set<string>();
  startLog: { cell: string; index: number; at: number }[] = [];
  nextPid = 100;
  constructor(public desired: Desired) {}

  step(): Action[] {
    const now = this.clock.now();
    const { actions } = reconcile(this.desired, this.observed, now);
    for (const a of actions) {
      const key = instanceKey(a.cell, a.index);
      const spec = this.desired.cells.get(a.cell)!;
      const rec = this.observed.get(key) ?? newInstanceRecord(a.cell, a.index, 4000, spec.version, now);
      if (a.type === 'start') {
        this.startLog.push({ cell: a.cell, index: a.index, at: now });
        this.observed.set(key, launched(rec, { pid: this.nextPid++, startTicks: 1, version: spec.version, isRestart: a.isRestart }, now));
      } else if (a.type === 'pause') this.observed.set(key, pausedFor(rec, a.reason, now));
      else if (a.type === 'resume') this.observed.set(key, resumed(rec, now));
      else if (a.type === 'kill-unhealthy') this.crash(a.cell, a.index, { code: null, signal: 'SIGKILL' });
      else if (a.type === 'forget') this.observed.delete(key);
    }
    // Probes: launching instances of healthy cells become ready at once.
    for (const [key, rec] of this.observed) {
      if (rec.state === 'launching' && this.healthy.has(rec.cell)) this.observed.set(key, probePassed(rec, now));
    }
    return actions;
  }

  settle(): void {
    // Probes turn launching into ready after the actions, so a quiet step is not yet the end.
    let quiet = 0;
    for (let i = 0; i < 50 && quiet < 2; i++) quiet = this.step().length === 0 ? quiet + 1 : 0;
  }

  crash(cell: string, index: number, exit: { code: number | null; signal: string | null } = { code: 1, signal: null }): void {
    const key = instanceKey(cell, index);
    const rec = this.observed.get(key)!;
    this.observed.set(key, exitedUnexpectedly(rec, exit, this.desired.cells.get(cell)!.spec, this.clock.now()));
  }

  state(cell: string, index = 0): string | undefined {
    return this.observed.get(instanceKey(cell, index))?.state;
  }
}

const diamond = () =>
  fake.desired(
    fake.cell('db'),
    fake.cell('api', { dependsOn: ['db'], instances: 2 }),
    fake.cell('cache', { dependsOn: ['db'] }),
    fake.cell('web', { dependsOn: ['api', 'cache'] }),
  );

test('reconciler - starts cells only after their dependencies are healthy', () => {
  const w = new World(diamond());
  const first = w.step();
  assert.deepEqual(first.map((a) => a.type === 'start' && a.cell), ['db']);
  w.healthy.add('db');
  w.settle();
  assert.equal(w.state('api', 0), 'launching');
  assert.equal(w.state('web'), undefined, 'web waits for api and cache');
  w.healthy.add('api');
  w.settle();
  assert.equal(w.state('web'), undefined, 'cache is not healthy yet');
  w.healthy.add('cache');
  w.healthy.add('web');
  w.settle();
  assert.deepEqual([...w.observed.values()].map((r) => r.state), ['ready', 'ready', 'ready', 'ready', 'ready']);
  assert.deepEqual(w.startLog.map((s) => s.cell), ['db', 'api', 'api', 'cache', 'web']);
});

test('reconciler - a crash restarts at once, then backs off 2s, 4s, 8s, 16s, then fails', () => {
  const w = new World(fake.desired(fake.cell('crashy')));
  w.step();
  const starts: number[] = [w.clock.now()];
  for (let i = 0; i < 10; i++) {
    w.crash('crashy', 0);
    if (w.state('crashy') === 'failed') break;
    // Advance in small steps, as the daemon's timer would, until the reconciler restarts it.
    const before = w.startLog.length;
    for (let t = 0; t < 1000 && w.startLog.length === before; t++) {
      w.step();
      if (w.startLog.length === before) w.clock.advance(100);
    }
    starts.push(w.clock.now());
  }
  const gaps = starts.slice(1).map((t, i) => t - starts[i]);
  assert.deepEqual(gaps, [0, 2000, 4000, 8000, 16000]);
  assert.equal(w.state('crashy'), 'failed');
  assert.match(w.observed.get('crashy/0')!.reason!, /crash loop: 6 failures in a row, last: exit code 1/);
  assert.equal(w.observed.get('crashy/0')!.restarts, 5);
  assert.equal(w.step().length, 0, 'a failed instance is left alone');
});

test('reconciler - backoff delay is capped by max_backoff', () => {
  const spec = fake.cell('x', { restart: { policy: 'always', backoffMs: 1000, maxBackoffMs: 5000, maxRetries: 99, resetAfterMs: 1000 } });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, spec)), [0, 1000, 2000, 4000, 5000, 5000]);
});

test('reconciler - a stable run resets the failure count', () => {
  const w = new World(fake.desired(fake.cell('svc')));
  w.healthy.add('svc');
  w.settle();
  w.crash('svc', 0);
  w.settle();
  w.crash('svc', 0);
  assert.equal(w.observed.get('svc/0')!.failures, 2);
  w.clock.advance(2000);
  w.settle();
  w.clock.advance(31_000);
  w.crash('svc', 0);
  assert.equal(w.observed.get('svc/0')!.failures, 1, 'ready for longer than reset_after');
  assert.equal(w.observed.get('svc/0')!.retryAt, w.clock.now(), 'restart at once again');
});

test('reconciler - a down dependency pauses its dependents, transitively, and they resume', () => {
  const w = new World(diamond());
  for (const c of ['db', 'api', 'cache', 'web']) w.healthy.add(c);
  w.settle();
  w.healthy.delete('db');
  w.crash('db', 0);
  w.settle();
  assert.equal(w.state('api', 0), 'paused');
  assert.equal(w.state('api', 1), 'paused');
  assert.equal(w.state('cache'), 'paused');
  assert.equal(w.state('web'), 'paused', 'web is paused because api and cache are down');
  assert.match(w.observed.get('web/0')!.reason!, /dependency (api|cache) is down/);
  w.healthy.add('db');
  w.clock.advance(2000);
  w.settle();
  assert.deepEqual([...w.observed.values()].map((r) => r.state), ['ready', 'ready', 'ready', 'ready', 'ready']);
});

test('reconciler - a crash pauses every level below it in one pass, not one level per pass', () => {
  const never = { policy: 'never' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  const w = new World(fake.desired(fake.cell('a', { restart: never }), fake.cell('b', { dependsOn: ['a'] }), fake.cell('c', { dependsOn: ['b'] }), fake.cell('d', { dependsOn: ['c'] })));
  for (const c of ['a', 'b', 'c', 'd']) w.healthy.add(c);
  w.settle();
  w.crash('a', 0);
  // Failed for good: nothing else will wake the reconciler, so one pass must reach every level.
  const actions = w.step();
  assert.deepEqual(actions.filter((x) => x.type === 'pause').map((x) => x.cell), ['b', 'c', 'd']);
  assert.deepEqual(['a', 'b', 'c', 'd'].map((c) => w.state(c)), ['failed', 'paused', 'paused', 'paused']);
});

test('reconciler - one crashed instance of two does not pause dependents', () => {
  const w = new World(diamond());
  for (const c of ['db', 'api', 'cache', 'web']) w.healthy.add(c);
  w.settle();
  w.healthy.delete('api');
  w.crash('api', 1);
  w.step();
  assert.equal(w.state('web'), 'ready');
});

test('reconciler - launching past the grace period is killed and counted as a failure', () => {
  const w = new World(fake.desired(fake.cell('slow', { health: { kind: 'tcp', port: '$PORT', intervalMs: 1000, timeoutMs: 500, retries: 3, graceMs: 3000 } })));
  w.step();
  w.clock.advance(2999);
  assert.equal(w.step().length, 0);
  assert.equal(reconcile(w.desired, w.observed, w.clock.now()).wakeAt, w.clock.now() + 1);
  w.clock.advance(1);
  const actions = w.step();
  assert.equal(actions[0]?.type, 'kill-unhealthy');
  assert.equal(w.state('slow'), 'backoff');
});

test('reconciler - restart policies never and on-failure hold the instance: stopped after a clean exit, failed after a failed run under never', () => {
  const never = { policy: 'never' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  const w = new World(fake.desired(
    fake.cell('once', { restart: never }),
    fake.cell('done', { restart: never }),
    fake.cell('job', { restart: { policy: 'on-failure', backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 } }),
  ));
  w.step();
  w.crash('once', 0);
  w.crash('done', 0, { code: 0, signal: null });
  w.crash('job', 0, { code: 0, signal: null });
  assert.equal(w.step().length, 0);
  assert.equal(w.state('once'), 'failed');
  assert.equal(w.state('done'), 'stopped');
  assert.equal(w.state('job'), 'stopped');
});

test('reconciler - a one-shot job that completed serves its dependents; one that failed does not', () => {
  const onFailure = { policy: 'on-failure' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  const w = new World(fake.desired(fake.cell('migrate', { restart: onFailure }), fake.cell('app', { dependsOn: ['migrate'] })));
  w.healthy.add('migrate');
  w.healthy.add('app');
  w.settle();
  assert.equal(w.state('app'), 'ready');
  w.crash('migrate', 0, { code: 0, signal: null });
  w.settle();
  assert.equal(w.state('migrate'), 'stopped');
  assert.equal(w.state('app'), 'ready', 'not paused: its dependency is done, not down');

  const w2 = new World(fake.desired(fake.cell('migrate', { restart: { ...onFailure, policy: 'never' } }), fake.cell('app', { dependsOn: ['migrate'] })));
  w2.healthy.add('migrate');
  w2.settle();
  w2.crash('migrate', 0, { code: 0, signal: null });
  w2.settle();
  assert.equal(w2.state('app'), 'launching', 'a completed dependency lets it start');
  const w3 = new World(fake.desired(fake.cell('migrate', { restart: { ...onFailure, policy: 'never' } }), fake.cell('app', { dependsOn: ['migrate'] })));
  w3.step();
  w3.crash('migrate', 0, { code: 2, signal: null });
  w3.settle();
  assert.equal(w3.state('migrate'), 'failed');
  assert.equal(w3.state('app'), undefined, 'a failed job does not');
});

test('reconciler - a cell that waits for a job to complete starts only once it has, not while it runs', () => {
  const onFailure = { policy: 'on-failure' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  const w = new World(
    fake.desired(
      fake.cell('migrate', { restart: onFailure }),
      fake.cell('db'),
      fake.cell('app', { dependsOn: ['db', 'migrate'], awaitsCompletionOf: ['migrate'] }),
    ),
  );
  w.healthy.add('migrate');
  w.healthy.add('db');
  w.healthy.add('app');
  w.settle();
  assert.equal(w.state('migrate'), 'ready');
  assert.equal(w.state('app'), undefined, 'the job runs (ready): app waits for its completion');
  // A failed run is retried (on-failure); app still waits.
  w.crash('migrate', 0, { code: 1, signal: null });
  w.clock.advance(20);
  w.settle();
  assert.equal(w.state('app'), undefined);
  w.crash('migrate', 0, { code: 0, signal: null });
  w.settle();
  assert.equal(w.state('migrate'), 'stopped');
  assert.equal(w.state('app'), 'ready', 'started on the completion');
});

test('reconciler - a re-run of a completed job pauses nothing below it: not the cells that waited for its completion, not those below another completed job', () => {
  const job = { policy: 'on-failure' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  for (const longForm of [true, false]) {
    // job1 -> job2 -> app -> web: two jobs in a row, then servers.
    const w = new World(
      fake.desired(
        fake.cell('job1', { restart: job }),
        fake.cell('job2', { restart: job, dependsOn: ['job1'], awaitsCompletionOf: longForm ? ['job1'] : [] }),
        fake.cell('app', { dependsOn: ['job2'], awaitsCompletionOf: longForm ? ['job2'] : [] }),
        fake.cell('web', { dependsOn: ['app'] }),
      ),
    );
    for (const c of ['job1', 'job2', 'app', 'web']) w.healthy.add(c);
    w.settle();
    w.crash('job1', 0, { code: 0, signal: null });
    w.settle();
    w.crash('job2', 0, { code: 0, signal: null });
    w.settle();
    assert.deepEqual(['job1', 'job2', 'app', 'web'].map((c) => w.state(c)), ['stopped', 'stopped', 'ready', 'ready'], `long form ${longForm}`);
    // job1 runs again (cell restart job1), then fails for good: nothing below it is paused.
    const rec = w.observed.get('job1/0')!;
    w.observed.set('job1/0', launched({ ...rec, completed: false, hold: false }, { pid: 999, startTicks: 1, version: rec.version, isRestart: true }, w.clock.now()));
    w.healthy.delete('job1');
    w.step();
    assert.deepEqual(['job2', 'app', 'web'].map((c) => w.state(c)), ['stopped', 'ready', 'ready'], `long form ${longForm}: while job1 runs again`);
    w.crash('job1', 0, { code: 1, signal: null });
    w.settle();
    assert.deepEqual(['job2', 'app', 'web'].map((c) => w.state(c)), ['stopped', 'ready', 'ready'], `long form ${longForm}: job1 failing`);
  }
  // A server is still needed running: its crash pauses what depends on it, as before.
  const w = new World(fake.desired(fake.cell('db'), fake.cell('app', { dependsOn: ['db'] })));
  w.healthy.add('db');
  w.healthy.add('app');
  w.settle();
  w.crash('db', 0);
  w.step();
  assert.equal(w.state('app'), 'paused');
});

test('reconciler - a job done on an older version is not done: what waits for it waits for the new run', () => {
  const job = { policy: 'on-failure' as const, backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 };
  const w = new World(fake.desired(fake.cell('migrate', { restart: job }), fake.cell('seed', { restart: job, dependsOn: ['migrate'], awaitsCompletionOf: ['migrate'] })));
  w.healthy.add('migrate');
  w.healthy.add('seed');
  w.settle();
  w.crash('migrate', 0, { code: 0, signal: null });
  w.settle();
  w.crash('seed', 0, { code: 0, signal: null });
  w.settle();
  assert.deepEqual([w.state('migrate'), w.state('seed')], ['stopped', 'stopped']);
  // `cell up` after both run lines changed: new versions, both released to run again.
  for (const name of ['migrate', 'seed']) {
    w.desired.cells.get(name)!.version = 'v2';
    const rec = w.observed.get(`${name}/0`)!;
    w.observed.set(`${name}/0`, { ...rec, hold: false });
  }
  w.startLog.length = 0;
  w.step();
  assert.deepEqual(w.startLog.map((s) => s.cell), ['migrate'], 'seed waits for the new run of migrate');
  w.crash('migrate', 0, { code: 0, signal: null });
  w.step();
  assert.deepEqual(w.startLog.map((s) => s.cell), ['migrate', 'seed']);
});

test('reconciler - scale down stops the extra instances, then forgets them', () => {
  const w = new World(fake.desired(fake.cell('api', { instances: 3 })));
  w.healthy.add('api');
  w.settle();
  w.desired.cells.get('api')!.spec.instances = 1;
  const actions = w.step();
  assert.deepEqual(actions.map((a) => `${a.type} ${a.cell}/${a.index}`), ['stop api/1', 'stop api/2']);
});

test('reconciler - a scale-down keeps a ready extra instance while the kept ones are still starting (a rolling restart), then stops it', () => {
  const w = new World(fake.desired(fake.cell('api', { instances: 3 })));
  w.healthy.add('api');
  w.settle();
  // api/0 is being replaced (launching again), api/1 and api/2 serve; then a scale to 1.
  w.healthy.delete('api');
  w.crash('api', 0);
  w.step();
  assert.equal(w.state('api', 0), 'launching');
  w.desired.cells.get('api')!.spec.instances = 1;
  const stops = (actions: Action[]) => actions.filter((a) => a.type === 'stop').map((a) => `${a.cell}/${a.index}`);
  assert.deepEqual(stops(w.step()), [], 'api/1 and api/2 keep serving while api/0 starts');
  w.healthy.add('api');
  w.step();
  assert.equal(w.state('api', 0), 'ready');
  assert.deepEqual(stops(w.step()), ['api/1', 'api/2'], 'stopped once api/0 serves');
});

test('reconciler - a scale-down keeps a ready extra instance while a kept one is draining to be replaced (the first step of a roll), then stops it', () => {
  const w = new World(fake.desired(fake.cell('api', { instances: 3 })));
  w.healthy.add('api');
  w.settle();
  // `cell restart` drains api/0 before its stop and start; a scale to 1 comes meanwhile.
  const key = instanceKey('api', 0);
  w.observed.set(key, draining(w.observed.get(key)!, 'restart requested', w.clock.now()));
  w.desired.cells.get('api')!.spec.instances = 1;
  const stops = (actions: Action[]) => actions.filter((a) => a.type === 'stop').map((a) => `${a.cell}/${a.index}`);
  assert.deepEqual(stops(w.step()), [], 'api/1 and api/2 keep serving while api/0 is replaced');
  // Its new process starts (launching) and passes its check.
  w.observed.set(key, resumed(w.observed.get(key)!, w.clock.now()));
  assert.deepEqual(stops(w.step()), [], 'api/0 starting again: still coming');
  assert.equal(w.state('api', 0), 'ready');
  assert.deepEqual(stops(w.step()), ['api/1', 'api/2'], 'stopped once api/0 serves');
});

test('reconciler - a scale-down whose kept instances cannot come (failed) stops the extras all the same', () => {
  const w = new World(fake.desired(fake.cell('api', { instances: 2, restart: { policy: 'never', backoffMs: 10, maxBackoffMs: 10, maxRetries: 5, resetAfterMs: 10 } })));
  w.healthy.add('api');
  w.settle();
  w.crash('api', 0);
  assert.equal(w.state('api', 0), 'failed');
  w.desired.cells.get('api')!.spec.instances = 1;
  assert.deepEqual(w.step().filter((a) => a.type === 'stop').map((a) => `${a.cell}/${a.index}`), ['api/1']);
});

test('reconciler - random crash storms never start a duplicate nor a cell before its dependencies', () => {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 300; round++) {
    const w = new World(diamond());
    for (const c of ['db', 'api', 'cache', 'web']) w.healthy.add(c);
    for (let i = 0; i < 40; i++) {
      const { actions } = reconcile(w.desired, w.observed, w.clock.now());
      const starts = actions.filter((a) => a.type === 'start');
      const keys = starts.map((a) => instanceKey(a.cell, a.index));
      assert.equal(new Set(keys).size, keys.length, 'no duplicate start');
      for (const a of starts) {
        const rec = w.observed.get(instanceKey(a.cell, a.index));
        assert.ok(!rec || !['launching', 'ready', 'paused', 'draining'].includes(rec.state), 'never starts a live instance');
        for (const dep of w.desired.cells.get(a.cell)!.spec.dependsOn) {
          const want = w.desired.cells.get(dep)!.spec.instances;
          for (let k = 0; k < want; k++) assert.equal(w.state(dep, k), 'ready', `${a.cell} started before ${dep}`);
        }
      }
      w.step();
      const live = [...w.observed.values()].filter((r) => r.state === 'ready' || r.state === 'launching');
      if (live.length && rand() < 0.4) {
        const victim = live[Math.floor(rand() * live.length)];
        w.crash(victim.cell, victim.index);
      }
      w.clock.advance(Math.floor(rand() * 3000));
    }
  }
});

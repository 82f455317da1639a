import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import {
  bootTimeMs,
  clockTicksPerSecond,
  isDeadState,
  pageSize,
  parseProcStat,
  processStartTimeMs,
  readProcStat,
} from '../../src/supervisor/proc.js';

// Field 22 (start time) is 4242; fields after it are padding.
const tail = 'S 1 77 77 0 -1 4194560 100 0 0 0 12 34 0 0 20 0 1 0 4242 1000000 25 18446744073709551615 0 0';

test('proc - parseProcStat splits after the last parenthesis of the command name', () => {
  const stat = parseProcStat(`1234 (we ird) (name)) ${tail}`);
  assert.deepEqual(stat, {
    state: 'S',
    ppid: 1,
    pgrp: 77,
    utimeTicks: 12,
    stimeTicks: 34,
    startTicks: 4242,
    rssBytes: 25 * pageSize(),
  });
  assert.equal(parseProcStat('garbage'), undefined);
  assert.equal(parseProcStat('1 (x) S 1 2'), undefined);
});

test('proc - readProcStat reads this process', () => {
  const stat = readProcStat(process.pid);
  assert.ok(stat);
  assert.equal(stat.ppid, process.ppid);
  assert.equal(isDeadState(stat.state), false);
  assert.ok(stat.startTicks > 0);
  assert.ok(stat.rssBytes > 1024 * 1024);
  assert.equal(readProcStat(2 ** 22 + 999), undefined);
  assert.equal(readProcStat(0), undefined);
  assert.equal(readProcStat(-1), undefined);
});

test('proc - clock ticks and page size match getconf', () => {
  assert.equal(clockTicksPerSecond(), Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })));
  assert.equal(pageSize(), Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' })));
});

test('proc - processStartTimeMs gives the wall-clock start of a process', () => {
  const stat = readProcStat(process.pid);
  assert.ok(stat);
  const expected = Date.now() - process.uptime() * 1000;
  // Tick resolution (10 ms) plus the time node took before its uptime clock started.
  assert.ok(Math.abs(processStartTimeMs(stat.startTicks) - expected) < 2000);
  assert.ok(bootTimeMs() < Date.now());
  assert.ok(bootTimeMs() > Date.UTC(2000, 0, 1));
});

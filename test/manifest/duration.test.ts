import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_DURATION_MS, formatDuration, formatSize, parseDuration, parseSize } from '../../src/manifest/duration.js';

test('manifest duration - parses bare milliseconds and unit strings', () => {
  const cases: [string | number, number][] = [
    [0, 0],
    [250, 250],
    ['500ms', 500],
    ['2s', 2000],
    ['1.5s', 1500],
    ['.5s', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h2m3s4ms', 3_723_004],
    [' 5s ', 5000],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, String(input));
});

test('manifest duration - rejects what is not a duration with the hint', () => {
  for (const input of ['5 parsecs', '5', '', 's', '-1s', '1d', '1.5', -1, 1.5, '5 s']) {
    assert.throws(() => parseDuration(input), /invalid duration .* \(use e\.g\. 500ms, 2s, 1m\)$/, String(input));
  }
  assert.throws(() => parseDuration('1000h'), /too long/);
  assert.equal(parseDuration(MAX_DURATION_MS), MAX_DURATION_MS);
});

test('manifest duration - formatDuration is short and reads back to the same value', () => {
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(1000), '1s');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(60_000), '1m');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(3_600_000), '1h');
  assert.equal(formatDuration(3_723_004), '1h2m3.004s');
  for (const ms of [0, 1, 999, 1001, 59_999, 61_001, 3_599_999, 86_400_000, MAX_DURATION_MS]) {
    assert.equal(parseDuration(formatDuration(ms)), ms, String(ms));
  }
});

test('manifest duration - sizes are bytes or 1024-based units', () => {
  assert.equal(parseSize(100), 100);
  assert.equal(parseSize('512KB'), 512 * 1024);
  assert.equal(parseSize('10MB'), 10 * 1024 * 1024);
  assert.equal(parseSize('1.5GB'), 1.5 * 1024 ** 3);
  assert.equal(parseSize('2mb'), 2 * 1024 * 1024);
  assert.throws(() => parseSize('10 MiB'), /invalid size "10 MiB" \(use e\.g\. 512KB, 10MB, 1GB\)/);
  assert.throws(() => parseSize(-1), /invalid size/);
  assert.equal(formatSize(10 * 1024 * 1024), '10MB');
  assert.equal(formatSize(1536), '1.5KB');
  assert.equal(formatSize(100), '100B');
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDuration } from '../../../src/core/duration.js';
import { NexusError } from '../../../src/core/errors.js';

describe('parseDuration', () => {
  it('reads each unit', () => {
    const cases: [string, number][] = [
      ['250ms', 250],
      ['3s', 3000],
      ['5m', 300_000],
      ['2h', 7_200_000],
      ['7d', 604_800_000],
      ['1w', 604_800_000],
      ['0s', 0],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  });

  it('reads fractions, rounded to the millisecond', () => {
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration('0.25s'), 250);
    assert.equal(parseDuration('1.5ms'), 2);
  });

  it('adds up compound durations', () => {
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1d12h'), 129_600_000);
    assert.equal(parseDuration('1m30s500ms'), 90_500);
  });

  it('reads a bare number as milliseconds', () => {
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('1500'), 1500);
  });

  it('trims surrounding whitespace', () => {
    assert.equal(parseDuration('  3s '), 3000);
  });

  it('rejects bad input with CONFIG_INVALID, naming the setting', () => {
    for (const text of [
      '',
      '   ',
      'abc',
      '3x',
      's',
      '-1s',
      '3s5',
      '1.s',
      '.5s',
      '3 s',
      '1h 30m',
      '3S',
      '1.5',
    ]) {
      assert.throws(
        () => parseDuration(text, 'STREAM_INTERVAL'),
        (err: unknown) =>
          err instanceof NexusError &&
          err.code === 'CONFIG_INVALID' &&
          err.message.startsWith(`STREAM_INTERVAL: "${text}" is not a duration`),
        JSON.stringify(text),
      );
    }
  });

  it('uses a generic name when none is given', () => {
    assert.throws(() => parseDuration('soon'), /^NexusError: duration: "soon" is not a duration/);
  });
});

describe('formatDuration', () => {
  it('formats milliseconds, seconds, minutes and hours', () => {
    const cases: [number, string][] = [
      [0, '0ms'],
      [950, '950ms'],
      [1000, '1.0s'],
      [12_345, '12.3s'],
      [60_000, '1m00s'],
      [245_000, '4m05s'],
      [3_599_000, '59m59s'],
      [3_600_000, '1h00m'],
      [7_800_000, '2h10m'],
      [90_000_000, '25h00m'],
    ];
    for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, String(ms));
  });

  it('round-trips whole seconds and minutes through parseDuration', () => {
    assert.equal(parseDuration(formatDuration(245_000)), 245_000); // 4m05s
    assert.equal(parseDuration(formatDuration(7_800_000)), 7_800_000);
    assert.equal(parseDuration(formatDuration(950)), 950);
  });

  it('prints ? for non-finite input', () => {
    assert.equal(formatDuration(Number.NaN), '?');
    assert.equal(formatDuration(Number.POSITIVE_INFINITY), '?');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAgo, formatSpan } from '../../../dashboard/src/format.js';

describe('dashboard formatSpan and formatAgo: how long, as the pages say it', () => {
  it('two units from an hour on (1 h 55 min, not "1 h"), the second left out when nought; seconds only under a minute', () => {
    assert.deepEqual(
      [
        0,
        59.9,
        60,
        3599,
        3600,
        6900,
        7200,
        86_399,
        86_400,
        90_000,
        6 * 86_400 + 82_800,
        30 * 86_400,
      ].map(formatSpan),
      [
        '0 s',
        '59 s',
        '1 min',
        '59 min',
        '1 h',
        '1 h 55 min',
        '2 h',
        '23 h 59 min',
        '1 d',
        '1 d 1 h',
        '6 d 23 h',
        '30 d',
      ],
    );
  });

  it('"ago" is the span to now; a time in the future (clocks apart) reads as now, no time as nothing', () => {
    const now = Date.UTC(2026, 11, 6, 12);
    assert.equal(formatAgo(now - 6_900_000, now), '1 h 55 min ago');
    assert.equal(formatAgo(now + 5000, now), '0 s ago');
    assert.equal(formatAgo(Number.NaN, now), '');
  });
});

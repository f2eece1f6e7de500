import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAgo } from '../../../dashboard/src/format.js';

describe('dashboard formatAgo: how long ago, as the pages say it', () => {
  it('two units from an hour on (1 h 55 min, not "1 h"), the second left out when nought', () => {
    const now = Date.UTC(2026, 11, 6, 12);
    const ago = (s: number): string => formatAgo(now - s * 1000, now);
    assert.deepEqual(
      [
        0,
        59,
        60,
        3599,
        3600,
        6900,
        7200,
        86_399,
        86_400,
        90_000,
        6 * 86_400 + 82_800,
        7 * 86_400,
        30 * 86_400,
      ].map(ago),
      [
        '0 s ago',
        '59 s ago',
        '1 min ago',
        '59 min ago',
        '1 h ago',
        '1 h 55 min ago',
        '2 h ago',
        '23 h 59 min ago',
        '1 d ago',
        '1 d 1 h ago',
        '6 d 23 h ago',
        '7 d ago',
        '30 d ago',
      ],
    );
    // A time in the future (clocks apart) reads as now; no time reads as nothing.
    assert.equal(formatAgo(now + 5000, now), '0 s ago');
    assert.equal(formatAgo(Number.NaN, now), '');
  });
});

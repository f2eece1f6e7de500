import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LabelCache } from '../../../src/streamer/csv/label-cache.js';

/** Looks every text up (keeping it on a miss) `rounds` times in order; returns the hits. */
function cycle(cache: LabelCache<number>, texts: readonly string[], rounds: number): number {
  let hits = 0;
  for (let r = 0; r < rounds; r++) {
    for (const [i, t] of texts.entries()) {
      if (cache.get(t) === undefined) cache.set(t, i);
      else hits++;
    }
  }
  return hits;
}

const names = (prefix: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

describe('label cache', () => {
  it('hits every series after the first round when they fit', () => {
    const cache = new LabelCache<number>(100, 1_000_000, 1000);
    assert.equal(cycle(cache, names('s', 50), 3), 100);
  });

  it('keeps hitting what it holds when a fleet has more series than it holds (cleared when full, it never hit)', () => {
    const cache = new LabelCache<number>(10, 1_000_000, 1000);
    // 25 series read in a cycle, 8 times: the 10 kept hit on each later round.
    const hits = cycle(cache, names('s', 25), 8);
    assert.ok(hits >= 10 * 7 - 10, `hits ${hits}`);
    assert.equal(cache.size, 10);
  });

  it('empties and rests when what it holds has stopped being read, then starts again (a fleet whose series changed)', () => {
    const cache = new LabelCache<number>(10, 1_000_000, 1000);
    cycle(cache, names('old', 10), 2);
    // The old series are gone: after a round of 2 x 10 lookups that all miss, the cache empties
    // and rests for 16 rounds (320 lookups), then keeps the new series, which hit on every later pass.
    const hits = cycle(cache, names('new', 10), 100);
    assert.ok(hits >= 10 * 25, `hits ${hits}`);
    assert.equal(cache.get('old-0'), undefined);
    assert.equal(cache.get('new-0'), 0);
  });

  it('rests instead of churning on a fleet far larger than it holds (holding its series would cost more than parsing them)', () => {
    const cache = new LabelCache<number>(10, 1_000_000, 1000);
    // 1,000 series in a cycle: full after 10, then a round of 20 lookups with nothing to hit.
    cycle(cache, names('s', 1000), 1);
    assert.ok(cache.isResting);
    assert.equal(cache.size, 0);
    // While resting it keeps nothing and says so.
    assert.equal(cache.keeps('s-1'), false);
    cache.set('s-1', 1);
    assert.equal(cache.size, 0);
  });

  it('keeps no text longer than its bound, and no more characters than its budget', () => {
    const cache = new LabelCache<number>(100, 25, 10);
    cache.set('x'.repeat(11), 1);
    assert.equal(cache.size, 0);
    for (const t of names('abcdefgh', 5)) cache.set(t, 1);
    assert.equal(cache.size, 2, 'two texts of 10 characters in a budget of 25');
  });

  it('says when it fills and when it empties to rest (the streamer bounds its heap growth in between)', () => {
    const cache = new LabelCache<number>(10, 1_000_000, 1000);
    const said: string[] = [];
    cache.onFull = () => said.push('full');
    cache.onEmptied = () => said.push('emptied');
    cycle(cache, names('s', 9), 3);
    assert.deepEqual(said, [], 'not full with 9 of 10');
    // 10 texts fill it; a round of 20 lookups without a hit empties it.
    cycle(cache, names('t', 30), 1);
    assert.deepEqual(said, ['full', 'emptied'], 'a fleet of unseen series: full, then rests');
    assert.equal(cache.size, 0);
    // It rests for 16 rounds (320 lookups), holding nothing, then fills again and says so again.
    cycle(cache, names('u', 300), 1);
    assert.deepEqual(said, ['full', 'emptied']);
    assert.equal(cache.size, 0);
    cycle(cache, names('v', 100), 1);
    assert.deepEqual(said, ['full', 'emptied', 'full', 'emptied']);
  });
});

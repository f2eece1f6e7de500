import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { SwrCache, type Loaded, type SwrPolicy } from '../../../src/store/swr-cache.js';

/** A load the test settles by hand, in any order. */
function loads() {
  const pending: { resolve: (l: Loaded<string>) => void; reject: (e: Error) => void }[] = [];
  let count = 0;
  const load = (): Promise<Loaded<string>> => {
    count++;
    return new Promise((resolve, reject) => pending.push({ resolve, reject }));
  };
  return {
    load,
    started: () => count,
    settle: (i: number, value: string, keep = true) => pending[i]?.resolve({ value, keep }),
    fail: (i: number) => pending[i]?.reject(new Error('unreachable')),
  };
}

/** The fleet's policy and the metrics' (src/store/sql-reader.ts), and ages 0 (always expired). */
const FLEET: SwrPolicy = { maxAgeMs: 5000, forcedMaxAgeMs: 1000, forcedJoins: true };
const METRICS: SwrPolicy = { maxAgeMs: 5000, forcedMaxAgeMs: 0, forcedJoins: false };
const EXPIRED: SwrPolicy = { maxAgeMs: 0, forcedMaxAgeMs: 0, forcedJoins: true };

describe("SwrCache (the reader's fleet and metric ids)", () => {
  it('waits for the first load; then answers from memory while the value is young', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, FLEET);
    const first = cache.get();
    const again = cache.get();
    l.settle(0, 'a');
    assert.equal(await first, 'a');
    assert.equal(await again, 'a');
    assert.equal(await cache.get(), 'a');
    assert.equal(l.started(), 1);
  });

  it('expired: answers the old value at once while one load refreshes it', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, EXPIRED);
    const first = cache.get();
    l.settle(0, 'a');
    await first;
    assert.equal(await cache.get(), 'a');
    assert.equal(await cache.get(), 'a');
    assert.equal(l.started(), 2);
    l.settle(1, 'b');
    await sleep(1);
    assert.equal(cache.peek(), 'b');
  });

  it('a failed refresh leaves the old value; only a read waiting for it sees the error', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, EXPIRED);
    const first = cache.get();
    l.settle(0, 'a');
    await first;
    assert.equal(await cache.get(), 'a');
    const forced = cache.get(true);
    l.fail(1);
    await assert.rejects(forced, /unreachable/);
    assert.equal(cache.peek(), 'a');
  });

  it('forced, joining (the fleet): takes a young enough value, else waits for the load under way', async () => {
    const l = loads();
    const young = new SwrCache(l.load, FLEET);
    const first = young.get();
    l.settle(0, 'a');
    await first;
    assert.equal(await young.get(true), 'a');
    assert.equal(l.started(), 1);

    const cache = new SwrCache(l.load, EXPIRED);
    const loaded = cache.get();
    l.settle(1, 'a');
    await loaded;
    assert.equal(await cache.get(), 'a');
    const f1 = cache.get(true);
    const f2 = cache.get(true);
    assert.equal(l.started(), 3);
    l.settle(2, 'b');
    assert.equal(await f1, 'b');
    assert.equal(await f2, 'b');
  });

  it('forced, not joining (the metrics): each forced read starts its own load; an older load never replaces a newer value', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, METRICS);
    const first = cache.get();
    l.settle(0, 'a');
    await first;
    await sleep(2);
    const older = cache.get(true);
    await sleep(2);
    const newer = cache.get(true);
    assert.equal(l.started(), 3);
    l.settle(2, 'new');
    assert.equal(await newer, 'new');
    l.settle(1, 'old');
    assert.equal(await older, 'old');
    assert.equal(cache.peek(), 'new');
  });

  it('what a load may not keep (another database) is answered but not cached; clear() forgets', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, FLEET);
    const first = cache.get();
    l.settle(0, 'stale', false);
    assert.equal(await first, 'stale');
    assert.equal(cache.peek(), undefined);
    const second = cache.get();
    l.settle(1, 'b');
    assert.equal(await second, 'b');
    assert.equal(cache.peek(), 'b');
    cache.clear();
    assert.equal(cache.peek(), undefined);
  });
  it("a forced read counts a value's age from when its load began: a slow load's value is not young", async () => {
    const l = loads();
    const cache = new SwrCache(l.load, { maxAgeMs: 5000, forcedMaxAgeMs: 40, forcedJoins: true });
    const first = cache.get();
    await sleep(60);
    l.settle(0, 'read before');
    await first;
    // Arrived just now, but read 60 ms ago: a plain read takes it, a forced one loads again.
    assert.equal(await cache.get(), 'read before');
    const forced = cache.get(true);
    assert.equal(l.started(), 2);
    l.settle(1, 'now');
    assert.equal(await forced, 'now');
  });

  it('reload() starts a load of its own even while one is under way', async () => {
    const l = loads();
    const cache = new SwrCache(l.load, FLEET);
    const first = cache.get();
    await sleep(2);
    const reloaded = cache.reload();
    assert.equal(l.started(), 2);
    l.settle(1, 'b');
    l.settle(0, 'a');
    assert.equal(await first, 'a');
    assert.equal(await reloaded, 'b');
    assert.equal(cache.peek(), 'b');
  });
});

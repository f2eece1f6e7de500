import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import type { SqlStore } from '../../../src/store/sql-store.js';
import { collectorOf, embedded, publish, stored } from './fixtures.js';

/**
 * `nexus up`'s collector stops with its in-process queue: whatever the queue holds when stop() is
 * called is stored first (the queue dies with the process), and stop() settles once, for every
 * caller, when the stop is complete.
 */
describe('collector stop with an in-process queue', () => {
  const open: { store: SqlStore; queue: MemoryQueue }[] = [];
  after(async () => {
    for (const e of open) {
      await e.queue.close();
      await e.store.close();
    }
  });

  it('stores everything the queue holds when stopped right after it started (schema not even migrated)', async () => {
    const e = await embedded();
    open.push(e);
    const records = await publish(e.queue, 30);
    const collector = collectorOf(e);
    await collector.start();
    await collector.stop();
    assert.equal(await stored(e.db), records.length);
    assert.deepEqual(e.queue.held(), { messages: 0, records: 0 });
    assert.equal(collector.stats.records, records.length);
  });

  it('stores everything the queue holds when stopped after its first commit', async () => {
    const e = await embedded();
    open.push(e);
    const records = await publish(e.queue, 30);
    let first: () => void = () => undefined;
    const committed = new Promise<void>((resolve) => (first = resolve));
    const collector = collectorOf(e, { onCommitted: () => first() });
    await collector.start();
    await committed;
    await collector.stop();
    assert.equal(await stored(e.db), records.length);
    assert.deepEqual(e.queue.held(), { messages: 0, records: 0 });
  });

  it('a second stop() settles with the first, once the stop is complete', async () => {
    const e = await embedded();
    open.push(e);
    await publish(e.queue, 10);
    const collector = collectorOf(e);
    await collector.start();
    let firstDone = false;
    const firstStop = collector.stop().then(() => {
      firstDone = true;
    });
    await collector.stop();
    assert.equal(firstDone, true, 'the second stop() returned before the stop was complete');
    await firstStop;
    assert.equal(await stored(e.db), 400);
  });
});

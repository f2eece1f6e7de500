import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Collector } from '../../../src/collector/collector.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { ENVELOPE_VERSION } from '../../../src/queue/envelope.js';
import { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import { T0, grid } from '../../conformance/store-fixtures.js';
import { pristineDump } from '../../helpers/pglite.js';

/**
 * `nexus up`'s collector stops with its in-process queue: whatever the queue holds when stop() is
 * called is stored first (the queue dies with the process), and stop() settles once, for every
 * caller, when the stop is complete.
 */
const logger = silentLogger();

async function embedded(): Promise<{ db: PGliteDatabase; store: SqlStore; queue: MemoryQueue }> {
  const db = new PGliteDatabase('memory://', await pristineDump());
  await db.ready();
  const store = new SqlStore({
    db,
    logger,
    writeMethod: 'unnest',
    retentionDays: 0,
    rollupRetentionDays: 0,
    partitionAheadMs: 0,
    compactDelayMs: 3_600_000,
  });
  const queue = new MemoryQueue({
    clusterId: 'c1',
    maxAttempts: 5,
    retry: { baseMs: 100, capMs: 1000, jitter: 0.5 },
    messageTtlMs: 3_600_000,
    leaseTtlMs: 10_000,
    pollTimeoutMs: 1000,
    logger,
  });
  return { db, store, queue };
}

function collectorOf(
  e: { store: SqlStore; queue: MemoryQueue },
  over: Partial<ConstructorParameters<typeof Collector>[0]> = {},
): Collector {
  return new Collector({
    queue: e.queue,
    store: e.store,
    clusterId: 'c1',
    workers: 2,
    batchMessages: 3,
    pollTimeoutMs: 1000,
    outageBackoff: { baseMs: 10, capMs: 100, jitter: 0.5 },
    maintenanceIntervalMs: 0,
    rollupIntervalMs: 0,
    logger,
    drainOnStop: true,
    ...over,
  });
}

/** `messages` messages of 40 distinct readings each. */
async function publish(queue: MemoryQueue, messages: number): Promise<TelemetryRecord[]> {
  const records = grid({
    hosts: ['node-a', 'node-b'],
    gpus: 4,
    metrics: ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE'],
    times: Array.from({ length: Math.ceil((messages * 40) / 16) }, (_, i) => T0 + i * 1000),
  }).slice(0, messages * 40);
  for (let m = 0; m < messages; m++) {
    await queue.publish({
      v: ENVELOPE_VERSION,
      id: `${m}-test`,
      producer: 'test',
      cluster: 'c1',
      createdAt: Date.now(),
      attempt: 0,
      records: records.slice(m * 40, (m + 1) * 40),
    });
  }
  return records;
}

async function stored(db: PGliteDatabase): Promise<number> {
  const res = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples');
  return res.rows[0]?.n ?? -1;
}

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

import { Collector } from '../../../src/collector/collector.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { ENVELOPE_VERSION } from '../../../src/queue/envelope.js';
import { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import type { Queue } from '../../../src/queue/types.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import type { SqlStore } from '../../../src/store/sql-store.js';
import { T0, grid } from '../../conformance/store-fixtures.js';
import { testStore } from '../../helpers/pipeline.js';
import { pristineDump } from '../../helpers/pglite.js';

/** A collector on PGlite and an in-process queue, as `nexus up` runs one, for the unit tests. */
export const logger = silentLogger();

export async function embedded(): Promise<{
  db: PGliteDatabase;
  store: SqlStore;
  queue: MemoryQueue;
}> {
  const db = new PGliteDatabase('memory://', await pristineDump());
  await db.ready();
  const store = testStore(db, logger);
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

export function collectorOf(
  e: { store: SqlStore; queue: Queue },
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
export async function publish(queue: MemoryQueue, messages: number): Promise<TelemetryRecord[]> {
  const records = grid({
    hosts: ['node-a', 'node-b'],
    gpus: 4,
    metrics: ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE'],
    times: Array.from({ length: Math.ceil((messages * 40) / 16) }, (_, i) => T0 + i * 1000),
  }).slice(0, messages * 40);
  for (let m = 0; m < messages; m++) {
    await publishMessage(queue, m, records.slice(m * 40, (m + 1) * 40));
  }
  return records;
}

/** Message number `m` of cluster c1, holding `records`. */
export async function publishMessage(
  queue: MemoryQueue,
  m: number,
  records: TelemetryRecord[],
): Promise<void> {
  await queue.publish({
    v: ENVELOPE_VERSION,
    id: `${m}-test`,
    producer: 'test',
    cluster: 'c1',
    createdAt: Date.now(),
    attempt: 0,
    records,
  });
}

export async function stored(db: PGliteDatabase): Promise<number> {
  const res = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples');
  return res.rows[0]?.n ?? -1;
}

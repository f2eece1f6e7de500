import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import type { Delivery, Queue } from '../../src/queue/types.js';

export const TEST_PREFIX = '/telemetry/queue';

export function etcdQueue(
  endpoint: string,
  clusterId: string,
  over: Partial<ConstructorParameters<typeof EtcdQueue>[0]> = {},
): EtcdQueue {
  return new EtcdQueue({
    clusterId,
    prefix: TEST_PREFIX,
    connection: { endpoints: [endpoint], timeoutMs: 5000 },
    enableWatch: true,
    maxAttempts: 5,
    retry: { baseMs: 100, capMs: 2000 },
    messageTtlMs: 86_400_000,
    leaseTtlMs: 3000,
    pollTimeoutMs: 1000,
    logger: silentLogger(),
    ...over,
  });
}

/** Claims and acks everything in the queue until it stays empty for `idleMs`. */
export async function drain(
  queue: Queue,
  idleMs = 1000,
  onBatch?: (got: Delivery[]) => void,
): Promise<Delivery[]> {
  const consumer = await queue.consumer({ name: 'test-drain' });
  const out: Delivery[] = [];
  try {
    for (;;) {
      const got = await consumer.claim(64, { waitMs: idleMs });
      if (got.length === 0) break;
      await consumer.ack(got);
      out.push(...got);
      onBatch?.(got);
    }
  } finally {
    await consumer.close();
  }
  return out;
}

export function recordsOf(deliveries: readonly Delivery[]): TelemetryRecord[] {
  return deliveries.flatMap((d) => d.envelope.records);
}

/** The natural key of a reading: one per host, GPU, metric and instant. */
export function naturalKey(r: TelemetryRecord): string {
  return `${r.hostname}|${r.gpu}|${r.metric}|${r.timestamp}`;
}

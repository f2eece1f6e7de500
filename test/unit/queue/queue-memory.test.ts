import { MemoryQueue, type MemoryConsumer } from '../../../src/queue/memory/memory-queue.js';
import type { Envelope } from '../../../src/queue/envelope.js';
import { envelope, queueConformance } from '../../conformance/queue-suite.js';

const queues = new Map<unknown, MemoryQueue>();
const consumers = new Map<unknown, MemoryConsumer>();

queueConformance({
  name: 'memory',
  create: (options) => {
    const q = new MemoryQueue(options);
    queues.set(q, q);
    return Promise.resolve(q);
  },
  crashConsumer: async (queue, _options, count) => {
    const q = queues.get(queue);
    if (q === undefined) throw new Error('unknown queue');
    const consumer = q.memoryConsumer('doomed');
    consumers.set(consumer, consumer);
    const got = await consumer.claim(count, { waitMs: 2000 });
    consumer.abandon();
    return got.map((d) => d.id);
  },
  putGarbage: async (queue) => {
    // The memory queue holds objects, not bytes: the closest thing to an undecodable message is
    // one that fails validation, which consumers must never see.
    const bad = { ...envelope(queue.clusterId), v: 2 } as unknown as Envelope;
    await queue.publish(bad);
  },
  expireNow: (queue) => {
    queues.get(queue)?.sweepExpired(Date.now() + 365 * 86_400_000);
    return Promise.resolve();
  },
  teardown: () => Promise.resolve(),
});

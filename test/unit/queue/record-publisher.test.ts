import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import type { Envelope } from '../../../src/queue/envelope.js';
import { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import { DEFAULT_QUEUE_OPTIONS } from '../../../src/queue/options.js';
import { RecordPublisher } from '../../../src/queue/record-publisher.js';
import type { Queue } from '../../../src/queue/types.js';
import { drain, recordsOf } from '../../helpers/queues.js';

const records = (n: number): TelemetryRecord[] =>
  Array.from({ length: n }, (_, i) => ({
    timestamp: Date.UTC(2026, 0, 1) + i * 1000,
    metric: 'DCGM_FI_DEV_GPU_TEMP',
    gpu: i % 8,
    hostname: 'node-1',
    value: 40 + (i % 10),
    labels: {},
  }));

const memoryQueue = (): MemoryQueue =>
  new MemoryQueue({ ...DEFAULT_QUEUE_OPTIONS, clusterId: 'c1', logger: silentLogger() });

/** A queue whose publish lands the message, then fails `failures` times as a timeout would. */
function landsThenTimesOut(inner: Queue, failures: number): Queue {
  let left = failures;
  return Object.assign(Object.create(inner) as Queue, {
    publish: async (e: Envelope) => {
      const receipt = await inner.publish(e);
      if (left-- > 0) throw new NexusError('QUEUE_UNAVAILABLE', 'deadline exceeded');
      return receipt;
    },
  });
}

describe('RecordPublisher: live records into the queue', () => {
  it('publishes every record once, in messages of at most batchSize, in order within each', async () => {
    const queue = memoryQueue();
    const p = new RecordPublisher({ queue, producer: 'scrape-t', batchSize: 100, maxDepth: 0 });
    assert.equal(await p.publish(records(250)), 3);
    const got = await drain(queue, 100);
    assert.deepEqual(
      got.map((d) => d.envelope.records.length).sort((a, b) => a - b),
      [50, 100, 100],
    );
    assert.equal(recordsOf(got).length, 250);
    assert.equal(new Set(got.map((d) => d.envelope.id)).size, 3);
    assert.ok(got.every((d) => d.envelope.producer === 'scrape-t' && d.envelope.cluster === 'c1'));
  });

  it('a message that landed although its publish failed is not published twice', async () => {
    const inner = memoryQueue();
    const p = new RecordPublisher({
      queue: landsThenTimesOut(inner, 1),
      producer: 'rw',
      batchSize: 10,
      maxDepth: 0,
    });
    assert.equal(await p.publish(records(10)), 1);
    const got = await drain(inner, 100);
    assert.equal(got.length, 1, 'one message in the queue');
    assert.equal(recordsOf(got).length, 10);
  });

  it('gives up after its attempts with the queue\u2019s error, and does not retry what cannot work', async () => {
    const inner = memoryQueue();
    const down = Object.assign(Object.create(inner) as Queue, {
      publish: () => Promise.reject(new NexusError('QUEUE_UNAVAILABLE', 'etcd is down')),
    });
    const p = new RecordPublisher({
      queue: down,
      producer: 'rw',
      batchSize: 10,
      maxDepth: 0,
      attempts: 2,
    });
    await assert.rejects(p.publish(records(5)), /etcd is down/);
    let calls = 0;
    const refused = Object.assign(Object.create(inner) as Queue, {
      publish: () => {
        calls++;
        return Promise.reject(new NexusError('ETCD_ACCESS_DENIED', 'permission denied'));
      },
    });
    const q = new RecordPublisher({ queue: refused, producer: 'rw', batchSize: 10, maxDepth: 0 });
    await assert.rejects(q.publish(records(5)), /permission denied/);
    assert.equal(calls, 1, 'a refusal is not retried');
  });

  it('room() says no once the queue holds maxDepth messages', async () => {
    const queue = memoryQueue();
    const p = new RecordPublisher({
      queue,
      producer: 's',
      batchSize: 10,
      maxDepth: 3,
      depthTtlMs: 0,
    });
    assert.equal(await p.room(), true);
    await p.publish(records(20));
    assert.equal(await p.room(), true, '2 of 3');
    await p.publish(records(10));
    assert.equal(await p.room(), false, '3 of 3');
    await drain(queue, 100);
    assert.equal(await p.room(), true, 'drained');
  });
});

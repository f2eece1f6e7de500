import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import type { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import { ACK_BATCH_MAX, type Consumer, type Queue } from '../../../src/queue/types.js';
import type { SqlStore } from '../../../src/store/sql-store.js';
import { T0, grid } from '../../conformance/store-fixtures.js';
import { collectorOf, embedded, publish, publishMessage, stored } from './fixtures.js';

/**
 * How the collector acks once a batch is committed: each step (the clean messages together, then
 * each message with refused records) is retried while etcd is unreachable and never done twice,
 * and a failure no retry can fix gives the messages back instead of being retried for ever.
 */

/**
 * What the calls of ack and of settle do, in order: throw the error, or (undefined) give the
 * queue's own answer, as every call does once the list is used up.
 */
interface Failures {
  ack: (Error | undefined)[];
  settle: (Error | undefined)[];
}

interface Calls {
  ack: number;
  settle: number;
  nack: string[];
}

/** `queue`, its consumers throwing `failures` first; every call counted. */
function failing(queue: MemoryQueue, failures: Failures): { queue: Queue; calls: Calls } {
  const calls: Calls = { ack: 0, settle: 0, nack: [] };
  const wrap = (c: Consumer): Consumer => ({
    get id() {
      return c.id;
    },
    get healthy() {
      return c.healthy;
    },
    claim: (max, options) => c.claim(max, options),
    ack: async (deliveries) => {
      calls.ack++;
      const err = failures.ack.shift();
      if (err !== undefined) throw err;
      return c.ack(deliveries);
    },
    settle: async (delivery, rejected) => {
      calls.settle++;
      const err = failures.settle.shift();
      if (err !== undefined) throw err;
      return c.settle(delivery, rejected);
    },
    nack: (delivery, reason, options) => {
      calls.nack.push(reason);
      return c.nack(delivery, reason, options);
    },
    close: () => c.close(),
  });
  const wrapped = new Proxy(queue, {
    get(target, prop) {
      if (prop === 'consumer') {
        return async (...args: Parameters<Queue['consumer']>) =>
          wrap(await target.consumer(...args));
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { queue: wrapped, calls };
}

/** Waits until the queue holds nothing (ready, claimed or delayed). */
async function drained(queue: MemoryQueue): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (queue.held().messages > 0) {
    if (Date.now() > deadline)
      assert.fail(`the queue still holds ${queue.held().messages} messages`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('collector ack', () => {
  const open: { store: SqlStore; queue: MemoryQueue }[] = [];
  after(async () => {
    for (const e of open) {
      await e.queue.close();
      await e.store.close();
    }
  });

  it('gives the messages back when etcd refuses the ack for good: redelivered, skipped as duplicates, acked; no retry loop', async () => {
    const e = await embedded();
    open.push(e);
    const records = await publish(e.queue, 3);
    const refused = new NexusError(
      'QUEUE_MESSAGE_TOO_LARGE',
      'etcd ack failed: request is too large',
    );
    const { queue, calls } = failing(e.queue, { ack: [refused], settle: [] });
    const collector = collectorOf({ store: e.store, queue }, { workers: 1, batchMessages: 3 });
    await collector.start();
    await drained(e.queue);
    await collector.stop();
    assert.equal(await stored(e.db), records.length);
    // Once refused, then once per claim of the messages given back (they come back one by one or
    // together, as their retry delays fall).
    assert.ok(calls.ack >= 2 && calls.ack <= 4, `${calls.ack} acks`);
    assert.equal(calls.nack.length, 3);
    for (const reason of calls.nack) assert.match(reason, /^ack failed: .*request is too large/);
    assert.equal(collector.stats.inserted, records.length);
    assert.equal(
      collector.stats.duplicates,
      records.length,
      'the redelivered batch is stored again',
    );
    assert.equal(collector.stats.lostAcks, 0);
    assert.equal(collector.stats.queueErrors, 1);
    assert.equal((await e.queue.listDeadLetters()).items.length, 0);
  });

  it('dead-letters a message whose ack fails that way at every delivery, after MAX_ATTEMPTS', async () => {
    const e = await embedded();
    open.push(e);
    const records = await publish(e.queue, 1);
    const refused = (): NexusError =>
      new NexusError('QUEUE_MESSAGE_TOO_LARGE', 'etcd ack failed: request is too large');
    // The fixture's queue dead-letters at the 5th failed delivery.
    const { queue, calls } = failing(e.queue, {
      ack: Array.from({ length: 10 }, refused),
      settle: [],
    });
    const collector = collectorOf({ store: e.store, queue }, { workers: 1, batchMessages: 1 });
    await collector.start();
    await drained(e.queue);
    await collector.stop();
    assert.equal(await stored(e.db), records.length);
    assert.equal(calls.ack, 5);
    const dead = (await e.queue.listDeadLetters()).items;
    assert.equal(dead.length, 1);
    assert.match(
      dead[0]?.reason ?? '',
      /^ack failed: .*request is too large \(after 5 attempts\)$/,
    );
    assert.equal(dead[0]?.records, records.length);
  });

  it('acks a batch of more messages than one ack takes in steps, and does not redo a step done', async () => {
    const e = await embedded();
    open.push(e);
    const messages = ACK_BATCH_MAX + 6;
    const records = await publish(e.queue, messages);
    const unreachable = new NexusError('QUEUE_UNAVAILABLE', 'etcd ack failed: unavailable', {
      retryable: true,
    });
    // The first step goes through; the second fails once, then goes through.
    const { queue, calls } = failing(e.queue, { ack: [undefined, unreachable], settle: [] });
    const collector = collectorOf(
      { store: e.store, queue },
      { workers: 1, batchMessages: messages },
    );
    await collector.start();
    await drained(e.queue);
    await collector.stop();
    assert.equal(await stored(e.db), records.length);
    assert.equal(calls.ack, 3, 'the first step was done again');
    assert.equal(collector.stats.lostAcks, 0);
    assert.equal(collector.stats.queueErrors, 1);
  });

  it('does not ack the clean messages again when a settle after them waits out an etcd outage', async () => {
    const e = await embedded();
    open.push(e);
    // Three messages of 8 readings; the second holds a reading out of bounds (two days ahead).
    const records = grid({
      hosts: ['node-a'],
      gpus: 4,
      metrics: ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE'],
      times: [T0],
    });
    for (let m = 0; m < 3; m++) {
      await publishMessage(
        e.queue,
        m,
        records.map((r, i) => ({
          ...r,
          timestamp: m === 1 && i === 0 ? Date.now() + 2 * 86_400_000 : r.timestamp + m * 1000,
        })),
      );
    }
    const unreachable = new NexusError('QUEUE_UNAVAILABLE', 'etcd settle failed: unavailable', {
      retryable: true,
    });
    const { queue, calls } = failing(e.queue, { ack: [], settle: [unreachable] });
    const collector = collectorOf({ store: e.store, queue }, { workers: 1, batchMessages: 3 });
    await collector.start();
    await drained(e.queue);
    await collector.stop();
    assert.equal(await stored(e.db), 3 * records.length - 1);
    assert.equal(calls.ack, 1, 'the clean messages were acked again');
    assert.equal(calls.settle, 2);
    assert.deepEqual(calls.nack, []);
    assert.equal(collector.stats.lostAcks, 0, 'acks done before the outage were counted as lost');
    assert.equal(collector.stats.queueErrors, 1);
    const dead = (await e.queue.listDeadLetters()).items;
    assert.equal(dead.length, 1);
    assert.match(dead[0]?.reason ?? '', /timestamp out of range/);
  });
});

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { Envelope } from '../../src/queue/envelope.js';
import type { QueueOptions } from '../../src/queue/options.js';
import type { Delivery, Queue } from '../../src/queue/types.js';

/** What a backend provides to run the queue conformance suite. */
export interface QueueHarness {
  readonly name: string;
  /** A fresh, empty queue of its own; options override the suite's fast test defaults. */
  create(options: QueueOptions): Promise<Queue>;
  /**
   * Claims `count` messages in a consumer that then dies without acking or releasing: for etcd a
   * child process killed with SIGKILL. Returns the ids it held.
   */
  crashConsumer(queue: Queue, options: QueueOptions, count: number): Promise<string[]>;
  /** Puts an undecodable body into the queue under `name`. */
  putGarbage(queue: Queue, name: string): Promise<void>;
  /** Makes the queue act on messages whose TTL is about to run out. */
  expireNow(queue: Queue): Promise<void>;
  teardown(): Promise<void>;
}

let seq = 0;
export function envelope(
  cluster: string,
  overrides: Partial<Envelope> = {},
  records = 1,
): Envelope {
  seq++;
  const id = `${seq}-test`;
  return {
    v: 1,
    id,
    producer: 'conformance',
    cluster,
    createdAt: Date.now(),
    attempt: 0,
    records: Array.from({ length: records }, (_, i) => ({
      timestamp: 1_752_871_354_000 + seq,
      metric: 'DCGM_FI_DEV_GPU_TEMP',
      gpu: i % 8,
      hostname: `host-${seq % 7}`,
      value: seq + i / 10,
      uuid: `GPU-${seq}-${i}`,
      labels: { job: 'test', seq: String(seq) },
    })),
    ...overrides,
  };
}

function defaults(cluster: string): QueueOptions {
  return {
    clusterId: cluster,
    maxAttempts: 3,
    retry: { baseMs: 50, capMs: 400, jitter: 0.5 },
    messageTtlMs: 3_600_000,
    leaseTtlMs: 2000,
    pollTimeoutMs: 1000,
    logger: silentLogger(),
  };
}

async function publishAll(
  queue: Queue,
  envelopes: readonly Envelope[],
  concurrency = 32,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < envelopes.length) {
        const e = envelopes[next++];
        if (e !== undefined) await queue.publish(e);
      }
    }),
  );
}

async function drainAll(queue: Queue, max = 100): Promise<Delivery[]> {
  const c = await queue.consumer({ name: 'drain' });
  const out: Delivery[] = [];
  for (;;) {
    const got = await c.claim(max, { waitMs: 300 });
    if (got.length === 0) break;
    await c.ack(got);
    out.push(...got);
  }
  await c.close();
  return out;
}

let clusters = 0;
function cluster(): string {
  clusters++;
  return `conf-${process.pid}-${Date.now().toString(36)}-${clusters}`;
}

/** The behaviour every queue backend must have (docs/queue.md). */
export function queueConformance(h: QueueHarness): void {
  describe(`queue conformance: ${h.name}`, () => {
    after(() => h.teardown());

    const open = async (over: Partial<QueueOptions> = {}) => {
      const c = cluster();
      const options = { ...defaults(c), ...over, clusterId: c };
      return { queue: await h.create(options), options, c };
    };

    it('delivers a published message intact, then it is gone after ack', async () => {
      const { queue, c } = await open();
      const e = envelope(
        c,
        {
          trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
          source: { file: 'x.csv', firstLine: 2, lastLine: 4 },
        },
        3,
      );
      const receipt = await queue.publish(e);
      const consumer = await queue.consumer();
      const [d] = await consumer.claim(10, { waitMs: 2000 });
      assert.ok(d);
      assert.equal(d.id, receipt.id);
      assert.equal(d.attempt, 1);
      assert.deepEqual(JSON.parse(JSON.stringify(d.envelope)), JSON.parse(JSON.stringify(e)));
      assert.equal(await queue.depth(), 1);
      const res = await consumer.ack([d]);
      assert.deepEqual(res, { acked: [d.id], lost: [] });
      assert.equal(await queue.depth(), 0);
      assert.deepEqual(await consumer.claim(10, { waitMs: 0 }), []);
      await consumer.close();
      await queue.close();
    });

    it('refuses a second message with the same name', async () => {
      const { queue, c } = await open();
      const e = envelope(c);
      await queue.publish(e);
      await assert.rejects(queue.publish(e), { code: 'QUEUE_CONFLICT' });
      assert.equal(await queue.depth(), 1);
      await queue.close();
    });

    it('4 concurrent consumers over 10,000 messages: each acked message processed exactly once', async () => {
      const { queue, c } = await open();
      const all = Array.from({ length: 10_000 }, () => envelope(c));
      await publishAll(queue, all, 64);
      assert.equal(await queue.depth(), 10_000);
      const seen = new Map<string, number>();
      const consumers = await Promise.all(
        [1, 2, 3, 4].map((i) => queue.consumer({ name: `c${i}` })),
      );
      const perConsumer = [0, 0, 0, 0];
      await Promise.all(
        consumers.map(async (consumer, i) => {
          for (;;) {
            const got = await consumer.claim(25, { waitMs: 500 });
            if (got.length === 0) {
              if ((await queue.depth()) === 0) return;
              continue;
            }
            const res = await consumer.ack(got);
            assert.equal(res.lost.length, 0);
            for (const d of got) seen.set(d.envelope.id, (seen.get(d.envelope.id) ?? 0) + 1);
            perConsumer[i] = (perConsumer[i] ?? 0) + got.length;
          }
        }),
      );
      assert.equal(seen.size, 10_000);
      assert.ok(
        [...seen.values()].every((n) => n === 1),
        'a message was processed twice',
      );
      for (const e of all) assert.equal(seen.get(e.id), 1);
      assert.equal(
        perConsumer.reduce((a, b) => a + b, 0),
        10_000,
      );
      assert.ok(
        perConsumer.filter((n) => n > 0).length >= 2,
        `work was not shared: ${perConsumer.join(',')}`,
      );
      assert.equal(await queue.depth(), 0);
      await Promise.all(consumers.map((x) => x.close()));
      await queue.close();
    });

    it('never gives one message to two consumers at once', async () => {
      const { queue, c } = await open();
      await publishAll(
        queue,
        Array.from({ length: 200 }, () => envelope(c)),
      );
      const a = await queue.consumer({ name: 'a' });
      const b = await queue.consumer({ name: 'b' });
      const held: string[] = [];
      // Both claim at the same moment, again and again, without acking: nothing may be handed
      // out twice, and between them they end up holding everything.
      for (let round = 0; round < 20 && held.length < 200; round++) {
        const [ga, gb] = await Promise.all([
          a.claim(150, { waitMs: 200 }),
          b.claim(150, { waitMs: 200 }),
        ]);
        held.push(...ga.map((d) => d.id), ...gb.map((d) => d.id));
      }
      assert.equal(new Set(held).size, held.length, 'a message was held by two consumers');
      assert.equal(held.length, 200);
      await a.close();
      await b.close();
      await queue.close();
    });

    it('only the holder can ack', async () => {
      const { queue, c } = await open();
      await queue.publish(envelope(c));
      const a = await queue.consumer({ name: 'a' });
      const b = await queue.consumer({ name: 'b' });
      const [d] = await a.claim(1, { waitMs: 2000 });
      assert.ok(d);
      assert.deepEqual(await b.ack([d]), { acked: [], lost: [d.id] });
      assert.equal(await b.nack(d, 'not mine'), 'lost');
      assert.equal(await queue.depth(), 1);
      assert.deepEqual(await a.ack([d]), { acked: [d.id], lost: [] });
      assert.equal(await queue.depth(), 0);
      await a.close();
      await b.close();
      await queue.close();
    });

    it("a killed consumer's messages are redelivered to another after its lease", async () => {
      const { queue, options, c } = await open();
      await publishAll(
        queue,
        Array.from({ length: 5 }, () => envelope(c)),
      );
      const held = await h.crashConsumer(queue, options, 5);
      assert.equal(held.length, 5);
      const other = await queue.consumer({ name: 'survivor' });
      // While the dead consumer's lease lasts, its messages are not handed out.
      assert.deepEqual(await other.claim(10, { waitMs: 0 }), []);
      const got: Delivery[] = [];
      const deadline = Date.now() + options.leaseTtlMs + 8000;
      while (got.length < 5 && Date.now() < deadline)
        got.push(...(await other.claim(10, { waitMs: 500 })));
      assert.deepEqual(got.map((d) => d.id).sort(), [...held].sort());
      await other.ack(got);
      assert.equal(await queue.depth(), 0);
      await other.close();
      await queue.close();
    });

    it('close releases held messages at once', async () => {
      const { queue, c } = await open();
      await queue.publish(envelope(c));
      const a = await queue.consumer();
      const [d] = await a.claim(1, { waitMs: 2000 });
      assert.ok(d);
      await a.close();
      await a.close();
      const b = await queue.consumer();
      const [again] = await b.claim(1, { waitMs: 1000 });
      assert.equal(again?.id, d.id);
      await b.close();
      await queue.close();
      await queue.close();
    });

    it('nack retries after a backoff with the attempt count and reason carried', async () => {
      const { queue, c } = await open({ retry: { baseMs: 300, capMs: 2000, jitter: 0 } });
      await queue.publish(envelope(c));
      const consumer = await queue.consumer();
      const [d] = await consumer.claim(1, { waitMs: 2000 });
      assert.ok(d);
      const t0 = Date.now();
      assert.equal(await consumer.nack(d, 'database said no'), 'retry');
      assert.deepEqual(await consumer.claim(1, { waitMs: 0 }), []);
      assert.equal((await queue.stats()).delayed, 1);
      const [again] = await consumer.claim(1, { waitMs: 5000 });
      assert.ok(again);
      assert.ok(
        Date.now() - t0 >= 250,
        `redelivered after ${Date.now() - t0} ms, before the backoff`,
      );
      assert.equal(again.id, d.id);
      assert.equal(again.attempt, 2);
      assert.equal(again.envelope.lastError, 'database said no');
      await consumer.ack([again]);
      await consumer.close();
      await queue.close();
    });

    it('after MAX_ATTEMPTS a message is dead-lettered with its reason, and replay brings it back', async () => {
      const { queue, c } = await open({ maxAttempts: 3 });
      const e = envelope(c, {}, 2);
      await queue.publish(e);
      const consumer = await queue.consumer();
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        const [d] = await consumer.claim(1, { waitMs: 5000 });
        assert.ok(d, `delivery ${i + 1}`);
        assert.equal(d.attempt, i + 1);
        outcomes.push(await consumer.nack(d, `boom ${i + 1}`));
      }
      assert.deepEqual(outcomes, ['retry', 'retry', 'dead']);
      const stats = await queue.stats();
      assert.equal(stats.dead, 1);
      assert.equal(await queue.depth(), 0);
      const page = await queue.listDeadLetters();
      assert.equal(page.items.length, 1);
      const dl = page.items[0];
      assert.ok(dl);
      assert.match(dl.reason, /boom 3/);
      assert.equal(dl.attempts, 3);
      assert.equal(dl.records, 2);
      assert.equal(dl.envelope?.id, e.id);
      assert.equal(await queue.replayDeadLetters('all'), 1);
      assert.equal((await queue.stats()).dead, 0);
      const [back] = await consumer.claim(1, { waitMs: 2000 });
      assert.ok(back);
      assert.equal(back.envelope.id, e.id);
      assert.equal(back.attempt, 1);
      assert.deepEqual(back.envelope.records, JSON.parse(JSON.stringify(e.records)));
      await consumer.ack([back]);
      await consumer.close();
      await queue.close();
    });

    it('a non-retryable nack dead-letters at once; purge removes dead letters', async () => {
      const { queue, c } = await open();
      await queue.publish(envelope(c));
      const consumer = await queue.consumer();
      const [d] = await consumer.claim(1, { waitMs: 2000 });
      assert.ok(d);
      assert.equal(
        await consumer.nack(d, 'value violates check constraint', { retryable: false }),
        'dead',
      );
      const { items } = await queue.listDeadLetters();
      assert.equal(items[0]?.reason, 'value violates check constraint');
      assert.equal(await queue.purgeDeadLetters([d.id]), 1);
      assert.equal((await queue.stats()).dead, 0);
      await consumer.close();
      await queue.close();
    });

    it('an undecodable message is dead-lettered with the reason, never delivered', async () => {
      const { queue, c } = await open();
      await h.putGarbage(queue, '1752871354000_bad_gpu-0_1-garbage');
      await queue.publish(envelope(c));
      const consumer = await queue.consumer();
      const got = await consumer.claim(10, { waitMs: 1000 });
      assert.equal(got.length, 1);
      assert.notEqual(got[0]?.id, '1752871354000_bad_gpu-0_1-garbage');
      await consumer.ack(got);
      const { items } = await queue.listDeadLetters();
      assert.equal(items.length, 1);
      assert.match(items[0]?.reason ?? '', /not JSON|not a valid envelope/);
      await consumer.close();
      await queue.close();
    });

    it('lists dead letters page by page', async () => {
      const { queue, c } = await open();
      const consumer = await queue.consumer();
      await publishAll(
        queue,
        Array.from({ length: 5 }, () => envelope(c)),
      );
      const got = await consumer.claim(5, { waitMs: 2000 });
      for (const d of got) await consumer.nack(d, 'bad', { retryable: false });
      const first = await queue.listDeadLetters({ limit: 2 });
      assert.equal(first.items.length, 2);
      assert.ok(first.next);
      const second = await queue.listDeadLetters({ limit: 10, after: first.next });
      assert.equal(second.items.length, 3);
      assert.equal(second.next, undefined);
      const ids = [...first.items, ...second.items].map((d) => d.id);
      assert.equal(new Set(ids).size, 5);
      await consumer.close();
      await queue.close();
    });

    it('lists the messages it holds, described: ready or claimed in name order, then the delayed, paged', async () => {
      const { queue, c } = await open();
      const consumer = await queue.consumer();
      const published = [envelope(c, {}, 3), envelope(c, {}, 2), envelope(c, {}, 4)];
      for (const e of published) await queue.publish(e);
      const all = await queue.listMessages();
      assert.equal(all.items.length, 3);
      assert.equal(all.next, undefined);
      assert.deepEqual(
        all.items.map((m) => [m.id, m.records, m.state, m.producer, m.attempt]),
        published.map((e) => [e.id, e.records.length, 'ready', 'conformance', 0]),
      );
      const [held, retried] = await consumer.claim(2, { waitMs: 2000 });
      assert.ok(held !== undefined && retried !== undefined);
      assert.equal(await consumer.nack(retried, 'boom'), 'retry');
      const now = await queue.listMessages();
      assert.deepEqual(
        now.items.map((m) => [m.id, m.state]).sort(),
        published
          .filter((e) => e.id !== retried.envelope.id)
          .map((e) => [e.id, e.id === held.envelope.id ? 'claimed' : 'ready'])
          .sort(),
      );
      const delayed = await queue.listMessages({ delayed: true });
      assert.equal(delayed.items.length, 1);
      const [d] = delayed.items;
      assert.ok(d !== undefined);
      assert.equal(d.id, retried.envelope.id);
      assert.equal(d.state, 'delayed');
      assert.equal(d.attempt, 1);
      assert.equal(d.lastError, 'boom');
      assert.ok((d.due ?? 0) > Date.now() - 60_000, 'its due time');
      // Paged: the cursor of one page starts the next.
      const first = await queue.listMessages({ limit: 1 });
      assert.equal(first.items.length, 1);
      assert.ok(first.next !== undefined);
      const second = await queue.listMessages({ limit: 10, after: first.next });
      assert.equal(second.items.length, 1);
      assert.equal(second.next, undefined);
      assert.notEqual(first.items[0]?.name, second.items[0]?.name);
      await consumer.close();
      await queue.close();
    });

    it('a waiting consumer wakes when a message arrives, long before the poll timeout', async () => {
      const { queue, c } = await open({ pollTimeoutMs: 30_000 });
      const consumer = await queue.consumer();
      const t0 = Date.now();
      const waiting = consumer.claim(1, { waitMs: 20_000 });
      await new Promise((r) => setTimeout(r, 300));
      await queue.publish(envelope(c));
      const got = await waiting;
      assert.equal(got.length, 1);
      assert.ok(Date.now() - t0 < 10_000, 'woke only by polling');
      await consumer.ack(got);
      await consumer.close();
      await queue.close();
    });

    it('depth and stats count ready, in-flight, delayed and dead messages', async () => {
      const { queue, c } = await open({ retry: { baseMs: 60_000, capMs: 60_000, jitter: 0 } });
      await publishAll(
        queue,
        Array.from({ length: 6 }, () => envelope(c)),
      );
      const consumer = await queue.consumer();
      const got = await consumer.claim(3, { waitMs: 2000 });
      assert.equal(got.length, 3);
      const [x, y] = got;
      assert.ok(x && y);
      await consumer.nack(x, 'later');
      await consumer.nack(y, 'never', { retryable: false });
      const s = await queue.stats();
      assert.equal(s.ready, 3);
      assert.equal(s.inFlight, 1);
      assert.equal(s.delayed, 1);
      assert.equal(s.dead, 1);
      assert.equal(await queue.depth(), 4);
      assert.ok(s.oldestCreatedAt !== undefined && s.oldestCreatedAt <= Date.now());
      // The head message (ready or claimed), described without its records.
      const { head } = s;
      assert.ok(head !== undefined);
      assert.equal(head.createdAt, s.oldestCreatedAt);
      assert.equal(head.producer, 'conformance');
      assert.equal(head.records, 1);
      assert.equal(head.attempt, 0);
      assert.equal(head.problem, undefined);
      assert.ok(head.id !== undefined && head.name.endsWith(`_${head.id}`), head.name);
      // Neither the message waiting for its retry nor the dead one is in the queue.
      assert.ok(head.name !== x.id && head.name !== y.id);
      await consumer.close();
      await queue.close();
    });

    it('a fenced stream publish happens at most once per lane position', async () => {
      const { queue, c } = await open();
      const stream = await queue.openStream('conformance-stream', 'producer-a');
      assert.equal(await stream.readMeta(), undefined);
      await stream.writeMeta({ v: 1, hello: 'world' });
      assert.deepEqual(await stream.readMeta(), { v: 1, hello: 'world' });
      const t1 = await stream.publish(stream.prepare(envelope(c)), 0, null, { batch: 0 });
      await assert.rejects(
        stream.publish(stream.prepare(envelope(c)), 0, null, { batch: 0 }),
        (err: { code?: string; details?: { reason?: string } }) => {
          assert.equal(err.code, 'QUEUE_CONFLICT');
          assert.equal(err.details?.reason, 'lane-moved');
          return true;
        },
      );
      const t2 = await stream.publish(stream.prepare(envelope(c)), 0, t1, { batch: 1 });
      await stream.publish(stream.prepare(envelope(c)), 1, null, { batch: 2 });
      const lanes = await stream.readLanes();
      assert.deepEqual(lanes.map((l) => [l.lane, l.state]).sort(), [
        [0, { batch: 1 }],
        [1, { batch: 2 }],
      ]);
      assert.equal(lanes.find((l) => l.lane === 0)?.token, t2);
      assert.equal(await queue.depth(), 3);
      // Only a message this kind of queue prepared can be published on it.
      await assert.rejects(
        stream.publish({ id: 'foreign', records: 1 }, 2, null, { batch: 3 }),
        (err: { code?: string }) => err.code === 'INTERNAL',
      );
      assert.equal(await queue.depth(), 3);
      await stream.reset();
      assert.deepEqual(await stream.readLanes(), []);
      assert.equal(await stream.readMeta(), undefined);
      await stream.release();
      const again = await queue.openStream('conformance-stream', 'producer-b');
      await again.release();
      await queue.close();
    });

    it('a stream has one owner at a time', async () => {
      const { queue } = await open({ leaseTtlMs: 1000 });
      const first = await queue.openStream('owned', 'a');
      await assert.rejects(queue.openStream('owned', 'b'), { code: 'STREAM_OWNED' });
      await first.release();
      const second = await queue.openStream('owned', 'b');
      await second.release();
      await queue.close();
    });

    it('messages whose TTL runs out are moved to the dead letters and counted, not lost', async () => {
      const { queue, c } = await open({ messageTtlMs: 3000 });
      await publishAll(
        queue,
        Array.from({ length: 3 }, () => envelope(c)),
      );
      await h.expireNow(queue);
      const s = await queue.stats();
      assert.equal(s.expired, 3);
      assert.equal(s.dead, 3);
      assert.equal(await queue.depth(), 0);
      const { items } = await queue.listDeadLetters();
      assert.ok(items.every((d) => /TTL/.test(d.reason)));
      assert.equal(await queue.replayDeadLetters('all'), 3);
      assert.equal(await queue.depth(), 3);
      await queue.close();
    });

    it('rejects use after close', async () => {
      const { queue, c } = await open();
      await queue.close();
      await assert.rejects(queue.publish(envelope(c)), { code: 'QUEUE_CLOSED' });
    });

    it('keeps the messages of different clusters apart', async () => {
      const a = await open();
      const b = await open();
      await a.queue.publish(envelope(a.c));
      assert.equal(await b.queue.depth(), 0);
      assert.equal((await drainAll(b.queue)).length, 0);
      assert.equal((await drainAll(a.queue)).length, 1);
      await a.queue.close();
      await b.queue.close();
    });
  });
}

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import type { Consumer } from '../../src/queue/types.js';
import { Streamer } from '../../src/streamer/streamer.js';
import { GRPCDeadlineExceededError } from 'etcd3';
import { envelope } from '../conformance/queue-suite.js';
import { Kv, key, putOp } from '../../src/etcd/kv.js';
import { run, spawnNexus } from '../helpers/child.js';
import { startEtcd, uniqueCluster, type EtcdServer } from '../helpers/etcd.js';
import { drain, etcdQueue, naturalKey, recordsOf } from '../helpers/queues.js';
import { SAMPLE } from '../helpers/sample.js';

/** The consumer claims the queue's one message within `waitMs` and acks it: the queue is empty. */
async function deliveredAgain(
  queue: EtcdQueue,
  consumer: Consumer,
  waitMs: number,
  why: string,
): Promise<void> {
  const got = await consumer.claim(1, { waitMs });
  assert.equal(got.length, 1, why);
  await consumer.ack(got);
  const stats = await queue.stats();
  assert.equal(stats.ready + stats.inFlight + stats.delayed, 0);
}

/** These tests stop and restart etcd, so they have one of their own. */
let etcd: EtcdServer;
const dir = mkdtempSync(join(tmpdir(), 'nexus-faults-'));
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('etcd queue under faults', () => {
  it('a waiting consumer is woken after etcd restarts and its watch history was compacted', async () => {
    const cluster = uniqueCluster('watch');
    // Polling is effectively off: only the (recovered) watch or a re-list can wake the consumer.
    const queue = etcdQueue(etcd.endpoint, cluster, { pollTimeoutMs: 120_000 });
    const consumer = await queue.consumer();
    const waiting = consumer.claim(1, { waitMs: 100_000 });
    await new Promise((r) => setTimeout(r, 500));
    await etcd.stop();
    await etcd.start();
    // Move etcd's revision on and compact everything the watch has not seen.
    const other = etcdQueue(etcd.endpoint, uniqueCluster('noise'));
    for (let i = 0; i < 20; i++) await other.publish(envelope(other.clusterId));
    const status = JSON.parse(
      execFileSync('etcdctl', ['--endpoints', etcd.endpoint, 'endpoint', 'status', '-w', 'json'], {
        env: { ...process.env, ETCDCTL_API: '3' },
      }).toString(),
    ) as { Status: { header: { revision: number } } }[];
    const revision = status[0]?.Status.header.revision ?? 0;
    execFileSync('etcdctl', ['--endpoints', etcd.endpoint, 'compact', String(revision)], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    const t0 = Date.now();
    await queue.publish(envelope(cluster));
    const got = await waiting;
    assert.equal(got.length, 1);
    assert.ok(Date.now() - t0 < 60_000, 'the consumer was not woken');
    await consumer.ack(got);
    await consumer.close();
    await other.close();
    await queue.close();
  });

  it('while etcd is down, publish fails with a retryable error, and works once it is back', async () => {
    const cluster = uniqueCluster('down');
    const queue = etcdQueue(etcd.endpoint, cluster, {
      connection: { endpoints: [etcd.endpoint], timeoutMs: 1500 },
    });
    await queue.publish(envelope(cluster));
    await etcd.stop();
    await assert.rejects(
      queue.publish(envelope(cluster)),
      (err: { code?: string; retryable?: boolean }) => {
        assert.equal(err.code, 'QUEUE_UNAVAILABLE');
        assert.equal(err.retryable, true);
        return true;
      },
    );
    await etcd.start();
    let ok = false;
    for (let i = 0; i < 40 && !ok; i++) {
      try {
        await queue.publish(envelope(cluster));
        ok = true;
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    assert.ok(ok, 'publish did not recover');
    assert.equal((await drain(queue)).length, 2);
    await queue.close();
  });

  it('a streamer rides out an etcd outage and still publishes every record exactly once', async () => {
    const cluster = uniqueCluster('outage');
    const queue = etcdQueue(etcd.endpoint, cluster, {
      connection: { endpoints: [etcd.endpoint], timeoutMs: 1000 },
    });
    const streamer = new Streamer({
      queue,
      csvFile: SAMPLE,
      clusterId: cluster,
      batchSize: 20,
      intervalMs: 25,
      loop: false,
      timestampMode: 'original',
      maxQueueDepth: 100_000,
      concurrency: 4,
      streamId: `outage-${cluster}`,
      producerId: 'outage-test',
      rejectsFile: join(dir, 'outage.rejects.csv'),
      restart: false,
      logger: silentLogger(),
    });
    const running = streamer.run();
    while ((await queue.depth()) < 20) await new Promise((r) => setTimeout(r, 50));
    await etcd.kill();
    await new Promise((r) => setTimeout(r, 3000));
    await etcd.start();
    const summary = await running;
    assert.equal(summary.records, 2470);
    const got = recordsOf(await drain(queue));
    assert.equal(got.length, 2470);
    assert.equal(new Set(got.map(naturalKey)).size, 2470);
    await queue.close();
  });
  it('a claim whose answer was lost (it committed, the client saw a deadline) does not strand the message in flight', async () => {
    const cluster = uniqueCluster('lost-claim');
    const queue = etcdQueue(etcd.endpoint, cluster);
    await queue.publish(envelope(cluster));
    const consumer = await queue.consumer();
    // What a member that hangs or dies mid-request does: the claim Txn is applied, its answer lost.
    const kv = queue.etcd.kv;
    const txn = kv.txn.bind(kv);
    let lost = 0;
    kv.txn = async (req) => {
      const res = await txn(req);
      const puts = (req.success ?? []).map((op) => op.request_put?.key?.toString() ?? '');
      if (lost === 0 && puts.some((k) => k.startsWith(queue.layout.claims))) {
        lost++;
        throw new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: Deadline exceeded after 5.000s');
      }
      return res;
    };
    try {
      await assert.rejects(consumer.claim(1, { waitMs: 0 }), (err: { code?: string }) => {
        assert.equal(err.code, 'QUEUE_UNAVAILABLE');
        return true;
      });
      assert.equal(lost, 1);
      // The same consumer, still alive with its session lease, claims again: it gets the message.
      await deliveredAgain(
        queue,
        consumer,
        3000,
        'the message stayed claimed by nobody working on it',
      );
    } finally {
      kv.txn = txn;
      await consumer.close();
      await queue.close();
    }
  });
  it('a claim Txn applied late, after the consumer gave up on it and released what it had written, is found and released: the message does not stay in flight', async () => {
    // A member hung with the claim request unread; the consumer saw a deadline and, on its next
    // claim, released the claim it may have written (there was none yet). Then the member ran
    // again and applied the request: the claim is on the consumer's live session lease.
    const cluster = uniqueCluster('late-claim');
    const queue = etcdQueue(etcd.endpoint, cluster, { orphanScanMs: 300 });
    await queue.publish(envelope(cluster));
    const consumer = await queue.consumer();
    const kv = queue.etcd.kv;
    const txn = kv.txn.bind(kv);
    let held: Parameters<typeof txn>[0] | undefined;
    let applied = false;
    const touches = (req: Parameters<typeof txn>[0], op: 'request_put' | 'request_delete_range') =>
      (req.success ?? []).some((o) =>
        (o[op]?.key?.toString() ?? '').startsWith(queue.layout.claims),
      );
    kv.txn = async (req) => {
      if (held === undefined && touches(req, 'request_put')) {
        held = req;
        throw new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: Deadline exceeded after 5.000s');
      }
      const res = await txn(req);
      // The consumer released what it may have written; now the hung member applies the claim.
      if (held !== undefined && !applied && touches(req, 'request_delete_range')) {
        applied = (await txn(held)).succeeded;
      }
      return res;
    };
    try {
      await assert.rejects(consumer.claim(1, { waitMs: 0 }), { code: 'QUEUE_UNAVAILABLE' });
      assert.deepEqual(await consumer.claim(1, { waitMs: 0 }), []);
      assert.equal(applied, true, 'the late claim was not applied');
      assert.equal((await queue.stats()).inFlight, 1);
      // The same consumer, alive, claims on: its scan finds the claim it does not hold.
      await deliveredAgain(
        queue,
        consumer,
        5000,
        'the message stayed in flight, claimed by nobody working on it',
      );
    } finally {
      kv.txn = txn;
      await consumer.close();
      await queue.close();
    }
  });
  it('one claim Txn of several loses its answer: the others are delivered, its messages come back', async () => {
    const cluster = uniqueCluster('lost-claim-part');
    const queue = etcdQueue(etcd.endpoint, cluster);
    for (let i = 0; i < 8; i++) await queue.publish(envelope(cluster));
    const consumer = await queue.consumer();
    const kv = queue.etcd.kv;
    const txn = kv.txn.bind(kv);
    let lost = 0;
    kv.txn = async (req) => {
      const res = await txn(req);
      const puts = (req.success ?? []).map((op) => op.request_put?.key?.toString() ?? '');
      if (lost === 0 && puts.some((k) => k.startsWith(queue.layout.claims))) {
        lost++;
        throw new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED: Deadline exceeded after 5.000s');
      }
      return res;
    };
    try {
      const first = await consumer.claim(8, { waitMs: 0 });
      assert.equal(lost, 1);
      assert.ok(first.length > 0 && first.length < 8, `${first.length} delivered`);
      await consumer.ack(first);
      const rest = await consumer.claim(8, { waitMs: 3000 });
      assert.equal(
        first.length + rest.length,
        8,
        'messages stayed claimed by nobody working on them',
      );
      await consumer.ack(rest);
      const stats = await queue.stats();
      assert.equal(stats.ready + stats.inFlight + stats.delayed, 0);
    } finally {
      kv.txn = txn;
      await consumer.close();
      await queue.close();
    }
  });

  it('a consumer that stops claiming (its store down) still rescues messages whose TTL runs out into the dead letters', async () => {
    // A collector retrying its batch against a PostgreSQL that is down does not claim. The lease
    // sweep ran only from the claim loop, so messages outliving MESSAGE_TTL were removed by etcd,
    // uncounted.
    const c = uniqueCluster('ttl-idle');
    const queue = etcdQueue(etcd.endpoint, c, { messageTtlMs: 3000, leaseSweepMs: 500 });
    const consumer = await queue.consumer();
    try {
      for (let i = 0; i < 3; i++) await queue.publish(envelope(c));
      const deadline = Date.now() + 15_000;
      let stats = await queue.stats();
      // The sweep moves the messages, then counts them: wait for both.
      while ((stats.dead < 3 || stats.expired < 3) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        stats = await queue.stats();
      }
      assert.equal(stats.dead, 3, JSON.stringify(stats));
      assert.equal(stats.expired, 3);
      const { items } = await queue.listDeadLetters();
      assert.ok(
        items.every((d) => /TTL/.test(d.reason)),
        items.map((d) => d.reason).join('; '),
      );
    } finally {
      await consumer.close();
      await queue.close();
    }
  });

  it('a dead letter this release could not decode (a newer envelope version) is replayed as it was', async () => {
    // The runbook's answer to "message is not a valid envelope (v=9)": upgrade the collectors,
    // then replay. Replay skipped every dead letter without a decoded message, so it never could.
    const c = uniqueCluster('raw-replay');
    const queue = etcdQueue(etcd.endpoint, c);
    const kv = new Kv(queue.etcd);
    const name = '1754352000000_foreign_gpu-0_bad-b';
    const body = JSON.stringify({
      v: 9,
      id: 'bad-b',
      producer: 'x',
      cluster: c,
      createdAt: Date.now(),
      attempt: 0,
      records: [],
    });
    await kv.txn([], [putOp(queue.layout.message(name), body)]);
    const consumer = await queue.consumer();
    try {
      assert.deepEqual(await consumer.claim(1, { waitMs: 1000 }), []);
      await consumer.close();
      const { items } = await queue.listDeadLetters();
      assert.equal(items.length, 1);
      assert.match(items[0]?.reason ?? '', /v=9/);
      // nexus dlq list says where a dead letter's readings came from (the runbook's `source`).
      await queue.publish(
        envelope(c, { source: { file: 'export.csv', firstLine: 2, lastLine: 501 } }),
      );
      const again = await queue.consumer();
      const [d] = await again.claim(1, { waitMs: 2000 });
      assert.ok(d);
      await again.nack(d, 'poison', { retryable: false });
      await again.close();
      const env = { ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: c, LOG_LEVEL: 'error' };
      const listed = await run(spawnNexus(['dlq', 'list', '--json'], env));
      assert.equal(listed.code, 0, listed.stderr);
      const rows = (JSON.parse(listed.stdout) as { items: { id: string; source?: unknown }[] })
        .items;
      assert.deepEqual(
        rows.filter((r) => r.id === d.id).map((r) => r.source),
        [{ file: 'export.csv', firstLine: 2, lastLine: 501 }],
      );
      assert.equal(rows.length, 2);
      const text = await run(spawnNexus(['dlq', 'list'], env));
      assert.match(text.stdout, /source=export\.csv:2-501 {2}poison/);
      const badLimit = await run(spawnNexus(['dlq', 'list', '--limit', 'abc'], env));
      assert.notEqual(badLimit.code, 0);
      assert.match(badLimit.stderr, /--limit must be a whole number from 1 to 1000 \(got "abc"\)/);
      const unknown = await run(spawnNexus(['dlq', 'replay', 'no-such-id'], env));
      assert.equal(unknown.code, 1, unknown.stdout);
      assert.match(unknown.stderr, /replayed 0 of the 1 named/);
      await queue.purgeDeadLetters([d.id]);
      assert.equal(await queue.replayDeadLetters([items[0]?.id ?? '']), 1);
      const back = await kv.range({ key: key(queue.layout.message(name)) });
      assert.equal(back.kvs[0]?.value.toString(), body, 'the message, byte for byte');
      assert.equal((await queue.stats()).dead, 0);
    } finally {
      await consumer.close();
      await queue.close();
    }
  });
});

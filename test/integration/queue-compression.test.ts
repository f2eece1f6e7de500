/**
 * Compressed message bodies on a real etcd (QUEUE_COMPRESSION, docs/queue.md "Compression"): what
 * each setting writes, that consumers of either setting read both (a rolling change of the
 * setting), and that retries, dead letters and replays keep the envelope exact.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import { Kv, putOp } from '../../src/etcd/kv.js';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../../src/queue/envelope.js';
import type { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { run, spawnNexus } from '../helpers/child.js';
import { etcdQueue } from '../helpers/queues.js';

const etcd = await sharedEtcd();

let seq = 0;
/** A batch of `n` DCGM-like readings (8 GPUs a host), as the streamer would publish. */
function batch(cluster: string, n: number): Envelope {
  seq++;
  const records: TelemetryRecord[] = Array.from({ length: n }, (_, i) => {
    const host = `gpu-node-${String(Math.floor(i / 8)).padStart(4, '0')}`;
    const gpu = i % 8;
    return {
      timestamp: 1_752_871_354_000 + seq * 1000,
      metric: 'DCGM_FI_DEV_GPU_UTIL',
      gpu,
      hostname: host,
      value: (i * 7) % 101,
      device: `nvidia${gpu}`,
      uuid: `GPU-${String(seq).padStart(8, '0')}-0000-0000-0000-${String(i).padStart(12, '0')}`,
      model: 'NVIDIA H100 80GB HBM3',
      labels: {
        DCGM_FI_DRIVER_VERSION: '535.129.03',
        Hostname: host,
        __name__: 'DCGM_FI_DEV_GPU_UTIL',
        gpu: String(gpu),
        instance: `${host}:9400`,
        job: 'dcgm',
      },
    };
  });
  return {
    v: 1,
    id: `${seq}-compression`,
    producer: 'compression-test',
    cluster,
    createdAt: Date.now(),
    attempt: 0,
    records,
  };
}

/** The stored bodies of the queue's messages, by message name. */
async function bodies(q: EtcdQueue): Promise<Map<string, Buffer>> {
  const res = await q.etcd.getAll().prefix(q.layout.messages).exec();
  return new Map(
    res.kvs.map((kv) => [kv.key.toString().slice(q.layout.messages.length), kv.value]),
  );
}

/** Claims what `q` delivers: only the message `name`, which it acks (the others are buried). */
async function claimOnly(q: EtcdQueue, consumerName: string, name: string): Promise<void> {
  const consumer = await q.consumer({ name: consumerName });
  const got = await consumer.claim(10, { waitMs: 2000 });
  assert.deepEqual(
    got.map((d) => d.id),
    [name],
  );
  await consumer.ack(got);
  await consumer.close();
}

describe('compressed queue messages on etcd', () => {
  const open: EtcdQueue[] = [];
  const queue = (cluster: string, compression?: 'zlib' | 'none'): EtcdQueue => {
    const q = etcdQueue(etcd.endpoint, cluster, compression === undefined ? {} : { compression });
    open.push(q);
    return q;
  };
  after(async () => {
    await Promise.all(open.map((q) => q.close()));
    await etcd.release();
  });

  it('writes zlib by default and JSON with none, and a consumer of either setting reads both', async () => {
    const c = uniqueCluster('zq');
    const zlib = queue(c);
    const plain = queue(c, 'none');
    const a = batch(c, 500);
    const b = batch(c, 500);
    await zlib.publish(a);
    await plain.publish(b);
    const stored = [...(await bodies(zlib)).values()];
    assert.equal(stored.length, 2);
    const json = stored.find((s) => s[0] === '{'.charCodeAt(0));
    const zipped = stored.find((s) => s[0] === 0x78);
    assert.ok(json !== undefined && zipped !== undefined);
    assert.deepEqual(json, encodeEnvelope(b));
    // The compressed body is a fraction of the JSON it holds.
    assert.ok(zipped.length * 3 < encodeEnvelope(a).length, `${zipped.length} bytes`);
    for (const reader of [plain, zlib]) {
      const consumer = await reader.consumer({ name: 'both' });
      const got = await consumer.claim(10, { waitMs: 2000 });
      assert.deepEqual(
        got.map((d) => d.envelope).sort((x, y) => x.id.localeCompare(y.id)),
        [a, b]
          .map((e) => decodeEnvelope(encodeEnvelope(e)))
          .sort((x, y) => x.id.localeCompare(y.id)),
      );
      // Closing revokes the consumer's session: its claims go, and the other reader gets both.
      await consumer.close();
    }
  });

  it('a fenced stream publish, a retry and a replay keep the body compressed and the envelope exact', async () => {
    const c = uniqueCluster('zs');
    const q = queue(c);
    const stream = await q.openStream('compression-stream', 'producer');
    const e = batch(c, 300);
    await stream.publish(stream.prepare(e), 0, null, { batch: 0 });
    await stream.release();
    const [first] = [...(await bodies(q)).values()];
    assert.equal(first?.[0], 0x78);
    const consumer = await q.consumer({ name: 'retry' });
    const got = await consumer.claim(1, { waitMs: 2000 });
    assert.equal(got.length, 1);
    const d = got[0];
    assert.ok(d !== undefined);
    assert.equal(await consumer.nack(d, 'database down', { retryable: true }), 'retry');
    // The delayed retry is compressed, and comes back with its attempt and reason.
    const delayed = await q.etcd.getAll().prefix(q.layout.delayed).exec();
    assert.equal(delayed.kvs.length, 1);
    assert.equal(delayed.kvs[0]?.value[0], 0x78);
    const again = await consumer.claim(1, { waitMs: 10_000 });
    assert.equal(again.length, 1);
    const back = again[0];
    assert.ok(back !== undefined);
    assert.equal(back.envelope.attempt, 1);
    assert.equal(back.envelope.lastError, 'database down');
    assert.deepEqual(back.envelope.records, decodeEnvelope(encodeEnvelope(e)).records);
    // Dead-lettered, then replayed: compressed again, from attempt 0 (its first delivery again).
    assert.equal(await consumer.nack(back, 'bad batch', { retryable: false }), 'dead');
    assert.equal(await q.replayDeadLetters('all'), 1);
    const replayed = [...(await bodies(q)).values()];
    assert.equal(replayed.length, 1);
    assert.equal(replayed[0]?.[0], 0x78);
    const last = await consumer.claim(1, { waitMs: 2000 });
    const [l] = last;
    assert.ok(l !== undefined);
    assert.equal(l.attempt, 1);
    assert.equal(l.envelope.attempt, 0);
    assert.deepEqual(l.envelope.records, back.envelope.records);
    await consumer.ack(last);
    await consumer.close();
  });

  it('a batch too large as JSON for one etcd request is published, retried by a queue set to none, dead-lettered and replayed whole', async () => {
    const c = uniqueCluster('zl');
    const q = queue(c);
    const plain = queue(c, 'none');
    const e = batch(c, 10_000);
    const json = encodeEnvelope(e).length;
    assert.ok(json > 1_400_000, `${json} bytes of JSON`);
    await q.publish(e);
    const [stored] = [...(await bodies(q)).values()];
    assert.ok(stored !== undefined && stored.length < 1_400_000, `${stored?.length} bytes`);
    // A collector set to none writes the retry compressed all the same: as JSON it cannot be.
    const consumer = await plain.consumer({ name: 'large' });
    const [d] = await consumer.claim(1, { waitMs: 2000 });
    assert.ok(d !== undefined);
    assert.equal(await consumer.nack(d, 'database down', { retryable: true }), 'retry');
    const delayed = await q.etcd.getAll().prefix(q.layout.delayed).exec();
    assert.equal(delayed.kvs[0]?.value[0], 0x78);
    const [again] = await consumer.claim(1, { waitMs: 10_000 });
    assert.ok(again !== undefined);
    assert.equal(again.envelope.records.length, 10_000);
    // Its dead letter keeps the body compressed (the expanded JSON would be several MB).
    assert.equal(await consumer.nack(again, 'bad batch', { retryable: false }), 'dead');
    const dead = await q.etcd.get(q.layout.deadLetter(d.id)).buffer();
    assert.ok(dead !== null && dead.length < 1_400_000, `${dead?.length} bytes`);
    const record = JSON.parse(dead.toString()) as { envelope?: unknown; body?: string };
    assert.equal(record.envelope, undefined);
    assert.equal(typeof record.body, 'string');
    const [item] = (await q.listDeadLetters()).items;
    assert.ok(item !== undefined);
    assert.equal(item.records, 10_000);
    assert.equal(item.envelope?.lastError, 'database down');
    assert.equal(await plain.replayDeadLetters([d.id]), 1);
    const [back] = await consumer.claim(1, { waitMs: 2000 });
    assert.ok(back !== undefined);
    assert.equal(back.envelope.attempt, 0);
    assert.deepEqual(back.envelope.records, decodeEnvelope(encodeEnvelope(e)).records);
    await consumer.ack([back]);
    await consumer.close();
  });

  it('settles a large message whose refused records have 100 reasons in one etcd request', async () => {
    const c = uniqueCluster('zr');
    const q = queue(c);
    await q.publish(batch(c, 10_000));
    const consumer = await q.consumer({ name: 'settle' });
    const [d] = await consumer.claim(1, { waitMs: 2000 });
    assert.ok(d !== undefined);
    // Every record refused, 100 reasons (timestamps out of range say which): 100 dead letters of
    // about 55 KB each as JSON, 5.5 MB in one transaction, which etcd refuses; compressed, it fits.
    const rejected = d.envelope.records.map((_, index) => ({
      index,
      reason: `timestamp out of range (${index % 100})`,
    }));
    assert.equal(await consumer.settle(d, rejected), 'acked');
    await consumer.close();
    // Read 32 at a time (a dead letter can be over a MB), paged as asked.
    const page = await q.listDeadLetters({ limit: 1000 });
    assert.equal(page.items.length, 100);
    assert.equal(page.next, undefined);
    const first = await q.listDeadLetters({ limit: 40 });
    assert.deepEqual(
      first.items.map((i) => i.id),
      page.items.slice(0, 40).map((i) => i.id),
    );
    assert.equal(first.next, page.items[39]?.id);
    const rest = await q.listDeadLetters({
      limit: 1000,
      ...(first.next === undefined ? {} : { after: first.next }),
    });
    assert.equal(rest.items.length, 60);
    assert.equal(
      page.items.reduce((n, i) => n + i.records, 0),
      10_000,
    );
    assert.equal((await q.stats()).ready, 0);
  });

  it('settles a message whose refused groups would not fit one etcd request together as one dead letter of the whole message', async () => {
    const c = uniqueCluster('zw');
    const q = queue(c);
    // 200 GPUs with identities that do not compress (random uuids and labels), 100 fields each:
    // refused by field, each of the 100 dead letters would repeat all 200 identities.
    const gpus = Array.from({ length: 200 }, (_, g) => ({
      hostname: `gpu-node-${String(Math.floor(g / 8)).padStart(4, '0')}`,
      gpu: g % 8,
      uuid: `GPU-${randomBytes(16).toString('hex')}`,
      note: randomBytes(150).toString('base64'),
    }));
    const records: TelemetryRecord[] = gpus.flatMap((g) =>
      Array.from({ length: 100 }, (_, m) => ({
        timestamp: 1_752_871_354_000,
        metric: `DCGM_FI_PROF_TEST_${m}`,
        gpu: g.gpu,
        hostname: g.hostname,
        uuid: g.uuid,
        value: m,
        labels: {
          Hostname: g.hostname,
          UUID: g.uuid,
          __name__: `DCGM_FI_PROF_TEST_${m}`,
          gpu: String(g.gpu),
          note: g.note,
        },
      })),
    );
    await q.publish({ ...batch(c, 1), records });
    const consumer = await q.consumer({ name: 'whole' });
    const [d] = await consumer.claim(1, { waitMs: 2000 });
    assert.ok(d !== undefined);
    const rejected = d.envelope.records.map((r, index) => ({
      index,
      reason: `refused: ${r.metric}`,
    }));
    assert.equal(await consumer.settle(d, rejected), 'acked');
    await consumer.close();
    const { items } = await q.listDeadLetters();
    assert.deepEqual(
      items.map((i) => [i.id, i.records]),
      [[`${d.id}.r0`, 20_000]],
    );
    assert.match(
      items[0]?.reason ?? '',
      /^whole message dead-lettered: 20000 of its 20000 records refused, for 100 reasons \(its other records are stored, and skipped as duplicates when it is replayed\); the first reason: refused: DCGM_FI_PROF_TEST_0$/,
    );
    assert.equal((await q.stats()).ready, 0);
  });

  it('nexus queue list shows the compressed messages decoded, paged, and one it cannot decode as such', async () => {
    const c = uniqueCluster('zl');
    const q = queue(c);
    const published = [batch(c, 120), batch(c, 80)];
    for (const e of published) await q.publish(e);
    const names = [...(await bodies(q)).keys()].sort();
    const env = { ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: c, LOG_LEVEL: 'error' };
    const json = await run(spawnNexus(['queue', 'list', '--json'], env));
    assert.equal(json.code, 0, json.stderr);
    const page = JSON.parse(json.stdout) as {
      items: { name: string; id: string; records: number; state: string; producer: string }[];
      next?: string;
    };
    assert.deepEqual(
      page.items.map((m) => [m.name, m.id, m.records, m.state, m.producer]),
      names.map((n, i) => [
        n,
        published[i]?.id,
        published[i]?.records.length,
        'ready',
        'compression-test',
      ]),
    );
    assert.equal(page.next, undefined);
    const text = await run(spawnNexus(['queue', 'list', '--limit', '1'], env));
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      new RegExp(
        `^${names[0]}  ready  records=120  producer=compression-test  attempt=0  age=\\d+s\\n\\.\\.\\. more: --after ${names[0]}\\n$`,
      ),
    );
    const rest = await run(spawnNexus(['queue', 'list', '--after', names[0] ?? ''], env));
    assert.match(rest.stdout, new RegExp(`^${names[1]}  ready  records=80 `));
    // A body that cannot be decoded is listed, saying why.
    const badName = `${names[1]}-broken`;
    await new Kv(q.etcd).txn([], [putOp(q.layout.message(badName), Buffer.from('xx'))]);
    const withBad = await q.listMessages();
    assert.match(withBad.items.find((m) => m.name === badName)?.problem ?? '', /./);
    const bad = await run(spawnNexus(['queue', 'list', '--limit', '0'], env));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--limit must be a whole number from 1 to 1000/);
  });

  it('dead-letters a body that does not inflate with its reason, keeping it byte for byte', async () => {
    const c = uniqueCluster('zd');
    const q = queue(c);
    const good = batch(c, 200);
    await q.publish(good);
    const [name, body] = [...(await bodies(q)).entries()][0] ?? [];
    assert.ok(name !== undefined && body !== undefined);
    assert.deepEqual((await q.stats()).head, {
      name,
      id: good.id,
      producer: 'compression-test',
      createdAt: good.createdAt,
      attempt: 0,
      records: 200,
    });
    // What `nexus queue stats` says of it, as text and as JSON (the runbook's `jq .head`).
    const env = { ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: c, LOG_LEVEL: 'error' };
    const text = await run(spawnNexus(['queue', 'stats'], env));
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      new RegExp(
        `head message age \\d+s \\(${name}: 200 records from compression-test, attempt 0\\)`,
      ),
    );
    const json = await run(spawnNexus(['queue', 'stats', '--json'], env));
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as { head?: { name?: string } }).head?.name, name);
    const broken = Buffer.from(body.subarray(0, body.length - 20));
    const badName = name.replace(/compression$/, 'broken');
    await new Kv(q.etcd).txn([], [putOp(q.layout.message(badName), broken)]);
    // nexus queue stats describes the head message: the broken one (its name sorts first), which
    // cannot be decoded, and before it was put there the good one, from its compressed body.
    const { head } = await q.stats();
    assert.ok(head !== undefined);
    assert.equal(head.name, badName);
    assert.match(head.problem ?? '', /^compressed message does not inflate: /);
    await claimOnly(q, 'bad', name);
    const { items } = await q.listDeadLetters();
    assert.equal((await q.stats()).head, undefined);
    const [item] = items;
    assert.equal(items.length, 1);
    assert.ok(item !== undefined);
    assert.equal(item.id, badName);
    assert.match(item.reason, /^compressed message does not inflate: /);
    const dead = await q.etcd.get(q.layout.deadLetter(badName)).buffer();
    assert.ok(dead !== null);
    const raw = (JSON.parse(dead.toString()) as { raw?: string }).raw;
    assert.deepEqual(Buffer.from(raw ?? '', 'base64'), broken);
  });

  it('dead-letters a body too large to keep in one etcd request without it, saying so, instead of failing at each claim', async () => {
    const c = uniqueCluster('zl');
    const q = queue(c);
    const good = batch(c, 100);
    await q.publish(good);
    const [name] = [...(await bodies(q)).keys()];
    assert.ok(name !== undefined);
    // An earlier release's largest message (1.4 MB), or another producer's: its base64 would not
    // fit one etcd request. It looks compressed and does not inflate.
    const big = randomBytes(1_400_000);
    big[0] = 0x78;
    const bigName = name.replace(/compression$/, 'big');
    await new Kv(q.etcd).txn([], [putOp(q.layout.message(bigName), big)]);
    await claimOnly(q, 'big', name);
    assert.equal(await q.etcd.get(q.layout.message(bigName)).buffer(), null);
    const { items } = await q.listDeadLetters();
    assert.deepEqual(
      items.map((i) => [i.id, i.records]),
      [[bigName, 0]],
    );
    assert.match(
      items[0]?.reason ?? '',
      /^compressed message does not inflate: .* \(its 1400000-byte body was too large to keep in one etcd request and was not kept\)$/,
    );
    const dead = await q.etcd.get(q.layout.deadLetter(bigName)).buffer();
    assert.ok(dead !== null);
    const omitted = {
      field: 'raw',
      bytes: 1_400_000,
      sha256: createHash('sha256').update(big).digest('hex'),
    };
    assert.deepEqual((JSON.parse(dead.toString()) as { omitted?: unknown }).omitted, omitted);
    // What `nexus dlq list --json` shows of it.
    const env = { ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: c, LOG_LEVEL: 'error' };
    const listed = await run(spawnNexus(['dlq', 'list', '--json'], env));
    assert.equal(listed.code, 0, listed.stderr);
    const shown = JSON.parse(listed.stdout) as { items: { id: string; omitted?: unknown }[] };
    assert.deepEqual(
      shown.items.map((i) => [i.id, i.omitted]),
      [[bigName, omitted]],
    );
  });
});

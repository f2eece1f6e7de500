import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { createEtcdClient } from '../../src/etcd/client.js';
import type { Gateway } from '../../src/gateway/app.js';
import { EtcdFeed } from '../../src/registry/etcd/etcd-feed.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/pipeline.js';
import { openSocket, type TestSocket } from '../helpers/ws-client.js';

/**
 * Live push survives a lost etcd lease and an etcd outage: the gateway's listener key comes back
 * on a new lease (collectors publish only to listeners), WebSocket clients keep receiving,
 * /readyz says "not ready" while live push is down, and the feed tells its subscribers that
 * batches may have been missed (the gateway then reads its latest values again from the store).
 */
let etcd: EtcdServer;
let gatewayClient: Etcd3;
let collectorClient: Etcd3;
let admin: Etcd3;
let gatewayFeed: EtcdFeed;
let collectorFeed: EtcdFeed;
let t: TestGateway;
let gateway: Gateway;
let base: string;
const PREFIX = '/recovery-test';
const LISTENER = `${PREFIX}/listeners/gw-1`;
/** Gaps the feed has reported to a subscriber. */
let gaps = 0;

before(async () => {
  etcd = await startEtcd();
  const connect = (): Etcd3 => createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 2000 });
  gatewayClient = connect();
  collectorClient = connect();
  admin = connect();
  const feed = (client: Etcd3, instance: string): EtcdFeed =>
    new EtcdFeed({
      client,
      prefix: PREFIX,
      instance,
      ttlMs: 30_000,
      leaseTtlMs: 2000,
      logger: silentLogger(),
    });
  gatewayFeed = feed(gatewayClient, 'gw-1');
  collectorFeed = feed(collectorClient, 'collector-1');
  t = await sampleGateway({ feed: gatewayFeed, checks: [], graphql: false, latestReloadMs: 0 });
  gateway = t.gateway;
  base = (await gateway.app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/, 'ws');
  await gatewayFeed.announceListener('gw-1');
  await gatewayFeed.subscribe(
    '*',
    () => undefined,
    () => {
      gaps++;
    },
  );
});

after(async () => {
  await t.close();
  await gatewayFeed.close();
  await collectorFeed.close();
  for (const c of [gatewayClient, collectorClient, admin]) c.close();
  await etcd.destroy();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

function reading(value: number): TelemetryRecord {
  return {
    timestamp: Date.now(),
    metric: 'DCGM_FI_DEV_GPU_TEMP',
    gpu: 0,
    hostname: 'node-1',
    value,
    labels: {},
  };
}

/** Publishes as a collector would, until the client has the reading (the feed is best effort). */
async function delivered(s: TestSocket, value: number): Promise<boolean> {
  return until(async () => {
    await collectorFeed.publish('c1', [reading(value)]).catch(() => undefined);
    return s.messages.some(
      (m) =>
        m.type === 'telemetry' &&
        (m.readings as { value: number }[]).some((r) => r.value === value),
    );
  }, 20_000);
}

async function ready(): Promise<{ status: number; reasons: string[] }> {
  const res = await gateway.app.inject('/readyz');
  return { status: res.statusCode, reasons: res.json<{ reasons: string[] }>().reasons };
}

describe('live push recovery', { timeout: 120_000 }, () => {
  it('registers again after its lease is revoked, and clients keep receiving', async () => {
    const s = await openSocket(`${base}/ws?cluster_id=c1`);
    await s.waitFor((m) => m.type === 'subscribed');
    assert.ok(await delivered(s, 1), 'nothing delivered before the lease was lost');
    const before = await admin.get(LISTENER).exec();
    const lease = before.kvs[0]?.lease;
    assert.ok(lease !== undefined && lease !== '0', 'the listener key is on a lease');
    const gapsBefore = gaps;
    // What an overloaded gateway suffers when its keepalives stall past the TTL.
    await admin.leaseClient.leaseRevoke({ ID: lease });
    assert.equal((await admin.get(LISTENER).exec()).kvs.length, 0, 'the listener key is gone');
    assert.ok(
      await until(async () => (await admin.get(LISTENER).exec()).kvs.length === 1, 15_000),
      'the listener key did not come back',
    );
    const again = (await admin.get(LISTENER).exec()).kvs[0]?.lease;
    assert.notEqual(again, lease, 'registered on a new lease');
    assert.ok(
      await until(() => Promise.resolve(gaps > gapsBefore), 15_000),
      'no gap reported once listening again',
    );
    assert.ok(await delivered(s, 2), 'nothing delivered after the lease was lost');
    assert.equal((await ready()).status, 200);
    await s.close();
  });

  it('is not ready while etcd is down, and live again after it returns', async () => {
    const s = await openSocket(`${base}/ws?cluster_id=c1`);
    await s.waitFor((m) => m.type === 'subscribed');
    const gapsBefore = gaps;
    await etcd.stop();
    assert.ok(
      await until(async () => (await ready()).status === 503, 15_000),
      'still ready with etcd down',
    );
    assert.ok(
      (await ready()).reasons.some((r) => r.startsWith('live:')),
      JSON.stringify(await ready()),
    );
    await etcd.start();
    assert.ok(
      await until(async () => (await ready()).status === 200, 30_000),
      `not ready again after etcd returned: ${JSON.stringify(await ready())}`,
    );
    assert.equal((await admin.get(LISTENER).exec()).kvs.length, 1, 'listening again');
    assert.ok(
      await until(() => Promise.resolve(gaps > gapsBefore), 15_000),
      'no gap reported after the watch came back',
    );
    assert.ok(await delivered(s, 3), 'nothing delivered after etcd returned');
    await s.close();
  });
});

/**
 * Keys a session keeps on its lease (Session.keep, src/etcd/session.ts: the gateway's live
 * listener key) against a real etcd: a key deleted by other means comes back, and a check that
 * could not reach etcd makes `keptStatus` say so only until a later check finds the keys in place,
 * on the same lease when etcd kept it (readiness follows `keptStatus`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { silentLogger } from '../../src/core/logger.js';
import { createEtcdClient } from '../../src/etcd/client.js';
import { Session } from '../../src/etcd/session.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { until } from '../helpers/pipeline.js';

/** 10 s: the session checks its keys every 5 s, and its client gives the lease up after 20 s. */
const TTL_S = 10;
let etcd: EtcdServer;
let client: Etcd3;
let admin: Etcd3;

before(async () => {
  etcd = await startEtcd();
  client = createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 1000 });
  admin = createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 5000 });
});
after(async () => {
  client.close();
  admin.close();
  await etcd.destroy();
});

async function leaseOf(key: string): Promise<string | undefined> {
  return (await admin.get(key).exec()).kvs[0]?.lease;
}

describe('session keys', { timeout: 120_000 }, () => {
  it('a kept key deleted by other means is written again on the session lease', async () => {
    const session = new Session(client, TTL_S, silentLogger());
    try {
      const key = '/session-test/deleted';
      await session.keep(key, () => 'me');
      assert.equal(session.keptStatus, undefined);
      const lease = await leaseOf(key);
      assert.ok(lease !== undefined && lease !== '0', 'the key is on a lease');
      await admin.delete().key(key).exec();
      assert.ok(
        await until(async () => (await leaseOf(key)) !== undefined, 15_000),
        'the key did not come back',
      );
      assert.equal(await leaseOf(key), lease, 'written again on the same lease');
      assert.ok(await until(() => Promise.resolve(session.keptStatus === undefined), 5_000));
    } finally {
      await session.close();
    }
  });

  it('keys unverified while etcd is down are in place again once a check finds them, on the same lease', async () => {
    const session = new Session(client, TTL_S, silentLogger());
    try {
      const key = '/session-test/outage';
      await session.keep(key, () => 'me');
      const lease = await leaseOf(key);
      assert.ok(lease !== undefined);
      await etcd.stop();
      assert.ok(
        await until(() => Promise.resolve(session.keptStatus !== undefined), 15_000),
        'the keys were not reported unverified while etcd was down',
      );
      assert.match(String(session.keptStatus), /^session keys unverified: /);
      // Back well within the lease's life: etcd keeps the lease (a new leader extends every
      // lease), the client has not given it up, so nothing is written again.
      await etcd.start();
      assert.ok(
        await until(() => Promise.resolve(session.keptStatus === undefined), 20_000),
        `still not in place after etcd returned: ${String(session.keptStatus)}`,
      );
      assert.equal(await leaseOf(key), lease, 'the key is on the lease it had');
      assert.equal(session.generation, 0, 'the lease was never lost');
    } finally {
      await session.close();
    }
  });
});

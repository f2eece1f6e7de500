import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { createEtcdClient } from '../../src/etcd/client.js';
import { EtcdRegistry } from '../../src/registry/etcd/etcd-registry.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';

const etcd = await sharedEtcd();
const clients = [0, 1].map(() => createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 5000 }));
after(async () => {
  for (const c of clients) c.close();
  await etcd.release();
});

/** A collector's registry: one of two, on the same etcd and prefix. */
const registry = (i: 0 | 1, prefix: string): EtcdRegistry =>
  new EtcdRegistry({
    client: clients[i] as (typeof clients)[number],
    prefix,
    flushIntervalMs: 3_600_000,
    maxLivePerFlush: 10_000,
    leaseTtlMs: 10_000,
    logger: silentLogger(),
  });

const reading = (hostname: string, gpu: number, timestamp: number): TelemetryRecord => ({
  hostname,
  gpu,
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  timestamp,
  value: 1,
  uuid: `GPU-${hostname}-${gpu}`,
  labels: {},
});

describe('etcd registry metadata', () => {
  it('a fleet written first by one collector is merged, not overwritten, by another that saw part of it earlier and later', async () => {
    const prefix = `/${uniqueCluster('reg')}`;
    const a = registry(0, prefix);
    const b = registry(1, prefix);
    // A: 30 hosts of 8 GPUs (more than one transaction of first writes), at 1,000-2,000.
    a.observe(
      'c1',
      Array.from({ length: 30 * 8 }, (_, i) => [
        reading(`h${Math.floor(i / 8)}`, i % 8, 1000),
        reading(`h${Math.floor(i / 8)}`, i % 8, 2000),
      ]).flat(),
    );
    await a.flush();
    // B never wrote any of it: its first writes find h0's keys there, and merge them (its span
    // starts earlier and ends inside A's); h99 is new.
    b.observe('c1', [reading('h0', 0, 500), reading('h0', 0, 1500), reading('h99', 0, 1500)]);
    await b.flush();

    const hosts = await a.hosts('c1');
    assert.equal(hosts.length, 31);
    const h0 = hosts.find((h) => h.hostname === 'h0');
    assert.deepEqual([h0?.first_seen, h0?.last_seen, h0?.gpu_count], [500, 2000, 8]);
    const h1 = hosts.find((h) => h.hostname === 'h1');
    assert.deepEqual([h1?.first_seen, h1?.last_seen], [1000, 2000]);
    const h99 = hosts.find((h) => h.hostname === 'h99');
    assert.deepEqual([h99?.first_seen, h99?.last_seen], [1500, 1500]);
    const gpus = await a.gpus('c1', 'h0');
    assert.deepEqual(
      gpus.map((g) => [g.gpu, g.first_seen, g.last_seen]),
      [[0, 500, 2000], ...Array.from({ length: 7 }, (_, i) => [i + 1, 1000, 2000])],
    );
    const [cluster] = (await a.clusters()).filter((c) => c.cluster_id === 'c1');
    assert.deepEqual([cluster?.first_seen, cluster?.last_seen], [500, 2000]);

    // A writes again (its last seen moved past the touch interval): merged with B's earlier first seen.
    a.observe('c1', [reading('h0', 0, 200_000)]);
    await a.flush();
    const [again] = await a.gpus('c1', 'h0');
    assert.deepEqual([again?.first_seen, again?.last_seen], [500, 200_000]);
    await a.close();
    await b.close();
  });
});

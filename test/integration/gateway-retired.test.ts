/**
 * Retired GPUs leave the live views, the alerts and the fleet gauges, and their history stays
 * readable (docs/fleet.md, "Retired GPUs"): through the gateway on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NexusMetrics } from '../../src/core/metrics.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { POWER, SECOND, T0, TEMP, rec } from '../conformance/store-fixtures.js';

const MIN = 60 * SECOND;
let t: TestGateway;

/** One reading a minute of temperature (90 C: above the alert) and power (100, 150 and 400 W). */
const minutes = (hostname: string, gpu: number, count: number, watts: number) =>
  Array.from({ length: count }, (_, i) => [
    rec(T0 + i * MIN, 90, { hostname, gpu, metric: TEMP }),
    rec(T0 + i * MIN, watts, { hostname, gpu, metric: POWER }),
  ]).flat();

before(async () => {
  // Written (and retired) before the gateway starts: its fleet state's first load holds it all.
  t = await sampleGateway(
    { metrics: new NexusMetrics({ component: 'gateway', processMetrics: false }) },
    async (store) => {
      // node-a/0 reports 20 minutes; node-b/1 stops after 5; node-a/1 also reports throughout.
      await store.write('retire-1', [
        ...minutes('node-a', 0, 20, 100),
        ...minutes('node-a', 1, 20, 150),
        ...minutes('node-b', 1, 5, 400),
        rec(T0, 79, { hostname: 'node-a', gpu: 0, metric: 'DCGM_FI_DEV_XID_ERRORS' }),
        rec(T0, 48, { hostname: 'node-b', gpu: 1, metric: 'DCGM_FI_DEV_XID_ERRORS' }),
      ]);
      await store.rollUp();
      assert.deepEqual(await store.retire(10 * MIN), { stopped: 1, reappeared: 0, busy: false });
    },
  );
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

async function get<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await t.gateway.app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json<T>() };
}

describe('retired GPUs through the gateway', () => {
  it('the cluster counts live GPUs and reports the retired ones', async () => {
    const c = await get<{ hosts: number; gpus: number; retired_gpus: number }>(
      '/api/v1/clusters/retire-1',
    );
    assert.deepEqual(
      { hosts: c.body.hosts, gpus: c.body.gpus, retired: c.body.retired_gpus },
      { hosts: 1, gpus: 2, retired: 1 },
    );
  });

  it('host and GPU lists hide retired ones unless include_retired, which flags them', async () => {
    const hosts = await get<{ hosts: { host_id: string; gpus: number; retired: boolean }[] }>(
      '/api/v1/clusters/retire-1/hosts',
    );
    assert.deepEqual(
      hosts.body.hosts.map((h) => [h.host_id, h.gpus, h.retired]),
      [['node-a', 2, false]],
    );
    const all = await get<{ hosts: { host_id: string; gpus: number; retired: boolean }[] }>(
      '/api/v1/clusters/retire-1/hosts?include_retired=true',
    );
    assert.deepEqual(
      all.body.hosts.map((h) => [h.host_id, h.gpus, h.retired]),
      [
        ['node-a', 2, false],
        ['node-b', 1, true],
      ],
    );
    const gpus = await get<{ count: number }>('/api/v1/clusters/retire-1/hosts/node-b/gpus');
    assert.equal(gpus.body.count, 0);
    const flagged = await get<{ gpus: { gpu_id: number; retired: boolean }[] }>(
      '/api/v1/clusters/retire-1/hosts/node-b/gpus?include_retired=true',
    );
    assert.deepEqual(
      flagged.body.gpus.map((g) => [g.gpu_id, g.retired]),
      [[1, true]],
    );
    const bad = await t.gateway.app.inject({
      method: 'GET',
      url: '/api/v1/clusters/retire-1/hosts?include_retired=maybe',
    });
    assert.equal(bad.statusCode, 400);
  });

  it('the overview: live GPUs, retired_gpus, power of live GPUs, no alert for a retired GPU', async () => {
    const o = await get<{
      gpus: number;
      retired_gpus: number;
      power_watts: number;
      by_cluster: {
        cluster_id: string;
        gpus: number;
        retired_gpus: number;
        power_watts: number;
        idle_gpus: number;
      }[];
      alerts: { host_id: string; gpu_id: number }[];
    }>('/api/v1/overview?cluster_id=retire-1');
    assert.equal(o.status, 200);
    assert.equal(o.body.gpus, 2);
    assert.equal(o.body.retired_gpus, 1);
    assert.equal(o.body.power_watts, 250);
    assert.deepEqual(o.body.by_cluster, [
      { cluster_id: 'retire-1', gpus: 2, retired_gpus: 1, power_watts: 250, idle_gpus: 0 },
    ]);
    assert.deepEqual(o.body.alerts.map((a) => `${a.host_id}/${a.gpu_id}`).sort(), [
      'node-a/0',
      'node-a/1',
    ]);
  });

  it('the fleet gauges leave the retired GPU out (NexusGPUNotReporting stops for it)', async () => {
    const res = await t.gateway.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    const seen = res.body
      .split('\n')
      .filter(
        (l) => l.startsWith('nexus_gpu_last_reading_timestamp_seconds{') && l.includes('retire-1'),
      )
      .map((l) => /host="([^"]+)",gpu="(\d+)"/.exec(l)?.slice(1).join('/'))
      .sort();
    assert.deepEqual(seen, ['node-a/0', 'node-a/1']);
    // The latched XID of live GPUs, with its severity (NexusGPUXidError): not the retired one's.
    const xids = res.body
      .split('\n')
      .filter((l) => l.startsWith('nexus_gpu_xid_info{') && l.includes('retire-1'));
    assert.equal(xids.length, 1);
    assert.match(
      xids[0] ?? '',
      /host="node-a",gpu="0",uuid="GPU-node-a-0",code="79",severity="critical",component="gateway"\} 1$/,
    );
  });

  it('its history stays readable', async () => {
    const res = await get<{ count?: number; data?: unknown[] }>(
      `/api/v1/telemetry?cluster_id=retire-1&host_id=node-b&metric=${TEMP}&from=${T0}&to=${T0 + 60 * MIN}`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.count, 5);
  });
});

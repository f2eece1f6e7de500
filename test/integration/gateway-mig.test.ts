import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import { buildGateway, type Gateway } from '../../src/gateway/app.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import { testGatewayOptions } from '../helpers/gateway.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

/**
 * MIG instances through the API: a host with a whole GPU (0) and an A100 (2) reported only by its
 * two MIG instances, as dcgm-exporter does (the GPU's index and UUID, GPU_I_ID and GPU_I_PROFILE,
 * no DCGM_FI_DEV_GPU_UTIL for an instance).
 */
const CLUSTER = 'mig-cluster';
const HOST = 'mig-node';
const T0 = Date.UTC(2025, 6, 18, 12, 0, 0);
const ENGINE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const TEMP = 'DCGM_FI_DEV_GPU_TEMP';

function rec(
  t: number,
  gpu: number,
  metric: string,
  value: number,
  mig?: { id: string; profile: string; pod?: string },
): TelemetryRecord {
  const uuid = gpu === 2 ? 'GPU-a100-0000' : 'GPU-h100-0000';
  return {
    timestamp: t,
    metric,
    gpu,
    hostname: HOST,
    value,
    uuid,
    model: gpu === 2 ? 'NVIDIA A100-SXM4-80GB' : 'NVIDIA H100 80GB HBM3',
    device: `nvidia${gpu}`,
    ...(mig?.pod === undefined ? {} : { namespace: 'ml', pod: mig.pod, container: 'server' }),
    labels: {
      gpu: String(gpu),
      UUID: uuid,
      Hostname: HOST,
      ...(mig === undefined ? {} : { GPU_I_ID: mig.id, GPU_I_PROFILE: mig.profile }),
      ...(mig?.pod === undefined ? {} : { namespace: 'ml', pod: mig.pod, container: 'server' }),
    },
  };
}

const I1 = { id: '1', profile: '3g.40gb', pod: 'infer-0' };
const I7 = { id: '7', profile: '1g.10gb' };
const RECORDS: TelemetryRecord[] = [
  rec(T0, 0, UTIL, 40),
  rec(T0, 0, TEMP, 50),
  rec(T0 + 60_000, 0, UTIL, 60),
  rec(T0, 2, ENGINE, 0.125, I1),
  rec(T0 + 60_000, 2, ENGINE, 0.5, I1),
  rec(T0, 2, TEMP, 41, I1),
  rec(T0, 2, ENGINE, 0.75, I7),
  rec(T0 + 60_000, 2, ENGINE, 0.25, I7),
];

const pg = await sharedPostgres();
const store = sqlStore(await pg.server.createDatabase(uniqueDatabase('mig')));
const feed = new MemoryFeed();
let gateway: Gateway;
before(async () => {
  await store.migrate();
  const res = await store.write(CLUSTER, RECORDS);
  assert.equal(res.inserted, RECORDS.length);
  gateway = await buildGateway({
    ...testGatewayOptions(store.reader),
    feed,
    graphql: true,
    websocket: false,
    cors: { enabled: false, origins: [] },
    maxPoints: 100_000,
  });
});
after(async () => {
  await gateway.app.close();
  await feed.close();
  await store.close();
  await pg.release();
});

async function get<T = Record<string, unknown>>(url: string): Promise<{ status: number; body: T }> {
  const res = await gateway.app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json<T>() };
}

const BASE = `/api/v1/clusters/${CLUSTER}/hosts/${HOST}`;

interface Reading {
  gpu_id: number;
  gpu_instance_id?: number;
  mig_profile?: string | null;
  metric: string;
  timestamp: string;
  value: number;
}

describe('MIG instances in the API', () => {
  it('counts physical GPUs: the cluster and the host have 2, and the host lists the instances under GPU 2', async () => {
    const c = await get<{ gpus: number; hosts: number }>(`/api/v1/clusters/${CLUSTER}`);
    assert.deepEqual([c.status, c.body.hosts, c.body.gpus], [200, 1, 2]);
    const hosts = await get<{ hosts: { gpus: number }[] }>(`/api/v1/clusters/${CLUSTER}/hosts`);
    assert.deepEqual(
      hosts.body.hosts.map((h) => h.gpus),
      [2],
    );
    const list = await get<{
      count: number;
      gpus: { gpu_id: number; uuid: string; mig_instances: unknown[]; last_seen: string }[];
    }>(`${BASE}/gpus`);
    assert.equal(list.body.count, 2);
    assert.deepEqual(
      list.body.gpus.map((g) => [g.gpu_id, g.uuid, g.mig_instances, g.last_seen]),
      [
        [0, 'GPU-h100-0000', [], new Date(T0 + 60_000).toISOString()],
        [
          2,
          'GPU-a100-0000',
          [
            { gpu_instance_id: 1, profile: '3g.40gb' },
            { gpu_instance_id: 7, profile: '1g.10gb' },
          ],
          new Date(T0 + 60_000).toISOString(),
        ],
      ],
    );
  });

  it("a GPU's detail lists its instances with profile, utilisation from GR_ENGINE_ACTIVE, workloads and latest values; its own latest has none of theirs", async () => {
    const g = await get<{
      latest: Reading[];
      utilization_percent: number | null;
      workloads: unknown[];
      mig_instances: {
        gpu_instance_id: number;
        profile: string;
        utilization_percent: number | null;
        workloads: { pod: string; namespace: string }[];
        latest: Reading[];
      }[];
    }>(`${BASE}/gpus/2`);
    assert.equal(g.status, 200);
    assert.deepEqual(g.body.latest, []);
    assert.equal(g.body.utilization_percent, null);
    assert.deepEqual(g.body.workloads, []);
    assert.deepEqual(
      g.body.mig_instances.map((i) => [
        i.gpu_instance_id,
        i.profile,
        i.utilization_percent,
        i.workloads.map((w) => `${w.namespace}/${w.pod}`),
        i.latest.map((l) => [l.metric, l.value, l.gpu_instance_id, l.mig_profile]),
      ]),
      [
        [
          1,
          '3g.40gb',
          50,
          ['ml/infer-0'],
          [
            [TEMP, 41, 1, '3g.40gb'],
            [ENGINE, 0.5, 1, '3g.40gb'],
          ],
        ],
        [7, '1g.10gb', 25, [], [[ENGINE, 0.25, 7, '1g.10gb']]],
      ],
    );
    // A whole GPU: its GPU_UTIL, no instances.
    const g0 = await get<{ utilization_percent: number; mig_instances: unknown[] }>(
      `${BASE}/gpus/0`,
    );
    assert.deepEqual([g0.body.utilization_percent, g0.body.mig_instances], [60, []]);
  });

  it('an instance has its own endpoints: detail, metrics and series; an unknown one is 404, a malformed one 400', async () => {
    const i = await get<{ gpu_instance_id: number; profile: string; utilization_percent: number }>(
      `${BASE}/gpus/2/mig/7`,
    );
    assert.deepEqual(
      [i.status, i.body.gpu_instance_id, i.body.profile, i.body.utilization_percent],
      [200, 7, '1g.10gb', 25],
    );
    const missing = await get<{ error: string }>(`${BASE}/gpus/2/mig/3`);
    assert.equal(missing.status, 404);
    assert.equal(
      missing.body.error,
      `MIG instance 3 not found on GPU 2 of host "${HOST}" in cluster "${CLUSTER}"`,
    );
    assert.equal((await get(`${BASE}/gpus/2/mig/x`)).status, 400);
    assert.equal((await get(`${BASE}/gpus/5/mig/1`)).status, 404);

    const from = new Date(T0).toISOString();
    const to = new Date(T0 + 120_000).toISOString();
    const m = await get<{
      gpu_instance_id: number;
      metrics: Reading[];
      series: {
        gpu_instance_id: number;
        mig_profile: string;
        metric: string;
        points: { value: number }[];
      }[];
    }>(`${BASE}/gpus/2/mig/1/metrics?metric=${ENGINE}&from=${from}&to=${to}&step=1m`);
    assert.equal(m.status, 200);
    assert.equal(m.body.gpu_instance_id, 1);
    assert.deepEqual(
      m.body.series.map((s) => [
        s.gpu_instance_id,
        s.mig_profile,
        s.metric,
        s.points.map((p) => p.value),
      ]),
      [[1, '3g.40gb', ENGINE, [0.125, 0.5]]],
    );
    // The whole GPU's series of the same metric: none (its instances' are not mixed in).
    const whole = await get<{ series: unknown[] }>(
      `${BASE}/gpus/2/metrics?metric=${ENGINE}&from=${from}&to=${to}&step=1m`,
    );
    assert.deepEqual(whole.body.series, []);
    // A profiling field by its short name (DCGM_FI_PROF_ left out), as DEV_ fields.
    const short = await get<{ metrics: Reading[] }>(
      `${BASE}/gpus/2/mig/7/metrics?metric=GR_ENGINE_ACTIVE`,
    );
    assert.deepEqual(
      short.body.metrics.map((r) => [r.metric, r.value]),
      [[ENGINE, 0.25]],
    );
    const telemetry = await get<{ readings: Reading[] }>(
      `/api/v1/telemetry/latest?cluster_id=${CLUSTER}&host_id=${HOST}&gpu_id=2&gpu_instance=7&metric=GR_ENGINE_ACTIVE`,
    );
    assert.deepEqual(
      telemetry.body.readings.map((r) => r.value),
      [0.25],
    );
  });

  it('telemetry: a GPU selection reads the whole GPU only; gpu_instance picks instances, all reads both; a bad one is 400', async () => {
    const q = `/api/v1/telemetry?cluster_id=${CLUSTER}&host_id=${HOST}&gpu_id=2`;
    const none = await get<{ readings: Reading[]; count: number }>(q);
    assert.equal(none.body.count, 0);
    const one = await get<{ readings: Reading[] }>(`${q}&gpu_instance=7`);
    assert.deepEqual(
      one.body.readings.map((r) => [r.gpu_id, r.gpu_instance_id, r.mig_profile, r.value]),
      [
        [2, 7, '1g.10gb', 0.75],
        [2, 7, '1g.10gb', 0.25],
      ],
    );
    const all = await get<{ count: number }>(
      `/api/v1/telemetry?cluster_id=${CLUSTER}&gpu_instance=all`,
    );
    assert.equal(all.body.count, RECORDS.length);
    const wholeGpus = await get<{ readings: Reading[] }>(`/api/v1/telemetry?cluster_id=${CLUSTER}`);
    assert.deepEqual(
      wholeGpus.body.readings.map((r) => [r.gpu_id, 'gpu_instance_id' in r]),
      [
        [0, false],
        [0, false],
        [0, false],
      ],
    );
    const latest = await get<{ readings: Reading[] }>(
      `/api/v1/telemetry/latest?cluster_id=${CLUSTER}&gpu_instance=1,7&metric=${ENGINE}`,
    );
    assert.deepEqual(
      latest.body.readings.map((r) => [r.gpu_instance_id, r.value]),
      [
        [1, 0.5],
        [7, 0.25],
      ],
    );
    const bad = await get<{ error: string }>(`${q}&gpu_instance=x`);
    assert.equal(bad.status, 400);
    assert.equal(
      bad.body.error,
      'gpu_instance: "x" is not a GPU instance id (0, 1, ...), "gpu" or "all"',
    );
  });

  it('GraphQL: Gpu.migInstances with utilisation, workloads, latest values and series', async () => {
    const res = await gateway.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: {
        query: `{ gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 2) {
          utilization_percent
          migInstances { gpu_instance_id profile utilization_percent
            workloads { pod }
            latest { metric value gpu_instance_id mig_profile }
            series(metric: "${ENGINE}", from: "${new Date(T0).toISOString()}", to: "${new Date(T0 + 120_000).toISOString()}", step: "1m") {
              gpu_instance_id points { value } } } } }`,
      },
    });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json<{
      data: {
        gpu: {
          utilization_percent: number | null;
          migInstances: {
            gpu_instance_id: number;
            profile: string;
            utilization_percent: number;
            workloads: { pod: string }[];
            latest: { metric: string; value: number; gpu_instance_id: number }[];
            series: { gpu_instance_id: number; points: { value: number }[] };
          }[];
        };
      };
    }>();
    const gpu = body.data.gpu;
    assert.equal(gpu.utilization_percent, null);
    assert.deepEqual(
      gpu.migInstances.map((i) => [
        i.gpu_instance_id,
        i.profile,
        i.utilization_percent,
        i.workloads.map((w) => w.pod),
        i.latest.length,
        i.series.gpu_instance_id,
        i.series.points.map((p) => p.value),
      ]),
      [
        [1, '3g.40gb', 50, ['infer-0'], 2, 1, [0.125, 0.5]],
        [7, '1g.10gb', 25, [], 1, 7, [0.75, 0.25]],
      ],
    );
  });
});

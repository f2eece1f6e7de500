import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { sampleRows } from '../helpers/sample.js';

let t: TestGateway;
before(async () => {
  t = await sampleGateway();
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

async function get<T = Record<string, unknown>>(
  url: string,
): Promise<{ status: number; body: T; headers: Record<string, unknown> }> {
  const res = await t.gateway.app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json<T>(), headers: res.headers };
}

const rows = sampleRows();
const HOST = 'mtv5-dgx1-hgpu-031';

describe('gateway REST on the real sample', () => {
  it('lists local-cluster; its details count 31 hosts and 247 GPUs', async () => {
    const list = await get<{
      clusters: {
        cluster_id: string;
        cluster_name: string;
        status: string;
        hosts: number;
        gpus: number;
      }[];
      count: number;
    }>('/api/v1/clusters');
    assert.equal(list.status, 200);
    assert.equal(list.body.count, 1);
    assert.deepEqual(
      list.body.clusters.map((c) => [c.cluster_id, c.cluster_name, c.hosts, c.gpus]),
      [['local-cluster', 'local-cluster', 31, 247]],
    );
    assert.equal(list.body.clusters[0]?.status, 'idle');
    const one = await get<{ cluster_id: string; last_seen: string }>(
      '/api/v1/clusters/local-cluster',
    );
    assert.equal(one.status, 200);
    assert.equal(one.body.last_seen, '2025-07-18T20:42:37.000Z');
  });

  it('stats: 2,470 samples, hosts, GPUs, metrics, first and last timestamp, samples per metric', async () => {
    const s = await get<{
      samples: number;
      hosts: number;
      gpus: number;
      metrics: number;
      first_timestamp: string;
      last_timestamp: string;
      samples_per_metric: { metric: string; samples: number }[];
    }>('/api/v1/clusters/local-cluster/stats');
    assert.equal(s.status, 200);
    assert.equal(s.body.samples, 2470);
    assert.equal(s.body.hosts, 31);
    assert.equal(s.body.gpus, 247);
    assert.equal(s.body.metrics, 10);
    assert.equal(s.body.first_timestamp, '2025-07-18T20:42:34.000Z');
    assert.equal(s.body.last_timestamp, '2025-07-18T20:42:37.000Z');
    assert.equal(s.body.samples_per_metric.length, 10);
    assert.ok(s.body.samples_per_metric.every((m) => m.samples === 247));
  });

  it('hosts, a host with its GPUs, a GPU with identity, labels and latest values', async () => {
    const hosts = await get<{ hosts: { host_id: string; gpus: number }[]; count: number }>(
      '/api/v1/clusters/local-cluster/hosts',
    );
    assert.equal(hosts.body.count, 31);
    assert.equal(
      hosts.body.hosts.reduce((n, h) => n + h.gpus, 0),
      247,
    );
    const host = await get<{ host_id: string; gpus: { gpu_id: number; uuid: string }[] }>(
      `/api/v1/clusters/local-cluster/hosts/${HOST}`,
    );
    assert.equal(host.status, 200);
    assert.equal(
      host.body.gpus.length,
      new Set(rows.filter((r) => r.hostname === HOST).map((r) => r.gpu)).size,
    );
    const gpus = await get<{ gpus: unknown[]; count: number }>(
      `/api/v1/clusters/local-cluster/hosts/${HOST}/gpus`,
    );
    assert.equal(gpus.body.count, host.body.gpus.length);
    const gpu = await get<{
      uuid: string;
      model: string;
      device: string;
      labels: Record<string, string>;
      latest: { metric: string; value: number }[];
    }>(`/api/v1/clusters/local-cluster/hosts/${HOST}/gpus/0`);
    assert.equal(gpu.status, 200);
    const csv = rows.filter((r) => r.hostname === HOST && r.gpu === 0);
    assert.equal(gpu.body.uuid, csv[0]?.uuid);
    assert.equal(gpu.body.model, 'NVIDIA H100 80GB HBM3');
    assert.equal(gpu.body.device, 'nvidia0');
    assert.equal(gpu.body.labels.DCGM_FI_DRIVER_VERSION, '535.129.03');
    assert.equal(gpu.body.labels.__name__, undefined);
    assert.equal(gpu.body.latest.length, 10);
    for (const l of gpu.body.latest)
      assert.equal(l.value, csv.find((r) => r.metric === l.metric)?.value);
  });

  it("the latest DCGM_FI_DEV_GPU_TEMP of mtv5-dgx1-hgpu-031 GPU 0 equals the CSV's", async () => {
    const want = rows
      .filter((r) => r.hostname === HOST && r.gpu === 0 && r.metric === 'DCGM_FI_DEV_GPU_TEMP')
      .sort((a, b) => b.timestamp - a.timestamp)[0];
    assert.ok(want);
    const res = await get<{ readings: { value: number; timestamp: string; unit: string }[] }>(
      `/api/v1/telemetry/latest?host_id=${HOST}&gpu_id=0&metric=DCGM_FI_DEV_GPU_TEMP`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.readings.length, 1);
    const first = res.body.readings[0];
    assert.ok(first);
    assert.equal(first.value, want.value);
    assert.equal(first.timestamp, new Date(want.timestamp).toISOString());
    assert.equal(first.unit, 'C');
    // The short metric name works too, and so does the GPU metrics route.
    const short = await get<{ readings: { value: number }[] }>(
      `/api/v1/telemetry/latest?host_id=${HOST}&gpu_id=0&metric=GPU_TEMP`,
    );
    assert.equal(short.body.readings[0]?.value, want.value);
    // A list parameter given more than once, or in both spellings: the names add up.
    for (const q of ['metric=GPU_TEMP&metric=POWER_USAGE', 'metric=GPU_TEMP&metrics=POWER_USAGE']) {
      const two = await get<{ readings: { metric: string }[] }>(
        `/api/v1/telemetry/latest?host_id=${HOST}&gpu_id=0&${q}`,
      );
      assert.deepEqual(two.body.readings.map((r) => r.metric).sort(), [
        'DCGM_FI_DEV_GPU_TEMP',
        'DCGM_FI_DEV_POWER_USAGE',
      ]);
    }
    const m = await get<{ metrics: { metric: string; value: number }[] }>(
      `/api/v1/clusters/local-cluster/hosts/${HOST}/gpus/0/metrics?metric=DCGM_FI_DEV_GPU_TEMP`,
    );
    assert.deepEqual(
      m.body.metrics.map((x) => [x.metric, x.value]),
      [['DCGM_FI_DEV_GPU_TEMP', want.value]],
    );
    const shortOnRoute = await get<{ metrics: { metric: string }[] }>(
      `/api/v1/clusters/local-cluster/hosts/${HOST}/gpus/0/metrics?metric=GPU_TEMP`,
    );
    assert.deepEqual(
      shortOnRoute.body.metrics.map((x) => x.metric),
      ['DCGM_FI_DEV_GPU_TEMP'],
    );
    // An unknown metric is a bad request here too, as on /telemetry (it was an empty 200).
    const unknown = await get<{ error: string }>(
      `/api/v1/clusters/local-cluster/hosts/${HOST}/gpus/0/metrics?metric=NOPE`,
    );
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /unknown metric "NOPE"; known metrics: DCGM_FI_DEV_DEC_UTIL/);
  });

  it("the average DCGM_FI_DEV_POWER_USAGE of a chosen GPU over the file equals the CSV's", async () => {
    const host = 'mtv5-dgx1-hgpu-022';
    const gpu = 3;
    const power = rows.filter(
      (r) => r.hostname === host && r.gpu === gpu && r.metric === 'DCGM_FI_DEV_POWER_USAGE',
    );
    assert.ok(power.length > 0);
    const mean = power.reduce((s, r) => s + r.value, 0) / power.length;
    for (const step of ['1h', '5s']) {
      const res = await get<{
        series: { points: { value: number; count: number }[] }[];
        source: string;
      }>(
        `/api/v1/telemetry?host_id=${host}&gpu_id=${gpu}&metric=DCGM_FI_DEV_POWER_USAGE&from=2025-07-18T20:00:00Z&to=2025-07-18T21:00:00Z&step=${step}&agg=avg`,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.source, step === '1h' ? 'rollup_1m' : 'raw');
      const points = res.body.series[0]?.points ?? [];
      const total = points.reduce((n, p) => n + p.count, 0);
      const avg = points.reduce((s, p) => s + p.value * p.count, 0) / total;
      assert.equal(total, power.length);
      assert.ok(Math.abs(avg - mean) < 1e-9, `${avg} vs ${mean}`);
    }
  });

  it('pages through every reading exactly once with next_cursor', async () => {
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: {
        status: number;
        body: {
          readings: {
            host_id: string;
            gpu_id: number;
            metric: string;
            timestamp: string;
            value: number;
          }[];
          next_cursor: string | null;
        };
      } = await get(
        `/api/v1/telemetry?cluster_id=local-cluster&limit=300${cursor === null ? '' : `&cursor=${cursor}`}`,
      );
      assert.equal(res.status, 200);
      for (const r of res.body.readings) {
        const k = `${r.host_id}|${r.gpu_id}|${r.metric}|${r.timestamp}`;
        assert.ok(!seen.has(k), `seen twice: ${k}`);
        seen.add(k);
      }
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 100);
    assert.equal(seen.size, 2470);
    assert.equal(pages, 9);
  });

  it('format=columns pages through the same readings as rows, a series per GPU and metric', async () => {
    type Columns = {
      host_id: string;
      gpu_id: number;
      metric: string;
      timestamps: number[];
      values: number[];
    };
    const asRows = new Map<string, number>();
    let cursor: string | null = null;
    do {
      const res: {
        status: number;
        body: {
          readings: {
            host_id: string;
            gpu_id: number;
            metric: string;
            timestamp: string;
            value: number;
          }[];
          next_cursor: string | null;
        };
      } = await get(`/api/v1/telemetry?limit=700${cursor === null ? '' : `&cursor=${cursor}`}`);
      assert.equal(res.status, 200);
      for (const r of res.body.readings) {
        asRows.set(`${r.host_id}|${r.gpu_id}|${r.metric}|${Date.parse(r.timestamp)}`, r.value);
      }
      cursor = res.body.next_cursor;
    } while (cursor !== null);
    const asColumns = new Map<string, number>();
    let pages = 0;
    cursor = null;
    do {
      const res: {
        status: number;
        body: { columns: Columns[]; count: number; next_cursor: string | null };
      } = await get(
        `/api/v1/telemetry?limit=700&format=columns${cursor === null ? '' : `&cursor=${cursor}`}`,
      );
      assert.equal(res.status, 200);
      let n = 0;
      for (const c of res.body.columns) {
        assert.equal(c.timestamps.length, c.values.length);
        c.timestamps.forEach((t, i) => {
          const k = `${c.host_id}|${c.gpu_id}|${c.metric}|${t}`;
          assert.ok(!asColumns.has(k), `seen twice: ${k}`);
          asColumns.set(k, c.values[i] ?? NaN);
        });
        n += c.timestamps.length;
      }
      assert.equal(res.body.count, n);
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 100);
    assert.equal(asColumns.size, 2470);
    assert.deepEqual(asColumns, asRows);

    const stepped = await get<{ columns: (Columns & { counts: number[] })[]; series?: unknown }>(
      '/api/v1/telemetry?from=2025-07-18T00:00:00Z&to=2025-07-19T00:00:00Z&step=1h&format=columns&metric=DCGM_FI_DEV_GPU_TEMP',
    );
    assert.equal(stepped.status, 200);
    assert.equal(stepped.body.series, undefined);
    assert.ok(stepped.body.columns.length > 0);
    for (const c of stepped.body.columns) {
      assert.equal(
        c.counts.reduce((a, b) => a + b, 0),
        1,
      );
    }
  });

  it('filters by uuid, several metrics, and a time range', async () => {
    const uuid = rows.find((r) => r.hostname === HOST && r.gpu === 1)?.uuid ?? '';
    const res = await get<{ readings: { metric: string; gpu_id: number }[] }>(
      `/api/v1/telemetry?gpu_id=${uuid}&metric=DCGM_FI_DEV_GPU_TEMP,DCGM_FI_DEV_POWER_USAGE`,
    );
    assert.deepEqual(res.body.readings.map((r) => [r.gpu_id, r.metric]).sort(), [
      [1, 'DCGM_FI_DEV_GPU_TEMP'],
      [1, 'DCGM_FI_DEV_POWER_USAGE'],
    ]);
    // An index and a uuid in one gpu_id list name two GPUs (either names one); uuids in any case.
    const mixed = await get<{ readings: { gpu_id: number }[] }>(
      `/api/v1/telemetry/latest?host_id=${HOST}&metric=DCGM_FI_DEV_GPU_TEMP&gpu_id=0,${uuid.toUpperCase()}`,
    );
    assert.equal(mixed.status, 200);
    assert.deepEqual(mixed.body.readings.map((r) => r.gpu_id).sort(), [0, 1]);
    const lowerCase = await get<{ readings: { gpu_id: number }[] }>(
      `/api/v1/telemetry/latest?metric=DCGM_FI_DEV_GPU_TEMP&uuid=${uuid.toLowerCase()}`,
    );
    assert.deepEqual(
      lowerCase.body.readings.map((r) => r.gpu_id),
      [1],
    );
    const ranged = await get<{ readings: unknown[] }>(
      '/api/v1/telemetry?from=2025-07-18T20:42:36Z&to=2025-07-18T20:42:37Z&limit=10000',
    );
    assert.equal(
      ranged.body.readings.length,
      rows.filter((r) => r.timestamp === Date.parse('2025-07-18T20:42:36Z')).length,
    );
  });

  it('serves a valid OpenAPI 3 document describing every route', async () => {
    const doc = await get<{ openapi: string; paths: Record<string, unknown> }>('/openapi.json');
    assert.equal(doc.status, 200);
    assert.match(doc.body.openapi, /^3\./);
    await SwaggerParser.validate(structuredClone(doc.body) as never);
    for (const p of [
      '/api/v1/clusters',
      '/api/v1/clusters/{cluster_id}',
      '/api/v1/clusters/{cluster_id}/stats',
      '/api/v1/clusters/{cluster_id}/hosts',
      '/api/v1/clusters/{cluster_id}/hosts/{host_id}',
      '/api/v1/clusters/{cluster_id}/hosts/{host_id}/gpus',
      '/api/v1/clusters/{cluster_id}/hosts/{host_id}/gpus/{gpu_id}',
      '/api/v1/clusters/{cluster_id}/hosts/{host_id}/gpus/{gpu_id}/metrics',
      '/api/v1/telemetry',
      '/api/v1/telemetry/latest',
      '/health',
    ]) {
      assert.ok(p in doc.body.paths, `${p} missing from the OpenAPI document`);
    }
  });

  it('serves Swagger UI at /swagger/index.html with its assets from the gateway', async () => {
    const page = await t.gateway.app.inject({ method: 'GET', url: '/swagger/index.html' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    const refs = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
    assert.ok(refs.length >= 3);
    for (const ref of refs) {
      assert.ok(!/^(https?:)?\/\//.test(ref), `${ref} is not served by the gateway`);
      const asset = await t.gateway.app.inject({
        method: 'GET',
        url: new URL(ref, 'http://x/swagger/index.html').pathname,
      });
      assert.equal(asset.statusCode, 200, ref);
    }
  });

  it('health: /health, /healthz and /readyz', async () => {
    assert.equal((await get('/healthz')).status, 200);
    const ready = await get<{ ready: boolean }>('/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.ready, true);
    const health = await get<{ status: string; checks: Record<string, { ok: boolean }> }>(
      '/health',
    );
    assert.equal(health.body.status, 'ok');
    assert.equal(health.body.checks.postgres?.ok, true);
  });
});

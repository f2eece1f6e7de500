/**
 * GET /api/v1/clusters/{c}/heatmap on PostgreSQL (docs/api.md): a fleet of 300 hosts x 8 GPUs
 * written through the store, read per GPU, per host and per group, with drill-down by prefix.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import SwaggerParser from '@apidevtools/swagger-parser';
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ErrorBody } from '../../src/gateway/schemas/common.js';
import { HEATMAP_STALE_MS, heatmapRoutes } from '../../src/gateway/routes/heatmap.js';
import type { Selection, TelemetryReader } from '../../src/store/reader.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/pipeline.js';
import { T0, TEMP, rec } from '../conformance/store-fixtures.js';

const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const C = 'heat-1';
const HOSTS = 300;
const host = (i: number): string => `gpu-node-${String(i).padStart(4, '0')}`;
/** GPU g of host i: utilisation (i + g) % 100; temperature 90 C on GPU 0 of every tenth host. */
const util = (i: number, g: number): number => (i + g) % 100;
let t: TestGateway;

before(async () => {
  const records: TelemetryRecord[] = [];
  for (let i = 0; i < HOSTS; i++) {
    for (let g = 0; g < 8; g++) {
      records.push(rec(T0, util(i, g), { hostname: host(i), gpu: g, metric: UTIL }));
      records.push(
        rec(T0, g === 0 && i % 10 === 0 ? 90 : 50, { hostname: host(i), gpu: g, metric: TEMP }),
      );
    }
  }
  // Written before the gateway starts: its fleet state's first load holds all of it.
  t = await sampleGateway({}, (store) => store.write(C, records));
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

interface Cell {
  key: string;
  prefix?: string;
  from?: string;
  to?: string;
  host_id?: string;
  gpu_id?: number;
  hosts?: number;
  gpus?: number;
  reporting?: number;
  min?: number | null;
  avg?: number | null;
  max?: number | null;
  alerting?: number;
  value?: number | null;
}
interface Heatmap {
  level: string;
  metric: string;
  unit: string;
  prefix: string;
  hosts: number;
  gpus: number;
  as_of: string;
  cells: Cell[];
}

async function get<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await t.gateway.app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json<T>() };
}

describe('GET /api/v1/clusters/{c}/heatmap', () => {
  it('groups 300 hosts by prefix when they exceed max_cells, figures as the readings say', async () => {
    const r = await get<Heatmap>(`/api/v1/clusters/${C}/heatmap?metric=${UTIL}&max_cells=100`);
    assert.equal(r.status, 200);
    assert.deepEqual(
      [r.body.level, r.body.metric, r.body.hosts, r.body.gpus, r.body.cells.length],
      ['group', UTIL, 300, 2400, 3],
    );
    // gpu-node-00xx (100 hosts), -01xx, -02xx: the next length (gpu-node-000..029) gives 30 > 25.
    const first = r.body.cells[0];
    const values = Array.from({ length: 100 }, (_, i) =>
      Array.from({ length: 8 }, (_, g) => util(i, g)),
    ).flat();
    assert.deepEqual(first, {
      key: 'gpu-node-00',
      prefix: 'gpu-node-00',
      from: 'gpu-node-0000',
      to: 'gpu-node-0099',
      hosts: 100,
      gpus: 800,
      reporting: 800,
      min: Math.min(...values),
      avg: Math.round((values.reduce((a, b) => a + b, 0) / 800) * 1000) / 1000,
      max: Math.max(...values),
      alerting: 10,
    });
  });

  it('drills down: a prefix of 100 hosts is one cell per host; one host is its GPUs', async () => {
    const hosts = await get<Heatmap>(
      `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&max_cells=100&prefix=gpu-node-01`,
    );
    assert.deepEqual(
      [hosts.body.level, hosts.body.hosts, hosts.body.cells.length],
      ['host', 100, 100],
    );
    assert.deepEqual(hosts.body.cells[10], {
      key: 'gpu-node-0110',
      host_id: 'gpu-node-0110',
      gpus: 8,
      reporting: 8,
      min: 10,
      avg: 13.5,
      max: 17,
      alerting: 1,
    });
    const gpus = await get<Heatmap>(
      `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&prefix=gpu-node-0110`,
    );
    assert.deepEqual(
      [gpus.body.level, gpus.body.cells.map((c) => [c.key, c.value, c.alerting])],
      [
        'gpu',
        Array.from({ length: 8 }, (_, g) => [`gpu-node-0110/${g}`, util(110, g), g === 0 ? 1 : 0]),
      ],
    );
  });

  it('a temperature heatmap flags its own hot GPUs; from/to narrow a prefix to a run', async () => {
    const r = await get<Heatmap>(
      `/api/v1/clusters/${C}/heatmap?metric=GPU_TEMP&max_cells=16&prefix=gpu-node-02&from=gpu-node-0250&to=gpu-node-0259`,
    );
    assert.deepEqual([r.body.level, r.body.hosts, r.body.metric], ['host', 10, TEMP]);
    assert.deepEqual(
      r.body.cells.map((c) => c.alerting),
      [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
  });

  it('is in a valid OpenAPI document, with its query and cells', async () => {
    const doc = await get<{ paths: Record<string, { get?: { parameters?: { name: string }[] } }> }>(
      '/openapi.json',
    );
    await SwaggerParser.validate(structuredClone(doc.body) as never);
    const op = doc.body.paths['/api/v1/clusters/{cluster_id}/heatmap']?.get;
    assert.deepEqual((op?.parameters ?? []).map((p) => p.name).sort(), [
      'cluster_id',
      'from',
      'max_cells',
      'metric',
      'prefix',
      'to',
    ]);
  });

  it('answers 400 for a bad metric or max_cells, 404 for an unknown cluster', async () => {
    const metric = await get<{ error: string }>(`/api/v1/clusters/${C}/heatmap?metric=NOPE_X`);
    assert.equal(metric.status, 400);
    assert.ok(metric.body.error.includes('NOPE_X'), metric.body.error);
    const none = await get<{ error: string }>(`/api/v1/clusters/${C}/heatmap`);
    assert.equal(none.status, 400);
    for (const n of ['15', '20001', 'x']) {
      const r = await get<{ error: string }>(
        `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&max_cells=${n}`,
      );
      assert.equal(r.status, 400, n);
      assert.ok(r.body.error.includes('max_cells'), r.body.error);
    }
    const range = await get<{ error: string }>(
      `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&from=b&to=a`,
    );
    assert.equal(range.status, 400);
    const under = await get<{ error: string }>(
      `/api/v1/clusters/${C}/heatmap?metric=NOPE_X&prefix=no-such-host`,
    );
    assert.equal(under.status, 400);
    const empty = await get<Heatmap>(`/api/v1/clusters/${C}/heatmap?metric=${UTIL}&prefix=zzz`);
    assert.deepEqual(
      [empty.status, empty.body.level, empty.body.hosts, empty.body.cells],
      [200, 'gpu', 0, []],
    );
    const unknown = await get<{ error: string }>(`/api/v1/clusters/nope/heatmap?metric=${UTIL}`);
    assert.deepEqual([unknown.status, unknown.body.error], [404, 'cluster "nope" not found']);
  });

  it('serves repeats from the cache for 2 s, one computation for concurrent requests, and an older answer at once while the next is computed', async () => {
    // The route alone, on a reader that counts its latest() calls, with a clock the test moves.
    let calls = 0;
    let failing = false;
    const asked: Selection[] = [];
    let clock = Date.now();
    const reader = t.store.reader;
    const counting: TelemetryReader = Object.create(reader, {
      latest: {
        value: (q: Selection) => {
          calls++;
          asked.push(q);
          return failing ? Promise.reject(new Error('store down')) : reader.latest(q);
        },
      },
    }) as TelemetryReader;
    const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
    app.addSchema(ErrorBody);
    await app.register(heatmapRoutes, { reader: counting, now: () => clock });
    const url = `/api/v1/clusters/${C}/heatmap?metric=${TEMP}&prefix=gpu-node-0299`;
    const once = async () => (await app.inject({ method: 'GET', url })).json<Heatmap>();
    const answers = await Promise.all([once(), once(), once()]);
    assert.equal(calls, 1, 'three concurrent requests, one latest() (temperature needs no second)');
    assert.deepEqual(asked[0]?.hosts, ['gpu-node-0299'], 'drilled down: only its hosts are read');
    assert.deepEqual(answers[1], answers[0]);
    clock += 1999;
    await once();
    assert.equal(calls, 1);
    clock += 2;
    // Expired: answered at once with the last answer while the next is computed.
    const stale = await once();
    assert.equal(stale.as_of, answers[0].as_of);
    const fresh = await until(async () => (await once()).as_of !== answers[0].as_of, 10_000);
    assert.ok(fresh, 'the next answer came in');
    assert.equal(calls, 2, 'recomputed once after 2 s');
    const second = await once();
    assert.equal(second.as_of, new Date(clock).toISOString());
    // A failing computation: the last answer is served meanwhile, for up to 30 s...
    failing = true;
    clock += 2001;
    const during = await app.inject({ method: 'GET', url });
    assert.equal(during.statusCode, 200);
    assert.equal(during.json<Heatmap>().as_of, second.as_of);
    assert.ok(await until(() => Promise.resolve(calls === 3), 10_000));
    // ... then requests wait for one and see its error; the next success is served again.
    clock += HEATMAP_STALE_MS;
    const failed = await app.inject({ method: 'GET', url });
    assert.notEqual(failed.statusCode, 200);
    failing = false;
    const back = await once();
    assert.equal(back.as_of, new Date(clock).toISOString());
    await app.close();
  });

  it('a host written after a heatmap is in the next one (the cluster GPU list kept between requests follows the fleet)', async () => {
    const url = (cells: number): string =>
      `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&max_cells=${cells}`;
    const first = await get<Heatmap>(url(5000));
    assert.equal(first.body.hosts, HOSTS);
    // Written, and announced on the commit feed as a collector does (the gateway may see the new
    // GPU row before the reading commits, and then learns the value from the feed).
    const added = [rec(T0, 42, { hostname: 'gpu-node-9999', gpu: 0, metric: UTIL })];
    await t.store.write(C, added);
    await t.feed.publish(C, added);
    // Another max_cells each time: not the heatmap's own 2 s cache.
    let cells = 5000;
    let last: Heatmap | undefined;
    const seen = await until(async () => {
      last = (await get<Heatmap>(url(++cells))).body;
      return last.hosts === HOSTS + 1;
    }, 10_000);
    assert.ok(seen && last !== undefined, `the new host never appeared: ${last?.hosts} hosts`);
    assert.equal(last.cells.find((c) => c.key === 'gpu-node-9999/0')?.value, 42);
    assert.equal(last.gpus, HOSTS * 8 + 1);
  });

  it('hosts and groups come from the figures kept per host (no latest value read), which follow a new value and a new temperature', async () => {
    let calls = 0;
    let hostLists = 0;
    const reader = t.store.reader;
    const counting: TelemetryReader = Object.create(reader, {
      latest: {
        value: (q: Selection) => {
          calls++;
          return reader.latest(q);
        },
      },
      hosts: {
        value: (cluster: string) => {
          hostLists++;
          return reader.hosts(cluster);
        },
      },
    }) as TelemetryReader;
    const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
    app.addSchema(ErrorBody);
    await app.register(heatmapRoutes, { reader: counting });
    // Another max_cells each time: not the heatmap's own 2 s cache.
    let cells = 40;
    const ask = async (prefix: string): Promise<Heatmap> =>
      (
        await app.inject({
          method: 'GET',
          url: `/api/v1/clusters/${C}/heatmap?metric=${UTIL}&prefix=${prefix}&max_cells=${++cells}`,
        })
      ).json<Heatmap>();
    // The gateway's latest values loaded (else the route reads them: the fallback).
    assert.ok(
      await until(
        async () => (await reader.heatHosts?.(C, UTIL, { prefix: '' })) !== undefined,
        10_000,
      ),
    );
    const groups = await ask('');
    assert.equal(groups.level, 'group');
    assert.equal(groups.gpus, HOSTS * 8 + 1); // gpu-node-9999 of the test above
    // gpu-node-0000 .. 0009: 10 hosts of 8 GPUs, more GPUs than cells: a cell per host.
    const before = await ask('gpu-node-000');
    assert.equal(before.level, 'host');
    const h5 = (m: Heatmap): Cell | undefined => m.cells.find((c) => c.key === 'gpu-node-0005');
    assert.deepEqual(
      [h5(before)?.max, h5(before)?.alerting],
      [Math.max(...Array.from({ length: 8 }, (_, g) => util(5, g))), 0],
    );
    assert.equal(calls, 0, 'no latest value read for hosts and groups');
    // GPU 1 of gpu-node-0005 at 99 %, GPU 2 at 95 C: written, and announced on the commit feed.
    const news = [
      rec(T0 + 1000, 99, { hostname: host(5), gpu: 1, metric: UTIL }),
      rec(T0 + 1000, 95, { hostname: host(5), gpu: 2, metric: TEMP }),
    ];
    await t.store.write(C, news);
    await t.feed.publish(C, news);
    let after: Heatmap | undefined;
    const seen = await until(async () => {
      after = await ask('gpu-node-000');
      return h5(after)?.max === 99 && h5(after)?.alerting === 1;
    }, 10_000);
    assert.ok(seen, `gpu-node-0005: ${JSON.stringify(after === undefined ? null : h5(after))}`);
    assert.equal(h5(after as Heatmap)?.reporting, 8);
    // The other hosts as they were.
    assert.deepEqual(
      after?.cells.filter((c) => c.key !== 'gpu-node-0005'),
      before.cells.filter((c) => c.key !== 'gpu-node-0005'),
    );
    assert.equal(calls, 0);
    // One host: a cell per GPU, its latest values read (only its own), the host list not.
    const one = await ask(host(5));
    assert.equal(one.level, 'gpu');
    assert.equal(one.cells.find((c) => c.key === `${host(5)}/1`)?.value, 99);
    assert.deepEqual([calls, hostLists], [2, 0], 'latest read (metric, temperature); no host list');
    await app.close();
  });
});

/**
 * GET /api/v1/clusters/{id}/idle and /usage (docs/fleet.md) through a gateway on the embedded
 * store holding the fleet of test/conformance/fleet-suite.ts: exact figures computed from the
 * readings fed, the CSV download cell by cell, and bad parameters.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NexusMetrics } from '../../../src/core/metrics.js';
import { exportIdleGauge } from '../../../src/gateway/instrumentation.js';
import { buildGateway, type Gateway } from '../../../src/gateway/app.js';
import type { TelemetryStore } from '../../../src/store/types.js';
import {
  B,
  MINUTES,
  expectedUsage,
  fleetRecords,
  writeAll,
} from '../../conformance/fleet-suite.js';
import { HOUR, MINUTE, SECOND, rec } from '../../conformance/store-fixtures.js';
import { DEFAULT_GATEWAY, testGatewayOptions } from '../../helpers/gateway.js';
import { pgliteHarness } from '../../helpers/pglite.js';

const PRICES = {
  idleUtil: 5,
  idleForMs: 15 * MINUTE,
  energyPricePerKwh: 0.15,
  gpuHourPrice: 2.5,
  currency: 'EUR',
};

let store: TelemetryStore;
let priced: Gateway;
let unpriced: Gateway;
const records = fleetRecords();
const LAST = B + (MINUTES - 1) * MINUTE + 50 * SECOND; // 10:39:50

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

before(async () => {
  const h = pgliteHarness('pglite', { worker: false });
  ({ store } = await (h.createMigrated === undefined ? h.create({}) : h.createMigrated({})));
  await store.migrate();
  await writeAll(store, records);
  // A cluster whose names would be formulas in a spreadsheet, or break a CSV line.
  await store.write('evil', [
    rec(B + 5 * SECOND, 50, {
      hostname: 'h1',
      metric: 'DCGM_FI_DEV_GPU_UTIL',
      namespace: '=HYPERLINK("http://x")',
      pod: '-p,1',
    }),
    rec(B + 5 * SECOND, 100, { hostname: 'h1', metric: 'DCGM_FI_DEV_POWER_USAGE', pod: '@x' }),
  ]);
  const options = testGatewayOptions(store.reader);
  priced = await buildGateway({ ...options, graphql: true, fleet: PRICES });
  unpriced = await buildGateway(options);
});

after(async () => {
  await priced.app.close();
  await unpriced.app.close();
  await store.close();
});

async function get(
  gw: Gateway,
  url: string,
  headers: Record<string, string> = {},
): Promise<{
  status: number;
  body: Record<string, unknown>;
  text: string;
  headers: Record<string, unknown>;
}> {
  const res = await gw.app.inject({ method: 'GET', url, headers });
  const text = res.body;
  let body: Record<string, unknown> = {};
  if (String(res.headers['content-type']).startsWith('application/json'))
    body = res.json<Record<string, unknown>>();
  return { status: res.statusCode, body, text, headers: res.headers };
}

describe('GET /api/v1/clusters/{id}/idle', () => {
  it('lists the idle GPUs with their pods, since when and GPU-hours wasted, most wasted first', async () => {
    const res = await get(priced, '/api/v1/clusters/fleet/idle');
    assert.equal(res.status, 200);
    const a1 = LAST - (B + 10 * MINUTE); // 29 min 50 s
    const a0 = LAST - (B + 20 * MINUTE + 5 * SECOND); // 19 min 45 s
    assert.deepEqual(res.body, {
      cluster_id: 'fleet',
      threshold_percent: 5,
      idle_for_seconds: 900,
      count: 2,
      wasted_gpu_hours: round6((a1 + a0) / HOUR),
      gpus: [
        {
          host_id: 'node-a',
          gpu_id: 1,
          uuid: 'GPU-node-a-1',
          model: 'NVIDIA H100 80GB HBM3',
          namespace: 'research',
          pod: 'nb-2',
          container: 'main',
          utilization_metric: 'DCGM_FI_DEV_GPU_UTIL',
          utilization_percent: 2,
          idle_since: '2025-07-18T10:10:00.000Z',
          last_seen: '2025-07-18T10:39:50.000Z',
          idle_seconds: 1790,
          wasted_gpu_hours: round6(a1 / HOUR),
        },
        {
          host_id: 'node-a',
          gpu_id: 0,
          uuid: 'GPU-node-a-0',
          model: 'NVIDIA H100 80GB HBM3',
          namespace: 'research',
          pod: 'nb-1',
          container: 'main',
          utilization_metric: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
          utilization_percent: 1,
          idle_since: '2025-07-18T10:20:05.000Z',
          last_seen: '2025-07-18T10:39:50.000Z',
          idle_seconds: 1185,
          wasted_gpu_hours: round6(a0 / HOUR),
        },
      ],
    });
  });

  it('util and for override IDLE_UTIL and IDLE_FOR', async () => {
    const res = await get(priced, '/api/v1/clusters/fleet/idle?util=90&for=9m');
    assert.equal(res.status, 200);
    assert.equal(res.body.threshold_percent, 90);
    assert.equal(res.body.idle_for_seconds, 540);
    const gpus = res.body.gpus as { host_id: string; gpu_id: number; pod: string }[];
    assert.deepEqual(gpus.map((g) => `${g.host_id}/${g.gpu_id}/${g.pod}`).sort(), [
      'node-a/0/nb-1',
      'node-a/1/nb-2',
      'node-b/0/nb-3',
      'node-b/1/nb-4',
    ]);
  });

  it('a bad util or for is a 400 saying what is wrong; an unknown cluster a 404', async () => {
    for (const [query, message] of [
      ['util=abc', 'util: "abc" is not a percentage from 0 to 100'],
      ['util=101', 'util: "101" is not a percentage from 0 to 100'],
      ['util=-1', 'util: "-1" is not a percentage from 0 to 100'],
      ['for=soon', 'for: "soon" is not a duration (e.g. 15m, 1h, 2h30m)'],
      ['for=401d', 'for: "401d" is longer than 400d'],
    ] as const) {
      const res = await get(priced, `/api/v1/clusters/fleet/idle?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error, message);
    }
    const res = await get(priced, '/api/v1/clusters/nope/idle');
    assert.equal(res.status, 404);
    assert.equal(res.body.error, 'cluster "nope" not found');
  });
});

const FROM = '2025-07-18T10:00:00Z';
const TO = '2025-07-18T11:00:00Z';

describe('GET /api/v1/clusters/{id}/usage', () => {
  it('per namespace: GPU-hours, utilisation, kWh and cost equal the definitions; totals and unallocated', async () => {
    const res = await get(
      priced,
      `/api/v1/clusters/fleet/usage?group_by=namespace&from=${FROM}&to=${TO}`,
    );
    assert.equal(res.status, 200);
    const want = expectedUsage(records, 'namespace', B, B + HOUR);
    const groups = [...want.groups.values()]
      .filter((g) => g.minutes > 0)
      .sort((a, b) => b.minutes - a.minutes)
      .map((g) => {
        const gpuHours = round6(g.minutes / 60);
        const kwh = round6(g.joules / 3_600_000);
        const energy = round6(kwh * 0.15);
        const hours = round6(gpuHours * 2.5);
        return {
          namespace: g.key.namespace,
          gpu_hours: gpuHours,
          avg_utilization_percent: round6(g.usum / g.ucount),
          energy_kwh: kwh,
          cost: { energy, gpu_hours: hours, total: round6(energy + hours) },
        };
      });
    const totalHours = round6([...want.groups.values()].reduce((n, g) => n + g.minutes, 0) / 60);
    const totalKwh = round6(
      [...want.groups.values()].reduce((n, g) => n + g.joules, 0) / 3_600_000,
    );
    assert.deepEqual(res.body, {
      cluster_id: 'fleet',
      group_by: 'namespace',
      from: '2025-07-18T10:00:00.000Z',
      to: '2025-07-18T11:00:00.000Z',
      currency: 'EUR',
      prices: { energy_per_kwh: 0.15, gpu_hour: 2.5 },
      groups,
      total: {
        gpu_hours: totalHours,
        energy_kwh: totalKwh,
        cost: {
          energy: round6(totalKwh * 0.15),
          gpu_hours: round6(totalHours * 2.5),
          total: round6(round6(totalKwh * 0.15) + round6(totalHours * 2.5)),
        },
      },
      unallocated: {
        gpu_hours: round6(5 / 60),
        energy_kwh: round6(want.unallocatedJoules / 3_600_000),
      },
    });
    // By hand: research 110 minutes, training 42.5, notebooks 2.5.
    assert.deepEqual(
      groups.map((g) => [g.namespace, g.gpu_hours]),
      [
        ['research', round6(110 / 60)],
        ['training', round6(42.5 / 60)],
        ['notebooks', round6(2.5 / 60)],
      ],
    );
  });

  it('per GPU: the group keys, and the unallocated minutes of each GPU beside its own', async () => {
    const res = await get(
      priced,
      `/api/v1/clusters/fleet/usage?group_by=gpu&from=${FROM}&to=${TO}`,
    );
    assert.equal(res.status, 200);
    const groups = res.body.groups as Record<string, unknown>[];
    const a0 = groups.find((g) => g.host_id === 'node-a' && g.gpu_id === 0);
    assert.equal(a0?.uuid, 'GPU-node-a-0');
    assert.equal(a0.gpu_hours, round6(35 / 60));
    assert.equal(a0.unallocated_gpu_hours, round6(5 / 60));
    assert.equal(groups.length, 4);
  });

  it('prices and costs are null when neither price is set', async () => {
    const res = await get(
      unpriced,
      `/api/v1/clusters/fleet/usage?group_by=host&from=${FROM}&to=${TO}`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.prices, null);
    assert.equal(res.body.currency, 'USD');
    assert.ok(
      (res.body.groups as { cost: unknown }[]).every((g) => g.cost === null),
      'every cost null',
    );
    assert.equal((res.body.total as { cost: unknown }).cost, null);
  });

  it('format=csv and Accept: text/csv download the report as CSV, checked cell by cell', async () => {
    const json = await get(
      priced,
      `/api/v1/clusters/fleet/usage?group_by=pod&from=${FROM}&to=${TO}`,
    );
    const groups = json.body.groups as {
      namespace: string;
      pod: string;
      gpu_hours: number;
      avg_utilization_percent: number;
      energy_kwh: number;
      cost: { energy: number; gpu_hours: number; total: number };
    }[];
    for (const [query, headers] of [
      ['&format=csv', {}],
      ['', { accept: 'text/csv' }],
    ] as const) {
      const res = await get(
        priced,
        `/api/v1/clusters/fleet/usage?group_by=pod&from=${FROM}&to=${TO}${query}`,
        headers,
      );
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
      assert.equal(
        res.headers['content-disposition'],
        'attachment; filename="nexus-usage-fleet-pod-20250718T100000Z-20250718T110000Z.csv"',
      );
      const lines = res.text.split('\r\n');
      assert.equal(lines.at(-1), '', 'the last line ends in CRLF');
      assert.deepEqual(lines[0]?.split(','), [
        'namespace',
        'pod',
        'gpu_hours',
        'avg_utilization_percent',
        'energy_kwh',
        'cost_energy',
        'cost_gpu_hours',
        'cost_total',
        'currency',
      ]);
      assert.equal(lines.length, groups.length + 2);
      groups.forEach((g, i) => {
        assert.deepEqual(lines[i + 1]?.split(','), [
          g.namespace,
          g.pod,
          String(g.gpu_hours),
          String(g.avg_utilization_percent),
          String(g.energy_kwh),
          String(g.cost.energy),
          String(g.cost.gpu_hours),
          String(g.cost.total),
          'EUR',
        ]);
      });
    }
  });

  it('CSV cells: quoted per RFC 4180, and text a spreadsheet would run as a formula prefixed with a quote', async () => {
    const res = await get(
      unpriced,
      `/api/v1/clusters/evil/usage?group_by=pod&from=${FROM}&to=${TO}&format=csv`,
    );
    assert.equal(res.status, 200);
    const lines = res.text.split('\r\n');
    assert.deepEqual(lines.slice(1), [
      // The two readings' workloads share the minute: half a minute each, and half of its
      // energy (100 W x 60 s); equal GPU-hours in key order.
      `,'@x,${round6(0.5 / 60)},50,${round6(3000 / 3_600_000)},,,,`,
      `"'=HYPERLINK(""http://x"")","'-p,1",${round6(0.5 / 60)},50,${round6(3000 / 3_600_000)},,,,`,
      '',
    ]);
  });

  it('a bad group_by or range is a 400 saying what is wrong; an unknown cluster a 404', async () => {
    for (const [query, message] of [
      ['', 'group_by is required: namespace, pod, host or gpu'],
      ['group_by=team', 'group_by: "team" is not one of namespace, pod, host, gpu'],
      [
        'group_by=pod&from=2025-07-18T11:00:00Z&to=2025-07-18T10:00:00Z',
        'from must be before to (from 2025-07-18T11:00:00.000Z, to 2025-07-18T10:00:00.000Z)',
      ],
      [
        'group_by=pod&from=2024-01-01T00:00:00Z&to=2025-07-18T10:00:00Z',
        'the range is 564.4 days; at most 400 days',
      ],
      [
        'group_by=pod&from=yesterday',
        'from: "yesterday" is not a time (RFC 3339 like 2025-07-18T20:42:34Z, epoch ms, now, or -15m)',
      ],
    ] as const) {
      const res = await get(priced, `/api/v1/clusters/fleet/usage?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error, message, query);
    }
    const res = await get(priced, '/api/v1/clusters/nope/usage?group_by=pod');
    assert.equal(res.status, 404);
  });
});

describe('GraphQL and the overview', () => {
  const graphql = async (query: string): Promise<Record<string, unknown>> => {
    const res = await priced.app.inject({ method: 'POST', url: '/graphql', payload: { query } });
    return res.json<Record<string, unknown>>();
  };

  it('cluster { idleGpus usage } answer what REST answers', async () => {
    const res = await graphql(`{
      cluster(cluster_id: "fleet") {
        idleGpus(util: 5, for: "15m") {
          cluster_id threshold_percent idle_for_seconds count wasted_gpu_hours
          gpus { host_id gpu_id uuid model namespace pod container utilization_metric
                 utilization_percent idle_since last_seen idle_seconds wasted_gpu_hours }
        }
        usage(groupBy: gpu, from: "${FROM}", to: "${TO}") {
          cluster_id group_by from to currency
          prices { energy_per_kwh gpu_hour }
          groups { host_id gpu_id uuid gpu_hours avg_utilization_percent energy_kwh
                   cost { energy gpu_hours total } unallocated_gpu_hours unallocated_energy_kwh }
          total { gpu_hours energy_kwh cost { energy gpu_hours total } }
          unallocated { gpu_hours energy_kwh }
        }
      }
    }`);
    assert.equal(res.errors, undefined);
    const cluster = (res.data as { cluster: Record<string, unknown> }).cluster;
    assert.deepEqual(cluster.idleGpus, (await get(priced, '/api/v1/clusters/fleet/idle')).body);
    assert.deepEqual(
      cluster.usage,
      (await get(priced, `/api/v1/clusters/fleet/usage?group_by=gpu&from=${FROM}&to=${TO}`)).body,
    );
  });

  it('a bad argument is an error saying what is wrong', async () => {
    const res = await graphql(`
      {
        cluster(cluster_id: "fleet") {
          idleGpus(util: 150) {
            count
          }
        }
      }
    `);
    const errors = res.errors as { message: string }[];
    assert.equal(errors[0]?.message, 'util: "150" is not a percentage from 0 to 100');
    const range = await graphql(
      `{ cluster(cluster_id: "fleet") { usage(groupBy: pod, from: "${TO}", to: "${FROM}") { total { gpu_hours } } } }`,
    );
    assert.equal(
      (range.errors as { message: string }[])[0]?.message,
      'from must be before to (from 2025-07-18T11:00:00.000Z, to 2025-07-18T10:00:00.000Z)',
    );
  });

  it('the overview counts the idle GPUs, per cluster too', async () => {
    const res = await get(priced, '/api/v1/overview');
    assert.equal(res.status, 200);
    assert.equal(res.body.idle_gpus, 2);
    assert.deepEqual(
      (res.body.by_cluster as { cluster_id: string; idle_gpus: number }[]).map((c) => [
        c.cluster_id,
        c.idle_gpus,
      ]),
      [
        ['evil', 0],
        ['fleet', 2],
      ],
    );
    const one = await get(priced, '/api/v1/overview?cluster_id=evil');
    assert.equal(one.body.idle_gpus, 0);
    assert.deepEqual(
      (one.body.by_cluster as { cluster_id: string; idle_gpus: number }[]).map((c) => [
        c.cluster_id,
        c.idle_gpus,
      ]),
      [['evil', 0]],
    );
    // A cluster that does not exist is a 404, as on every other route (it was a 200 of zeros).
    const none = await get(priced, '/api/v1/overview?cluster_id=nope');
    assert.equal(none.status, 404);
    assert.match(String(none.body.error), /cluster "nope" not found/);
  });
});

describe('nexus_gpu_idle_seconds', () => {
  it('holds exactly the GPUs /idle lists, with how long they have been idle', async () => {
    const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
    exportIdleGauge(metrics, store.reader, { utilPercent: 5, forMs: 15 * MINUTE });
    const { body } = await metrics.exposition();
    assert.deepEqual(
      body
        .split('\n')
        .filter((l) => l.startsWith('nexus_gpu_idle_seconds{'))
        .sort(),
      [
        'nexus_gpu_idle_seconds{cluster="fleet",host="node-a",gpu="0",namespace="research",pod="nb-1",container="main",component="gateway"} 1185',
        'nexus_gpu_idle_seconds{cluster="fleet",host="node-a",gpu="1",namespace="research",pod="nb-2",container="main",component="gateway"} 1790',
      ],
    );
  });

  it('comes from the lists the gateway keeps in the background when it keeps them (no query per scrape), bounded by FLEET_GAUGES_MAX_GPUS', async () => {
    const lists = new Map([
      [
        'fleet',
        await store.reader.idleGpus({ cluster: 'fleet', utilPercent: 5, forMs: 15 * MINUTE }),
      ],
    ]);
    const reader = {
      clusters: () => store.reader.clusters(),
      idleGpus: () => Promise.reject(new Error('a scrape must not query the idle GPUs')),
      idleSnapshot: () => lists,
    };
    const series = async (maxGpus: number): Promise<string[]> => {
      const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
      exportIdleGauge(metrics, reader, { utilPercent: 5, forMs: 15 * MINUTE }, maxGpus);
      const { body } = await metrics.exposition();
      return body.split('\n').filter((l) => l.startsWith('nexus_gpu_idle_seconds{'));
    };
    assert.equal((await series(10)).length, 2);
    assert.equal((await series(1)).length, 0, 'two idle GPUs, at most one exported: none');
  });
});

describe('GraphQL cost limits', () => {
  it('usage counts 500 towards GRAPHQL_MAX_COST: over a small limit it is refused before it runs', async () => {
    const small = await buildGateway({
      ...testGatewayOptions(store.reader),
      graphql: true,
      graphqlLimits: { ...DEFAULT_GATEWAY.graphqlLimits, maxCost: 400 },
    });
    try {
      const ask = async (field: string) =>
        (
          await small.app.inject({
            method: 'POST',
            url: '/graphql',
            payload: { query: `{ cluster(cluster_id: "fleet") { ${field} } }` },
          })
        ).json<{ data?: unknown; errors?: { message: string }[] }>();
      const refused = await ask('usage(groupBy: host) { total { gpu_hours } }');
      assert.match(
        refused.errors?.[0]?.message ?? '',
        /^query cost \d+ exceeds the maximum of 400/,
      );
      assert.equal(refused.data ?? null, null);
      const idle = await ask('idleGpus { count }');
      assert.deepEqual(idle, { data: { cluster: { idleGpus: { count: 2 } } } });
    } finally {
      await small.app.close();
    }
  });
});

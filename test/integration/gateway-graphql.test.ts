import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { getIntrospectionQuery } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { buildGateway, type Gateway, type GatewayOptions } from '../../src/gateway/app.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { DEFAULT_GATEWAY, NO_AUTH } from '../helpers/gateway.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { sampleRows, type SampleRow } from '../helpers/sample.js';

const CLUSTER = 'local-cluster';
const HOST = 'mtv5-dgx1-hgpu-031';
const rows = sampleRows();

const toRecord = (r: SampleRow): TelemetryRecord => ({
  timestamp: r.timestamp,
  metric: r.metric,
  gpu: r.gpu,
  hostname: r.hostname,
  value: r.value,
  device: r.device,
  uuid: r.uuid,
  model: r.model,
  container: r.container,
  pod: r.pod,
  namespace: r.namespace,
  labels: r.labels,
});

const pg = await sharedPostgres();
let store: SqlStore;
let feed: MemoryFeed;
let gw: Gateway;
/** The same store, without a live feed. */
let noFeed: Gateway;

function options(over: Partial<GatewayOptions> = {}): GatewayOptions {
  return {
    reader: store.reader,
    auth: NO_AUTH,
    checks: [],
    logger: silentLogger(),
    version: '0.0.0-test',
    graphql: true,
    websocket: false,
    cors: { enabled: false, origins: [] },
    maxPoints: 100_000,
    socket: DEFAULT_GATEWAY.socket,
    api: DEFAULT_GATEWAY.api,
    graphqlLimits: DEFAULT_GATEWAY.graphqlLimits,
    pressure: DEFAULT_GATEWAY.pressure,
    trustProxy: '',
    bodyLimit: 1_048_576,
    ...over,
  };
}

before(async () => {
  const url = await pg.server.createDatabase(uniqueDatabase('gql'));
  store = sqlStore(url);
  await store.migrate();
  await store.write(CLUSTER, rows.map(toRecord));
  feed = new MemoryFeed();
  gw = await buildGateway(options({ feed }));
  noFeed = await buildGateway(options());
});

after(async () => {
  await gw.app.close();
  await noFeed.app.close();
  await feed.close();
  await store.close();
  await pg.release();
});

interface GqlError {
  message: string;
  extensions?: { code?: string };
}
interface Answer<T> {
  status: number;
  data: T | null | undefined;
  errors: GqlError[] | undefined;
}

async function gql<T>(
  query: string,
  variables?: Record<string, unknown>,
  app = gw.app,
): Promise<Answer<T>> {
  const res = await app.inject({
    method: 'POST',
    url: '/graphql',
    payload: { query, ...(variables === undefined ? {} : { variables }) },
  });
  const body = res.json<{ data?: T | null; errors?: GqlError[] }>();
  return { status: res.statusCode, data: body.data, errors: body.errors };
}

async function ok<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const a = await gql<T>(query, variables);
  assert.equal(a.status, 200, JSON.stringify(a.errors));
  assert.equal(a.errors, undefined);
  assert.ok(a.data !== null && a.data !== undefined);
  return a.data;
}

const key = (host: string, gpu: number, metric: string, ts: number): string =>
  `${host}|${gpu}|${metric}|${ts}`;

interface Reading {
  cluster_id: string;
  host_id: string;
  gpu_id: number;
  uuid: string | null;
  metric: string;
  unit: string;
  timestamp: string;
  value: number;
}

describe('GraphQL: the seed queries', () => {
  it('{ clusters { cluster_id cluster_name status } }', async () => {
    const d = await ok<{
      clusters: { cluster_id: string; cluster_name: string; status: string }[];
    }>('{ clusters { cluster_id cluster_name status } }');
    assert.deepEqual(d.clusters, [{ cluster_id: CLUSTER, cluster_name: CLUSTER, status: 'idle' }]);
  });

  it('{ telemetry { cluster_id timestamp data } }: 100 readings, each whole and from the CSV', async () => {
    const d = await ok<{ telemetry: { cluster_id: string; timestamp: string; data: Reading }[] }>(
      '{ telemetry { cluster_id timestamp data } }',
    );
    assert.equal(d.telemetry.length, 100);
    const csv = new Map(rows.map((r) => [key(r.hostname, r.gpu, r.metric, r.timestamp), r]));
    for (const t of d.telemetry) {
      assert.equal(t.cluster_id, CLUSTER);
      assert.equal(t.data.timestamp, t.timestamp);
      assert.deepEqual(Object.keys(t.data).sort(), [
        'cluster_id',
        'gpu_id',
        'host_id',
        'metric',
        'timestamp',
        'unit',
        'uuid',
        'value',
      ]);
      const row = csv.get(
        key(t.data.host_id, t.data.gpu_id, t.data.metric, Date.parse(t.timestamp)),
      );
      assert.ok(row, `reading ${JSON.stringify(t.data)} is not in the CSV`);
      assert.equal(t.data.value, row.value);
      assert.equal(t.data.uuid, row.uuid);
    }
  });

  it('works over GET too', async () => {
    const res = await gw.app.inject({
      method: 'GET',
      url: `/graphql?query=${encodeURIComponent('{ clusters { cluster_id } }')}`,
    });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { data: { clusters: [{ cluster_id: CLUSTER }] } });
  });
});

describe('GraphQL: the fleet', () => {
  it('a cluster nests 31 hosts and 247 GPUs, as in the CSV, and its stats count 2,470 samples', async () => {
    const d = await ok<{
      cluster: {
        host_count: number;
        gpu_count: number;
        hosts: { host_id: string; gpu_count: number; gpus: { gpu_id: number; uuid: string }[] }[];
        stats: {
          samples: number;
          hosts: number;
          gpus: number;
          metrics: number;
          first_timestamp: string;
          last_timestamp: string;
        };
      };
    }>(
      `{ cluster(cluster_id: "${CLUSTER}") { host_count gpu_count
          hosts { host_id gpu_count gpus { gpu_id uuid } }
          stats { samples hosts gpus metrics first_timestamp last_timestamp } } }`,
    );
    const c = d.cluster;
    assert.equal(c.host_count, 31);
    assert.equal(c.gpu_count, 247);
    assert.equal(c.hosts.length, 31);
    assert.deepEqual(
      c.hosts.map((h) => h.host_id),
      [...new Set(rows.map((r) => r.hostname))].sort(),
    );
    assert.equal(
      c.hosts.reduce((n, h) => n + h.gpus.length, 0),
      247,
    );
    for (const h of c.hosts) {
      assert.equal(h.gpus.length, h.gpu_count);
      const csvGpus = new Map(
        rows.filter((r) => r.hostname === h.host_id).map((r) => [r.gpu, r.uuid]),
      );
      assert.deepEqual(new Map(h.gpus.map((g) => [g.gpu_id, g.uuid])), csvGpus);
    }
    assert.equal(c.stats.samples, 2470);
    assert.equal(c.stats.hosts, 31);
    assert.equal(c.stats.gpus, 247);
    assert.equal(c.stats.metrics, 10);
    const times = rows.map((r) => r.timestamp);
    assert.equal(c.stats.first_timestamp, new Date(Math.min(...times)).toISOString());
    assert.equal(c.stats.last_timestamp, new Date(Math.max(...times)).toISOString());
  });

  it('hosts, gpus, clusterStats and metrics at the top level', async () => {
    const d = await ok<{
      hosts: { host_id: string }[];
      gpus: { gpu_id: number }[];
      page: { gpu_id: number }[];
      one: { gpu_id: number }[];
      clusterStats: { samples: number; samples_per_metric: { metric: string; samples: number }[] };
      metrics: { name: string; unit: string }[];
    }>(
      `{ hosts(cluster_id: "${CLUSTER}") { host_id } gpus(cluster_id: "${CLUSTER}", limit: 1000) { gpu_id }
         page: gpus(cluster_id: "${CLUSTER}") { gpu_id }
         one: gpus(cluster_id: "${CLUSTER}", host_id: "${HOST}") { gpu_id }
         clusterStats(cluster_id: "${CLUSTER}") { samples samples_per_metric { metric samples } }
         metrics { name unit } }`,
    );
    assert.equal(d.hosts.length, 31);
    assert.equal(d.gpus.length, 247);
    // A list is a page: 100 unless limit says.
    assert.equal(d.page.length, 100);
    assert.deepEqual(
      d.one.map((g) => g.gpu_id),
      [...new Set(rows.filter((r) => r.hostname === HOST).map((r) => r.gpu))].sort((a, b) => a - b),
    );
    assert.equal(d.clusterStats.samples, 2470);
    const perMetric = new Map<string, number>();
    for (const r of rows) perMetric.set(r.metric, (perMetric.get(r.metric) ?? 0) + 1);
    assert.deepEqual(
      new Map(d.clusterStats.samples_per_metric.map((m) => [m.metric, m.samples])),
      perMetric,
    );
    assert.ok(d.metrics.some((m) => m.name === 'DCGM_FI_DEV_GPU_TEMP' && m.unit === 'C'));
    for (const m of perMetric.keys())
      assert.ok(
        d.metrics.some((x) => x.name === m),
        m,
      );
  });

  it('a missing cluster, host or GPU looked up alone is null (200)', async () => {
    const d = await ok<{ cluster: null; host: null; gpu: null }>(
      `{ cluster(cluster_id: "nope") { cluster_id } host(cluster_id: "${CLUSTER}", host_id: "nope") { host_id }
         gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 99) { uuid } }`,
    );
    assert.deepEqual(d, { cluster: null, host: null, gpu: null });
  });
});

describe('GraphQL: values', () => {
  const tempRows = rows.filter(
    (r) => r.hostname === HOST && r.gpu === 0 && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
  );
  const newest = tempRows.reduce((a, b) => (b.timestamp >= a.timestamp ? b : a));

  it(`the latest GPU_TEMP of ${HOST} GPU 0 is the CSV's, by every path`, async () => {
    assert.ok(tempRows.length > 0);
    const d = await ok<{
      gpu: {
        latest: Reading[];
        labels: Record<string, string>;
        workloads: unknown[];
        host: { host_id: string };
      };
      host: { gpus: { gpu_id: number; latest: Reading[] }[] };
      latest: Reading[];
    }>(
      `{ gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 0) {
           latest(metric: ["DCGM_FI_DEV_GPU_TEMP"]) { metric unit value timestamp } labels workloads { pod } host { host_id } }
         host(cluster_id: "${CLUSTER}", host_id: "${HOST}") { gpus { gpu_id latest(metric: ["GPU_TEMP"]) { value timestamp } } }
         latest(cluster_id: "${CLUSTER}", host_id: ["${HOST}"], gpu_id: [0], metric: ["GPU_TEMP"]) { value timestamp } }`,
    );
    const expected = { value: newest.value, timestamp: new Date(newest.timestamp).toISOString() };
    assert.deepEqual(d.gpu.latest, [{ metric: 'DCGM_FI_DEV_GPU_TEMP', unit: 'C', ...expected }]);
    assert.equal(d.gpu.host.host_id, HOST);
    assert.equal(d.gpu.labels.Hostname ?? d.gpu.labels.hostname ?? HOST, HOST);
    assert.deepEqual(d.host.gpus.find((g) => g.gpu_id === 0)?.latest, [expected]);
    assert.deepEqual(d.latest, [expected]);
    // every GPU of the host, batched: each its own CSV value
    for (const g of d.host.gpus) {
      const own = rows.filter(
        (r) => r.hostname === HOST && r.gpu === g.gpu_id && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
      );
      const last = own.reduce((a, b) => (b.timestamp >= a.timestamp ? b : a));
      assert.deepEqual(g.latest, [
        { value: last.value, timestamp: new Date(last.timestamp).toISOString() },
      ]);
    }
  });

  it('the average POWER_USAGE of one GPU over the file equals the CSV mean', async () => {
    const power = rows.filter(
      (r) => r.hostname === HOST && r.gpu === 3 && r.metric === 'DCGM_FI_DEV_POWER_USAGE',
    );
    assert.ok(power.length > 0);
    const mean = power.reduce((s, r) => s + r.value, 0) / power.length;
    const times = rows.map((r) => r.timestamp);
    const from = new Date(Math.min(...times)).toISOString();
    const to = new Date(Math.max(...times) + 1000).toISOString();
    const d = await ok<{
      gpu: { series: { metric: string; unit: string; points: { value: number; count: number }[] } };
      series: {
        source: string;
        series: { gpu_id: number; points: { value: number; count: number }[] }[];
      };
    }>(
      `{ gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 3) {
           series(metric: "POWER_USAGE", from: "${from}", to: "${to}", step: "1h", agg: avg) { metric unit points { value count } } }
         series(cluster_id: "${CLUSTER}", host_id: ["${HOST}"], gpu_id: [3], metric: ["DCGM_FI_DEV_POWER_USAGE"],
                from: "${from}", to: "${to}", step: "1h", agg: avg) { source series { gpu_id points { value count } } } }`,
    );
    assert.equal(d.gpu.series.metric, 'DCGM_FI_DEV_POWER_USAGE');
    assert.equal(d.gpu.series.unit, 'W');
    assert.equal(d.gpu.series.points.length, 1);
    assert.equal(d.gpu.series.points[0]?.count, power.length);
    assert.ok(
      Math.abs(d.gpu.series.points[0].value - mean) < 1e-9,
      `${d.gpu.series.points[0].value} != ${mean}`,
    );
    assert.equal(d.series.source, 'rollup_1m');
    assert.equal(d.series.series.length, 1);
    assert.deepEqual(d.series.series[0]?.points, d.gpu.series.points);
  });

  it('telemetryPage: following next_cursor returns every reading exactly once', async () => {
    const seen = new Map<string, number>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const d: {
        telemetryPage: { count: number; next_cursor: string | null; readings: { data: Reading }[] };
      } = await ok(
        'query Page($cursor: String) { telemetryPage(limit: 500, cursor: $cursor) { count next_cursor readings { data } } }',
        { cursor },
      );
      const p = d.telemetryPage;
      assert.equal(p.count, p.readings.length);
      for (const { data: r } of p.readings) {
        const k = key(r.host_id, r.gpu_id, r.metric, Date.parse(r.timestamp));
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
      cursor = p.next_cursor;
      pages++;
      assert.ok(pages < 20, 'pagination does not end');
    } while (cursor !== null);
    assert.equal(pages, 5);
    assert.equal(seen.size, 2470);
    assert.ok(
      [...seen.values()].every((n) => n === 1),
      'a reading came twice',
    );
    assert.deepEqual(
      new Set(seen.keys()),
      new Set(rows.map((r) => key(r.hostname, r.gpu, r.metric, r.timestamp))),
    );
  });

  it('the cost of a `limit` given as a variable is checked with its value', async () => {
    const q =
      'query($n: Int) { telemetry(limit: $n) { cluster_id host_id gpu_id uuid metric unit timestamp value data } }';
    const small = await ok<{ telemetry: unknown[] }>(q, { n: 10 });
    assert.equal(small.telemetry.length, 10);
    const big = await gql(q, { n: 10_000 });
    assert.equal(big.status, 400);
    assert.match(big.errors?.[0]?.message ?? '', /query cost 170501 exceeds the maximum of 50000/);
  });

  it('introspection (what GraphiQL asks first) is neither too deep nor too costly', async () => {
    const d = await ok<{ __schema: { types: { name: string }[] } }>(getIntrospectionQuery());
    assert.ok(d.__schema.types.some((t) => t.name === 'Telemetry'));
  });
});

describe("GraphQL: a page's items are costed by its limit, once", () => {
  const HOST_FIELDS = 'host_id hostname gpu_count first_seen last_seen';
  const EVENT_FIELDS = 'id type time host_id gpu_id code message';

  it('hostsPage with the fields of a host list runs, at its default and its largest limit', async () => {
    for (const limit of ['', ', limit: 1000']) {
      const d = await ok<{ hostsPage: { total: number; hosts: { host_id: string }[] } }>(
        `{ hostsPage(cluster_id: "${CLUSTER}"${limit}) { total hosts { ${HOST_FIELDS} } } }`,
      );
      assert.equal(d.hostsPage.total, 31);
      assert.equal(d.hostsPage.hosts.length, 31);
    }
  });

  it("a cluster's events run at the default limit and up to the documented 1,000", async () => {
    for (const limit of ['', '(limit: 500)', '(limit: 1000)']) {
      const d = await ok<{ cluster: { events: { events: unknown[] } } }>(
        `{ cluster(cluster_id: "${CLUSTER}") { events${limit} { counts { xid } next_cursor events { ${EVENT_FIELDS} } } } }`,
      );
      assert.ok(Array.isArray(d.cluster.events.events));
    }
  });

  it('search runs at its largest limit, telemetryPage at its largest', async () => {
    const s = await ok<{ search: { hits: unknown[] } }>(
      `{ search(q: "mtv5", limit: 100) { q count truncated hits { kind cluster_id label host_id gpu_id uuid namespace pod gpus } } }`,
    );
    assert.ok(s.search.hits.length > 0);
    const t = await ok<{ telemetryPage: { readings: unknown[] } }>(
      '{ telemetryPage(limit: 10000) { count next_cursor readings { host_id metric timestamp value } } }',
    );
    assert.equal(t.telemetryPage.readings.length, 2470);
  });

  it('aliases of large pages, and lists nested under their items, are still refused', async () => {
    const pages = Array.from(
      { length: 10 },
      (_, i) =>
        `p${i}: hostsPage(cluster_id: "${CLUSTER}", limit: 1000) { hosts { ${HOST_FIELDS} } }`,
    ).join(' ');
    const aliased = await gql(`{ ${pages} }`);
    assert.equal(aliased.status, 400);
    assert.match(aliased.errors?.[0]?.message ?? '', /query cost 50120 exceeds the maximum/);
    const nested = await gql(
      `{ hostsPage(cluster_id: "${CLUSTER}", limit: 1000) { hosts { gpus { latest { metric value } } } } }`,
    );
    assert.equal(nested.status, 400);
    assert.match(nested.errors?.[0]?.message ?? '', /query cost \d+ exceeds the maximum/);
  });
});

const QUERY_PAD = `{ clusters { cluster_id } }${' '.repeat(20_000)}`;
const TOO_DEEP =
  '{ clusters { hosts { cluster { hosts { cluster { hosts { cluster { hosts { host_id } } } } } } } } }';
const TOO_COSTLY = '{ clusters { hosts { gpus { latest { metric value } } } } }';

describe('GraphQL: bad input is a 4xx that says what is wrong', () => {
  const cases: {
    name: string;
    query: string;
    variables?: Record<string, unknown>;
    status: number;
    message: RegExp;
    noFeed?: boolean;
  }[] = [
    {
      name: 'syntax error',
      query: '{ clusters { cluster_id }',
      status: 400,
      message: /Syntax Error: Expected Name, found <EOF>/,
    },
    {
      name: 'unknown field',
      query: '{ clusters { nope } }',
      status: 400,
      message: /Cannot query field "nope" on type "Cluster"/,
    },
    {
      name: 'missing required argument',
      query: '{ cluster { cluster_id } }',
      status: 400,
      message: /argument "cluster_id" of type "String!" is required/,
    },
    {
      name: 'wrong argument type',
      query: '{ telemetry(limit: "ten") { value } }',
      status: 400,
      message: /Int cannot represent non-integer value: "ten"/,
    },
    {
      name: 'variable of the wrong type',
      query: 'query($n: Int) { telemetry(limit: $n) { value } }',
      variables: { n: 'x' },
      status: 400,
      message: /Variable "\$n" got invalid value "x"/,
    },
    {
      name: 'too deep',
      query: TOO_DEEP,
      status: 400,
      message: /query depth 9 exceeds the limit of 8/,
    },
    {
      name: 'too costly',
      query: TOO_COSTLY,
      status: 400,
      message: /query cost 329011 exceeds the maximum of 50000/,
    },
    {
      name: 'oversized query',
      query: QUERY_PAD,
      status: 400,
      message: /query is 20027 characters long; the limit is 20000/,
    },
    {
      name: 'bad time',
      query: '{ telemetry(from: "yesterday") { value } }',
      status: 400,
      message: /from: "yesterday" is not a time/,
    },
    {
      name: 'from after to',
      query: '{ telemetry(from: "2025-07-19T00:00:00Z", to: "2025-07-18T00:00:00Z") { value } }',
      status: 400,
      message: /from must be before to/,
    },
    {
      name: 'unknown metric',
      query: '{ telemetry(metric: ["NOPE"]) { value } }',
      status: 400,
      message: /unknown metric "NOPE"; known metrics: DCGM_FI_DEV_DEC_UTIL/,
    },
    {
      name: 'unknown metric in a GPU filter',
      query: `{ gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 0) { latest(metric: ["NOPE"]) { value } } }`,
      status: 400,
      message: /unknown metric "NOPE"/,
    },
    {
      name: 'malformed cursor',
      query: '{ telemetryPage(cursor: "garbage!") { count } }',
      status: 400,
      message: /cursor: not a cursor this API returned/,
    },
    {
      name: 'limit out of range',
      query: '{ telemetry(limit: 0) { value } }',
      status: 400,
      message: /limit: 0 is out of range \(1 to 10000\)/,
    },
    {
      name: 'bad step',
      query: '{ series(from: "-1h", step: "fast") { step } }',
      status: 400,
      message: /step: "fast" is not a duration/,
    },
    {
      name: 'too many points',
      query:
        '{ series(from: "2020-01-01T00:00:00Z", to: "2025-01-01T00:00:00Z", step: "1s") { step } }',
      status: 400,
      message: /too many points/,
    },
    {
      name: 'negative GPU index',
      query: `{ gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: -1) { uuid } }`,
      status: 400,
      message: /gpu_id: -1 is not a GPU index/,
    },
    {
      name: 'empty filter list',
      query: '{ telemetry(host_id: []) { value } }',
      status: 400,
      message: /host_id: give at least one value/,
    },
    {
      name: 'unknown cluster for its hosts',
      query: '{ hosts(cluster_id: "nope") { host_id } }',
      status: 404,
      message: /cluster "nope" not found/,
    },
    {
      name: 'unknown cluster for its stats',
      query: '{ clusterStats(cluster_id: "nope") { samples } }',
      status: 404,
      message: /cluster "nope" not found/,
    },
    {
      name: 'unknown cluster as a filter',
      query: '{ telemetry(cluster_id: "nope") { value } }',
      status: 404,
      message: /cluster "nope" not found/,
    },
    {
      name: 'unknown host for its GPUs',
      query: `{ gpus(cluster_id: "${CLUSTER}", host_id: "nope") { gpu_id } }`,
      status: 404,
      message: /host "nope" not found in cluster "local-cluster"/,
    },
    {
      name: 'subscription over HTTP',
      query: 'subscription { telemetry { value } }',
      status: 400,
      message: /subscriptions run over WebSocket/,
    },
    {
      name: 'subscription without a feed',
      query: 'subscription { telemetry { value } }',
      status: 400,
      message: /no live feed/,
      noFeed: true,
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const a = await gql(c.query, c.variables, c.noFeed === true ? noFeed.app : gw.app);
      assert.equal(a.status, c.status, JSON.stringify(a.errors));
      assert.ok(Array.isArray(a.errors) && a.errors.length > 0, 'no GraphQL errors');
      assert.match(a.errors[0]?.message ?? '', c.message);
      assert.ok(a.errors[0]?.extensions?.code !== undefined);
    });
  }

  for (const query of ['{}', '{ }', ' {}\n', '[]', '1', 'null', '"{ clusters { cluster_id } }"']) {
    it(`query ${JSON.stringify(query)} (JSON, not GraphQL) is a 400 syntax error, over POST and GET`, async () => {
      const post = await gql(query);
      const get = await gw.app.inject({
        method: 'GET',
        url: `/graphql?query=${encodeURIComponent(query)}`,
      });
      for (const [status, errors] of [
        [post.status, post.errors],
        [get.statusCode, get.json<{ errors?: GqlError[] }>().errors],
      ] as const) {
        assert.equal(status, 400, JSON.stringify(errors));
        assert.match(errors?.[0]?.message ?? '', /^Syntax Error: /);
        assert.equal(errors?.[0]?.extensions?.code, 'BAD_REQUEST');
      }
    });
  }

  it('several operations over GET: the operation to run must be named, as over POST', async () => {
    const query = 'query A { clusters { cluster_id } } query B { metrics { name } }';
    const get = async (operationName?: string) => {
      const qs = new URLSearchParams({
        query,
        ...(operationName === undefined ? {} : { operationName }),
      });
      const res = await gw.app.inject({ method: 'GET', url: `/graphql?${qs.toString()}` });
      return { status: res.statusCode, body: res.json<unknown>() };
    };
    const post = async (operationName?: string) => {
      const res = await gw.app.inject({
        method: 'POST',
        url: '/graphql',
        payload: { query, ...(operationName === undefined ? {} : { operationName }) },
      });
      return { status: res.statusCode, body: res.json<unknown>() };
    };
    const errors = (message: string) => ({
      data: null,
      errors: [{ message, extensions: { code: 'BAD_REQUEST' } }],
    });
    for (const [name, body] of [
      [undefined, errors('Must provide operation name if query contains multiple operations.')],
      ['Z', errors('Unknown operation named "Z".')],
      ['', errors('Unknown operation named "".')],
    ] as const) {
      assert.deepEqual(await get(name), { status: 400, body }, `operationName ${name}`);
      assert.deepEqual(await post(name), { status: 400, body }, `operationName ${name}`);
    }
    assert.deepEqual(await get('A'), {
      status: 200,
      body: { data: { clusters: [{ cluster_id: CLUSTER }] } },
    });
    const b = await get('B');
    assert.equal(b.status, 200);
    assert.ok(
      (b.body as { data: { metrics: unknown[] } }).data.metrics.length > 0,
      JSON.stringify(b.body),
    );
  });

  it('a body that is not JSON is a 400', async () => {
    const res = await gw.app.inject({
      method: 'POST',
      url: '/graphql',
      headers: { 'content-type': 'application/json' },
      payload: '{"query": ',
    });
    assert.equal(res.statusCode, 400);
    assert.ok(Array.isArray(res.json<{ errors: unknown }>().errors));
  });

  it('a body over the limit is a 413 with GraphQL errors', async () => {
    const res = await gw.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: { query: `{ clusters { cluster_id } } #${'x'.repeat(2 * 1_048_576)}` },
    });
    assert.equal(res.statusCode, 413);
    assert.match(res.json<{ errors: GqlError[] }>().errors[0]?.message ?? '', /too large/);
  });

  it('a partly bad query is still a 400, with the good part answered', async () => {
    const a = await gql<{ clusters: unknown[]; gpu: null }>(
      `{ clusters { cluster_id } gpu(cluster_id: "${CLUSTER}", host_id: "${HOST}", gpu_id: 0) { series(metric: "GPU_TEMP", from: "soon") { metric } } }`,
    );
    assert.equal(a.status, 400);
    assert.equal(a.data?.clusters.length, 1);
    assert.equal(a.data.gpu, null);
    assert.match(a.errors?.[0]?.message ?? '', /from: "soon" is not a time/);
  });
});

describe('GraphQL subscriptions over graphql-ws', () => {
  const clients: Client[] = [];
  let port = 0;
  before(async () => {
    await gw.app.listen({ port: 0, host: '127.0.0.1' });
    await noFeed.app.listen({ port: 0, host: '127.0.0.1' });
    const address = gw.app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    port = address.port;
  });
  after(async () => {
    for (const c of clients) await c.dispose();
  });

  const client = (p = port): Client => {
    const c = createClient({
      url: `ws://127.0.0.1:${p}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
    });
    clients.push(c);
    return c;
  };

  async function until(what: string, cond: () => boolean): Promise<void> {
    for (let i = 0; i < 1000 && !cond(); i++) await sleep(10);
    assert.ok(cond(), `timed out waiting for ${what}`);
  }

  const rec = (
    hostname: string,
    gpu: number,
    metric: string,
    value: number,
    timestamp = Date.UTC(2025, 6, 19),
  ): TelemetryRecord => ({
    hostname,
    gpu,
    metric,
    value,
    timestamp,
    uuid: `GPU-${hostname}-${gpu}`,
    labels: {},
  });

  it('a subscriber receives exactly the matching readings, once; a batch subscriber the batch', async () => {
    const c = client();
    const readings: Reading[] = [];
    const batches: { cluster_id: string; count: number; dropped: number; readings: Reading[] }[] =
      [];
    const errors: unknown[] = [];
    const filter = `cluster_id: "${CLUSTER}", host_id: ["${HOST}"], metric: ["GPU_TEMP"]`;
    const stopOne = c.subscribe<{ telemetry: Reading }>(
      {
        query: `subscription { telemetry(${filter}) { cluster_id host_id gpu_id uuid metric unit timestamp value } }`,
      },
      {
        next: (m) => m.data && readings.push(m.data.telemetry),
        error: (e) => errors.push(e),
        complete: () => undefined,
      },
    );
    const stopBatch = c.subscribe<{ telemetryBatch: (typeof batches)[number] }>(
      {
        query: `subscription { telemetryBatch(${filter}) { cluster_id count dropped readings { host_id gpu_id value } } }`,
      },
      {
        next: (m) => m.data && batches.push(m.data.telemetryBatch),
        error: (e) => errors.push(e),
        complete: () => undefined,
      },
    );
    const hub = gw.hub;
    assert.ok(hub);
    await until('two subscribers', () => hub.subscribers === 2);

    const matching = [
      rec(HOST, 0, 'DCGM_FI_DEV_GPU_TEMP', 41),
      rec(HOST, 5, 'DCGM_FI_DEV_GPU_TEMP', 57),
    ];
    await feed.publish(CLUSTER, [
      rec('mtv5-dgx1-hgpu-030', 0, 'DCGM_FI_DEV_GPU_TEMP', 1),
      matching[0] as TelemetryRecord,
      rec(HOST, 0, 'DCGM_FI_DEV_POWER_USAGE', 2),
      matching[1] as TelemetryRecord,
    ]);
    await feed.publish('other-cluster', [rec(HOST, 0, 'DCGM_FI_DEV_GPU_TEMP', 3)]);
    await feed.publish(CLUSTER, [rec(HOST, 1, 'DCGM_FI_DEV_MEM_CLOCK', 4)]);
    // A marker: it arrives after anything the batches before it could have delivered.
    await feed.publish(CLUSTER, [rec(HOST, 7, 'DCGM_FI_DEV_GPU_TEMP', 99)]);
    await until(
      'the marker',
      () =>
        readings.some((r) => r.value === 99) &&
        batches.some((b) => b.readings.some((r) => r.value === 99)),
    );

    assert.deepEqual(errors, []);
    assert.deepEqual(
      readings.map((r) => [r.cluster_id, r.host_id, r.gpu_id, r.metric, r.unit, r.value]),
      [
        [CLUSTER, HOST, 0, 'DCGM_FI_DEV_GPU_TEMP', 'C', 41],
        [CLUSTER, HOST, 5, 'DCGM_FI_DEV_GPU_TEMP', 'C', 57],
        [CLUSTER, HOST, 7, 'DCGM_FI_DEV_GPU_TEMP', 'C', 99],
      ],
    );
    assert.equal(readings[0]?.uuid, `GPU-${HOST}-0`);
    assert.equal(readings[0].timestamp, '2025-07-19T00:00:00.000Z');
    assert.deepEqual(
      batches.map((b) => [b.cluster_id, b.count, b.dropped, b.readings.map((r) => r.value)]),
      [
        [CLUSTER, 2, 0, [41, 57]],
        [CLUSTER, 1, 0, [99]],
      ],
    );

    stopOne();
    stopBatch();
    await until('unsubscribed from the hub', () => hub.subscribers === 0);
  });

  it('subscribing without a live feed is a GraphQL error saying so', async () => {
    const address = noFeed.app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    const c = client(address.port);
    const err = await new Promise<unknown>((resolve) => {
      c.subscribe(
        { query: 'subscription { telemetry { value } }' },
        { next: () => undefined, error: resolve, complete: () => resolve(undefined) },
      );
    });
    assert.ok(Array.isArray(err), `expected GraphQL errors, got ${String(err)}`);
    assert.match(JSON.stringify(err), /no live feed/);
  });

  it('a bad subscription is refused with the reason (validation, cost and filters apply)', async () => {
    const c = client();
    const first = (query: string): Promise<unknown> =>
      new Promise<unknown>((resolve) => {
        c.subscribe(
          { query },
          { next: () => undefined, error: resolve, complete: () => resolve(undefined) },
        );
      });
    assert.match(
      JSON.stringify(await first('subscription { telemetry { nope } }')),
      /Cannot query field \\"nope\\"/,
    );
    assert.match(
      JSON.stringify(await first('subscription { telemetry(gpu_id: [-2]) { value } }')),
      /gpu_id: -2 is not a GPU index/,
    );
    assert.match(
      JSON.stringify(await first('subscription { telemetry(metric: ["no such!"]) { value } }')),
      /is not a metric name/,
    );
  });
});

describe('GraphiQL', () => {
  it('GET /graphql from a browser is a page whose scripts and styles all come from the gateway', async () => {
    const res = await gw.app.inject({
      method: 'GET',
      url: '/graphql',
      headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    const urls = [...res.body.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/g)].map(
      (m) => m[1] ?? '',
    );
    assert.ok(urls.length >= 5, `too few assets: ${urls.join(', ')}`);
    const kinds = new Set<string>();
    for (const u of urls) {
      assert.match(u, /^\/[^/]/, `${u} is not a local path`);
      const asset = await gw.app.inject({ method: 'GET', url: u });
      assert.equal(asset.statusCode, 200, u);
      const type = String(asset.headers['content-type']);
      assert.match(type, /^(application\/javascript|text\/javascript|text\/css)/, `${u}: ${type}`);
      kinds.add(type.split(';')[0] ?? '');
      assert.ok(asset.body.length > 0);
    }
    assert.ok(kinds.has('text/css') && kinds.has('application/javascript'));
    const all = (
      await Promise.all(
        urls.map(async (u) => (await gw.app.inject({ method: 'GET', url: u })).body),
      )
    ).join('\n');
    // Checked with includes and a short message: the assets are megabytes, which a failed
    // assert.match would print whole (and the test runner then formats for minutes).
    for (const part of [
      'GraphiQL.createFetcher(',
      "url: '/graphql'",
      'subscriptionUrl: ws',
      'ReactDOM',
    ])
      assert.ok(all.includes(part), `no asset of the page holds ${part}`);
  });

  it('a GET with a query, or without Accept text/html, is answered as GraphQL', async () => {
    const withQuery = await gw.app.inject({
      method: 'GET',
      url: `/graphql?query=${encodeURIComponent('{ clusters { cluster_id } }')}`,
      headers: { accept: 'text/html' },
    });
    assert.equal(withQuery.statusCode, 200);
    assert.deepEqual(withQuery.json(), { data: { clusters: [{ cluster_id: CLUSTER }] } });
    const plain = await gw.app.inject({
      method: 'GET',
      url: '/graphql',
      headers: { accept: 'application/json' },
    });
    assert.doesNotMatch(String(plain.headers['content-type']), /text\/html/);
  });
});

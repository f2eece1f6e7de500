/**
 * What a request costs does not grow with the fleet (docs/api.md, "Costs"): two gateways, on a
 * fleet of 200 GPUs and one of 2,000, serve the overview, a cluster, pages of hosts and GPUs, a GPU,
 * a host's latest values and search; every list walked by its cursors holds each item once, in
 * order, with count, total and next_cursor right; the fleet rows the gateway reads from the store
 * for 20 requests of each kind (nexus_gateway_fleet_rows_read_total, request sources) are the same
 * on both fleets; nothing answers 5xx. A gateway is ready only once its fleet state is loaded, so
 * that its first requests find it in memory.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { NexusMetrics } from '../../src/core/metrics.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { buildGateway, type Gateway } from '../../src/gateway/app.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import type { FleetReadCounters } from '../../src/store/reader.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { T0 } from '../conformance/store-fixtures.js';
import { testGatewayOptions } from '../helpers/gateway.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const METRICS = ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_GPU_UTIL'];
const GPUS_PER_HOST = 8;
const CLUSTER = 'card';
/** Sources a request reads from (the others are the background load and reconciliation). */
const REQUEST_SOURCES = ['clusters', 'hosts', 'gpus', 'workloads', 'latest'];

const hostName = (i: number): string => `gpu-node-${String(i).padStart(4, '0')}`;

/** A fleet of `hosts` x 8 GPUs, one reading of each metric; every GPU runs a pod. */
function fleet(hosts: number): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  for (let h = 0; h < hosts; h++) {
    const hostname = hostName(h);
    for (let gpu = 0; gpu < GPUS_PER_HOST; gpu++) {
      for (const metric of METRICS) {
        out.push({
          timestamp: T0,
          metric,
          gpu,
          hostname,
          value: metric === 'DCGM_FI_DEV_GPU_TEMP' ? (gpu === 0 && h % 50 === 0 ? 90 : 60) : 100,
          uuid: `GPU-${h}-${gpu}`,
          model: 'NVIDIA H100 80GB HBM3',
          namespace: `team-${h % 4}`,
          pod: `job-${h}-${gpu}`,
          labels: {},
        });
      }
    }
  }
  return out;
}

interface Served {
  readonly store: SqlStore;
  readonly gateway: Gateway;
  readonly feed: MemoryFeed;
  readonly hosts: number;
}

function counters(store: SqlStore): FleetReadCounters {
  const c = store.reader.fleetCounters?.();
  assert.ok(c !== undefined, 'the reader counts its fleet reads');
  return c;
}

/** What a test does while a gateway starts: before it is built, then until it is ready. */
interface Starting {
  before(url: string): Promise<void>;
  during(gateway: Gateway): Promise<void>;
}

/** A gateway on a fleet of `hosts` x 8 GPUs, once ready (/readyz), its fleet state loaded. */
async function serve(hosts: number, starting?: Starting): Promise<Served> {
  const pg = await sharedPostgres();
  const url = await pg.server.createDatabase(uniqueDatabase('card'));
  const store = sqlStore(url);
  await store.migrate();
  const records = fleet(hosts);
  for (let i = 0; i < records.length; i += 6000)
    await store.write(CLUSTER, records.slice(i, i + 6000));
  await starting?.before(url);
  const feed = new MemoryFeed();
  const gateway = await buildGateway({
    ...testGatewayOptions(store.reader),
    feed,
    // The shared machine's event loop is no measure of this gateway.
    pressure: { maxEventLoopDelayMs: 0, maxHeapUsedBytes: 0 },
    metrics: new NexusMetrics({ component: 'gateway', processMetrics: false }),
    graphql: true,
    websocket: false,
    cors: { enabled: false, origins: [] },
    maxPoints: 100_000,
  });
  await starting?.during(gateway);
  for (let i = 0; ; i++) {
    const res = await gateway.app.inject({ method: 'GET', url: '/readyz' });
    if (res.statusCode === 200) break;
    if (i > 600) throw new Error(`the gateway is not ready: ${res.body}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Ready: the fleet state is loaded, the directory and the latest values (two full loads).
  assert.ok(counters(store).reloads.full >= 2, 'ready before the fleet state was loaded');
  return { store, gateway, feed, hosts };
}

async function get<T>(s: Served, url: string): Promise<T> {
  const res = await s.gateway.app.inject({ method: 'GET', url });
  assert.ok(res.statusCode < 500, `${url}: ${res.statusCode} ${res.body.slice(0, 200)}`);
  assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`);
  return res.json<T>();
}

interface Page {
  readonly count: number;
  readonly total: number;
  readonly next_cursor: string | null;
  readonly [k: string]: unknown;
}

/** Walks a list by its cursors: every item's key, and checks count, total and next_cursor. */
async function walk(
  s: Served,
  url: string,
  field: string,
  key: (item: Record<string, unknown>) => string,
  limit?: number,
): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  let total: number | undefined;
  for (;;) {
    const sep = url.includes('?') ? '&' : '?';
    const page: Page = await get<Page>(
      s,
      `${url}${limit === undefined ? '' : `${sep}limit=${limit}`}${cursor === null ? '' : `${limit === undefined ? sep : '&'}cursor=${cursor}`}`,
    );
    const items = page[field] as Record<string, unknown>[];
    assert.equal(page.count, items.length);
    total ??= page.total;
    assert.equal(page.total, total);
    keys.push(...items.map(key));
    if (page.next_cursor === null) break;
    assert.equal(items.length, limit ?? 100, 'a page before the last is full');
    cursor = page.next_cursor;
  }
  assert.equal(keys.length, total);
  return keys;
}

/** Fleet rows read by request sources. */
function requestRows(s: Served): number {
  const rows = counters(s.store).rowsRead;
  return REQUEST_SOURCES.reduce((n, k) => n + (rows[k] ?? 0), 0);
}

/** The requests of one kind, 20 times, on a fleet: what they read. */
const KINDS: Record<string, (s: Served, i: number) => string> = {
  overview: () => '/api/v1/overview',
  cluster: () => `/api/v1/clusters/${CLUSTER}`,
  'hosts page': () => `/api/v1/clusters/${CLUSTER}/hosts`,
  'host gpus page': (_s, i) => `/api/v1/clusters/${CLUSTER}/hosts/${hostName(i % 20)}/gpus`,
  'cluster gpus page': () => `/api/v1/clusters/${CLUSTER}/gpus?prefix=gpu-node-00`,
  gpu: (_s, i) => `/api/v1/clusters/${CLUSTER}/hosts/${hostName(i % 20)}/gpus/${i % 8}`,
  "a host's latest": (_s, i) =>
    `/api/v1/telemetry/latest?cluster_id=${CLUSTER}&host_id=${hostName(i % 20)}`,
  search: (_s, i) => `/api/v1/search?q=node-00${i % 10}`,
};

let small: Served;
let large: Served;
before(async () => {
  [small, large] = await Promise.all([serve(25), serve(250)]);
});
after(async () => {
  for (const s of [small, large]) {
    await s.gateway.app.close();
    await s.feed.close();
    await s.store.close();
  }
  await (await sharedPostgres()).release();
});

describe('what a request costs does not grow with the fleet', () => {
  it('every list walked by its cursors holds each item once, in order (default page 100)', async () => {
    for (const s of [small, large]) {
      const hosts = Array.from({ length: s.hosts }, (_, i) => hostName(i));
      assert.deepEqual(
        await walk(s, `/api/v1/clusters/${CLUSTER}/hosts`, 'hosts', (h) => String(h.host_id)),
        hosts,
      );
      assert.deepEqual(
        await walk(s, `/api/v1/clusters/${CLUSTER}/hosts`, 'hosts', (h) => String(h.host_id), 7),
        hosts,
      );
      const gpus = hosts.flatMap((h) => Array.from({ length: 8 }, (_, g) => `${h}/${g}`));
      assert.deepEqual(
        await walk(
          s,
          `/api/v1/clusters/${CLUSTER}/gpus`,
          'gpus',
          (g) => `${String(g.host_id)}/${String(g.gpu_id)}`,
        ),
        gpus,
      );
      assert.deepEqual(
        await walk(
          s,
          `/api/v1/clusters/${CLUSTER}/gpus?prefix=gpu-node-001`,
          'gpus',
          (g) => `${String(g.host_id)}/${String(g.gpu_id)}`,
          3,
        ),
        gpus.filter((g) => g.startsWith('gpu-node-001')),
      );
      assert.deepEqual(
        await walk(
          s,
          `/api/v1/clusters/${CLUSTER}/hosts/${hostName(3)}/gpus`,
          'gpus',
          (g) => String(g.gpu_id),
          3,
        ),
        ['0', '1', '2', '3', '4', '5', '6', '7'],
      );
      assert.deepEqual(await walk(s, '/api/v1/clusters', 'clusters', (c) => String(c.cluster_id)), [
        CLUSTER,
      ]);
      const o = await get<{
        gpus: number;
        hosts: number;
        power_watts: number;
        alerts_total: number;
      }>(s, '/api/v1/overview');
      assert.deepEqual(
        [o.hosts, o.gpus, o.power_watts, o.alerts_total],
        [s.hosts, s.hosts * 8, s.hosts * 8 * 100, Math.ceil(s.hosts / 50)],
      );
      const found = await get<{ hits: { kind: string; label: string }[] }>(
        s,
        `/api/v1/search?q=${hostName(1)}`,
      );
      assert.deepEqual(found.hits[0], {
        kind: 'host',
        cluster_id: CLUSTER,
        host_id: hostName(1),
        label: hostName(1),
        gpus: 8,
      });
    }
  });

  it('a bad limit, cursor or kind is a 400 that says what is wrong', async () => {
    const bad = async (url: string): Promise<string> => {
      const res = await small.gateway.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 400, url);
      return res.json<{ error: string }>().error;
    };
    assert.ok((await bad(`/api/v1/clusters/${CLUSTER}/hosts?limit=1001`)).includes('1000'));
    assert.ok((await bad(`/api/v1/clusters/${CLUSTER}/gpus?limit=0`)).includes('1'));
    assert.ok(
      (await bad(`/api/v1/clusters/${CLUSTER}/hosts?cursor=zzz`)).includes('invalid cursor'),
    );
    // A GPU list's cursor on the hosts list: not its shape.
    const page = await get<Page>(small, `/api/v1/clusters/${CLUSTER}/gpus?limit=2`);
    assert.ok(
      (await bad(`/api/v1/clusters/${CLUSTER}/hosts?cursor=${String(page.next_cursor)}`)).includes(
        'invalid cursor',
      ),
    );
    assert.ok((await bad('/api/v1/search?q=x&kind=rack')).includes('kind'));
    assert.ok((await bad('/api/v1/search?q=')).length > 0);
    const missing = await small.gateway.app.inject({
      method: 'GET',
      url: '/api/v1/clusters/nope/gpus',
    });
    assert.equal(missing.statusCode, 404);
  });

  for (const [kind, url] of Object.entries(KINDS)) {
    it(`${kind}: the rows read for 20 requests are the same on 200 and 2,000 GPUs`, async () => {
      const read: number[] = [];
      for (const s of [small, large]) {
        // Once first (a name the directory learns of is read once, then kept).
        await get(s, url(s, 0));
        const before = requestRows(s);
        for (let i = 0; i < 20; i++) await get(s, url(s, i));
        read.push(requestRows(s) - before);
      }
      assert.equal(read[1], read[0], `${kind}: ${read.join(' vs ')} rows`);
    });
  }
});

describe('a gateway starting on a fleet', () => {
  it('is not ready until its fleet state is loaded; its first requests then read no fleet rows', async () => {
    let locker: pg.Client | undefined;
    const s = await serve(25, {
      before: async (url) => {
        locker = new pg.Client({ connectionString: url });
        await locker.connect();
        await locker.query('BEGIN');
        // The directory's first load waits behind this lock until it is released.
        await locker.query('LOCK TABLE gpus IN ACCESS EXCLUSIVE MODE');
      },
      during: async (gateway) => {
        for (let i = 0; i < 5; i++) {
          const res = await gateway.app.inject({ method: 'GET', url: '/readyz' });
          assert.equal(res.statusCode, 503, res.body);
          assert.match(res.body, /fleet-state: loading the fleet directory/);
          await sleep(100);
        }
        await locker?.query('COMMIT');
        await locker?.end();
      },
    });
    try {
      const before = requestRows(s);
      for (const url of [
        '/api/v1/overview',
        `/api/v1/clusters/${CLUSTER}`,
        `/api/v1/clusters/${CLUSTER}/hosts`,
        '/api/v1/search?q=node-001',
      ])
        await get(s, url);
      assert.equal(requestRows(s) - before, 0, 'fleet rows read by the first requests');
    } finally {
      await s.gateway.app.close();
      await s.feed.close();
      await s.store.close();
    }
  });
});

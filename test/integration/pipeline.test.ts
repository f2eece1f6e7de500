import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { SqlTokenStore } from '../../src/gateway/auth/sql-token-store.js';
import { postgresDatabase, until } from '../helpers/pipeline.js';
import { SAMPLE, sampleRows } from '../helpers/sample.js';
import { openSocket } from '../helpers/ws-client.js';

/**
 * The real sample through the distributed pipeline, every component its own process: streamer ->
 * etcd -> collector -> PostgreSQL; the gateway (not in the collector's process) answers REST and
 * GraphQL and pushes live data to a WebSocket client and a GraphQL subscription opened before the
 * streaming starts. Every client holds a read token, as a user's would (AUTH_MODE=token, the
 * gateway's default): REST and GraphQL in the Authorization header, the WebSocket as a browser
 * sends it (a `bearer.<token>` subprotocol), the subscription in connection_init.
 */
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  await etcd.release();
  await pg.release();
});

describe('distributed pipeline: streamer, collector and gateway processes', () => {
  it('serves the real sample over REST and GraphQL, and pushes every reading live exactly once', async () => {
    const cluster = uniqueCluster('pipe');
    const url = await pg.server.createDatabase(uniqueDatabase('pipe'));
    const port = await freePort();
    const env = {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: '/pipeline-test/queue',
      REGISTRY_PREFIX: `/pipeline-test/${cluster}`,
      LOG_LEVEL: 'info',
      PORT: String(port),
      HOST: '127.0.0.1',
      POLL_TIMEOUT: '500ms',
    };
    const migrate = await run(spawnNexus(['migrate'], env));
    assert.equal(migrate.code, 0, migrate.stderr);
    const tokens = new SqlTokenStore(postgresDatabase(url, 1));
    const { token } = await tokens.create({ name: 'pipeline', scope: 'read', expiresAt: null });
    await tokens.close();
    const auth = { authorization: `Bearer ${token}` };
    const gateway = spawnNexus(['gateway'], env);
    const collector = spawnNexus(['collector'], env);
    const gatewayDone = run(gateway);
    const collectorDone = run(collector);
    const http = `http://127.0.0.1:${port}`;
    try {
      assert.ok(
        await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000),
        'gateway not ready',
      );
      // Live clients, before any data flows.
      const socket = await openSocket(`ws://127.0.0.1:${port}/ws?cluster_id=${cluster}`, {
        protocols: ['nexus', `bearer.${token}`],
      });
      await socket.waitFor((m) => m.type === 'subscribed');
      const gqlReadings: {
        host_id: string;
        gpu_id: number;
        metric: string;
        timestamp: string;
        value: number;
      }[] = [];
      const client = createClient({
        url: `ws://127.0.0.1:${port}/graphql`,
        webSocketImpl: WebSocket,
        lazy: false,
        connectionParams: auth,
      });
      const subscribed = new Promise<void>((resolve, reject) => {
        client.subscribe<{ telemetry: (typeof gqlReadings)[number] }>(
          {
            query: `subscription { telemetry(cluster_id: "${cluster}") { host_id gpu_id metric timestamp value } }`,
          },
          {
            next: (v) => {
              if (v.data !== undefined && v.data !== null) gqlReadings.push(v.data.telemetry);
            },
            error: reject,
            complete: () => undefined,
          },
        );
        client.on('connected', () => resolve());
      });
      await subscribed;
      // Collectors only publish live data while a gateway listens: give the announcement a moment.
      await new Promise((r) => setTimeout(r, 1000));

      const streamer = await run(
        spawnNexus(['streamer', '--csv', SAMPLE], {
          ...env,
          LOOP_MODE: 'false',
          STREAM_INTERVAL: '0',
          BATCH_SIZE: '100',
        }),
      );
      assert.equal(streamer.code, 0, streamer.stderr);

      const wsCount = (): number =>
        socket.messages
          .filter((m) => m.type === 'telemetry')
          .reduce((n, m) => n + Number(m.count), 0);
      assert.ok(
        await until(async () => wsCount() >= 2470 && gqlReadings.length >= 2470, 60_000),
        `live: ws ${wsCount()}, graphql ${gqlReadings.length}`,
      );
      await new Promise((r) => setTimeout(r, 1000));
      const wsReadings = socket.messages
        .filter((m) => m.type === 'telemetry')
        .flatMap(
          (m) =>
            m.readings as {
              host_id: string;
              gpu_id: number;
              metric: string;
              timestamp: string;
              value: number;
            }[],
        );
      const rows = sampleRows();
      const key = (r: {
        host_id: string;
        gpu_id: number;
        metric: string;
        timestamp: string;
      }): string => `${r.host_id}|${r.gpu_id}|${r.metric}|${Date.parse(r.timestamp)}`;
      const want = new Map(
        rows.map((r) => [`${r.hostname}|${r.gpu}|${r.metric}|${r.timestamp}`, r.value]),
      );
      for (const [name, got] of [
        ['WebSocket', wsReadings],
        ['GraphQL subscription', gqlReadings],
      ] as const) {
        assert.equal(got.length, 2470, `${name}: ${got.length} readings`);
        assert.equal(new Set(got.map(key)).size, 2470, `${name}: a reading came twice`);
        for (const r of got) assert.equal(r.value, want.get(key(r)), `${name}: ${key(r)}`);
      }

      // REST answers.
      const json = async <T>(path: string): Promise<T> => {
        const res = await fetch(`${http}${path}`, { headers: auth });
        assert.equal(res.status, 200, path);
        return (await res.json()) as T;
      };
      const clusters = await json<{ clusters: { cluster_id: string }[] }>('/api/v1/clusters');
      assert.ok(clusters.clusters.some((c) => c.cluster_id === cluster));
      assert.equal((await json<{ count: number }>(`/api/v1/clusters/${cluster}/hosts`)).count, 31);
      assert.equal((await json<{ gpus: number }>(`/api/v1/clusters/${cluster}`)).gpus, 247);
      assert.equal(
        (await json<{ samples: number }>(`/api/v1/clusters/${cluster}/stats`)).samples,
        2470,
      );
      const temp = rows.find(
        (r) =>
          r.hostname === 'mtv5-dgx1-hgpu-031' && r.gpu === 0 && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
      );
      const latest = await json<{ readings: { value: number }[] }>(
        `/api/v1/telemetry/latest?cluster_id=${cluster}&host_id=mtv5-dgx1-hgpu-031&gpu_id=0&metric=DCGM_FI_DEV_GPU_TEMP`,
      );
      assert.equal(latest.readings[0]?.value, temp?.value);
      const power = rows.filter(
        (r) =>
          r.hostname === 'mtv5-dgx1-hgpu-010' &&
          r.gpu === 5 &&
          r.metric === 'DCGM_FI_DEV_POWER_USAGE',
      );
      const mean = power.reduce((s, r) => s + r.value, 0) / power.length;
      const series = await json<{ series: { points: { value: number; count: number }[] }[] }>(
        `/api/v1/telemetry?cluster_id=${cluster}&host_id=mtv5-dgx1-hgpu-010&gpu_id=5&metric=DCGM_FI_DEV_POWER_USAGE&from=2025-07-18T00:00:00Z&to=2025-07-19T00:00:00Z&step=1d&agg=avg`,
      );
      assert.ok(Math.abs((series.series[0]?.points[0]?.value ?? Number.NaN) - mean) < 1e-9);

      // The same answers through GraphQL.
      const gql = async <T>(query: string): Promise<T> => {
        const res = await fetch(`${http}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify({ query }),
        });
        const body = (await res.json()) as { data: T; errors?: unknown };
        assert.equal(res.status, 200, JSON.stringify(body.errors));
        return body.data;
      };
      const g = await gql<{
        clusters: { cluster_id: string; cluster_name: string; status: string }[];
      }>('{ clusters { cluster_id cluster_name status } }');
      assert.ok(g.clusters.some((c) => c.cluster_id === cluster && c.cluster_name === cluster));
      const gs = await gql<{ clusterStats: { samples: number; hosts: number; gpus: number } }>(
        `{ clusterStats(cluster_id: "${cluster}") { samples hosts gpus } }`,
      );
      assert.deepEqual(gs.clusterStats, { samples: 2470, hosts: 31, gpus: 247 });
      const gl = await gql<{ latest: { value: number }[] }>(
        `{ latest(cluster_id: "${cluster}", host_id: ["mtv5-dgx1-hgpu-031"], gpu_id: [0], metric: ["DCGM_FI_DEV_GPU_TEMP"]) { value } }`,
      );
      assert.equal(gl.latest[0]?.value, temp?.value);
      const gt = await gql<{
        telemetry: { cluster_id: string; timestamp: string; data: unknown }[];
      }>('{ telemetry { cluster_id timestamp data } }');
      assert.ok(gt.telemetry.length > 0);

      await socket.close();
      await client.dispose();
    } finally {
      gateway.kill('SIGTERM');
      collector.kill('SIGTERM');
      const [gw, co] = await Promise.all([gatewayDone, collectorDone]);
      assert.equal(gw.code, 0, gw.stderr);
      assert.equal(co.code, 0, co.stderr);
    }
  });
});

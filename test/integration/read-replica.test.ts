/**
 * Gateways on a read replica (DATABASE_READ_URL, docs/scaling.md): a real `nexus gateway` reads the
 * fleet and telemetry from a PostgreSQL 15 hot standby fed by streaming replication, while the
 * writes (the store here, collectors in production) go to the primary. What is checked: the
 * answers equal the primary's once replayed; a host written to the primary later appears through
 * the replica (the gateway's fleet state follows a standby); reads keep working with the primary
 * down (they are the replica's); the replica down makes the gateway not ready, saying which; the
 * lag gauge is exported.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { killHard, spawnNexus } from '../helpers/child.js';
import { sampleRecords } from '../helpers/gateway.js';
import { scalar, sqlStore, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { startPostgres, startStandby, type PgServer } from '../helpers/postgres.js';

const CLUSTER = 'replica-cluster';

interface Json {
  [k: string]: unknown;
}

async function getJson(url: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Json };
}

/** The standby has replayed everything the primary has written so far. */
async function caughtUp(primary: PgServer, standby: PgServer): Promise<boolean> {
  const lsn = await scalar<string>(primary.url, 'SELECT pg_current_wal_lsn()::text');
  return until(
    async () =>
      scalar<boolean>(standby.url, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]),
    30_000,
    100,
  );
}

/** Readings of one new host: two GPUs, two metrics, at one instant. */
function newHost(hostname: string, at: number): TelemetryRecord[] {
  return [0, 1].flatMap((gpu) =>
    ['DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_GPU_TEMP'].map((metric) => ({
      timestamp: at,
      metric,
      gpu,
      hostname,
      value: 40 + gpu,
      uuid: `GPU-replica-${hostname}-${gpu}`,
      model: 'NVIDIA H100 80GB HBM3',
      device: `nvidia${gpu}`,
      labels: {},
    })),
  );
}

describe('gateway on a read replica (DATABASE_READ_URL)', () => {
  // Set by before(); after() cleans up whatever it got to.
  let primaryOrNone: PgServer | undefined;
  let standbyOrNone: PgServer | undefined;
  let storeOrNone: SqlStore | undefined;
  let gateway: ChildProcess | undefined;
  const set = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what} did not start`);
    return v;
  };
  const primary = (): PgServer => set(primaryOrNone, 'the primary');
  const standby = (): PgServer => set(standbyOrNone, 'the standby');
  const store = (): SqlStore => set(storeOrNone, 'the store');
  let http: string;
  let lastTime = 0;

  before(async () => {
    primaryOrNone = await startPostgres();
    storeOrNone = sqlStore(primary().url);
    await store().migrate();
    const records = sampleRecords();
    await store().write(CLUSTER, records);
    lastTime = Math.max(...records.map((r) => r.timestamp));
    standbyOrNone = await startStandby(primary());
    const port = await freePort();
    http = `http://127.0.0.1:${port}`;
    gateway = spawnNexus(['gateway'], {
      DATABASE_URL: primary().url,
      DATABASE_READ_URL: standby().url,
      ENABLE_NEXUS: 'false',
      AUTH_MODE: 'none',
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: '0',
      LOG_LEVEL: 'warn',
    });
    gateway.stdout?.resume();
    gateway.stderr?.resume();
    assert.ok(
      await until(async () => (await fetch(`${http}/readyz`)).status === 200, 60_000),
      'the gateway became ready',
    );
  });

  after(async () => {
    if (gateway !== undefined) await killHard(gateway);
    await storeOrNone?.close();
    await standbyOrNone?.destroy();
    await primaryOrNone?.destroy();
  });

  it('answers what the primary holds, read from the standby', async () => {
    assert.ok(await caughtUp(primary(), standby()));
    const gpus = await scalar(
      primary().url,
      `SELECT count(*)::int FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       WHERE c.name = $1 AND g.gpu_instance_id = -1`,
      [CLUSTER],
    );
    const hosts = await scalar(primary().url, 'SELECT count(*)::int FROM hosts');
    const cluster = await getJson(`${http}/api/v1/clusters/${CLUSTER}`);
    assert.equal(cluster.status, 200);
    assert.equal(cluster.body.gpus, gpus);
    assert.equal(cluster.body.hosts, hosts);
    const latest = await getJson(`${http}/api/v1/telemetry/latest?cluster_id=${CLUSTER}`);
    assert.equal(latest.status, 200);
    assert.ok((latest.body.count as number) > 0);
  });

  it('shows a host written to the primary after the gateway started', async () => {
    await store().write(CLUSTER, newHost('replica-new-host', lastTime + 10_000));
    assert.ok(await caughtUp(primary(), standby()));
    assert.ok(
      await until(async () => {
        const r = await getJson(`${http}/api/v1/clusters/${CLUSTER}/hosts/replica-new-host`);
        return r.status === 200 && (r.body.gpus as unknown[]).length === 2;
      }, 20_000),
      'the new host and its two GPUs appeared through the replica',
    );
  });

  it('exports the replica lag', async () => {
    let text = '';
    const found = await until(async () => {
      text = await (await fetch(`${http}/metrics`)).text();
      return /^nexus_gateway_read_replica_lag_seconds(\{[^}]*\})? \d/m.test(text);
    }, 20_000);
    const lines = text.split('\n').filter((l) => l.startsWith('nexus_gateway_read_replica'));
    assert.ok(found, `no lag gauge on /metrics: ${lines.join(' | ') || 'none'}`);
  });

  it('keeps reading with the primary down: the reads are the replica’s', async () => {
    await primary().stop();
    try {
      const hosts = await getJson(`${http}/api/v1/clusters/${CLUSTER}/hosts/replica-new-host`);
      assert.equal(hosts.status, 200);
      const gpu = await getJson(`${http}/api/v1/clusters/${CLUSTER}/hosts/replica-new-host/gpus/1`);
      assert.equal(gpu.status, 200);
      assert.equal(gpu.body.uuid, 'GPU-replica-replica-new-host-1');
    } finally {
      await primary().start();
    }
  });

  it('is not ready while the replica is down, and says so', async () => {
    await standby().stop();
    try {
      assert.ok(await until(async () => (await fetch(`${http}/readyz`)).status === 503, 20_000));
      const health = await getJson(`${http}/health`);
      assert.equal(health.status, 503);
      assert.match(JSON.stringify(health.body), /read-replica/);
    } finally {
      await standby().start();
    }
    assert.ok(await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000));
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { createEtcdClient } from '../../src/etcd/client.js';
import { EtcdFeed } from '../../src/registry/etcd/etcd-feed.js';
import { run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { sampleRecords } from '../helpers/gateway.js';
import { sqlStore, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

/**
 * The gateway under hostile GraphQL and WebSocket load (issue 13): a real `nexus gateway` process
 * on PostgreSQL and etcd, 1,500 WebSocket connections with wide filters that stop reading while
 * live readings pour in, and hundreds of GraphQL requests at once, costly ones, alias and
 * fragment attacks among them. It must stay within its memory bound (MEMORY_BOUND: the peak
 * resident set, tsx loader included), keep /healthz answering within a second, refuse what is over
 * its limits with 429 or 503 and Retry-After (or a close code), and be ready again afterwards.
 *
 * @test-alone: "/healthz within a second" is about the gateway under this file's load; beside
 * another test file's load on the same 2 cores it took 1,018 ms once (scripts/test.ts).
 */
const MEMORY_BOUND = 512 * 1024 * 1024;
/** Polls a URL every 100 ms until SIGTERM, then prints the slowest answer and the failures. */
const HEALTH_PROBE = `
let slowest = 0, failures = 0, stop = false;
process.on('SIGTERM', () => { stop = true; });
(async () => {
  while (!stop) {
    const t = performance.now();
    const ok = await fetch(process.argv[1], { signal: AbortSignal.timeout(5000) }).then((r) => r.status === 200, () => false);
    slowest = Math.max(slowest, performance.now() - t);
    if (!ok) failures++;
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write(JSON.stringify({ slowest, failures }));
})();
`;
const CONNECTIONS = 1500;
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  await etcd.release();
  await pg.release();
});

function status(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
    readFileSync(`/proc/${pid}/status`, 'utf8'),
  );
  return Number(m?.[1] ?? 0) * 1024;
}

/** A fleet of `hosts` x 8 GPUs x 10 metrics over `instants` instants, 10 s apart. */
function fleet(hosts: number, instants: number, t0: number): TelemetryRecord[] {
  const sample = sampleRecords().slice(0, 10);
  const out: TelemetryRecord[] = [];
  for (let t = 0; t < instants; t++)
    for (let h = 0; h < hosts; h++)
      for (let g = 0; g < 8; g++)
        for (const s of sample)
          out.push({
            ...s,
            hostname: `load-${h}`,
            gpu: g,
            uuid: `GPU-load-${h}-${g}`,
            timestamp: t0 + t * 10_000,
            value: (t * 7 + h + g) % 100,
          });
  return out;
}

describe('gateway overload', { timeout: 240_000 }, () => {
  it('stays within its memory bound, answers /healthz within a second, and refuses what is over its limits', async () => {
    const cluster = uniqueCluster('overload');
    const url = await pg.server.createDatabase(uniqueDatabase('overload'));
    const store = sqlStore(url);
    await store.migrate();
    const t0 = Date.now() - 3_600_000;
    const readings = fleet(25, 40, t0); // 80,000 readings
    for (let i = 0; i < readings.length; i += 20_000)
      await store.write(cluster, readings.slice(i, i + 20_000));
    await store.close();

    const port = await freePort();
    const prefix = `/overload-${cluster}`;
    const child = spawnNexus(['gateway'], {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      REGISTRY_PREFIX: prefix,
      CLUSTER_ID: cluster,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      // Clients come through a "proxy": X-Forwarded-For names them.
      TRUST_PROXY: 'true',
      API_MAX_CONCURRENT: '8',
      API_MAX_QUEUED: '64',
      API_MAX_PER_ADDRESS: '48',
      // Clients that stop reading are closed (4008) after 5 s instead of 30.
      WS_SLOW_CLIENT: '5s',
      // The admission limits and the memory bound under load, not authentication (tested in
      // gateway-auth.test.ts) or the rate limits, which would refuse most of this load first.
      AUTH_MODE: 'none',
      RATE_LIMIT_PER_MINUTE: '0',
      // The gateway's own memory bound, as an operator sets it: past 384 MB of heap it answers
      // 503 (health and metrics excepted). The gateway also bounds V8's heap growth itself
      // (src/cli/heap.ts): before it did, garbage of this load reached 3-4 times the live data
      // and the peak was 440-525 MB (flaky against MEMORY_BOUND in clean-clone CI runs); after,
      // 270-315 MB.
      MAX_HEAP_USED: String(384 * 1024 * 1024),
    });
    let childLog = '';
    const keep = (d: Buffer): void => {
      childLog = (childLog + d.toString()).slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const done = run(child);
    const pid = child.pid ?? 0;
    const http = `http://127.0.0.1:${port}`;
    const sockets: WebSocket[] = [];
    const client = createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 5000 });
    const collector = new EtcdFeed({
      client,
      prefix,
      instance: 'load-collector',
      ttlMs: 30_000,
      leaseTtlMs: 10_000,
      logger: silentLogger(),
    });
    let stop = false;
    try {
      assert.ok(
        await until(
          async () => (await fetch(`${http}/readyz`).catch(() => null))?.status === 200,
          60_000,
        ),
        `the gateway never got ready: ${childLog}`,
      );
      const startRss = status(pid, 'VmRSS');

      // /healthz every 100 ms, timed by a process of its own (the load generators here would
      // otherwise delay the probe, not the gateway).
      const probe = spawn(process.execPath, ['-e', HEALTH_PROBE, `${http}/healthz`], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let probeOut = '';
      probe.stdout.on('data', (d: Buffer) => (probeOut += d.toString()));
      const health = new Promise<void>((resolve) => probe.once('exit', () => resolve()));

      // Live readings: a collector announcing 2,000 readings every 400 ms (5,000 a second) (wide filters match all).
      const feed = (async () => {
        let n = 0;
        while (!stop) {
          const batch = fleet(25, 1, Date.now())
            .slice(0, 2000)
            .map((r) => ({ ...r, value: n }));
          await collector.publish(cluster, batch).catch(() => undefined);
          n++;
          await sleep(400);
        }
      })();

      // 1,500 WebSocket connections with wide filters, from 30 addresses; they stop reading.
      const closes = new Map<number, number>();
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async (_, i) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, {
            headers: { 'x-forwarded-for': `10.0.${i % 30}.1` },
          });
          sockets.push(ws);
          ws.on('error', () => undefined);
          ws.once('close', (code) => closes.set(code, (closes.get(code) ?? 0) + 1));
          // Welcomed (then it stops reading), or refused with a close code.
          const welcomed = await new Promise<boolean>((r) => {
            ws.once('message', () => r(true));
            ws.once('close', () => r(false));
          });
          if (welcomed) (ws as unknown as { _socket?: { pause(): void } })._socket?.pause();
        }),
      );
      // The gateway holds at most WS_MAX_CONNECTIONS (1,000) and closed the rest with 1013.
      const wsMetrics = await (await fetch(`${http}/metrics`)).text();
      assert.ok(
        (metricSum(wsMetrics, 'nexus_websocket_clients') ?? 0) <= 1000,
        `${metricSum(wsMetrics, 'nexus_websocket_clients')} connections open`,
      );
      assert.ok(
        /^nexus_websocket_refused_total\{[^}]*code="1013"[^}]*\} ([5-9]\d\d|\d{4,})$/m.test(
          wsMetrics,
        ),
        `the connections over WS_MAX_CONNECTIONS were not refused: ${wsMetrics.match(/^nexus_websocket_refused_total.*$/m)?.[0] ?? 'none'}`,
      );
      assert.ok((closes.get(1013) ?? 0) > 0, `no client saw 1013: ${JSON.stringify([...closes])}`);

      // GraphQL: waves of 120 requests at once, costly and hostile ones mixed.
      const queries = [
        '{ telemetry(limit: 5000) { cluster_id host_id gpu_id metric timestamp value } }',
        `{ ${Array.from({ length: 490 }, (_, i) => `a${i}: latest { value }`).join(' ')} }`,
        `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: latest { value }`).join(' ')} }`,
        `{ clusters { hosts { gpus { latest { metric value } } } } }`,
        '{ __schema { types { name fields { name args { name } type { name ofType { name } } } } } }',
        `{ series(cluster_id: "${cluster}", from: "-2h", step: "1m") { series { points { value } } } }`,
        'query($l: Int = 10000) { telemetry(limit: $l) { value } }',
      ];
      const seen = new Map<number, number>();
      let retryAfter = 0;
      let otherErrors = 0;
      for (let wave = 0; wave < 6; wave++) {
        await Promise.all(
          Array.from({ length: 120 }, async (_, i) => {
            const res = await fetch(`${http}/graphql`, {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                // Half from one busy address (past API_MAX_PER_ADDRESS: 429), half from others.
                'x-forwarded-for': i < 60 ? '10.1.0.1' : `10.1.1.${i % 8}`,
              },
              body: JSON.stringify({ query: queries[(wave + i) % queries.length] }),
              signal: AbortSignal.timeout(60_000),
            }).catch(() => undefined);
            if (res === undefined) {
              otherErrors++;
              return;
            }
            await res.arrayBuffer();
            seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
            if (
              (res.status === 429 || res.status === 503) &&
              res.headers.get('retry-after') !== null
            )
              retryAfter++;
          }),
        );
      }
      await sleep(2000);
      const peak = status(pid, 'VmHWM');
      stop = true;
      probe.kill('SIGTERM');
      await Promise.all([health, feed]);
      const { slowest, failures: healthFailures } = JSON.parse(probeOut) as {
        slowest: number;
        failures: number;
      };

      const statuses = JSON.stringify([...seen].sort());
      process.stdout.write(
        `overload: peak RSS ${Math.round(peak / 1048576)} MB (start ${Math.round(startRss / 1048576)} MB), /healthz slowest ${Math.round(slowest)} ms, GraphQL ${statuses}, WebSocket closes ${JSON.stringify([...closes])}\n`,
      );

      assert.equal(otherErrors, 0, 'every GraphQL request got an answer');
      assert.ok((seen.get(429) ?? 0) > 0, `no 429: ${statuses}`);
      assert.ok((seen.get(503) ?? 0) > 0, `no 503: ${statuses}`);
      assert.equal(retryAfter, (seen.get(429) ?? 0) + (seen.get(503) ?? 0), 'Retry-After on each');
      for (const s of seen.keys())
        assert.ok([200, 400, 429, 503].includes(s), `status ${s} among ${statuses}`);
      assert.equal(healthFailures, 0, '/healthz failed');
      assert.ok(slowest < 1000, `/healthz took ${Math.round(slowest)} ms`);
      assert.ok(
        peak < MEMORY_BOUND,
        `peak RSS ${Math.round(peak / 1048576)} MB (start ${Math.round(startRss / 1048576)} MB)`,
      );
      for (const ws of sockets) ws.terminate();
      assert.ok(
        await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000),
        'not ready after the load',
      );
      const after = await fetch(`${http}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"query":"{ clusters { cluster_id } }"}',
      });
      assert.equal(after.status, 200);
    } finally {
      stop = true;
      for (const ws of sockets) ws.terminate();
      await collector.close();
      client.close();
      child.kill('SIGTERM');
      await done;
    }
  });
});

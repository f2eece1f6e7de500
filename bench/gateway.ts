import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import WebSocket from 'ws';
import { silentLogger } from '../src/core/logger.js';
import type { TelemetryRecord } from '../src/core/record.js';
import { SqlStore } from '../src/store/sql-store.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';
import { freePort } from '../test/helpers/ports.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { ROOT, log, table, type Section } from './lib.js';

const BENCH_DIR = join(ROOT, '.data', 'bench');
const HOSTS = 64;
const GPUS = 8;
const METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_SM_CLOCK',
];

export interface LoadResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

/** autocannon in its own process: requests/s and latency percentiles (ms). */
export async function autocannon(
  url: string,
  connections: number,
  seconds: number,
): Promise<LoadResult> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      join(ROOT, 'node_modules', '.bin', 'autocannon'),
      ['-c', String(connections), '-d', String(seconds), '-j', url],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let s = '';
    child.stdout.on('data', (d: Buffer) => (s += d.toString()));
    child.on('exit', (code) =>
      code === 0 ? resolve(s) : reject(new Error(`autocannon exited ${code}`)),
    );
  });
  const r = JSON.parse(out) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
  };
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx,
  };
}

/** A bare Fastify route in its own process: the ceiling the API is compared with. */
export async function bareFastify(): Promise<{ url: string; stop: () => void }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const f=require('fastify')();f.get('/',async()=>({ok:true}));f.listen({port:${port},host:'127.0.0.1'})`,
    ],
    { cwd: ROOT, stdio: 'ignore' },
  );
  await waitHttp(`http://127.0.0.1:${port}/`);
  return { url: `http://127.0.0.1:${port}/`, stop: () => child.kill() };
}

export async function waitHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One hour of 10-second readings for HOSTS x GPUS GPUs, ending now. */
export async function loadHour(url: string, cluster: string): Promise<number> {
  const store = new SqlStore({
    db: postgresDatabase(url, 6),
    logger: silentLogger(),
    writeMethod: 'unnest',
    retentionDays: 0,
    rollupRetentionDays: 0,
    partitionAheadDays: 1,
  });
  await store.migrate();
  const end = Math.floor(Date.now() / 10_000) * 10_000;
  let n = 0;
  const writes: Promise<unknown>[] = [];
  for (let step = 360; step > 0; step--) {
    const t = end - step * 10_000;
    const batch: TelemetryRecord[] = [];
    for (let h = 0; h < HOSTS; h++) {
      for (let g = 0; g < GPUS; g++) {
        for (const [i, metric] of METRICS.entries()) {
          batch.push({
            timestamp: t,
            metric,
            gpu: g,
            hostname: `node-${String(h).padStart(3, '0')}`,
            value: (h * 7 + g * 3 + i + step) % 100,
            uuid: `GPU-${h}-${g}`,
            labels: {},
          });
        }
      }
    }
    writes.push(store.write(cluster, batch));
    n += batch.length;
    if (writes.length >= 4) await writes.shift();
  }
  await Promise.all(writes);
  await store.close();
  // The steady state autovacuum would reach: no dead versions of the latest and rollup rows.
  const db = postgresDatabase(url, 1);
  await db.query('VACUUM ANALYZE');
  await db.close();
  return n;
}

export async function startGateway(
  env: Record<string, string>,
): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'gateway'], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', PORT: String(port), HOST: '127.0.0.1', ...env },
    stdio: 'ignore',
  });
  await waitHttp(`http://127.0.0.1:${port}/readyz`);
  return { url: `http://127.0.0.1:${port}`, proc };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Live push latency, commit -> client: `clients` WebSocket clients on the gateway while a collector
 * stores a steady stream; each message's `committed_at` (the collector's clock, same machine) is
 * compared with its arrival.
 */
export async function wsLatency(input: {
  gateway: string;
  etcd: string;
  db: string;
  cluster: string;
  clients: number;
  seconds: number;
  recordsPerSecond: number;
}): Promise<{ p50: number; p99: number; messages: number }> {
  const env = {
    ...process.env,
    LOG_LEVEL: 'warn',
    ETCD_ENDPOINTS: input.etcd,
    DATABASE_URL: input.db,
    CLUSTER_ID: input.cluster,
  };
  const collector = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'collector'], {
    cwd: ROOT,
    env,
    stdio: 'ignore',
  });
  const latencies: number[] = [];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < input.clients; i++) {
    const ws = new WebSocket(
      `${input.gateway.replace(/^http/, 'ws')}/ws?cluster_id=${input.cluster}`,
    );
    ws.on('message', (data: Buffer) => {
      const s = data.toString();
      if (!s.startsWith('{"type":"telemetry"')) return;
      const at = /"committed_at":"([^"]+)"/.exec(s)?.[1];
      if (at !== undefined) latencies.push(Date.now() - Date.parse(at));
    });
    sockets.push(ws);
    await new Promise((r) => ws.once('open', r));
  }
  await new Promise((r) => setTimeout(r, 2000));
  const batch = 100;
  const streamer = spawn(
    process.execPath,
    [
      join(ROOT, 'dist', 'cli', 'main.js'),
      'streamer',
      '--csv',
      join(ROOT, 'samples', 'dcgm_metrics_20250718_134233.csv'),
    ],
    {
      cwd: ROOT,
      env: {
        ...env,
        LOOP_MODE: 'true',
        TIMESTAMP_MODE: 'live',
        BATCH_SIZE: String(batch),
        STREAM_INTERVAL: `${Math.round((1000 * batch) / input.recordsPerSecond)}ms`,
        PROGRESS: 'off',
      },
      stdio: 'ignore',
    },
  );
  await new Promise((r) => setTimeout(r, 3000));
  latencies.length = 0; // warm-up done
  await new Promise((r) => setTimeout(r, input.seconds * 1000));
  const sample = [...latencies].sort((a, b) => a - b);
  streamer.kill('SIGTERM');
  collector.kill('SIGTERM');
  for (const s of sockets) s.terminate();
  await Promise.all([streamer, collector].map((p) => new Promise((r) => p.once('exit', r))));
  return { p50: percentile(sample, 50), p99: percentile(sample, 99), messages: sample.length };
}

export async function benchGateway(options: {
  clients: number;
  seconds: number;
}): Promise<Section> {
  let pg: PgServer | undefined;
  let etcd: EtcdServer | undefined;
  let gateway: ChildProcess | undefined;
  let bare: { stop: () => void } | undefined;
  try {
    [pg, etcd] = await Promise.all([
      startPostgres({ durable: true, baseDir: BENCH_DIR }),
      startEtcd({ baseDir: BENCH_DIR }),
    ]);
    const db = await pg.createDatabase('gateway_bench');
    const cluster = 'bench-cluster';
    log('gateway bench: loading one hour of readings');
    const loaded = await loadHour(db, cluster);
    const gw = await startGateway({
      DATABASE_URL: db,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
    });
    gateway = gw.proc;
    const b = await bareFastify();
    bare = b;
    const runs: [string, LoadResult][] = [];
    runs.push(['bare Fastify route (ceiling)', await autocannon(b.url, 64, options.seconds)]);
    runs.push([
      '/api/v1/telemetry/latest, one GPU (5 readings)',
      await autocannon(
        `${gw.url}/api/v1/telemetry/latest?cluster_id=${cluster}&host_id=node-007&gpu_id=3`,
        64,
        options.seconds,
      ),
    ]);
    runs.push([
      '/api/v1/telemetry/latest, one host (40 readings)',
      await autocannon(
        `${gw.url}/api/v1/telemetry/latest?cluster_id=${cluster}&host_id=node-007`,
        64,
        options.seconds,
      ),
    ]);
    runs.push([
      `/api/v1/telemetry/latest, whole cluster (${HOSTS * GPUS * METRICS.length} readings)`,
      await autocannon(
        `${gw.url}/api/v1/telemetry/latest?cluster_id=${cluster}`,
        64,
        options.seconds,
      ),
    ]);
    runs.push([
      '1-hour single-GPU metric query (360 readings)',
      await autocannon(
        `${gw.url}/api/v1/telemetry?cluster_id=${cluster}&host_id=node-007&gpu_id=3&metric=DCGM_FI_DEV_GPU_TEMP&from=-1h&limit=1000`,
        64,
        options.seconds,
      ),
    ]);
    for (const [k, r] of runs) log(`${k}: ${Math.round(r.rps)} req/s, p99 ${r.p99} ms`);
    const ceiling = runs[0]?.[1].rps ?? Number.NaN;
    const live = await wsLatency({
      gateway: gw.url,
      etcd: etcd.endpoint,
      db,
      cluster: 'live-bench',
      clients: options.clients,
      seconds: options.seconds,
      recordsPerSecond: 5000,
    });
    log(
      `WebSocket commit -> client: p50 ${live.p50} ms, p99 ${live.p99} ms over ${live.messages} messages`,
    );
    return {
      id: 'gateway',
      title: 'Gateway: REST and live push',
      body: [
        `${loaded.toLocaleString('en-US')} readings (one hour of ${HOSTS * GPUS} GPUs x ${METRICS.length} metrics every 10 s) in PostgreSQL on disk; the gateway as its own process (\`node dist/cli/main.js gateway\`); load from autocannon in a separate process, 64 connections, ${options.seconds} s per row; the bare Fastify ceiling is a route returning \`{"ok":true}\` in another process on the same machine.`,
        '',
        table(
          ['request', 'requests/s', 'p50 ms', 'p99 ms', 'errors', 'ratio to bare Fastify'],
          runs.map(([k, r]) => [
            k,
            r.rps,
            r.p50,
            r.p99,
            r.errors,
            `${((r.rps / ceiling) * 100).toFixed(0)} %`,
          ]),
        ),
        '',
        `Live push: ${options.clients} WebSocket clients subscribed to a cluster while a collector process stores a steady 5,000 readings/s (the real sample, looped with live timestamps); latency from the collector's commit to the client's receipt, through the commit feed in etcd:`,
        '',
        table(
          ['clients', 'messages measured', 'p50 ms', 'p99 ms'],
          [[options.clients, live.messages, live.p50, live.p99]],
        ),
      ].join('\n'),
    };
  } finally {
    bare?.stop();
    gateway?.kill('SIGTERM');
    await etcd?.destroy();
    await pg?.destroy();
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import WebSocket from 'ws';
import { SqlTokenStore } from '../src/gateway/auth/sql-token-store.js';
import { readDcgmCsv, readHeader } from '../src/streamer/csv/reader.js';
import type { TelemetryRecord } from '../src/core/record.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';
import { freePort } from '../test/helpers/ports.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import {
  benchStore,
  BENCH_DIR,
  ROOT,
  exited,
  log,
  peakRssMb,
  percentile,
  spawnNexus,
  stopChild,
  table,
  type Section,
} from './lib.js';

const SAMPLE = join(ROOT, 'samples', 'dcgm_metrics_20250718_134233.csv');
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
  /** A bearer token each request carries. */
  token?: string,
): Promise<LoadResult> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      join(ROOT, 'node_modules', '.bin', 'autocannon'),
      [
        '-c',
        String(connections),
        '-d',
        String(seconds),
        ...(token === undefined ? [] : ['-H', `authorization=Bearer ${token}`]),
        '-j',
        url,
      ],
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
  const store = benchStore(postgresDatabase(url, 6), { partitionAheadMs: 3_600_000 });
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
  // As the collectors' rollup job would within a second.
  await store.rollUp();
  await store.close();
  // The steady state autovacuum would reach: no dead versions of the latest and rollup rows.
  const db = postgresDatabase(url, 1);
  await db.query('VACUUM ANALYZE');
  await db.close();
  return n;
}

/**
 * `nexus gateway` on env.DATABASE_URL (migrated). With auth 'token' (as deployed) it makes a read
 * token the load carries; with 'none', no authentication. Either way without rate limits: one
 * token, or one address, carries the whole load of a bench, which RATE_LIMIT_PER_MINUTE (1,200 a
 * minute) would refuse nearly all of.
 */
export async function startGateway(
  env: Record<string, string>,
  auth: 'token' | 'none',
): Promise<{ url: string; proc: ChildProcess; token: string | undefined }> {
  let token: string | undefined;
  if (auth === 'token') {
    const tokens = new SqlTokenStore(postgresDatabase(env.DATABASE_URL ?? '', 1));
    token = (await tokens.create({ scope: 'read', expiresAt: null })).token;
    await tokens.close();
  }
  const port = await freePort();
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'gateway'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      PORT: String(port),
      HOST: '127.0.0.1',
      AUTH_MODE: auth,
      RATE_LIMIT_PER_MINUTE: '0',
      ...env,
    },
    stdio: 'ignore',
  });
  await waitHttp(`http://127.0.0.1:${port}/readyz`);
  return { url: `http://127.0.0.1:${port}`, proc, token };
}

/**
 * The WebSocket clients, in their own process (`node --import tsx bench/gateway.ts ws-clients
 * <ws url> <n> [host,host,...]`) so that the gateway is what is measured: opens `n` sockets (with
 * hosts, client i subscribes to host i mod hosts only), prints "ready", then on stdin "reset"
 * forgets what it measured so far and "report" prints the latencies' p50, p99 and count as JSON
 * and exits. Latency: Date.now() at receipt minus the message's `committed_at` (read from the
 * head of the message, the readings are not parsed).
 */
async function wsClientsMain(url: string, n: number, hosts: readonly string[]): Promise<void> {
  const latencies: number[] = [];
  let dropped = 0;
  let closed = 0;
  let flowing = false;
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i++) {
    const host = hosts.length === 0 ? undefined : hosts[i % hosts.length];
    // The read token as a browser sends it (a subprotocol), when the gateway asks for one.
    const token = process.env.NEXUS_BENCH_TOKEN ?? '';
    const ws = new WebSocket(
      host === undefined ? url : `${url}&host_id=${encodeURIComponent(host)}`,
      token === '' ? [] : ['nexus', `bearer.${token}`],
    );
    ws.on('message', (data: Buffer) => {
      const head = data.subarray(0, 300).toString('latin1');
      if (head.startsWith('{"type":"dropped"')) {
        dropped += Number(/"count":(\d+)/.exec(head)?.[1] ?? 0);
      }
      if (!head.startsWith('{"type":"telemetry"')) return;
      const at = /"committed_at":"([^"]+)"/.exec(head)?.[1];
      if (at === undefined) return;
      latencies.push(Date.now() - Date.parse(at));
      if (!flowing) {
        flowing = true;
        process.stdout.write('flowing\n');
      }
    });
    ws.on('close', () => closed++);
    ws.on('error', () => undefined);
    sockets.push(ws);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
  }
  process.stdout.write('ready\n');
  let input = '';
  process.stdin.on('data', (d: Buffer) => {
    input += d.toString();
    if (input.includes('reset')) {
      input = input.replace('reset', '');
      latencies.length = 0;
      dropped = 0;
    }
    if (input.includes('report')) {
      const sorted = [...latencies].sort((x, y) => x - y);
      const report = {
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        messages: sorted.length,
        dropped,
        closed,
      };
      for (const ws of sockets) ws.terminate();
      process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
    }
  });
}

if (process.argv[2] === 'ws-clients' && process.argv[1] === import.meta.filename) {
  const hosts = process.argv[5];
  await wsClientsMain(
    process.argv[3] ?? '',
    Number(process.argv[4]),
    hosts === undefined || hosts === '' ? [] : hosts.split(','),
  );
}

export interface LiveResult {
  readonly p50: number;
  readonly p99: number;
  readonly messages: number;
  /** Readings the gateway dropped for slow clients (its `dropped` notices). */
  readonly dropped: number;
  /** Sockets the gateway closed (too slow) during the run. */
  readonly closed: number;
}

/** Starts the client process; resolves once every client is connected. */
async function startWsClients(
  url: string,
  n: number,
  hosts: readonly string[],
  token: string | undefined,
): Promise<{
  proc: ChildProcess;
  /** Resolves once the first live message has reached a client. */
  flowing: () => Promise<void>;
  reset: () => void;
  report: () => Promise<LiveResult>;
}> {
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bench', 'gateway.ts'),
      'ws-clients',
      url,
      String(n),
      hosts.join(','),
    ],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, NEXUS_BENCH_TOKEN: token ?? '' },
    },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 120_000;
  while (!out.includes('ready\n')) {
    if (proc.exitCode !== null) throw new Error('the WebSocket clients exited');
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error('the WebSocket clients did not connect');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    flowing: async () => {
      for (const until = Date.now() + 120_000; !out.includes('flowing\n');) {
        if (proc.exitCode !== null) throw new Error('the WebSocket clients exited');
        if (Date.now() > until) throw new Error('no live message reached the clients');
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    reset: () => proc.stdin.write('reset\n'),
    report: async () => {
      out = '';
      proc.stdin.write('report\n');
      const timeout = setTimeout(() => proc.kill('SIGKILL'), 60_000);
      await exited(proc);
      clearTimeout(timeout);
      const line = out.trim();
      if (line === '') throw new Error('the WebSocket clients did not report');
      return JSON.parse(line) as LiveResult;
    },
  };
}

/** The hostnames of the real sample. */
async function sampleHosts(): Promise<string[]> {
  const { header, end, line } = await readHeader(SAMPLE);
  const hosts = new Set<string>();
  for await (const c of readDcgmCsv(header, { path: SAMPLE, startOffset: end, startLine: line })) {
    for (const r of c.records) hosts.add(r.record.hostname);
  }
  return [...hosts];
}

/**
 * Live push latency, commit -> client: `clients` WebSocket clients (in their own process, each
 * subscribed to the whole cluster, or with `hosts` to one host each) connect to the gateway, then a
 * collector stores a steady stream (the real sample, looped with live timestamps); each message's
 * `committed_at` (the collector's clock, same machine) is compared with its arrival.
 */
export async function wsLatency(input: {
  gateway: string;
  etcd: string;
  db: string;
  cluster: string;
  clients: number;
  hosts: readonly string[];
  seconds: number;
  recordsPerSecond: number;
  token: string | undefined;
}): Promise<LiveResult & { collectorRssMb: number; streamerRssMb: number }> {
  const env = {
    LOG_LEVEL: 'warn',
    ETCD_ENDPOINTS: input.etcd,
    DATABASE_URL: input.db,
    CLUSTER_ID: input.cluster,
  };
  const procs: ChildProcess[] = [];
  try {
    const clients = await startWsClients(
      `${input.gateway.replace(/^http/, 'ws')}/ws?cluster_id=${input.cluster}`,
      input.clients,
      input.hosts,
      input.token,
    );
    procs.push(clients.proc);
    const collector = spawnNexus(['collector'], env);
    procs.push(collector);
    const batch = 100;
    const streamer = spawnNexus(['streamer', '--csv', SAMPLE], {
      ...env,
      LOOP_MODE: 'true',
      TIMESTAMP_MODE: 'live',
      BATCH_SIZE: String(batch),
      STREAM_INTERVAL: `${Math.round((1000 * batch) / input.recordsPerSecond)}ms`,
    });
    procs.push(streamer);
    await clients.flowing();
    await new Promise((r) => setTimeout(r, 3000));
    clients.reset(); // warm-up done
    await new Promise((r) => setTimeout(r, input.seconds * 1000));
    const streamerRssMb = peakRssMb(streamer.pid);
    const collectorRssMb = peakRssMb(collector.pid);
    const r = await clients.report();
    log(
      `WebSocket, ${input.clients} clients${input.hosts.length > 0 ? ' on one host each' : ' on the cluster'}: p50 ${r.p50} ms, p99 ${r.p99} ms over ${r.messages} messages, ${r.dropped} readings dropped, ${r.closed} disconnected`,
    );
    return { ...r, collectorRssMb, streamerRssMb };
  } finally {
    for (const p of procs) await stopChild(p, p === procs[0] ? 'SIGKILL' : 'SIGTERM');
  }
}

export async function benchGateway(options: {
  /** WebSocket clients subscribed to one host each (the goal row: 1,000). */
  clients: number;
  /** WebSocket clients subscribed to the whole cluster (each receives every reading). */
  clusterClients: number;
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
    // The API as deployed: every request carries a read token (AUTH_MODE=token).
    const gw = await startGateway(
      { DATABASE_URL: db, ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: cluster },
      'token',
    );
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
        gw.token,
      ),
    ]);
    runs.push([
      '/api/v1/telemetry/latest, one host (40 readings)',
      await autocannon(
        `${gw.url}/api/v1/telemetry/latest?cluster_id=${cluster}&host_id=node-007`,
        64,
        options.seconds,
        gw.token,
      ),
    ]);
    runs.push([
      `/api/v1/telemetry/latest, whole cluster (${HOSTS * GPUS * METRICS.length} readings)`,
      await autocannon(
        `${gw.url}/api/v1/telemetry/latest?cluster_id=${cluster}`,
        64,
        options.seconds,
        gw.token,
      ),
    ]);
    runs.push([
      '1-hour single-GPU metric query (360 readings)',
      await autocannon(
        `${gw.url}/api/v1/telemetry?cluster_id=${cluster}&host_id=node-007&gpu_id=3&metric=DCGM_FI_DEV_GPU_TEMP&from=-1h&limit=1000`,
        64,
        options.seconds,
        gw.token,
      ),
    ]);
    for (const [k, r] of runs) log(`${k}: ${Math.round(r.rps)} req/s, p99 ${r.p99} ms`);
    const ceiling = runs[0]?.[1].rps ?? Number.NaN;
    const hosts = await sampleHosts();
    const live = await wsLatency({
      gateway: gw.url,
      etcd: etcd.endpoint,
      db,
      cluster: 'live-hosts',
      clients: options.clients,
      hosts,
      seconds: options.seconds,
      recordsPerSecond: 5000,
      token: gw.token,
    });
    const firehose = await wsLatency({
      gateway: gw.url,
      etcd: etcd.endpoint,
      db,
      cluster: 'live-cluster',
      clients: options.clusterClients,
      hosts: [],
      seconds: options.seconds,
      recordsPerSecond: 5000,
      token: gw.token,
    });
    const gatewayRssMb = peakRssMb(gateway.pid);
    log(`gateway peak RSS ${gatewayRssMb} MB`);
    const liveRow = (what: string, r: LiveResult): (string | number)[] => [
      what,
      r.messages,
      r.p50,
      r.p99,
      String(r.dropped),
      String(r.closed),
    ];
    return {
      id: 'gateway',
      title: 'Gateway: REST and live push',
      body: [
        `${loaded.toLocaleString('en-US')} readings (one hour of ${HOSTS * GPUS} GPUs x ${METRICS.length} metrics every 10 s) in PostgreSQL on disk; the gateway as its own process (\`node dist/cli/main.js gateway\`, \`AUTH_MODE=token\`: every request and WebSocket carries a read token, as deployed; \`RATE_LIMIT_PER_MINUTE=0\`, as one token carries the whole load); load from autocannon in a separate process, 64 connections, ${options.seconds} s per row; the bare Fastify ceiling is a route returning \`{"ok":true}\` in another process on the same machine.`,
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
        `Live push: for each row, the WebSocket clients connect first (all in one client process of their own), then a collector process stores a steady 5,000 readings/s (the real sample, ${hosts.length} hosts, looped with live timestamps, 100 readings per message; the collector commits a few messages per transaction). Latency is from the collector's commit (\`committed_at\`) to the client's receipt, through the commit feed in etcd, over ${options.seconds} s after a warm-up (3 s from the first message received). The goal row has each client subscribed to one host (client i to host i mod ${hosts.length}, as a dashboard would); in the other every client is subscribed to the whole cluster and so receives every committed reading. Readings the gateway dropped for clients that read too slowly are counted from its \`dropped\` notices; clients it disconnected as too slow are counted too.`,
        '',
        table(
          [
            'clients',
            'messages measured',
            'p50 ms',
            'p99 ms',
            'readings dropped',
            'clients disconnected',
          ],
          [
            liveRow(`${options.clients.toLocaleString('en-US')}, each on one host`, live),
            liveRow(
              `${options.clusterClients.toLocaleString('en-US')}, each on the whole cluster`,
              firehose,
            ),
          ],
        ),
        '',
        'Peak RSS (`VmHWM`) of the processes of this section:',
        '',
        table(
          ['process', 'peak RSS MB'],
          [
            ['gateway (REST load, then the WebSocket clients)', gatewayRssMb],
            [
              'collector (live push, 5,000 readings/s; the larger of the two rows)',
              Math.max(live.collectorRssMb, firehose.collectorRssMb),
            ],
            [
              'streamer (live push, 5,000 readings/s; the larger of the two rows)',
              Math.max(live.streamerRssMb, firehose.streamerRssMb),
            ],
          ],
        ),
      ].join('\n'),
    };
  } finally {
    bare?.stop();
    if (gateway !== undefined) await stopChild(gateway);
    await etcd?.destroy();
    await pg?.destroy();
  }
}

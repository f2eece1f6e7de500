import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import type { TelemetryRecord } from '../src/core/record.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { startGateway } from './gateway.js';
import {
  benchStore,
  BENCH_DIR,
  log,
  peakRssMb,
  percentile,
  seconds,
  stopChild,
  table,
  type Section,
} from './lib.js';

const GPUS = 8;
const STEP_MS = 10_000;
const DAY_MS = 86_400_000;
const CLUSTER = 'history';
/** Ten DCGM gauges, every 10 s, for every GPU. */
const METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_MEM_COPY_UTIL',
  'DCGM_FI_DEV_ENC_UTIL',
  'DCGM_FI_DEV_DEC_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_MEMORY_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_SM_CLOCK',
  'DCGM_FI_DEV_MEM_CLOCK',
];

const hostName = (h: number): string => `node-${String(h).padStart(3, '0')}`;

/**
 * 24 hours of readings ending at `end` (a whole 5 minutes) for hosts x GPUS GPUs x METRICS. The
 * store writes the first instant (creating the dimensions, partitions and latest rows through its
 * own code), PostgreSQL generates the rest straight into `samples` in time order, an hour per
 * statement, two connections at once; the 1-minute rollup and `samples_latest` are then rebuilt
 * from `samples` with the aggregates the store's write keeps, and VACUUM ANALYZE leaves the tables
 * as autovacuum would.
 */
async function loadDay(url: string, hosts: number, end: number): Promise<number> {
  const start = end - DAY_MS;
  const store = benchStore(postgresDatabase(url, 2));
  try {
    await store.migrate();
    const first: TelemetryRecord[] = [];
    for (let h = 0; h < hosts; h++) {
      for (let g = 0; g < GPUS; g++) {
        for (const [i, metric] of METRICS.entries()) {
          first.push({
            timestamp: start,
            metric,
            gpu: g,
            hostname: hostName(h),
            value: (h + g + i) % 100,
            uuid: `GPU-${h}-${g}`,
            labels: {},
          });
        }
      }
    }
    await store.write(CLUSTER, first);
    await store.rollUp();
  } finally {
    await store.close();
  }
  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query("SET work_mem = '256MB'");
    return c;
  };
  const admin = await connect();
  try {
    await admin.query('SELECT nexus_ensure_partitions($1::bigint[])', [[start, end - 1]]);
    await admin.query('TRUNCATE samples_1m');
  } finally {
    await admin.end();
  }
  const hours = Array.from({ length: 24 }, (_, i) => i);
  const load = async (): Promise<void> => {
    const c = await connect();
    try {
      for (let hour = hours.shift(); hour !== undefined; hour = hours.shift()) {
        const from = start + hour * 3_600_000;
        const to = from + 3_600_000;
        // Steps of this hour (the first instant of the day is already stored), every GPU and
        // metric of the cluster, in time order as collectors would write them.
        await c.query(
          `INSERT INTO samples (time, gpu_id, metric_id, value)
           SELECT nexus_ts(t), g.id, m.id,
                  round((50 + 40 * sin(t / 3.6e6 + g.id * 0.7 + m.id) + random() * 5)::numeric, 2)::float8
           FROM generate_series($1::bigint, $2::bigint - 1, ${STEP_MS}) t
           CROSS JOIN gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters cl ON cl.id = h.cluster_id
           CROSS JOIN metrics m
           WHERE cl.name = $3 AND m.name = ANY($4::text[]) AND t > $5::bigint
           ORDER BY t, g.id, m.id`,
          [from, to, CLUSTER, METRICS, start],
        );
        // The rollup of the same hour, with the aggregates SqlStore.write keeps.
        await c.query(
          `INSERT INTO samples_1m (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
           SELECT date_bin('1 minute', time, timestamptz 'epoch'), gpu_id, metric_id, min(value), max(value),
                  sum(value), count(*), max(time), (array_agg(value ORDER BY time DESC))[1]
           FROM samples WHERE time >= nexus_ts($1) AND time < nexus_ts($2)
           GROUP BY 1, 2, 3 ORDER BY 2, 3, 1`,
          [from, to],
        );
      }
    } finally {
      await c.end();
    }
  };
  const t0 = Date.now();
  await Promise.all([load(), load()]);
  log(`history bench: samples and rollup generated in ${seconds(t0)}`);
  const c = await connect();
  try {
    await c.query(
      `UPDATE samples_latest l SET time = s.time, value = s.value
       FROM samples s WHERE s.gpu_id = l.gpu_id AND s.metric_id = l.metric_id AND s.time = nexus_ts($1)`,
      [end - STEP_MS],
    );
    const t1 = Date.now();
    await c.query('VACUUM ANALYZE');
    log(`history bench: VACUUM ANALYZE in ${seconds(t1)}`);
    const n = await c.query<{ n: string; r: string }>(
      'SELECT (SELECT count(*) FROM samples) AS n, (SELECT sum(count) FROM samples_1m) AS r',
    );
    const samples = Number(n.rows[0]?.n);
    if (samples !== Number(n.rows[0]?.r)) {
      throw new Error(`rollup counts ${n.rows[0]?.r ?? 0} readings, samples holds ${samples}`);
    }
    return samples;
  } finally {
    await c.end();
  }
}

interface Timing {
  readonly label: string;
  readonly requests: number;
  readonly p50: number;
  readonly p99: number;
  readonly bytes: number;
  readonly answer: string;
}

/**
 * `requests` sequential GETs (after two warm-up ones), or as many as fit in `budgetMs`, each
 * timed from sending to the last byte of the body; the body is checked by `check`.
 */
async function timeQuery(
  label: string,
  url: string,
  requests: number,
  budgetMs: number,
  check: (body: unknown) => string,
): Promise<Timing> {
  const get = async (): Promise<{ ms: number; text: string }> => {
    const t0 = performance.now();
    const res = await fetch(url);
    const text = await res.text();
    const ms = performance.now() - t0;
    if (!res.ok) throw new Error(`${label}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    return { ms, text };
  };
  const warm = await get();
  await get();
  const answer = check(JSON.parse(warm.text));
  const times: number[] = [];
  const deadline = Date.now() + budgetMs;
  while (times.length < requests && (times.length < 10 || Date.now() < deadline)) {
    times.push((await get()).ms);
  }
  times.sort((a, b) => a - b);
  const t: Timing = {
    label,
    requests: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    bytes: warm.text.length,
    answer,
  };
  log(`${label}: p50 ${t.p50.toFixed(1)} ms, p99 ${t.p99.toFixed(1)} ms over ${t.requests}`);
  return t;
}

interface Readings {
  readings?: unknown[];
}
interface Series {
  series?: { points?: unknown[] }[];
  source?: string;
}

function readingsCheck(expected: number): (body: unknown) => string {
  return (body) => {
    const n = (body as Readings).readings?.length ?? 0;
    if (n !== expected) throw new Error(`expected ${expected} readings, got ${n}`);
    return `${n.toLocaleString('en-US')} readings`;
  };
}

function seriesCheck(series: number, points: number): (body: unknown) => string {
  return (body) => {
    const b = body as Series;
    const got = b.series?.length ?? 0;
    const total = (b.series ?? []).reduce((s, x) => s + (x.points?.length ?? 0), 0);
    if (got !== series || total !== series * points) {
      throw new Error(`expected ${series} series x ${points} points, got ${got} series, ${total}`);
    }
    return `${got} series x ${points.toLocaleString('en-US')} points, source ${b.source ?? '?'}`;
  };
}

/** 24-hour history queries through the REST API on a day of readings (10 million in full mode). */
export async function benchHistory(options: {
  hosts: number;
  requests: number;
  /** Seconds of requests per row at most (at least 10 requests are made). */
  budgetSeconds: number;
}): Promise<Section> {
  mkdirSync(BENCH_DIR, { recursive: true });
  let server: PgServer | undefined;
  let etcd: EtcdServer | undefined;
  let gateway: ChildProcess | undefined;
  try {
    [server, etcd] = await Promise.all([
      startPostgres({ durable: true, baseDir: BENCH_DIR }),
      startEtcd({ baseDir: BENCH_DIR }),
    ]);
    const url = await server.createDatabase('history_bench');
    // A whole 5 minutes: the range is then exactly 1,440 1-minute and 288 5-minute buckets.
    const end = Math.floor(Date.now() / 300_000) * 300_000;
    const t0 = Date.now();
    log(`history bench: loading 24 h of ${options.hosts * GPUS} GPUs x ${METRICS.length} metrics`);
    const samples = await loadDay(url, options.hosts, end);
    const loadSeconds = (Date.now() - t0) / 1000;
    log(`history bench: ${samples} samples loaded in ${seconds(t0)}`);
    const gw = await startGateway({
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: CLUSTER,
    });
    gateway = gw.proc;
    const range = `from=${new Date(end - DAY_MS).toISOString()}&to=${new Date(end).toISOString()}`;
    const one = `${gw.url}/api/v1/telemetry?cluster_id=${CLUSTER}&host_id=${hostName(1)}&gpu_id=3&metric=DCGM_FI_DEV_GPU_TEMP&${range}`;
    const fleetGpus = options.hosts * GPUS;
    const budget = options.budgetSeconds * 1000;
    const timings = [
      await timeQuery(
        'one GPU, one metric, 24 h raw',
        `${one}&limit=10000`,
        options.requests,
        budget,
        readingsCheck(DAY_MS / STEP_MS),
      ),
      await timeQuery(
        'one GPU, one metric, 24 h, step=1m (avg)',
        `${one}&step=1m&agg=avg`,
        options.requests,
        budget,
        seriesCheck(1, 1440),
      ),
      await timeQuery(
        'one GPU, one metric, 24 h, step=5m (avg)',
        `${one}&step=5m&agg=avg`,
        options.requests,
        budget,
        seriesCheck(1, 288),
      ),
      await timeQuery(
        `fleet-wide: all ${fleetGpus} GPUs, one metric, 24 h, step=1m (avg)`,
        `${gw.url}/api/v1/telemetry?cluster_id=${CLUSTER}&metric=DCGM_FI_DEV_GPU_UTIL&${range}&step=1m&agg=avg`,
        options.requests,
        budget,
        seriesCheck(fleetGpus, 1440),
      ),
    ];
    const gatewayRss = peakRssMb(gateway.pid);
    log(`history bench: gateway peak RSS ${gatewayRss} MB`);
    return {
      id: 'history',
      title: 'History: 24-hour queries through the REST API',
      body: [
        `${samples.toLocaleString('en-US')} readings in PostgreSQL 15 on disk (fsync on): 24 hours of ${fleetGpus} GPUs (${options.hosts} hosts x ${GPUS}) x ${METRICS.length} metrics every 10 s, in time order as collectors would write them. The schema is the store's own (migrations run by \`SqlStore\`, which also writes the first instant and so creates the dimensions and partitions); the rest is generated by PostgreSQL straight into \`samples\`, the 1-minute rollup \`samples_1m\` is built from it with the same aggregates the store keeps (its counts are checked against \`samples\`), then \`VACUUM ANALYZE\` (${Math.round(loadSeconds)} s in all). The gateway runs as its own process (\`node dist/cli/main.js gateway\`, default settings: \`MAX_POINTS=200000\`). Each request is sent one at a time (after two warm-up requests, so PostgreSQL's caches are warm) and timed from sending to the last byte of the JSON body; up to ${options.requests} requests per row, fewer when they take more than ${budget / 1000} s in all. Steps of whole minutes are served from the rollup. Gateway peak RSS over the section: ${gatewayRss} MB.`,
        '',
        table(
          ['query (GET /api/v1/telemetry)', 'answer', 'body KB', 'requests', 'p50 ms', 'p99 ms'],
          timings.map((t) => [t.label, t.answer, t.bytes / 1024, String(t.requests), t.p50, t.p99]),
        ),
      ].join('\n'),
    };
  } finally {
    if (gateway !== undefined) await stopChild(gateway);
    await etcd?.destroy();
    await server?.destroy();
  }
}

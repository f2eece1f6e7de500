/**
 * History side by side: the same readings in Nexus (PostgreSQL through the store's write path,
 * queried through the gateway's REST API) and in Prometheus 2.42 (backfilled with promtool,
 * queried through its HTTP API): bytes per reading, and each history query's latency and
 * throughput, the two systems' runs alternated so that the machine's noise hits both.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import pg from 'pg';
import type { TelemetryRecord } from '../src/core/record.js';
import type { SqlStore } from '../src/store/sql-store.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { FLEET_METRICS, realisticFleet, seededRandom, type FleetSeries } from './fleet-data.js';
import { bareFastify, startGateway } from './gateway.js';
import {
  autocannonLoad,
  benchStore,
  BENCH_DIR,
  fmtNumber,
  log,
  peakRssMb,
  percentile,
  seconds,
  stopChild,
  table,
  type Section,
} from './lib.js';
import {
  createBlocks,
  gpuUuid,
  MODEL_NAME,
  prometheusVersion,
  startPrometheus,
  tsdbSize,
  writeOpenMetrics,
  type PromBlock,
  type PromServer,
} from './prometheus.js';

const STEP_MS = 10_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;
/** Nexus seals (and Prometheus cuts blocks of) 2-hour windows; the data ends on one's edge. */
const WINDOW_MS = 2 * HOUR;
const CLUSTER = 'history';
/** The single-GPU queries: host 1 (or 0 in a one-host fleet), GPU 1, this metric. */
const ONE_METRIC = 'DCGM_FI_DEV_GPU_TEMP';
const FLEET_METRIC = 'DCGM_FI_DEV_GPU_UTIL';
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

export interface HistoryScale {
  readonly hosts: number;
  readonly gpusPerHost: number;
  readonly hours: number;
}

interface Fleet {
  readonly id: 'realistic' | 'noisy';
  readonly title: string;
  readonly series: readonly FleetSeries[];
  readonly readings: number;
  /** [start, end): every reading's time is in it; both are on 2-hour window edges. */
  readonly start: number;
  readonly end: number;
}

/**
 * The data: `hours` ending on a 2-hour window edge at least an hour ago, so that every window is
 * closed (Nexus can seal it, Prometheus holds it in blocks, none in its head).
 */
function span(hours: number): { start: number; end: number } {
  const end = Math.floor((Date.now() - HOUR) / WINDOW_MS) * WINDOW_MS;
  return { start: end - hours * HOUR, end };
}

function realistic(scale: HistoryScale): Fleet {
  const { start, end } = span(scale.hours);
  // The scrape jitter is +-5 ms: the first scrape 5 ms after the edge keeps every reading inside
  // [start, end) and off the edges of every minute.
  const series = [...realisticFleet({ ...scale, stepMs: STEP_MS, seed: 15, start: start + 5 })];
  return {
    id: 'realistic',
    title:
      'realistic (bench/fleet-data.ts: jobs start and stop, idle GPUs, clocks at fixed levels, integer temperatures, power with 3 decimals, scrape jitter of +-5 ms)',
    series,
    readings: series.reduce((n, s) => n + s.times.length, 0),
    start,
    end,
  };
}

/**
 * White noise, as this bench generated it before: round(50 + 40 sin(t / 1 h + 0.7 gpu + metric)
 * + 5 random, 2) every 10 s on the dot.
 */
function noisy(scale: HistoryScale): Fleet {
  const { start, end } = span(scale.hours);
  const rand = seededRandom(16);
  const n = (scale.hours * HOUR) / STEP_MS;
  const series: FleetSeries[] = [];
  for (let h = 0; h < scale.hosts; h++) {
    for (let g = 0; g < scale.gpusPerHost; g++) {
      const gpuIndex = h * scale.gpusPerHost + g + 1;
      for (const [m, metric] of FLEET_METRICS.entries()) {
        const times = new Float64Array(n);
        const values = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          const t = start + i * STEP_MS;
          times[i] = t;
          values[i] =
            Math.round((50 + 40 * Math.sin(t / HOUR + gpuIndex * 0.7 + m + 1) + rand() * 5) * 100) /
            100;
        }
        series.push({ gpu: g, host: hostName(h), metric, times, values });
      }
    }
  }
  return {
    id: 'noisy',
    title: 'noisy (white noise around a sine, 2 decimals, every 10 s on the dot)',
    series,
    readings: series.length * n,
    start,
    end,
  };
}

const hostName = (h: number): string => `node-${String(h).padStart(3, '0')}`;

// ---------------------------------------------------------------------------------------------
// Nexus: loading and size

interface NexusLoad {
  readonly readings: number;
  readonly writeMs: number;
  readonly rollupMs: number;
  /** What each pass of `store.compact()` answered, or undefined when the store has no compact. */
  readonly compact: unknown;
  readonly compactMs: number;
  readonly vacuumMs: number;
}

type CompactFn = (options?: { now?: number }) => Promise<unknown>;

/** The store's `compact` (the sealing job), where the store has one. */
function compactOf(store: SqlStore): CompactFn | undefined {
  const fn = (store as { compact?: CompactFn }).compact;
  return fn === undefined ? undefined : fn.bind(store);
}

/**
 * Loads the fleet through the store's real write path, as collectors do: batches of every GPU's
 * readings of 80 seconds (9,600 readings for 120 GPUs x 10 metrics), in time order, two writes in
 * flight, the rollup job every second meanwhile and to the end; then `compact()` where the store
 * has it (every window ended over an hour ago, so all are sealed), then `VACUUM (ANALYZE)`.
 */
async function loadNexus(url: string, fleet: Fleet): Promise<NexusLoad> {
  const store = benchStore(postgresDatabase(url, 4));
  try {
    await store.migrate();
    const cursors = new Uint32Array(fleet.series.length);
    const uuids = fleet.series.map((s) => gpuUuid(s.host, s.gpu));
    const batchMs = 8 * STEP_MS;
    const t0 = Date.now();
    let rolling = true;
    let rollupMs = 0;
    const roller = (async () => {
      while (rolling) {
        const r0 = Date.now();
        await store.rollUp();
        rollupMs += Date.now() - r0;
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    let inserted = 0;
    const inFlight: Promise<void>[] = [];
    for (let w = fleet.start + batchMs; w < fleet.end + batchMs; w += batchMs) {
      const batch: TelemetryRecord[] = [];
      for (const [i, s] of fleet.series.entries()) {
        let c = cursors[i] ?? 0;
        while (c < s.times.length && (s.times[c] ?? 0) < w) {
          batch.push({
            timestamp: s.times[c] ?? 0,
            metric: s.metric,
            gpu: s.gpu,
            hostname: s.host,
            value: s.values[c] ?? 0,
            uuid: uuids[i] ?? '',
            device: `nvidia${s.gpu}`,
            model: MODEL_NAME,
            labels: NO_LABELS,
          });
          c++;
        }
        cursors[i] = c;
      }
      if (batch.length === 0) continue;
      const p = store.write(CLUSTER, batch).then((r) => {
        inserted += r.inserted;
      });
      p.catch(() => undefined); // awaited below, in order
      inFlight.push(p);
      if (inFlight.length >= 2) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const writeMs = Date.now() - t0;
    rolling = false;
    await roller;
    if (inserted !== fleet.readings) {
      throw new Error(`nexus: ${inserted} readings inserted, expected ${fleet.readings}`);
    }
    const r0 = Date.now();
    for (;;) {
      const r = await store.rollUp();
      if (!r.busy && r.moved === 0) break;
    }
    rollupMs += Date.now() - r0;
    const compact = compactOf(store);
    const c0 = Date.now();
    // Passes as the sealing job makes them (every COMPACT_INTERVAL), until no hot partition is
    // left: a pass that cannot lock a partition within its 500 ms (autovacuum on it, say) leaves
    // it to the next one. Bounded; the passes taken are reported.
    const passes: unknown[] = [];
    if (compact !== undefined) {
      for (let pass = 0; pass < 10; pass++) {
        if (pass > 0) await new Promise((r) => setTimeout(r, 2000));
        passes.push(await compact({ now: Date.now() }));
        if ((await hotPartitionsLeft(url)) === 0) break;
      }
    }
    const compacted = compact === undefined ? undefined : passes;
    const compactMs = Date.now() - c0;
    const stats = await store.reader.clusterStats(CLUSTER);
    if (stats?.samples !== fleet.readings) {
      throw new Error(
        `nexus: the cluster's stats count ${stats?.samples ?? 0} readings, expected ${fleet.readings}`,
      );
    }
    const v0 = Date.now();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('VACUUM (ANALYZE)');
    } finally {
      await c.end();
    }
    return {
      readings: inserted,
      writeMs,
      rollupMs,
      compact: compacted,
      compactMs,
      vacuumMs: Date.now() - v0,
    };
  } finally {
    await store.close();
  }
}

/** Hot partitions (raw and 1-minute) of the database: none once every window is sealed. */
async function hotPartitionsLeft(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const res = await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
       WHERE p.relname IN ('samples', 'samples_1m')`,
    );
    return res.rows[0]?.n ?? 0;
  } finally {
    await c.end();
  }
}

interface TableSize {
  readonly name: string;
  readonly bytes: number;
}

/**
 * Every relation with storage in the database's own schemas (tables and their partitions,
 * materialized views), each with its indexes, TOAST and free-space/visibility maps
 * (`pg_total_relation_size`), summed per partitioned table (`pg_partition_root`).
 */
async function nexusSize(url: string): Promise<TableSize[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ name: string; bytes: string }>(
      `SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
              sum(pg_total_relation_size(c.oid))::bigint AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'm')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
       GROUP BY 1 ORDER BY 2 DESC, 1`,
    );
    return r.rows.map((x) => ({ name: x.name, bytes: Number(x.bytes) }));
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus: loading and size

interface PromLoad {
  readonly server: PromServer;
  readonly fileBytes: number;
  readonly writeMs: number;
  readonly promtoolMs: number;
}

async function loadPrometheus(work: string, fleet: Fleet): Promise<PromLoad> {
  const dir = join(work, `prometheus-${fleet.id}`);
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const written = await writeOpenMetrics(fleet.series, work, {
    start: fleet.start,
    end: fleet.end,
    ms: WINDOW_MS,
  });
  const writeMs = Date.now() - t0;
  if (written.samples !== fleet.readings) {
    throw new Error(`openmetrics: ${written.samples} samples written, expected ${fleet.readings}`);
  }
  log(
    `history bench: ${fleet.id}: ${(written.bytes / 2 ** 20).toFixed(0)} MB of OpenMetrics in ${written.files.length} files in ${seconds(t0)}`,
  );
  const t1 = Date.now();
  for (const file of written.files) {
    await createBlocks(file, dir);
    rmSync(file);
  }
  const promtoolMs = Date.now() - t1;
  log(
    `history bench: ${fleet.id}: promtool made ${tsdbSize(dir).blocks.length} blocks in ${seconds(t1)}`,
  );
  const server = await startPrometheus(dir, work);
  return { server, fileBytes: written.bytes, writeMs, promtoolMs };
}

// ---------------------------------------------------------------------------------------------
// Answers: what each system returned, checked against the data

interface Answer {
  readonly series: number;
  readonly points: number;
  /** Sum of every value returned: a checksum of the contents. */
  readonly sum: number;
}

function answerText(a: Answer): string {
  return a.series === 1
    ? `${a.points.toLocaleString('en-US')} points`
    : `${a.series.toLocaleString('en-US')} series, ${a.points.toLocaleString('en-US')} points`;
}

/** The readings of `s` in [from, to). */
function rawOf(list: readonly FleetSeries[], from: number, to: number): Answer {
  let points = 0;
  let sum = 0;
  for (const s of list) {
    for (let i = 0; i < s.times.length; i++) {
      const t = s.times[i] ?? 0;
      if (t >= from && t < to) {
        points++;
        sum += s.values[i] ?? 0;
      }
    }
  }
  return { series: list.length, points, sum };
}

/** Averages per step bucket (date_bin from the epoch) of the readings in [from, to). */
function averagesOf(list: readonly FleetSeries[], from: number, to: number, step: number): Answer {
  let points = 0;
  let sum = 0;
  for (const s of list) {
    const buckets = new Map<number, { n: number; sum: number }>();
    for (let i = 0; i < s.times.length; i++) {
      const t = s.times[i] ?? 0;
      if (t < from || t >= to) continue;
      const b = Math.floor(t / step) * step;
      const acc = buckets.get(b) ?? { n: 0, sum: 0 };
      acc.n++;
      acc.sum += s.values[i] ?? 0;
      buckets.set(b, acc);
    }
    for (const acc of buckets.values()) {
      points++;
      sum += acc.sum / acc.n;
    }
  }
  return { series: list.length, points, sum };
}

function latestOf(list: readonly FleetSeries[]): Answer {
  const sum = list.reduce((a, s) => a + (s.values[s.values.length - 1] ?? 0), 0);
  return { series: list.length, points: list.length, sum };
}

interface NexusReadings {
  readings?: { value?: number }[];
}
interface NexusSeries {
  series?: { points?: { value?: number }[] }[];
}
interface PromBody {
  status?: string;
  data?: {
    resultType?: string;
    result?: { values?: [number, string][]; value?: [number, string] }[];
  };
}

function nexusReadings(body: unknown): Answer {
  const r = (body as NexusReadings).readings ?? [];
  return { series: 1, points: r.length, sum: r.reduce((a, x) => a + (x.value ?? 0), 0) };
}

function nexusLatest(body: unknown): Answer {
  const a = nexusReadings(body);
  return { ...a, series: a.points };
}

function nexusSeries(body: unknown): Answer {
  const list = (body as NexusSeries).series ?? [];
  let points = 0;
  let sum = 0;
  for (const s of list) {
    for (const p of s.points ?? []) {
      points++;
      sum += p.value ?? 0;
    }
  }
  return { series: list.length, points, sum };
}

/**
 * A columnar answer, whatever nests it: every `timestamps` array with its sibling `values`
 * array counts as a series.
 */
function nexusColumnar(body: unknown): Answer {
  let series = 0;
  let points = 0;
  let sum = 0;
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.timestamps) && Array.isArray(o.values)) {
      series++;
      points += o.timestamps.length;
      for (const x of o.values) sum += typeof x === 'number' ? x : Number(x);
      return;
    }
    for (const x of Object.values(o)) walk(x);
  };
  walk(body);
  return { series, points, sum };
}

function promAnswer(body: unknown): Answer {
  const b = body as PromBody;
  if (b.status !== 'success') throw new Error(`prometheus: ${JSON.stringify(body).slice(0, 300)}`);
  const result = b.data?.result ?? [];
  let points = 0;
  let sum = 0;
  for (const s of result) {
    if (s.value !== undefined) {
      points++;
      sum += Number(s.value[1]);
    }
    for (const [, v] of s.values ?? []) {
      points++;
      sum += Number(v);
    }
  }
  return { series: result.length, points, sum };
}

function sameAnswer(a: Answer, b: Answer): boolean {
  const scale = Math.max(1, Math.abs(a.sum), Math.abs(b.sum));
  return a.series === b.series && a.points === b.points && Math.abs(a.sum - b.sum) <= 1e-9 * scale;
}

// ---------------------------------------------------------------------------------------------
// HTTP

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

interface Got {
  readonly status: number;
  readonly body: Buffer;
  /** Bytes of the body as they came over the wire (before any decoding). */
  readonly wireBytes: number;
  readonly encoding: string;
  readonly ms: number;
}

/** A GET timed from sending to the last byte of the body; no decoding. */
function get(url: string, acceptEncoding = 'identity'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(url, { agent, headers: { 'accept-encoding': acceptEncoding } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        resolve({
          status: res.statusCode ?? 0,
          body,
          wireBytes: body.length,
          encoding: res.headers['content-encoding'] ?? 'identity',
          ms: performance.now() - t0,
        });
      });
    });
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// The queries

interface QueryRow {
  readonly label: string;
  readonly nexus: string;
  readonly prom: string;
  readonly expected: Answer;
  readonly nexusAnswer: (body: unknown) => Answer;
  /** Connections for the throughput runs. */
  readonly connections: number;
}

interface RowResult {
  readonly row: QueryRow;
  readonly answer: Answer;
  readonly nexusBytes: number;
  readonly promBytes: number;
  readonly nexus: { p50: number; p99: number; requests: number; rps: number; errors: number };
  readonly prom: { p50: number; p99: number; requests: number; rps: number; errors: number };
}

const promTime = (ms: number): string => (ms / 1000).toFixed(3);

function queryRows(fleet: Fleet, gateway: string, prom: string, hosts: number): QueryRow[] {
  const host = hostName(hosts > 1 ? 1 : 0);
  const gpu = 1;
  const { start, end } = fleet;
  const hours = (end - start) / HOUR;
  const iso = (t: number): string => new Date(t).toISOString();
  const one = fleet.series.filter(
    (s) => s.host === host && s.gpu === gpu && s.metric === ONE_METRIC,
  );
  const fleetSeries = fleet.series.filter((s) => s.metric === FLEET_METRIC);
  const gpus = fleetSeries.length;
  const oneNexus = (from: number): string =>
    `${gateway}/api/v1/telemetry?cluster_id=${CLUSTER}&host_id=${host}&gpu_id=${gpu}&metric=${ONE_METRIC}&from=${iso(from)}&to=${iso(end)}`;
  const selector = `${ONE_METRIC}{Hostname="${host}",gpu="${gpu}"}`;
  // PromQL ranges are closed at both ends ([t - range, t] in 2.42): evaluated 1 ms before the
  // edge, each holds exactly the readings of Nexus's half-open [from, to) (times are whole ms).
  const instant = (q: string): string =>
    `${prom}/api/v1/query?query=${encodeURIComponent(q)}&time=${promTime(end - 1)}`;
  const range = (q: string, stepMs: number): string =>
    `${prom}/api/v1/query_range?query=${encodeURIComponent(q)}&start=${promTime(start + stepMs - 1)}&end=${promTime(end - 1)}&step=${stepMs / 1000}`;
  const lastHour = Math.max(start, end - HOUR);
  const dayLabel = hours === 24 ? '24 h' : `${hours} h`;
  const rawDay = rawOf(one, start, end);
  return [
    {
      label: `1 GPU, 1 metric, last hour raw (${rawOf(one, lastHour, end).points} points)`,
      nexus: `${oneNexus(lastHour)}&limit=10000`,
      prom: instant(`${selector}[${(end - lastHour) / MINUTE}m]`),
      expected: rawOf(one, lastHour, end),
      nexusAnswer: nexusReadings,
      connections: 64,
    },
    {
      label: `1 GPU, ${dayLabel} raw (${rawDay.points.toLocaleString('en-US')} points)`,
      nexus: `${oneNexus(start)}&limit=10000`,
      prom: instant(`${selector}[${hours}h]`),
      expected: rawDay,
      nexusAnswer: nexusReadings,
      connections: 64,
    },
    {
      label: `1 GPU, ${dayLabel} at 5-minute averages`,
      nexus: `${oneNexus(start)}&step=5m&agg=avg`,
      prom: range(`avg_over_time(${selector}[5m])`, 5 * MINUTE),
      expected: averagesOf(one, start, end, 5 * MINUTE),
      nexusAnswer: nexusSeries,
      connections: 64,
    },
    {
      label: `fleet: ${gpus} GPUs x ${(end - start) / MINUTE} one-minute averages`,
      nexus: `${gateway}/api/v1/telemetry?cluster_id=${CLUSTER}&metric=${FLEET_METRIC}&from=${iso(start)}&to=${iso(end)}&step=1m&agg=avg`,
      prom: range(`avg_over_time(${FLEET_METRIC}[1m])`, MINUTE),
      expected: averagesOf(fleetSeries, start, end, MINUTE),
      nexusAnswer: nexusSeries,
      // Answers of megabytes that take seconds: 64 at once would only queue (and time out).
      connections: 4,
    },
    {
      label: 'latest value of every GPU and metric',
      nexus: `${gateway}/api/v1/telemetry/latest?cluster_id=${CLUSTER}`,
      prom: instant('{__name__=~"DCGM_.+"}'),
      expected: latestOf(fleet.series),
      nexusAnswer: nexusLatest,
      connections: 64,
    },
  ];
}

/** Checks both answers against the data; throws when either differs. */
async function checkRow(row: QueryRow): Promise<{ nexusBytes: number; promBytes: number }> {
  const [n, p] = [await get(row.nexus), await get(row.prom)];
  for (const [who, r] of [
    ['nexus', n],
    ['prometheus', p],
  ] as const) {
    if (r.status !== 200) {
      throw new Error(`${row.label}: ${who} HTTP ${r.status}: ${r.body.toString().slice(0, 500)}`);
    }
  }
  const na = row.nexusAnswer(JSON.parse(n.body.toString()));
  const pa = promAnswer(JSON.parse(p.body.toString()));
  const exp = row.expected;
  const say = (a: Answer): string => `${answerText(a)}, sum ${a.sum.toFixed(4)}`;
  log(
    `${row.label}: data ${say(exp)}; nexus ${say(na)}; prometheus ${say(pa)} (same: ${sameAnswer(na, exp) && sameAnswer(pa, exp)})`,
  );
  if (!sameAnswer(na, exp) || !sameAnswer(pa, exp)) {
    throw new Error(
      `${row.label}: the answers differ: data ${say(exp)}, nexus ${say(na)}, prometheus ${say(pa)}`,
    );
  }
  return { nexusBytes: n.wireBytes, promBytes: p.wireBytes };
}

/**
 * One row: both answers checked, then requests one at a time alternating Nexus and Prometheus
 * (up to `requests` each, fewer past `budgetMs`, at least 10), then throughput with autocannon
 * at `row.connections`, `rounds` runs of `loadSeconds` for each, alternated.
 */
async function measureRow(
  row: QueryRow,
  o: { requests: number; budgetMs: number; loadSeconds: number; rounds: number },
): Promise<RowResult> {
  const bytes = await checkRow(row);
  await get(row.nexus);
  await get(row.prom);
  const times = { nexus: [] as number[], prom: [] as number[] };
  const deadline = Date.now() + o.budgetMs;
  while (times.nexus.length < o.requests && (times.nexus.length < 10 || Date.now() < deadline)) {
    for (const who of ['nexus', 'prom'] as const) {
      const r = await get(row[who]);
      if (r.status !== 200) throw new Error(`${row.label}: ${who} HTTP ${r.status}`);
      times[who].push(r.ms);
    }
  }
  const load = { nexus: [] as number[], prom: [] as number[] };
  const errors = { nexus: 0, prom: 0 };
  for (let i = 0; i < o.rounds; i++) {
    for (const who of ['nexus', 'prom'] as const) {
      // About loadSeconds of answers at the one-at-a-time rate (times two for the second core),
      // at least two per connection: every run ends with its answers, none cut off.
      const p50 = percentile(
        [...times[who]].sort((a, b) => a - b),
        50,
      );
      const amount = Math.min(
        200_000,
        Math.max(2 * row.connections, Math.ceil(((o.loadSeconds * 1000) / p50) * 2)),
      );
      const r = await autocannonLoad(row[who], {
        connections: row.connections,
        amount,
        timeoutSeconds: 120,
      });
      if (!(r.rps > 0)) throw new Error(`${row.label}: ${who}: no answer within the load run`);
      load[who].push(r.rps);
      errors[who] += r.errors;
      // Still answering after the load (a 503 of the overload guard may last a moment): a request
      // whose client went away while it waited for a turn (API_MAX_CONCURRENT) never gave the
      // turn back (src/gateway/admission.ts), and after 32 of them every API request was refused.
      // Runs of a fixed number of requests cut none off.
      await answering(row[who], `${row.label}: ${who}`);
    }
  }
  const summary = (who: 'nexus' | 'prom'): RowResult['nexus'] => {
    const t = [...times[who]].sort((a, b) => a - b);
    return {
      p50: percentile(t, 50),
      p99: percentile(t, 99),
      requests: t.length,
      rps: load[who].reduce((a, b) => a + b, 0) / Math.max(1, load[who].length),
      errors: errors[who],
    };
  };
  const result: RowResult = {
    row,
    answer: row.expected,
    nexusBytes: bytes.nexusBytes,
    promBytes: bytes.promBytes,
    nexus: summary('nexus'),
    prom: summary('prom'),
  };
  log(
    `${row.label}: nexus p50 ${fmtNumber(result.nexus.p50)} ms, ${fmtNumber(result.nexus.rps)}/s; prometheus p50 ${fmtNumber(result.prom.p50)} ms, ${fmtNumber(result.prom.rps)}/s`,
  );
  return result;
}

/** Waits up to 20 s for a 200 from `url` (one try a second); throws with the last answer. */
async function answering(url: string, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await get(url);
    if (r.status === 200) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: HTTP ${r.status} for 20 s after a load run: ${r.body.toString().slice(0, 300)}`,
      );
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

const ratio = (a: number, b: number): string =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${fmtNumber(a / b)}x` : '-';

// ---------------------------------------------------------------------------------------------
// The section

interface SizeResult {
  readonly fleet: Fleet;
  readonly nexus: TableSize[];
  readonly nexusLoad: NexusLoad;
  readonly blocks: PromBlock[];
  readonly promOther: number;
  readonly prom: Omit<PromLoad, 'server'>;
  readonly compactions: number;
}

const sumBytes = (list: readonly { bytes: number }[]): number =>
  list.reduce((a, x) => a + x.bytes, 0);

export async function benchHistory(options: {
  readonly scale: HistoryScale;
  /** Sequential requests per row and system at most (at least 10 are made). */
  readonly requests: number;
  /** Seconds of sequential requests per row at most (both systems together). */
  readonly budgetSeconds: number;
  /** Seconds of each autocannon run (two per row and system). */
  readonly loadSeconds: number;
  /** Also time the queries on the noisy data set (the realistic one always is). */
  readonly noisyQueries: boolean;
}): Promise<Section> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const work = mkdtempSync(join(BENCH_DIR, 'history-'));
  const { scale } = options;
  const gpus = scale.hosts * scale.gpusPerHost;
  let server: PgServer | undefined;
  let etcd: EtcdServer | undefined;
  let gateway: ChildProcess | undefined;
  const proms: PromServer[] = [];
  const started = Date.now();
  try {
    [server, etcd] = await Promise.all([
      startPostgres({ durable: true, baseDir: BENCH_DIR }),
      startEtcd({ baseDir: BENCH_DIR }),
    ]);
    const sizes: SizeResult[] = [];
    const queries = new Map<Fleet['id'], RowResult[]>();
    const ceilings: [string, number][] = [];
    let gatewayRss = Number.NaN;
    let promRss = Number.NaN;
    let bytesRow: { nexus: number; nexusEnc: string; prom: number; promEnc: string } | undefined;
    let columnar: RowResult | undefined;
    for (const make of [realistic, noisy]) {
      const t0 = Date.now();
      const fleet = make(scale);
      log(
        `history bench: ${fleet.id}: ${fleet.readings.toLocaleString('en-US')} readings generated in ${seconds(t0)}`,
      );
      const promLoad = await loadPrometheus(work, fleet);
      proms.push(promLoad.server);
      // Prometheus compacts a minute after its start: Nexus loads meanwhile.
      const url = await server.createDatabase(`history_${fleet.id}`);
      const t1 = Date.now();
      const nexusLoad = await loadNexus(url, fleet);
      log(
        `history bench: ${fleet.id}: nexus stored ${nexusLoad.readings.toLocaleString('en-US')} readings in ${seconds(t1)} (write ${(nexusLoad.writeMs / 1000).toFixed(1)} s, compact ${nexusLoad.compact === undefined ? 'not in this store' : `${(nexusLoad.compactMs / 1000).toFixed(1)} s`}, vacuum ${(nexusLoad.vacuumMs / 1000).toFixed(1)} s)`,
      );
      // Prometheus never compacts its newest block: with one block there is nothing to wait for.
      const { compactions } =
        tsdbSize(join(work, `prometheus-${fleet.id}`)).blocks.length > 1
          ? await promLoad.server.compacted()
          : { compactions: 0 };
      const tsdb = tsdbSize(join(work, `prometheus-${fleet.id}`));
      const nexusTables = await nexusSize(url);
      const { server: _s, ...prom } = promLoad;
      sizes.push({
        fleet,
        nexus: nexusTables,
        nexusLoad,
        blocks: tsdb.blocks,
        promOther: tsdb.other,
        prom,
        compactions,
      });
      const promSamples = tsdb.blocks.reduce((a, b) => a + b.samples, 0);
      if (promSamples !== fleet.readings) {
        throw new Error(
          `prometheus blocks hold ${promSamples} samples, expected ${fleet.readings}`,
        );
      }
      log(
        `history bench: ${fleet.id}: bytes per reading: nexus ${(sumBytes(nexusTables) / fleet.readings).toFixed(2)}, prometheus ${(sumBytes(tsdb.blocks) / fleet.readings).toFixed(2)} (${tsdb.blocks.length} blocks after ${compactions} compactions)`,
      );

      if (fleet.id === 'realistic' || options.noisyQueries) {
        // Without authentication, like the Prometheus it is compared with (the gateway section
        // measures the API with a token).
        const gw = await startGateway(
          { DATABASE_URL: url, ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: CLUSTER },
          'none',
        );
        gateway = gw.proc;
        const rows = queryRows(fleet, gw.url, promLoad.server.url, scale.hosts);
        const o = {
          requests: options.requests,
          budgetMs: options.budgetSeconds * 1000,
          loadSeconds: options.loadSeconds,
          rounds: 2,
        };
        const results: RowResult[] = [];
        for (const row of rows) results.push(await measureRow(row, o));
        queries.set(fleet.id, results);
        if (fleet.id === 'realistic') {
          const day = rows[1];
          if (day !== undefined) {
            const n = await get(day.nexus, 'gzip');
            const p = await get(day.prom, 'gzip');
            bytesRow = {
              nexus: n.wireBytes,
              nexusEnc: n.encoding,
              prom: p.wireBytes,
              promEnc: p.encoding,
            };
            // The columnar form, where the gateway has it (issue 15, item 3).
            const probe = await get(`${day.nexus}&format=columns`);
            const answer =
              probe.status === 200 ? nexusColumnar(JSON.parse(probe.body.toString())) : undefined;
            if (answer !== undefined && answer.points > 0) {
              columnar = await measureRow(
                {
                  ...day,
                  label: `${day.label}, Nexus columnar (\`format=columns\`)`,
                  nexus: `${day.nexus}&format=columns`,
                  nexusAnswer: nexusColumnar,
                },
                o,
              );
            } else {
              log(`history bench: no columnar form (HTTP ${probe.status}): row left out`);
            }
          }
          const b = await bareFastify();
          try {
            const bare = await autocannonLoad(b.url, {
              connections: 64,
              seconds: options.loadSeconds,
            });
            ceilings.push([
              'bare Fastify route returning `{"ok":true}` (the gateway\'s ceiling)',
              bare.rps,
            ]);
          } finally {
            b.stop();
          }
          const healthy = await autocannonLoad(`${promLoad.server.url}/-/healthy`, {
            connections: 64,
            seconds: options.loadSeconds,
          });
          ceilings.push(["Prometheus's `/-/healthy` (its ceiling)", healthy.rps]);
          gatewayRss = peakRssMb(gateway.pid);
          promRss = peakRssMb(promLoad.server.proc.pid);
        }
        await stopChild(gateway);
        gateway = undefined;
      }
      await promLoad.server.stop();
      proms.pop();
    }
    const total = Math.round((Date.now() - started) / 1000);
    log(`history bench: ${total} s in all`);
    return section({
      scale,
      gpus,
      sizes,
      queries,
      bytesRow,
      columnar,
      ceilings,
      gatewayRss,
      promRss,
      options,
      totalSeconds: total,
      prometheus: await prometheusVersion(),
    });
  } finally {
    if (gateway !== undefined) await stopChild(gateway);
    for (const p of proms) await p.stop();
    await etcd?.destroy();
    await server?.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

function section(r: {
  scale: HistoryScale;
  gpus: number;
  sizes: SizeResult[];
  queries: Map<Fleet['id'], RowResult[]>;
  bytesRow: { nexus: number; nexusEnc: string; prom: number; promEnc: string } | undefined;
  columnar: RowResult | undefined;
  ceilings: [string, number][];
  gatewayRss: number;
  promRss: number;
  options: { requests: number; budgetSeconds: number; loadSeconds: number };
  totalSeconds: number;
  prometheus: string;
}): Section {
  const { scale } = r;
  const first = r.sizes[0];
  const readings = first?.fleet.readings ?? 0;
  const mb = (b: number): string => (b / 2 ** 20).toFixed(1);
  const sizeRows = r.sizes.map((s) => {
    const n = sumBytes(s.nexus) / s.fleet.readings;
    const p = sumBytes(s.blocks) / s.fleet.readings;
    return [s.fleet.title, s.fleet.readings.toLocaleString('en-US'), n, p, ratio(n, p)];
  });
  const whereRows = r.sizes.flatMap((s) => [
    ...s.nexus
      .filter((t) => t.bytes > 0)
      .map((t) => [s.fleet.id, `Nexus \`${t.name}\``, mb(t.bytes), t.bytes / s.fleet.readings]),
    [
      s.fleet.id,
      `Prometheus: ${s.blocks.length} blocks (${s.blocks.map((b) => `${((b.maxTime - b.minTime) / HOUR).toFixed(0)} h`).join(', ')}), index`,
      mb(s.blocks.reduce((a, b) => a + b.index, 0)),
      s.blocks.reduce((a, b) => a + b.index, 0) / s.fleet.readings,
    ],
    [
      s.fleet.id,
      'Prometheus: chunks',
      mb(s.blocks.reduce((a, b) => a + b.chunks, 0)),
      s.blocks.reduce((a, b) => a + b.chunks, 0) / s.fleet.readings,
    ],
    [
      s.fleet.id,
      'Prometheus: meta.json, tombstones',
      mb(s.blocks.reduce((a, b) => a + b.bytes - b.index - b.chunks, 0)),
      s.blocks.reduce((a, b) => a + b.bytes - b.index - b.chunks, 0) / s.fleet.readings,
    ],
  ]);
  const queryTable = (rows: RowResult[]): string =>
    table(
      [
        'query',
        'answer (same from both, checked against the data)',
        'Nexus p50 / p99 ms',
        'Prometheus p50 / p99 ms',
        'p50 Nexus / Prometheus',
        'connections',
        'Nexus requests/s',
        'Prometheus requests/s',
        'requests/s Nexus / Prometheus',
      ],
      rows.map((x) => [
        x.row.label,
        answerText(x.answer),
        `${fmtNumber(x.nexus.p50)} / ${fmtNumber(x.nexus.p99)}`,
        `${fmtNumber(x.prom.p50)} / ${fmtNumber(x.prom.p99)}`,
        ratio(x.nexus.p50, x.prom.p50),
        String(x.row.connections),
        `${fmtNumber(x.nexus.rps)}${x.nexus.errors > 0 ? ` (${x.nexus.errors} errors)` : ''}`,
        `${fmtNumber(x.prom.rps)}${x.prom.errors > 0 ? ` (${x.prom.errors} errors)` : ''}`,
        ratio(x.nexus.rps, x.prom.rps),
      ]),
    );
  const realisticRows = [
    ...(r.queries.get('realistic') ?? []),
    ...(r.columnar === undefined ? [] : [r.columnar]),
  ];
  const noisyRows = r.queries.get('noisy');
  const load = r.sizes
    .map(
      (s) =>
        `${s.fleet.id}: Nexus wrote ${s.fleet.readings.toLocaleString('en-US')} readings in ${(s.nexusLoad.writeMs / 1000).toFixed(0)} s (${Math.round(s.fleet.readings / (s.nexusLoad.writeMs / 1000)).toLocaleString('en-US')}/s; the rollup job ${(s.nexusLoad.rollupMs / 1000).toFixed(0)} s of it and after)${s.nexusLoad.compact === undefined ? '' : `, compact ${(s.nexusLoad.compactMs / 1000).toFixed(1)} s (${JSON.stringify(s.nexusLoad.compact)})`}, VACUUM ${(s.nexusLoad.vacuumMs / 1000).toFixed(0)} s; the OpenMetrics files were ${mb(s.prom.fileBytes)} MB (written in ${(s.prom.writeMs / 1000).toFixed(0)} s), promtool took ${(s.prom.promtoolMs / 1000).toFixed(0)} s, Prometheus ran ${s.compactions} compactions`,
    )
    .join('; ');
  const compactNote =
    first?.nexusLoad.compact === undefined
      ? "This store has no `compact()` yet: Nexus keeps a row per reading (`samples`), so its figures are the row model's."
      : 'Then `store.compact()` sealed every window (the data ends over an hour ago), in passes 2 s apart as the sealing job makes them until no hot partition is left (a pass that cannot lock an emptied partition within 500 ms, autovacuum working on it say, leaves it to the next; each pass is in the loading line below).';
  const body = [
    `Nexus and Prometheus ${r.prometheus} side by side on the same readings, on this machine, in one run (${r.totalSeconds} s). Two data sets of ${readings.toLocaleString('en-US')} readings each: ${scale.hours} hours of ${r.gpus} GPUs (${scale.hosts} hosts x ${scale.gpusPerHost}) x ${FLEET_METRICS.length} DCGM gauges every 10 s, ending on a 2-hour edge over an hour ago.`,
    '',
    `**Nexus**: PostgreSQL 15 on disk (fsync on), loaded through the store's own write path (\`SqlStore.write\`, batches of every GPU's readings of 80 s in time order, two in flight, the rollup job every second, as collectors do), then the rollup job to the end. ${compactNote} Then \`VACUUM (ANALYZE)\`. Its size is \`pg_total_relation_size\` (heap, indexes, TOAST, free-space and visibility maps) of every table and partition in the database, so raw readings, rollups, latest values, dimensions and indexes. The gateway runs as its own process (\`node dist/cli/main.js gateway\`, default settings).`,
    '',
    `**Prometheus**: the same readings (same times to the millisecond, same float64 values) as OpenMetrics text with dcgm-exporter's labels (\`gpu\`, \`UUID\`, \`Hostname\`, \`device\`, \`modelName\`), backfilled with \`promtool tsdb create-blocks-from openmetrics\` (2-hour blocks, what a scraping Prometheus cuts from its head; one file per 2-hour window, as promtool reads its whole input once per block), then served by \`prometheus\` (no scrape targets, retention 100 years so nothing backfilled is deleted), which compacts them as it does its own blocks a minute after start (2-hour blocks into 6 and 18 hours, leaving out the newest block); the bench waits for that pass to finish. Its size is every file of the block directories (index, chunks, meta.json, tombstones); the WAL and head chunk directories hold nothing (no scraping) and are left out, as PostgreSQL's WAL is.`,
    '',
    table(['bytes per reading', 'readings', 'Nexus', 'Prometheus', 'Nexus / Prometheus'], sizeRows),
    '',
    'Where the bytes are:',
    '',
    table(['data', 'what', 'MB', 'bytes per reading'], whereRows),
    '',
    `Loading (not compared: each system's own way in): ${load}.`,
    '',
    `Queries on the realistic data. Each row first checks both answers against the data itself: the same number of series and points, and the same sum of the values (to 1e-9), or the bench stops. Nexus through \`GET /api/v1/telemetry\` (\`/latest\` for the latest values; raw rows \`limit=10000\`, one page; \`AUTH_MODE=none\`, as Prometheus has no authentication), Prometheus through \`/api/v1/query\` (raw: a range selector at the end of the data; latest: \`{__name__=~"DCGM_.+"}\` at the end of the data) and \`/api/v1/query_range\` (averages: \`avg_over_time(m[5m])\` step 300 s, \`avg_over_time(m[1m])\` step 60 s, evaluated 1 ms before each bucket's end: PromQL's ranges are closed at both ends, so each holds exactly Nexus's bucket [b, b + step)). Latency: requests one at a time, alternating Nexus and Prometheus, after two warm-up requests each, timed from sending to the last byte, \`Accept-Encoding: identity\`; up to ${r.options.requests} of each per row, fewer past ${r.options.budgetSeconds} s. Throughput: autocannon in its own process, two runs of each system alternated (Nexus, Prometheus, Nexus, Prometheus), each of a fixed number of requests (about ${r.options.loadSeconds} s worth at twice the one-at-a-time rate, at least two per connection) so that every run ends with its last answer; requests/s is 2xx answers / the run's wall time, the mean of the two runs (errors: other answers and timeouts, such as the gateway's 503 when its event loop lags more than \`MAX_EVENT_LOOP_DELAY\` or a request waits for a turn past \`API_QUEUE_TIMEOUT\`); 64 connections except the fleet row (4: its answers take seconds each).`,
    '',
    queryTable(realisticRows),
    '',
    table(
      [
        'answer bytes on the wire, 1 GPU raw over the whole range, `Accept-Encoding: gzip`',
        'Nexus',
        'Prometheus',
        'Nexus / Prometheus',
      ],
      r.bytesRow === undefined
        ? []
        : [
            [
              `${realisticRows[1]?.answer.points.toLocaleString('en-US') ?? '?'} points`,
              `${r.bytesRow.nexus.toLocaleString('en-US')} (${r.bytesRow.nexusEnc})`,
              `${r.bytesRow.prom.toLocaleString('en-US')} (${r.bytesRow.promEnc})`,
              ratio(r.bytesRow.nexus, r.bytesRow.prom),
            ],
          ],
    ),
    '',
    ...(noisyRows === undefined
      ? []
      : ['The same queries on the noisy data:', '', queryTable(noisyRows), '']),
    'Ceilings measured in the same run (autocannon, 64 connections), and peak RSS (`VmHWM`):',
    '',
    table(
      ['what', 'value'],
      [
        ...r.ceilings.map(([what, rps]): [string, string] => [
          `${what}, requests/s`,
          fmtNumber(rps),
        ]),
        ['gateway peak RSS over the queries, MB', fmtNumber(r.gatewayRss)],
        ['Prometheus peak RSS over the queries, MB', fmtNumber(r.promRss)],
      ],
    ),
  ].join('\n');
  return {
    id: 'history',
    title: 'History: Nexus and Prometheus side by side',
    body,
  };
}

/**
 * The cardinality section (issue 20): the same number of readings through the distributed pipeline
 * for a small fleet and for fleets of 1,000, 10,000 and 100,000 GPUs, each on a fresh etcd and a
 * fresh database; then a gateway on each fleet's database and every fleet endpoint, cold and warm.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import {
  measureDashboard,
  TYPIST_PAUSE_MS,
  type DashboardTiming,
} from '../test/helpers/dashboard-timing.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { launchChromium } from '../test/helpers/nexus-up.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { startGateway } from './gateway.js';
import { remoteWriteIngest, type RemoteWriteIngest } from './prometheus.js';
import { measureUsageSlice, USAGE_RUNS, type UsageSliceResult } from './usage-slice.js';
import {
  autocannonLoad,
  cpuSeconds,
  BENCH_DIR,
  exited,
  fmtNumber,
  freshDatabase,
  log,
  nexus,
  peakRssMb,
  pidOf,
  postgresCpuSeconds,
  percentile,
  spawnNexus,
  stopChild,
  table,
  type LoadRun,
  type Section,
} from './lib.js';

const CLUSTER = 'cardinality';
const GPUS_PER_HOST = 8;
/** The fields every fleet reports: utilisation (the heatmap's), power (the overview's), temperature. */
const METRICS = ['DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_GPU_TEMP'];
const HEATMAP_METRIC = 'DCGM_FI_DEV_GPU_UTIL';
/** The streamer's batch and publishes in flight, as in the end-to-end section. */
const BATCH = 500;
const IN_FLIGHT = 8;
/** Messages the collector claims and stores at once (one \`batch stored\` line), as the end-to-end section. */
const COLLECT_BATCH = 20;
/** Every request of the section gives up after this long (counted as an error, not waited for). */
const REQUEST_TIMEOUT_MS = 30_000;
/** Sequential warm requests made even when the first ones outlast the time given to them. */
const MIN_WARM = 3;
/** Endpoints slower than this (warm p50) get no concurrent run. */
const MAX_CONCURRENT_P50_MS = 1000;
/** The longest wait for the gateway's abandoned statements to end between endpoints. */
const SETTLE_MS = 90_000;
/** The collectors must have stored everything within this long, or the section fails. */
const INGEST_DEADLINE_MS = 900_000;
/** How long the rollup job gets to fold every reading after the last message is stored. */
const ROLLUP_DEADLINE_MS = 300_000;
/** Page loads of the dashboard per fleet (each in a fresh browser context); the median is reported. */
const DASHBOARD_RUNS = 3;

export interface FleetSpec {
  readonly label: string;
  readonly hosts: number;
  /** The reference the ingest ratio is against. */
  readonly reference: boolean;
}

interface Ingest {
  readonly readings: number;
  readonly instants: number;
  readonly seconds: number;
  readonly rate: number;
  readonly collectorRssMb: number;
  /** /proc/loadavg (1 minute) when the streamer started and when the last message was stored. */
  readonly load: readonly [number, number];
  /** CPU seconds each process spent from the streamer's spawn to the last message stored. */
  readonly cpu: IngestCpu;
  /**
   * The rollup job: readings still pending when the row count was checked (just after the last
   * message was stored), and seconds from the last message stored until none was.
   */
  readonly rollup: { readonly pending: number; readonly doneAfterS: number };
}

/** The small fleet's two files, ingested again just before a larger fleet's. */
interface Adjacent {
  readonly ingest: Ingest;
  readonly known: Ingest;
}

interface IngestCpu {
  readonly streamer: number;
  readonly collector: number;
  readonly etcd: number;
  readonly postgres: number;
}

/** The dashboard in Chromium (test/helpers/dashboard-timing.ts), median of DASHBOARD_RUNS. */
interface DashboardResult {
  readonly runs: readonly DashboardTiming[];
  readonly firstPaintMs: number;
  readonly drillMs: number;
  readonly searchMs: number;
  readonly searchBurstMs: number;
  readonly search: string;
  /** Why it was not measured (no browser, or the page never showed the heatmap). */
  readonly failed: string | undefined;
}

/** One request's outcome: status 0 for a timeout or a connection error. */
interface Answer {
  readonly status: number;
  readonly ms: number;
  readonly body: string;
}

interface EndpointResult {
  readonly name: string;
  /** Why it was not measured ("n/a (404)": the route does not exist on this build). */
  readonly na: string | undefined;
  readonly cold: Answer | undefined;
  /** Sequential requests after the cold one. */
  readonly warm: readonly number[];
  readonly warmP50: number;
  readonly warmP99: number;
  readonly concurrent: LoadRun | undefined;
  readonly status5xx: number;
  /** Timeouts and connection errors. */
  readonly errors: number;
  /** Answers other than 2xx and 5xx (e.g. a 400 for a parameter this build does not know). */
  readonly other: number;
  /** What the cold answer held (hits, cells, items of the total, bytes). */
  readonly answer: string;
}

interface FleetResult {
  readonly spec: FleetSpec;
  readonly gpus: number;
  /** The fleet's file (made by `nexus generate` for this run). */
  readonly file: string;
  /** The same file into Prometheus through its remote-write receiver (undefined: it failed). */
  readonly prometheus?: RemoteWriteIngest | undefined;
  /** The first file: every series seen for the first time at 100,000 GPUs (the issue's measure). */
  readonly ingest: Ingest;
  /** The second file, through the same collector: the same series, later readings. */
  readonly known: Ingest;
  /** The small fleet's ingest run again just before this fleet's (not for the small fleet). */
  readonly adjacent?: Adjacent | undefined;
  readonly endpoints: readonly EndpointResult[];
  readonly gatewayRssMb: number;
  readonly gatewayReadyMs: number;
  readonly dashboard: DashboardResult | undefined;
  /** The usage report and job over one dense 10-minute slice (undefined: it failed). */
  readonly usage: UsageSliceResult | undefined;
}

function parse(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The 1-minute load average of the machine (/proc/loadavg), NaN where there is none. */
function loadAverage(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return Number.NaN;
  }
}

/**
 * The generator's hostname of host `i` (0-based) of `hosts`: numbers padded to one width, at least
 * 4 digits (src/streamer/csv/generator.ts), so 12,500 hosts are gpu-node-00001..gpu-node-12500.
 */
const hostName = (i: number, hosts: number): string =>
  `gpu-node-${String(i + 1).padStart(Math.max(4, String(hosts).length), '0')}`;
/** The host in the middle of the cluster (the host, GPU and latest requests' and the search's). */
const middleHost = (hosts: number): string => hostName(Math.floor(hosts / 2), hosts);
/** What the search endpoint and the dashboard's search box look for: the middle host, after `gpu-`. */
const searchQuery = (hosts: number): string => middleHost(hosts).slice('gpu-'.length);

/**
 * A file of `instants` readings of METRICS for every GPU of `hosts` x 8, one second apart from
 * `start` (epoch ms), named by `part`. Made afresh for every run (a few seconds at 600,000
 * readings) under .data/bench.
 */
async function fleetFile(
  hosts: number,
  instants: number,
  start: number,
  part: string,
): Promise<string> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const file = join(BENCH_DIR, `cardinality-${hosts * GPUS_PER_HOST}x${instants}-${part}.csv`);
  const res = await nexus(
    [
      'generate',
      '--out',
      file,
      '--hosts',
      String(hosts),
      '--gpus',
      String(GPUS_PER_HOST),
      '--metrics',
      METRICS.join(','),
      '--timestamps',
      String(instants),
      '--interval',
      '1s',
      '--start',
      new Date(start).toISOString(),
    ],
    {},
  );
  if (res.code !== 0) throw new Error(`generate failed: ${res.stderr}`);
  return file;
}

/** The collector of a fleet's run, and when it logged each message stored (by message id). */
interface Collector {
  readonly proc: ChildProcess;
  readonly stored: Map<string, number>;
}

/**
 * One collector (started first, as in the end-to-end section), kept for the fleet's run: both
 * files go through it, and the gateway phase reads while it is up.
 */
async function startCollector(
  env: Record<string, string>,
  procs: ChildProcess[],
): Promise<Collector> {
  const stored = new Map<string, number>();
  let started = false;
  const proc = spawnNexus(
    ['collector'],
    // As the end-to-end section: the sealing job off (it would seal the window being written).
    {
      ...env,
      LOG_LEVEL: 'debug',
      WORKERS: '4',
      COLLECT_BATCH: String(COLLECT_BATCH),
      COMPACT_INTERVAL: '0',
    },
    (line) => {
      if (line.includes('"msg":"collector started"')) started = true;
      if (!line.includes('"msg":"batch stored"')) return;
      const o = parse(line) as { time?: string; batches?: string[] } | undefined;
      const at = Date.parse(o?.time ?? '');
      // A message delivered again (rare) keeps the time it was first stored.
      for (const id of o?.batches ?? []) if (!stored.has(id)) stored.set(id, at);
    },
  );
  procs.push(proc);
  for (const deadline = Date.now() + 60_000; !started;) {
    if (Date.now() > deadline) throw new Error('the collector did not start');
    if (proc.exitCode !== null) throw new Error('the collector exited');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, stored };
}

/**
 * A file through the collector from one streamer: readings / (last 'batch stored' line of the
 * collector for the file's messages - the streamer's spawn). Then the database must hold `total`
 * readings, and the rollup job fold them all, before the next step.
 */
async function ingest(
  env: Record<string, string>,
  file: string,
  readings: number,
  total: number,
  instants: number,
  collector: Collector,
  procs: ChildProcess[],
  servers: { etcdPid: number | undefined; pgData: string },
): Promise<Ingest> {
  const { stored } = collector;
  const published = new Map<string, number>();
  let summary: { records: number; cpuSeconds?: number } | undefined;
  const load0 = loadAverage();
  const cpu0 = {
    collector: cpuSeconds(collector.proc.pid),
    etcd: cpuSeconds(servers.etcdPid),
    postgres: postgresCpuSeconds(servers.pgData),
  };
  const t0 = Date.now();
  const streamer = spawnNexus(
    ['streamer', '--csv', file],
    {
      ...env,
      LOG_LEVEL: 'debug',
      LOOP_MODE: 'false',
      TIMESTAMP_MODE: 'original',
      BATCH_SIZE: String(BATCH),
      PUBLISH_CONCURRENCY: String(IN_FLIGHT),
      STREAM_INTERVAL: '0',
    },
    (line) => {
      if (line.includes('"msg":"batch published"')) {
        const o = parse(line) as { batch?: string; records?: number } | undefined;
        if (o?.batch !== undefined) published.set(o.batch, o.records ?? 0);
      } else if (line.includes('"msg":"summary:')) {
        summary = (parse(line) as { summary?: typeof summary } | undefined)?.summary;
      }
    },
  );
  procs.push(streamer);
  await exited(streamer);
  if (streamer.exitCode !== 0 || summary === undefined) {
    throw new Error(
      `streamer exited ${streamer.exitCode ?? streamer.signalCode} without a summary`,
    );
  }
  if (summary.records !== readings) {
    throw new Error(`the streamer published ${summary.records} of ${readings} readings`);
  }
  for (const deadline = Date.now() + INGEST_DEADLINE_MS; ;) {
    if ([...published.keys()].every((id) => stored.has(id))) break;
    if (Date.now() > deadline) throw new Error('not every message was stored');
    if (collector.proc.exitCode !== null) throw new Error('the collector exited');
    await new Promise((r) => setTimeout(r, 100));
  }
  const load1 = loadAverage();
  const cpu: IngestCpu = {
    streamer: summary.cpuSeconds ?? Number.NaN,
    collector: cpuSeconds(collector.proc.pid) - cpu0.collector,
    etcd: cpuSeconds(servers.etcdPid) - cpu0.etcd,
    postgres: postgresCpuSeconds(servers.pgData) - cpu0.postgres,
  };
  let last = 0;
  for (const id of published.keys()) last = Math.max(last, stored.get(id) ?? Number.NaN);
  const client = new pg.Client({ connectionString: env.DATABASE_URL });
  await client.connect();
  let pending = 0;
  let doneAfterS = 0;
  try {
    const count = await client.query<{ n: string }>(
      'SELECT (SELECT count(*) FROM samples) + (SELECT coalesce(sum(count), 0) FROM sample_chunks) AS n',
    );
    if (Number(count.rows[0]?.n) !== total) {
      throw new Error(`stored ${count.rows[0]?.n ?? 0} of ${total} readings`);
    }
    const pendingNow = async (): Promise<number> =>
      Number(
        (await client.query<{ n: string }>('SELECT count(*) AS n FROM samples_pending')).rows[0]?.n,
      );
    pending = await pendingNow();
    for (
      let n = pending, deadline = Date.now() + ROLLUP_DEADLINE_MS;
      n > 0;
      n = await pendingNow()
    ) {
      if (Date.now() > deadline) throw new Error(`the rollup job left ${n} readings pending`);
      await new Promise((r) => setTimeout(r, 100));
    }
    doneAfterS = (Date.now() - last) / 1000;
  } finally {
    await client.end();
  }
  const seconds = (last - t0) / 1000;
  return {
    readings,
    instants,
    seconds,
    rate: readings / seconds,
    collectorRssMb: peakRssMb(collector.proc.pid),
    load: [load0, load1],
    cpu,
    rollup: { pending, doneAfterS },
  };
}

async function get(url: string, token: string | undefined): Promise<Answer> {
  const t0 = performance.now();
  try {
    const res = await fetch(url, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body = await res.text();
    return { status: res.status, ms: performance.now() - t0, body };
  } catch {
    return { status: 0, ms: performance.now() - t0, body: '' };
  }
}

/**
 * Waits (at most SETTLE_MS) until no statement the gateway `pid` started since `since` is running
 * in PostgreSQL: a request the bench gave up on keeps running there (up to the statement timeout)
 * and would slow the endpoints measured next. Statements started before (the gateway's background
 * work, e.g. its idle-GPU count every minute) are not waited for. Returns the ms waited.
 */
async function settle(databaseUrl: string, pid: number | undefined, since: Date): Promise<number> {
  if (pid === undefined) return 0;
  const t0 = Date.now();
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    while (Date.now() - t0 < SETTLE_MS) {
      const r = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'active' AND application_name LIKE $1
           AND query_start >= $2`,
        [`gateway-%-${pid}`, since],
      );
      if (Number(r.rows[0]?.n) === 0) break;
      await new Promise((res) => setTimeout(res, 200));
    }
  } finally {
    await client.end();
  }
  return Date.now() - t0;
}

/** What an answer holds, in a few words: search hits, heatmap cells, a page of a list, bytes. */
function describe(a: Answer | undefined): string {
  if (a === undefined || a.status === 0) return '-';
  const bytes = `${fmtNumber(a.body.length / 1024)} kB`;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(a.body) as Record<string, unknown>;
  } catch {
    return a.status === 200 ? bytes : String(a.status);
  }
  if (a.status !== 200) {
    // The API's error body: {error: {code, message}}.
    const e = o.error as { code?: string; message?: string } | undefined;
    const why = `${e?.code ?? String(a.status)}: ${e?.message ?? ''}`;
    return `${a.status} ${why.length > 120 ? `${why.slice(0, 119)}…` : why}`.replaceAll('|', '/');
  }
  if (typeof o.q === 'string' && Array.isArray(o.hits)) {
    return `${o.hits.length} hits for "${o.q}", ${bytes}`;
  }
  if (Array.isArray(o.cells)) {
    return `${o.cells.length} cells (level ${String(o.level)}) of ${Number(o.gpus).toLocaleString('en-US')} GPUs, ${bytes}`;
  }
  if (typeof o.threshold_percent === 'number' && typeof o.count === 'number') {
    return `${o.count} idle GPUs, ${bytes}`;
  }
  if (typeof o.total === 'number' && typeof o.count === 'number') {
    return `${o.count} of ${o.total.toLocaleString('en-US')}, ${bytes}`;
  }
  return bytes;
}

/** The route does not exist on this build (the gateway's not-found handler, not an unknown id). */
const noRoute = (a: Answer): boolean => a.status === 404 && a.body.includes('"no route ');

/**
 * The cursor of the hosts page that starts in the middle of the cluster, walking the pages from the
 * first (`limit` up to 1,000 per page), or why there is none.
 */
async function middleCursor(
  base: string,
  hosts: number,
  token: string | undefined,
): Promise<{ cursor: string } | { why: string }> {
  const limit = Math.max(1, Math.min(1000, Math.floor(hosts / 2)));
  let cursor: string | undefined;
  let seen = 0;
  for (let page = 0; page < 1000; page++) {
    const a = await get(
      `${base}/hosts?limit=${limit}${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`,
      token,
    );
    if (a.status !== 200) return { why: `n/a (limit/cursor: ${a.status || 'timeout'})` };
    const body = JSON.parse(a.body) as { count?: number; next_cursor?: unknown };
    if (typeof body.next_cursor !== 'string') {
      return { why: body.next_cursor === null ? 'n/a (one page)' : 'n/a (no next_cursor)' };
    }
    cursor = body.next_cursor;
    seen += body.count ?? 0;
    if (seen >= hosts / 2) return { cursor };
  }
  return { why: 'n/a (no middle page within 1,000 pages)' };
}

/**
 * Every fleet endpoint on a gateway just started: one cold request each (in the table's order, so
 * the first pays for whatever the gateway loads first), then up to `sequential` requests each (or
 * `sequentialSeconds`, whichever ends first), then `concurrentSeconds` of autocannon with
 * `connections` connections.
 */
async function endpoints(
  gw: { url: string; token: string | undefined; pid: number | undefined; db: string },
  hosts: number,
  o: {
    sequential: number;
    sequentialSeconds: number;
    concurrentSeconds: number;
    connections: number;
  },
): Promise<EndpointResult[]> {
  const mid = middleHost(hosts);
  const c = `${gw.url}/api/v1/clusters/${CLUSTER}`;
  const list: [string, string | (() => Promise<{ cursor: string } | { why: string }>)][] = [
    ['overview', `${gw.url}/api/v1/overview`],
    ['cluster', c],
    ['hosts, first page', `${c}/hosts`],
    ['hosts, middle page (cursor)', () => middleCursor(c, hosts, gw.token)],
    ['host page', `${c}/hosts/${mid}`],
    ['GPU page', `${c}/hosts/${mid}/gpus/3`],
    ['cluster GPUs, first page', `${c}/gpus`],
    ['host latest', `${gw.url}/api/v1/telemetry/latest?cluster_id=${CLUSTER}&host_id=${mid}`],
    ['search', `${gw.url}/api/v1/search?q=${searchQuery(hosts)}`],
    ['heatmap', `${c}/heatmap?metric=${HEATMAP_METRIC}`],
    // Last: a report over every allocated GPU (docs/fleet.md, "Idle GPUs"), the default rule.
    ['idle GPUs', `${c}/idle`],
  ];
  const urls: [string, string | undefined, string | undefined][] = [];
  const colds = new Map<string, Answer>();
  for (const [name, target] of list) {
    let url: string;
    if (typeof target === 'string') url = target;
    else {
      const m = await target();
      if ('why' in m) {
        urls.push([name, undefined, m.why]);
        continue;
      }
      url = `${c}/hosts?cursor=${encodeURIComponent(m.cursor)}`;
    }
    const sent = new Date();
    const a = await get(url, gw.token);
    colds.set(name, a);
    urls.push([name, url, noRoute(a) ? 'n/a (404)' : undefined]);
    log(`  cold ${name}: ${a.status || 'timeout'} in ${Math.round(a.ms)} ms: ${describe(a)}`);
    if (a.status === 0) {
      log(`  waited ${await settle(gw.db, gw.pid, sent)} ms for the gateway's statements to end`);
    }
  }
  const out: EndpointResult[] = [];
  for (const [name, url, na] of urls) {
    const cold = colds.get(name);
    if (url === undefined || na !== undefined) {
      out.push({
        name,
        na,
        cold,
        warm: [],
        warmP50: Number.NaN,
        warmP99: Number.NaN,
        concurrent: undefined,
        status5xx: 0,
        errors: 0,
        other: 0,
        answer: describe(cold),
      });
      continue;
    }
    const answers: Answer[] = cold === undefined ? [] : [cold];
    const warm: number[] = [];
    const since = new Date();
    const until = Date.now() + o.sequentialSeconds * 1000;
    // At least MIN_WARM requests however slow, unless one times out.
    let timedOut = cold?.status === 0;
    for (let i = 0; i < o.sequential && (Date.now() < until || (i < MIN_WARM && !timedOut)); i++) {
      const a = await get(url, gw.token);
      answers.push(a);
      warm.push(a.ms);
      timedOut ||= a.status === 0;
    }
    const sorted = [...warm].sort((x, y) => x - y);
    const warmP50 = percentile(sorted, 50);
    // Concurrent requests to an endpoint this slow would only queue, and outlive autocannon's run
    // (it does not wait for them), slowing the endpoints measured after it.
    const concurrent =
      warmP50 > MAX_CONCURRENT_P50_MS
        ? undefined
        : await autocannonLoad(url, {
            connections: o.connections,
            seconds: o.concurrentSeconds,
            timeoutSeconds: REQUEST_TIMEOUT_MS / 1000,
            ...(gw.token === undefined ? {} : { headers: { authorization: `Bearer ${gw.token}` } }),
          });
    const status5xx = answers.filter((a) => a.status >= 500).length + (concurrent?.status5xx ?? 0);
    const errors = answers.filter((a) => a.status === 0).length + (concurrent?.timeouts ?? 0);
    const other =
      answers.filter(
        (a) => a.status !== 0 && (a.status < 200 || (a.status >= 300 && a.status < 500)),
      ).length +
      (concurrent === undefined
        ? 0
        : Math.max(0, concurrent.errors - concurrent.status5xx - concurrent.timeouts));
    const r: EndpointResult = {
      name,
      na: undefined,
      cold,
      warm,
      warmP50,
      warmP99: percentile(sorted, 99),
      concurrent,
      status5xx,
      errors,
      other,
      answer: describe(cold),
    };
    // Only a request given up on (a timeout, a connection error) can leave a statement behind.
    const waited = errors > 0 ? await settle(gw.db, gw.pid, since) : 0;
    if (waited > 1000) log(`  waited ${waited} ms for the gateway's statements to end`);
    log(
      `  ${name}: warm p50 ${fmtNumber(r.warmP50)} ms, p99 ${fmtNumber(r.warmP99)} ms (${warm.length}); ${concurrent === undefined ? 'no concurrent run' : `${o.connections} connections: ${Math.round(concurrent.rps)} req/s, p50 ${concurrent.p50} ms, p99 ${concurrent.p99} ms`}; 5xx ${status5xx}, errors ${errors}, other ${other}`,
    );
    out.push(r);
  }
  return out;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] ?? Number.NaN);
};

/** The dashboard on the gateway, DASHBOARD_RUNS page loads in Chromium, typing `search`. */
async function dashboard(
  url: string,
  token: string | undefined,
  search: string,
): Promise<DashboardResult> {
  const runs: DashboardTiming[] = [];
  let failed: string | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    browser = await launchChromium();
    for (let i = 0; i < DASHBOARD_RUNS; i++) {
      const t = await measureDashboard(url, token, { cluster: CLUSTER, search, browser });
      log(
        `  dashboard: first paint ${Math.round(t.firstPaintMs)} ms, drill-down ${Math.round(t.drillMs)} ms, search ${Math.round(t.searchMs)} ms (burst ${Math.round(t.searchBurstMs)} ms)`,
      );
      runs.push(t);
    }
  } catch (e) {
    failed = e instanceof Error ? e.message.split('\n')[0] : String(e);
    log(`  dashboard: ${failed ?? ''}`);
  } finally {
    await browser?.close();
  }
  return {
    runs,
    firstPaintMs: median(runs.map((r) => r.firstPaintMs)),
    drillMs: median(runs.map((r) => r.drillMs)),
    searchMs: median(runs.map((r) => r.searchMs)),
    searchBurstMs: median(runs.map((r) => r.searchBurstMs)),
    search,
    failed: runs.length === DASHBOARD_RUNS ? undefined : failed,
  };
}

/** A fleet's two files through a fresh etcd, database and collector. */
interface FleetIngest {
  readonly gpus: number;
  readonly file: string;
  readonly ingest: Ingest;
  readonly known: Ingest;
  readonly etcd: EtcdServer;
  readonly url: string;
  readonly collector: Collector;
}

/**
 * The fleet's two files, one after the other in time, the second ending when they are made (the
 * fleet reports live): the first brings every series for the first time, the second only series
 * the collector knows. The processes started are in `procs` (the collector still running); the
 * etcd server and the database made are in `made` (also when this throws), the caller's to destroy.
 */
async function ingestFleet(
  server: PgServer,
  spec: FleetSpec,
  readings: number,
  procs: ChildProcess[],
  made: { etcd?: EtcdServer; url?: string },
): Promise<FleetIngest> {
  const gpus = spec.hosts * GPUS_PER_HOST;
  const instants = readings / (gpus * METRICS.length);
  if (!Number.isInteger(instants)) throw new Error(`${readings} readings do not fit ${gpus} GPUs`);
  log(
    `cardinality, ${spec.label}: ${gpus} GPUs x ${METRICS.length} metrics x ${instants} instants`,
  );
  const now = Math.floor(Date.now() / 1000) * 1000;
  const file = await fleetFile(spec.hosts, instants, now - (2 * instants - 1) * 1000, 'new');
  const knownFile = await fleetFile(spec.hosts, instants, now - (instants - 1) * 1000, 'known');
  const etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
  made.etcd = etcd;
  const url = await freshDatabase(server, 'card');
  made.url = url;
  const env = {
    ETCD_ENDPOINTS: etcd.endpoint,
    CLUSTER_ID: CLUSTER,
    DATABASE_URL: url,
    LOG_LEVEL: 'warn',
  };
  const migrated = await nexus(['migrate'], env);
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const collector = await startCollector(env, procs);
  const servers = { etcdPid: pidOf(etcd.dataDir), pgData: join(server.dir, 'data') };
  const describe = (what: string, ing: Ingest): string =>
    `  ${what}: ${readings} readings in ${ing.seconds.toFixed(1)} s = ${Math.round(ing.rate)} readings/s; collector ${ing.collectorRssMb} MB; load ${ing.load.join(' -> ')}; CPU µs/reading: streamer ${((ing.cpu.streamer * 1e6) / readings).toFixed(1)}, collector ${((ing.cpu.collector * 1e6) / readings).toFixed(1)}, etcd ${((ing.cpu.etcd * 1e6) / readings).toFixed(1)}, PostgreSQL ${((ing.cpu.postgres * 1e6) / readings).toFixed(1)}`;
  const ing = await ingest(env, file, readings, readings, instants, collector, procs, servers);
  log(describe('ingest, first sight', ing));
  const known = await ingest(
    env,
    knownFile,
    readings,
    2 * readings,
    instants,
    collector,
    procs,
    servers,
  );
  log(describe('ingest, known series', known));
  return { gpus, file, ingest: ing, known, etcd, url, collector };
}

/**
 * The small fleet's ingest again, just before a larger fleet's: that fleet's ratios are to it, so
 * that a slow or fast phase of the machine (minutes long, on shared cores) moves both alike. Its
 * database is dropped afterwards (not left for the server's background work to take up during
 * the next fleet's ingest). Undefined when it fails: the larger fleet is measured all the same.
 */
async function adjacentReference(
  server: PgServer,
  spec: FleetSpec,
  readings: number,
): Promise<Adjacent | undefined> {
  const procs: ChildProcess[] = [];
  const made: { etcd?: EtcdServer; url?: string } = {};
  try {
    const f = await ingestFleet(
      server,
      { ...spec, label: `${spec.label} (again)` },
      readings,
      procs,
      made,
    );
    return { ingest: f.ingest, known: f.known };
  } catch (err) {
    log(
      `  the small fleet's run again failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    return undefined;
  } finally {
    for (const p of procs.reverse()) await stopChild(p);
    await made.etcd?.destroy();
    if (made.url !== undefined) {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        const name = decodeURIComponent(new URL(made.url).pathname.slice(1));
        await client.query(`DROP DATABASE IF EXISTS "${name.replaceAll('"', '""')}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    }
  }
}

/** One fleet: a fresh etcd and database, ingest, then the gateway's endpoints. */
async function fleetRun(
  server: PgServer,
  spec: FleetSpec,
  readings: number,
  load: {
    sequential: number;
    sequentialSeconds: number;
    concurrentSeconds: number;
    connections: number;
    dashboardMinGpus: number;
  },
): Promise<FleetResult> {
  const procs: ChildProcess[] = [];
  const made: { etcd?: EtcdServer; url?: string } = {};
  try {
    const {
      gpus,
      file,
      ingest: ing,
      known,
      etcd,
      url,
      collector,
    } = await ingestFleet(server, spec, readings, procs, made);
    const t0 = Date.now();
    const gw = await startGateway(
      { DATABASE_URL: url, ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: CLUSTER },
      'token',
    );
    procs.push(gw.proc);
    const gatewayReadyMs = Date.now() - t0;
    const eps = await endpoints({ ...gw, pid: gw.proc.pid, db: url }, spec.hosts, load);
    const dash =
      gpus >= load.dashboardMinGpus
        ? await dashboard(gw.url, gw.token, searchQuery(spec.hosts))
        : undefined;
    let usage: UsageSliceResult | undefined;
    try {
      usage = await measureUsageSlice({
        databaseUrl: url,
        gatewayUrl: gw.url,
        token: gw.token,
        cluster: CLUSTER,
      });
      log(
        `  usage, one dense slice (${usage.rollupRows} rollup rows, ${usage.allocationMinutes} allocation minutes): from the minutes ${usage.fromMinutesMs.map((x) => Math.round(x)).join(', ')} ms; the job ${Math.round(usage.jobMs)} ms; from usage_10m ${usage.keptMs.map((x) => Math.round(x)).join(', ')} ms${usage.failures.length > 0 ? `; failures ${usage.failures.join(', ')}` : ''}`,
      );
    } catch (err) {
      log(`  usage slice failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    const gatewayRssMb = peakRssMb(gw.proc.pid);
    // VmHWM: the peak over both files and the gateway phase.
    const collectorRssMb = peakRssMb(collector.proc.pid);
    log(`  peak RSS: gateway ${gatewayRssMb} MB, collector ${collectorRssMb} MB`);
    return {
      spec,
      gpus,
      file,
      ingest: { ...ing, collectorRssMb },
      known,
      endpoints: eps,
      gatewayRssMb,
      gatewayReadyMs,
      dashboard: dash,
      usage,
    };
  } finally {
    for (const p of procs.reverse()) await stopChild(p);
    await made.etcd?.destroy();
  }
}

const ms = (v: number): string => (Number.isFinite(v) ? fmtNumber(v) : '-');

/** The goals of issue 20, judged at the largest fleet measured. */
function goals(largest: FleetResult, reference: FleetResult, full: boolean): string {
  const at = `${largest.gpus.toLocaleString('en-US')} GPUs${full ? '' : ' (--quick: not 100,000)'}`;
  /** The ratio to the small fleet run just before (else to the run's first), and to the first. */
  const ratioRow = (what: string, pick: (x: { ingest: Ingest; known: Ingest }) => Ingest) => {
    const mine = pick(largest).rate;
    const first = pick(reference).rate;
    const near = largest.adjacent === undefined ? first : pick(largest.adjacent).rate;
    const r = mine / near;
    return [
      what,
      '>= 0.7',
      `${r.toFixed(2)} (${fmtNumber(mine)} / ${fmtNumber(near)} readings/s${largest.adjacent === undefined ? '' : `, the small fleet run just before; to the section's first small fleet: ${(mine / first).toFixed(2)}`})`,
      r >= 0.7 ? 'met' : 'not met',
    ];
  };
  const rows: (string | number)[][] = [
    ratioRow(
      "ingest rate / small-fleet rate, same run (first sight: every reading, the issue's measure)",
      (x) => x.ingest,
    ),
    ratioRow(
      'ingest rate / small-fleet rate, same run (known series: the second file)',
      (x) => x.known,
    ),
  ];
  for (const name of [
    'overview',
    'cluster',
    'hosts, first page',
    'hosts, middle page (cursor)',
    'GPU page',
    'host latest',
  ]) {
    const e = largest.endpoints.find((x) => x.name === name);
    if (e === undefined) continue;
    const ok = e.na === undefined && e.warmP50 < 20 && e.warmP99 < 100;
    rows.push([
      `${name}: p50 / p99 (warm, sequential)`,
      '< 20 ms / < 100 ms',
      e.na ??
        `${ms(e.warmP50)} / ${ms(e.warmP99)} ms${e.errors > 0 ? ` (${e.errors} timeouts/errors at ${REQUEST_TIMEOUT_MS / 1000} s)` : ''}`,
      ok ? 'met' : 'not met',
    ]);
  }
  rows.push([
    'gateway peak RSS',
    '< 1 GB',
    `${fmtNumber(largest.gatewayRssMb)} MB`,
    largest.gatewayRssMb < 1024 ? 'met' : 'not met',
  ]);
  const d = largest.dashboard;
  const dash = (what: string, goal: string, limit: number, v: number | undefined): void => {
    const measured = d === undefined ? undefined : v;
    const value =
      measured === undefined || !Number.isFinite(measured)
        ? 'not measured'
        : `${fmtNumber(measured)} ms`;
    // A run that failed is a miss, whatever the others measured.
    const failed =
      d?.failed === undefined
        ? undefined
        : `${value} over ${d.runs.length} of ${DASHBOARD_RUNS} runs; the next failed: ${d.failed}`;
    rows.push([
      `dashboard ${what} (Chromium, median of ${DASHBOARD_RUNS})`,
      goal,
      failed ?? value,
      failed === undefined && measured !== undefined && measured < limit ? 'met' : 'not met',
    ]);
  };
  dash('first paint', '< 2 s', 2000, d?.firstPaintMs);
  dash('drill-down (click on a group)', '< 100 ms', 100, d?.drillMs);
  dash(
    `search (last key, ${TYPIST_PAUSE_MS} ms after the others, to hits)`,
    '< 100 ms',
    100,
    d?.searchMs,
  );
  const failed = largest.endpoints.reduce((n, e) => n + e.status5xx, 0);
  const errors = largest.endpoints.reduce((n, e) => n + e.errors, 0);
  rows.push([
    'no 5xx on any fleet endpoint, cold or warm (timeouts counted too)',
    '0',
    `${failed} 5xx, ${errors} timeouts/errors`,
    failed + errors === 0 ? 'met' : 'not met',
  ]);
  return [
    `Goals of issue 20, at ${at}:`,
    '',
    table(['figure', 'goal', 'measured', 'verdict'], rows),
  ].join('\n');
}

/**
 * The cardinality section: `fleets` in order (the reference first), each with `readings` readings.
 */
export async function benchCardinality(options: {
  fleets: readonly FleetSpec[];
  readings: number;
  sequential: number;
  sequentialSeconds: number;
  concurrentSeconds: number;
  connections: number;
  /** Fleets of at least this many GPUs get the dashboard measured in Chromium. */
  dashboardMinGpus: number;
  /** The 100,000-GPU fleet is among them (else the goals are judged at the largest measured). */
  full: boolean;
}): Promise<Section> {
  const t0 = Date.now();
  const load0 = loadAverage();
  mkdirSync(BENCH_DIR, { recursive: true });
  const server = await startPostgres({ durable: true, baseDir: BENCH_DIR });
  const results: FleetResult[] = [];
  try {
    const referenceSpec = options.fleets.find((f) => f.reference);
    for (const spec of options.fleets) {
      const adjacent =
        spec.reference || referenceSpec === undefined
          ? undefined
          : await adjacentReference(server, referenceSpec, options.readings);
      const r = { ...(await fleetRun(server, spec, options.readings, options)), adjacent };
      // What the alternative pays for the same readings, on the same machine, alone.
      const prometheus = await remoteWriteIngest(r.file, BENCH_DIR).catch((err: unknown) => {
        log(`  prometheus remote write failed: ${String(err)}`);
        return undefined;
      });
      if (prometheus !== undefined)
        log(
          `  prometheus (remote write): ${prometheus.readings} readings, ${prometheus.series} series in ${prometheus.seconds.toFixed(2)} s; CPU ${((prometheus.cpuSeconds * 1e6) / prometheus.readings).toFixed(2)} µs/reading`,
        );
      results.push({ ...r, prometheus });
    }
  } finally {
    await server.destroy();
  }
  const wall = Math.round((Date.now() - t0) / 1000);
  const load1 = loadAverage();
  const reference = results.find((r) => r.spec.reference) ?? results[0];
  const largest = results.reduce<FleetResult | undefined>(
    (a, b) => (a === undefined || b.gpus > a.gpus ? b : a),
    undefined,
  );
  if (reference === undefined || largest === undefined) throw new Error('no fleet measured');
  const cell = (e: EndpointResult | undefined): string => {
    if (e === undefined) return '-';
    if (e.na !== undefined) return e.na;
    return `${ms(e.warmP50)} / ${ms(e.warmP99)}`;
  };
  const names = results[0]?.endpoints.map((e) => e.name) ?? [];
  const coldCell = (e: EndpointResult | undefined): string => {
    if (e?.na !== undefined) return e.na;
    if (e?.cold === undefined) return '-';
    return `${ms(e.cold.ms)} (${e.cold.status || 'timeout'})`;
  };
  const perFleet = results.map((r) =>
    table(
      [
        'endpoint',
        'cold ms (status)',
        `warm p50 ms`,
        'warm p99 ms',
        'sequential requests',
        `concurrent req/s`,
        'concurrent p50 ms',
        'concurrent p99 ms',
        '5xx',
        'timeouts/errors',
        'other non-2xx',
        'cold answer',
      ],
      r.endpoints.map((e) => [
        e.name,
        coldCell(e),
        e.na === undefined ? ms(e.warmP50) : e.na,
        ms(e.warmP99),
        String(e.warm.length),
        e.concurrent === undefined
          ? e.na === undefined
            ? `skipped (warm p50 > ${MAX_CONCURRENT_P50_MS} ms)`
            : '-'
          : e.concurrent.rps,
        // No answer within the run: autocannon's percentiles would read 0.
        e.concurrent === undefined || e.concurrent.rps === 0 ? '-' : e.concurrent.p50,
        e.concurrent === undefined || e.concurrent.rps === 0 ? '-' : e.concurrent.p99,
        String(e.status5xx),
        String(e.errors),
        String(e.other),
        e.answer,
      ]),
    ),
  );
  return {
    id: 'cardinality',
    title: 'Cardinality: the same readings from 1,000 to 100,000 GPUs',
    body: [
      `Every fleet (hosts x ${GPUS_PER_HOST} GPUs, ${METRICS.length} fields: ${METRICS.map((m) => `\`${m}\``).join(', ')}) sends the same ${options.readings.toLocaleString('en-US')} readings twice, in two files made by \`nexus generate\` (more instants for fewer GPUs, one second apart; the second file's instants follow the first's, its last one when the files are made, so the fleet reports live) through the distributed pipeline, each on a fresh etcd and a fresh PostgreSQL 15 database (one server, data on disk, fsync on): one \`nexus collector\` (\`WORKERS=4\`, \`COLLECT_BATCH=${COLLECT_BATCH}\`, \`COMPACT_INTERVAL=0\`, as the end-to-end section) started first, then one \`nexus streamer\` (\`BATCH_SIZE=${BATCH}\`, \`PUBLISH_CONCURRENCY=${IN_FLIGHT}\`) on the first file. Ingest readings/s (first sight, the issue's measure) is readings / (the last message's \`batch stored\` line of the collector, logged after its commit - the streamer's spawn); the row count is checked. The rollup job (which the collector runs every second: docs/storage.md) folds the readings into the 1-minute rollup and the latest values behind the ingest: the first table also says how many readings it still had pending when the row count was checked, just after the last message was stored, and when (seconds after that message) it had folded them all. At 100,000 GPUs every reading of the first instant of the first file is a series seen for the first time, so that figure is mostly the cost of new identities. Then the second file goes through the same collector (and a streamer of its own), timed the same way, once the first file's readings are all stored and folded: every series in it is known (to the collector's caches and to the database), which is the steady state of a fleet that keeps reporting. Each rate (first sight, known series) is given as a ratio to the small fleet's same rate in the same run twice: to the section's first small fleet, and to the small fleet's two files ingested again (fresh etcd, database and collector, no gateway; the database dropped after) just before each larger fleet's, so that a slower or faster phase of the machine, which lasts minutes on shared cores, moves both sides of that ratio alike; the goals below use the latter. The load average (1 minute, \`/proc/loadavg\`) was ${fmtNumber(load0)} when the section started and ${fmtNumber(load1)} when it ended; each fleet's, when its streamer started and when its last message was stored, is in the first table (for the first file). Then \`nexus gateway\` (\`AUTH_MODE=token\`, every request carries a read token; \`RATE_LIMIT_PER_MINUTE=0\`) is started on that database while the collector stays up: cold is the first request of each endpoint after \`/readyz\` answered (in the order of the table, so the first pays for what the gateway loads first); warm is up to ${options.sequential} sequential requests (or ${options.sequentialSeconds} s, whichever ends first, but at least ${MIN_WARM}); concurrent is autocannon in its own process, ${options.connections} connections for ${options.concurrentSeconds} s, skipped for an endpoint whose warm p50 is over ${MAX_CONCURRENT_P50_MS} ms (the requests would only queue, and outlive autocannon's run, slowing the endpoints measured next). Every request gives up after ${REQUEST_TIMEOUT_MS / 1000} s (counted under timeouts/errors); after an endpoint with a request given up on, the bench waits (up to ${SETTLE_MS / 1000} s) until no statement the gateway started since that endpoint's requests began is left running in PostgreSQL, as a request given up on runs on there until the statement timeout and would slow the next endpoint (the gateway's own background statements, such as its idle-GPU count every minute, are not waited for: they load the database while everything is measured, as they would in use). The host, GPU (index 3), host latest and search (\`q=\` the host's name after \`gpu-\`, e.g. \`${searchQuery(largest.spec.hosts)}\`: a prefix of a part of the name, so it matches) requests are for the host in the middle of the cluster; the middle hosts page is reached by walking \`next_cursor\` from the first page (pages of up to 1,000), then asked with the default page size; the cluster GPUs page is \`GET /api/v1/clusters/{c}/gpus\` (default page); the heatmap is the whole cluster's \`${HEATMAP_METRIC}\` (default \`max_cells\`); idle GPUs is \`GET /api/v1/clusters/{c}/idle\` with the gateway's default rule (a statement over every allocated GPU: docs/fleet.md, "Idle GPUs"), measured last; what each cold answer held is in the per-fleet tables. An endpoint this build does not have is "n/a (404)". Then, on fleets of ${options.dashboardMinGpus.toLocaleString('en-US')} GPUs or more, the dashboard that gateway serves, in Debian's Chromium (playwright-core, 1440x900, no CPU throttling, on the same 2 cores as the gateway, collector, etcd and PostgreSQL), through \`measureDashboard\` of test/helpers/dashboard-timing.ts: ${DASHBOARD_RUNS} page loads, each in a fresh browser context (empty cache) with the read token; first paint is navigation start to the heatmap's data on screen (the page's \`nexus:heatmap-shown\` mark), drill-down a click on the first aggregated cell to its drilled-down heatmap shown, search the same \`q\` typed in the header's search box, all but its last character at once and the last ${TYPIST_PAUSE_MS} ms later (a typist's pace), from that key's event in the page to the hits of the whole \`q\` shown (the box searches at each key, at most once every 50 ms: \`SEARCH_INTERVAL_MS\` of dashboard/src/search-box.ts), and "search, burst" the same with the last key typed right after the others, which waits for the rest of that interval; the median of the ${DASHBOARD_RUNS} is reported (every run below the per-fleet table). Peak RSS is each process's \`VmHWM\` (the gateway's after the dashboard's loads). Wall time of the section: ${wall} s.`,
      '',
      table(
        [
          'fleet',
          'GPUs',
          'hosts',
          'instants (a file)',
          'readings (a file)',
          'seconds (first sight)',
          'readings/s (first sight)',
          'ratio to the first small fleet',
          'seconds (known series)',
          'readings/s (known series)',
          'ratio to the first small fleet',
          'small fleet run just before: readings/s, first sight / known',
          'ratio to it: first sight / known',
          'load avg at ingest start -> end (first file)',
          'rollup: pending at the end (first file)',
          'all folded s after (first file)',
          'gateway ready s',
          'peak RSS MB: collector',
          'gateway',
        ],
        results.map((r) => [
          r.spec.label,
          r.gpus.toLocaleString('en-US'),
          r.spec.hosts.toLocaleString('en-US'),
          r.ingest.instants.toLocaleString('en-US'),
          r.ingest.readings.toLocaleString('en-US'),
          r.ingest.seconds,
          r.ingest.rate,
          (r.ingest.rate / reference.ingest.rate).toFixed(2),
          r.known.seconds,
          r.known.rate,
          (r.known.rate / reference.known.rate).toFixed(2),
          r.adjacent === undefined
            ? '-'
            : `${fmtNumber(r.adjacent.ingest.rate)} / ${fmtNumber(r.adjacent.known.rate)}`,
          r.adjacent === undefined
            ? '-'
            : `${(r.ingest.rate / r.adjacent.ingest.rate).toFixed(2)} / ${(r.known.rate / r.adjacent.known.rate).toFixed(2)}`,
          r.ingest.load.map(fmtNumber).join(' -> '),
          r.ingest.rollup.pending.toLocaleString('en-US'),
          r.ingest.rollup.doneAfterS,
          r.gatewayReadyMs / 1000,
          r.ingest.collectorRssMb,
          r.gatewayRssMb,
        ]),
      ),
      '',
      `CPU of the ingest by process, µs per reading (CPU seconds from the streamer's spawn to the last message stored / readings; the streamer's from its own summary, \`getrusage\`; the collector's and etcd's from /proc; PostgreSQL's the whole server's, the backends it has reaped included), and the total's ratio to the small fleet's same figure (a rate ratio on 2 fully busy cores is about the inverse of it), for each file. Beside the first, what the alternative pays for the same file: after each fleet's run, with nothing else running, a fresh \`prometheus\` (Debian's, its TSDB in the bench directory) takes the file's readings through its remote-write receiver as Prometheus's own remote-write queue sends them (one time series per reading, series sharded by their labels over 8 shards, each sending requests of 500 samples one after the other, the shards at once; the requests are encoded before the clock starts, every sample must be appended); its CPU (utime + stime from /proc) from the first request to the last answer, per reading, and its ratio to its own small fleet's:`,
      '',
      table(
        [
          'fleet',
          'streamer',
          'collector',
          'etcd',
          'PostgreSQL',
          'total',
          'total / small fleet',
          'Prometheus (remote write)',
          'Prometheus / its small fleet',
        ],
        results.flatMap((r) => {
          const prom = (x: FleetResult): number | undefined =>
            x.prometheus === undefined
              ? undefined
              : (x.prometheus.cpuSeconds * 1e6) / x.prometheus.readings;
          const mine = prom(r);
          const theirs = prom(reference);
          const total = (i: Ingest): number =>
            (i.cpu.streamer + i.cpu.collector + i.cpu.etcd + i.cpu.postgres) / i.readings;
          const row = (what: string, i: Ingest, ref: Ingest, prometheus: boolean): string[] => {
            const per = (v: number): string => fmtNumber((v * 1e6) / i.readings);
            return [
              `${r.spec.label}, ${what}`,
              per(i.cpu.streamer),
              per(i.cpu.collector),
              per(i.cpu.etcd),
              per(i.cpu.postgres),
              fmtNumber(total(i) * 1e6),
              (total(i) / total(ref)).toFixed(2),
              !prometheus ? '-' : mine === undefined ? 'failed' : fmtNumber(mine),
              !prometheus || mine === undefined || theirs === undefined
                ? '-'
                : (mine / theirs).toFixed(2),
            ];
          };
          return [
            row('first sight', r.ingest, reference.ingest, true),
            row('known series', r.known, reference.known, false),
          ];
        }),
      ),
      '',
      'The dashboard in Chromium, median of the page loads, ms:',
      '',
      table(
        ['fleet', 'first paint', 'drill-down', 'search', 'search, burst', 'search typed'],
        results.map((r) => {
          const d = r.dashboard;
          if (d === undefined) return [r.spec.label, 'not measured', '-', '-', '-', '-'];
          if (d.failed !== undefined && d.runs.length === 0)
            return [r.spec.label, d.failed, '-', '-', '-', d.search];
          return [
            r.spec.label,
            d.firstPaintMs,
            d.drillMs,
            d.searchMs,
            d.searchBurstMs,
            `\`${d.search}\``,
          ];
        }),
      ),
      '',
      `Usage over one 10-minute slice of dense minutes (docs/fleet.md, "Usage and showback"): the bench's files hold 4 seconds of readings at 100,000 GPUs (83 minutes of 80 GPUs for the small fleet), which does not load the usage report at a fleet's size, so after the endpoints the slice before the fleet's first reading is filled with SQL (every GPU: 10 minutes of \`DCGM_FI_DEV_GPU_UTIL\` and \`DCGM_FI_DEV_POWER_USAGE\` in \`samples_1m\`, and its workload allocated each minute; then \`ANALYZE\`) and marked for the usage job an hour ahead, so the collector's own job leaves it to the bench. Then \`GET /api/v1/clusters/{c}/usage?group_by=namespace\` over the slice, ${USAGE_RUNS} times while it is read from the 1-minute tables; the usage job (\`rollUpUsage\`, in the bench's process) computing it into \`usage_10m\`; the same request ${USAGE_RUNS} times again. Medians:`,
      '',
      table(
        [
          'fleet',
          'rows added (rollup + allocation)',
          'report from the minutes, ms',
          'the job, ms',
          'report from usage_10m, ms',
        ],
        results.map((r) => {
          const u = r.usage;
          if (u === undefined) return [r.spec.label, 'failed', '-', '-', '-'];
          return [
            r.spec.label,
            (u.rollupRows + u.allocationMinutes).toLocaleString('en-US'),
            fmtNumber(median(u.fromMinutesMs)),
            fmtNumber(u.jobMs),
            `${fmtNumber(median(u.keptMs))}${u.failures.length > 0 ? ` (failures: ${u.failures.join(', ')})` : ''}`,
          ];
        }),
      ),
      '',
      'Warm p50 / p99 ms (sequential) per endpoint and fleet:',
      '',
      table(
        ['endpoint', ...results.map((r) => r.spec.label)],
        names.map((n) => [n, ...results.map((r) => cell(r.endpoints.find((e) => e.name === n)))]),
      ),
      '',
      'Cold (first request after the gateway started), ms and status:',
      '',
      table(
        ['endpoint', ...results.map((r) => r.spec.label)],
        names.map((n) => [
          n,
          ...results.map((r) => coldCell(r.endpoints.find((e) => e.name === n))),
        ]),
      ),
      '',
      ...results.flatMap((r, i) => [
        `${r.spec.reference ? `${r.spec.label} (${r.gpus.toLocaleString('en-US')} GPUs)` : r.spec.label}, every figure:`,
        '',
        perFleet[i] ?? '',
        '',
        ...(r.dashboard === undefined || r.dashboard.runs.length === 0
          ? []
          : [
              `Dashboard page loads (first paint / drill-down / search / search, burst ms): ${r.dashboard.runs.map((t) => `${fmtNumber(t.firstPaintMs)} / ${fmtNumber(t.drillMs)} / ${fmtNumber(t.searchMs)} / ${fmtNumber(t.searchBurstMs)}`).join('; ')}.`,
              '',
            ]),
      ]),
      goals(largest, reference, options.full),
    ].join('\n'),
  };
}

/**
 * The cardinality section (issue 20): the same number of readings through the distributed pipeline
 * for a small fleet and for fleets of 1,000, 10,000 and 100,000 GPUs, each on a fresh etcd and a
 * fresh database; then a gateway on each fleet's database and every fleet endpoint, cold and warm.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { startGateway } from './gateway.js';
import {
  autocannonLoad,
  BENCH_DIR,
  exited,
  fmtNumber,
  freshDatabase,
  log,
  nexus,
  peakRssMb,
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
}

interface FleetResult {
  readonly spec: FleetSpec;
  readonly gpus: number;
  readonly ingest: Ingest;
  readonly endpoints: readonly EndpointResult[];
  readonly gatewayRssMb: number;
  readonly gatewayReadyMs: number;
}

function parse(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The generator's hostname of host `i` (0-based). */
const hostName = (i: number): string => `gpu-node-${String(i + 1).padStart(4, '0')}`;

/**
 * A file of `instants` readings of METRICS for every GPU of `hosts` x 8, one second apart, the last
 * one now: the fleet reports live (the overview, idle and alert rules see current readings). Made
 * afresh for every run (a few seconds at 600,000 readings) under .data/bench.
 */
async function fleetFile(hosts: number, instants: number): Promise<string> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const file = join(BENCH_DIR, `cardinality-${hosts * GPUS_PER_HOST}x${instants}.csv`);
  const start = new Date(Math.floor(Date.now() / 1000) * 1000 - (instants - 1) * 1000);
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
      start.toISOString(),
    ],
    {},
  );
  if (res.code !== 0) throw new Error(`generate failed: ${res.stderr}`);
  return file;
}

/**
 * The file through one collector (started first, as in the end-to-end section) from one streamer:
 * readings / (last 'batch stored' line of the collector - the streamer's spawn). The row count is
 * checked afterwards. The collector keeps running (the gateway phase reads while it is up).
 */
async function ingest(
  env: Record<string, string>,
  file: string,
  readings: number,
  instants: number,
  procs: ChildProcess[],
): Promise<Ingest & { collector: ChildProcess }> {
  const stored = new Map<string, number>();
  let started = false;
  const collector = spawnNexus(
    ['collector'],
    // As the end-to-end section: the sealing job off (it would seal the window being written).
    { ...env, LOG_LEVEL: 'debug', WORKERS: '4', COLLECT_BATCH: '20', COMPACT_INTERVAL: '0' },
    (line) => {
      if (line.includes('"msg":"collector started"')) started = true;
      if (!line.includes('"msg":"batch stored"')) return;
      const o = parse(line) as { time?: string; batches?: string[] } | undefined;
      const at = Date.parse(o?.time ?? '');
      for (const id of o?.batches ?? []) if (!stored.has(id)) stored.set(id, at);
    },
  );
  procs.push(collector);
  for (const deadline = Date.now() + 60_000; !started;) {
    if (Date.now() > deadline) throw new Error('the collector did not start');
    if (collector.exitCode !== null) throw new Error('the collector exited');
    await new Promise((r) => setTimeout(r, 50));
  }
  const published = new Map<string, number>();
  let summary: { records: number } | undefined;
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
    if (collector.exitCode !== null) throw new Error('the collector exited');
    await new Promise((r) => setTimeout(r, 100));
  }
  let last = 0;
  for (const id of published.keys()) last = Math.max(last, stored.get(id) ?? Number.NaN);
  const client = new pg.Client({ connectionString: env.DATABASE_URL });
  await client.connect();
  try {
    const count = await client.query<{ n: string }>(
      'SELECT (SELECT count(*) FROM samples) + (SELECT coalesce(sum(count), 0) FROM sample_chunks) AS n',
    );
    if (Number(count.rows[0]?.n) !== readings) {
      throw new Error(`stored ${count.rows[0]?.n ?? 0} of ${readings} readings`);
    }
  } finally {
    await client.end();
  }
  const seconds = (last - t0) / 1000;
  return {
    readings,
    instants,
    seconds,
    rate: readings / seconds,
    collectorRssMb: peakRssMb(collector.pid),
    collector,
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
 * Waits (at most SETTLE_MS) until no statement of the gateway `pid` is running in PostgreSQL:
 * a request the bench gave up on keeps running there (up to the statement timeout) and would slow
 * the endpoints measured next. Returns the ms waited.
 */
async function settle(databaseUrl: string, pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const t0 = Date.now();
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    while (Date.now() - t0 < SETTLE_MS) {
      const r = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'active' AND application_name LIKE $1`,
        [`gateway-%-${pid}`],
      );
      if (Number(r.rows[0]?.n) === 0) break;
      await new Promise((res) => setTimeout(res, 200));
    }
  } finally {
    await client.end();
  }
  return Date.now() - t0;
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
  const mid = hostName(Math.floor(hosts / 2));
  const c = `${gw.url}/api/v1/clusters/${CLUSTER}`;
  const list: [string, string | (() => Promise<{ cursor: string } | { why: string }>)][] = [
    ['overview', `${gw.url}/api/v1/overview`],
    ['cluster', c],
    ['hosts, first page', `${c}/hosts`],
    ['hosts, middle page (cursor)', () => middleCursor(c, hosts, gw.token)],
    ['host page', `${c}/hosts/${mid}`],
    ['GPU page', `${c}/hosts/${mid}/gpus/3`],
    ['host latest', `${gw.url}/api/v1/telemetry/latest?cluster_id=${CLUSTER}&host_id=${mid}`],
    ['search', `${gw.url}/api/v1/search?q=${mid.slice('gpu-'.length)}`],
    ['heatmap', `${c}/heatmap?metric=${HEATMAP_METRIC}`],
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
    const a = await get(url, gw.token);
    colds.set(name, a);
    urls.push([name, url, noRoute(a) ? 'n/a (404)' : undefined]);
    log(`  cold ${name}: ${a.status || 'timeout'} in ${Math.round(a.ms)} ms`);
    if (a.status === 0) {
      log(`  waited ${await settle(gw.db, gw.pid)} ms for the gateway's statements to end`);
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
      });
      continue;
    }
    const answers: Answer[] = cold === undefined ? [] : [cold];
    const warm: number[] = [];
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
    };
    const waited = await settle(gw.db, gw.pid);
    if (waited > 1000) log(`  waited ${waited} ms for the gateway's statements to end`);
    log(
      `  ${name}: warm p50 ${fmtNumber(r.warmP50)} ms, p99 ${fmtNumber(r.warmP99)} ms (${warm.length}); ${concurrent === undefined ? 'no concurrent run' : `${o.connections} connections: ${Math.round(concurrent.rps)} req/s, p50 ${concurrent.p50} ms, p99 ${concurrent.p99} ms`}; 5xx ${status5xx}, errors ${errors}, other ${other}`,
    );
    out.push(r);
  }
  return out;
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
  },
): Promise<FleetResult> {
  const gpus = spec.hosts * GPUS_PER_HOST;
  const instants = readings / (gpus * METRICS.length);
  if (!Number.isInteger(instants)) throw new Error(`${readings} readings do not fit ${gpus} GPUs`);
  log(
    `cardinality, ${spec.label}: ${gpus} GPUs x ${METRICS.length} metrics x ${instants} instants`,
  );
  const file = await fleetFile(spec.hosts, instants);
  let etcd: EtcdServer | undefined;
  const procs: ChildProcess[] = [];
  try {
    etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
    const url = await freshDatabase(server, 'card');
    const env = {
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: CLUSTER,
      DATABASE_URL: url,
      LOG_LEVEL: 'warn',
    };
    const migrated = await nexus(['migrate'], env);
    if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
    const ing = await ingest(env, file, readings, instants, procs);
    log(
      `  ingest: ${readings} readings in ${ing.seconds.toFixed(1)} s = ${Math.round(ing.rate)} readings/s; collector ${ing.collectorRssMb} MB`,
    );
    const t0 = Date.now();
    const gw = await startGateway(
      { DATABASE_URL: url, ETCD_ENDPOINTS: etcd.endpoint, CLUSTER_ID: CLUSTER },
      'token',
    );
    procs.push(gw.proc);
    const gatewayReadyMs = Date.now() - t0;
    const eps = await endpoints({ ...gw, pid: gw.proc.pid, db: url }, spec.hosts, load);
    const gatewayRssMb = peakRssMb(gw.proc.pid);
    const collectorRssMb = Math.max(ing.collectorRssMb, peakRssMb(ing.collector.pid));
    log(`  peak RSS: gateway ${gatewayRssMb} MB, collector ${collectorRssMb} MB`);
    return {
      spec,
      gpus,
      ingest: { ...ing, collectorRssMb },
      endpoints: eps,
      gatewayRssMb,
      gatewayReadyMs,
    };
  } finally {
    for (const p of procs.reverse()) await stopChild(p);
    await etcd?.destroy();
  }
}

const ms = (v: number): string => (Number.isFinite(v) ? fmtNumber(v) : '-');

/** The goals of issue 20, judged at the largest fleet measured. */
function goals(largest: FleetResult, reference: FleetResult, full: boolean): string {
  const at = `${largest.gpus.toLocaleString('en-US')} GPUs${full ? '' : ' (--quick: not 100,000)'}`;
  const ratio = largest.ingest.rate / reference.ingest.rate;
  const rows: (string | number)[][] = [
    [
      'ingest rate / small-fleet rate, same run',
      '>= 0.7',
      `${ratio.toFixed(2)} (${fmtNumber(largest.ingest.rate)} / ${fmtNumber(reference.ingest.rate)} readings/s)`,
      ratio >= 0.7 ? 'met' : 'not met',
    ],
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
  /** The 100,000-GPU fleet is among them (else the goals are judged at the largest measured). */
  full: boolean;
}): Promise<Section> {
  const t0 = Date.now();
  mkdirSync(BENCH_DIR, { recursive: true });
  const server = await startPostgres({ durable: true, baseDir: BENCH_DIR });
  const results: FleetResult[] = [];
  try {
    for (const spec of options.fleets) {
      results.push(await fleetRun(server, spec, options.readings, options));
    }
  } finally {
    await server.destroy();
  }
  const wall = Math.round((Date.now() - t0) / 1000);
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
      ]),
    ),
  );
  return {
    id: 'cardinality',
    title: 'Cardinality: the same readings from 1,000 to 100,000 GPUs',
    body: [
      `Every fleet (hosts x ${GPUS_PER_HOST} GPUs, ${METRICS.length} fields: ${METRICS.map((m) => `\`${m}\``).join(', ')}) sends the same ${options.readings.toLocaleString('en-US')} readings (more instants for fewer GPUs, one second apart, the last one when the file is made, so the fleet reports live) through the distributed pipeline, each on a fresh etcd and a fresh PostgreSQL 15 database (one server, data on disk, fsync on): one \`nexus collector\` (\`WORKERS=4\`, \`COLLECT_BATCH=20\`, \`COMPACT_INTERVAL=0\`, as the end-to-end section) started first, then one \`nexus streamer\` (\`BATCH_SIZE=${BATCH}\`, \`PUBLISH_CONCURRENCY=${IN_FLIGHT}\`) on the file made by \`nexus generate\` for the fleet. Ingest readings/s is readings / (the last message's \`batch stored\` line of the collector, logged after its commit - the streamer's spawn); the row count is checked. The ratio is to the small fleet of the same run. Then \`nexus gateway\` (\`AUTH_MODE=token\`, every request carries a read token; \`RATE_LIMIT_PER_MINUTE=0\`) is started on that database while the collector stays up: cold is the first request of each endpoint after \`/readyz\` answered (in the order of the table, so the first pays for what the gateway loads first); warm is up to ${options.sequential} sequential requests (or ${options.sequentialSeconds} s, whichever ends first, but at least ${MIN_WARM}); concurrent is autocannon in its own process, ${options.connections} connections for ${options.concurrentSeconds} s, skipped for an endpoint whose warm p50 is over ${MAX_CONCURRENT_P50_MS} ms (the requests would only queue, and outlive autocannon's run, slowing the endpoints measured next). Every request gives up after ${REQUEST_TIMEOUT_MS / 1000} s (counted under timeouts/errors); after each endpoint the bench waits (up to ${SETTLE_MS / 1000} s) until the gateway has no statement left running in PostgreSQL, as a request given up on runs on there until the statement timeout and would slow the next endpoint. The host, GPU (index 3), host latest and search (\`q=\` the host's name after \`gpu-\`) requests are for the host in the middle of the cluster; the middle hosts page is reached by walking \`next_cursor\` from the first page. An endpoint this build does not have is "n/a (404)". Peak RSS is each process's \`VmHWM\`. Wall time of the section: ${wall} s.`,
      '',
      table(
        [
          'fleet',
          'GPUs',
          'hosts',
          'instants',
          'readings',
          'seconds',
          'readings/s',
          'ratio to small fleet',
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
          r.gatewayReadyMs / 1000,
          r.ingest.collectorRssMb,
          r.gatewayRssMb,
        ]),
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
      ]),
      goals(largest, reference, options.full),
    ].join('\n'),
  };
}

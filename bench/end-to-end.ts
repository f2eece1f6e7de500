import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import pg from 'pg';
import type { TelemetryRecord } from '../src/core/record.js';
import { encodeEnvelopeWithin } from '../src/queue/envelope.js';
import { readDcgmCsv, readHeader } from '../src/streamer/csv/reader.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import {
  freshDatabase,
  BENCH_DIR,
  exited,
  log,
  nexus,
  peakRssMb,
  percentile,
  pidOf,
  spawnNexus,
  stopChild,
  table,
  type Section,
} from './lib.js';

/** Records per queue message and publishes in flight: the streamer's, and the ceiling's. */
const BATCH = 500;
const IN_FLIGHT = 8;

/** The first `n` records of `file`. */
async function firstRecords(file: string, n: number): Promise<TelemetryRecord[]> {
  const { header, end, line } = await readHeader(file);
  const out: TelemetryRecord[] = [];
  for await (const c of readDcgmCsv(header, { path: file, startOffset: end, startLine: line })) {
    for (const r of c.records) {
      out.push(r.record);
      if (out.length >= n) return out;
    }
  }
  return out;
}

/** Raw etcd puts of BATCH-record envelopes from the same file, IN_FLIGHT at once, for `seconds`. */
async function etcdPutCeiling(endpoint: string, file: string, seconds: number): Promise<number> {
  const records = await firstRecords(file, BATCH);
  // The body as the streamer writes it (compressed: QUEUE_COMPRESSION's default).
  const body = encodeEnvelopeWithin(
    {
      v: 1,
      id: '1-ceiling',
      producer: 'bench',
      cluster: 'ceiling',
      createdAt: Date.now(),
      attempt: 0,
      records,
    },
    Infinity,
    'zlib',
  );
  const client = new Etcd3({ hosts: `http://${endpoint}` });
  try {
    let puts = 0;
    const t0 = Date.now();
    const deadline = t0 + seconds * 1000;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, w) => {
        for (let i = 0; Date.now() < deadline; i++) {
          await client.put(`/ceiling/${w}/${i}`).value(body);
          puts++;
        }
      }),
    );
    return (puts * records.length) / ((Date.now() - t0) / 1000);
  } finally {
    client.close();
  }
}

export interface E2eRun {
  readonly label: string;
  readonly collectors: number;
  /** Offered rate (records/s), or undefined for full speed. */
  readonly offered: number | undefined;
  readonly records: number;
  readonly seconds: number;
  readonly rate: number;
  /** The streamer's own rate: records published / its run time. */
  readonly publishRate: number;
  readonly lagP50: number;
  readonly lagP99: number;
  readonly lagMax: number;
  readonly streamerRssMb: number;
  readonly collectorRssMb: readonly number[];
  readonly etcdRssMb: number;
}

interface Published {
  readonly created: number;
  readonly records: number;
}

function parse(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * One run on a fresh etcd and a fresh database: `collectors` collector processes started first,
 * then the streamer on `file` (full speed, or paced to `rate` records/s for `forSeconds` and then
 * stopped with SIGTERM); ends when every published message has been logged as stored.
 *
 * Lag per message (BATCH records): from the streamer stamping the envelope (the batch has just been
 * read from the CSV; 'batch published' debug line time minus its publish ms) to the collector's
 * 'batch stored' debug line, written right after the transaction committed and the message was
 * acked. Both clocks are this machine's.
 */
async function e2eRun(
  server: PgServer,
  file: string,
  collectors: number,
  pace?: { rate: number; forSeconds: number },
): Promise<E2eRun> {
  const label =
    pace === undefined
      ? `full speed, ${collectors} collector${collectors > 1 ? 's' : ''}`
      : `steady ${pace.rate.toLocaleString('en-US')} records/s for ${pace.forSeconds} s, ${collectors} collector${collectors > 1 ? 's' : ''}`;
  let etcd: EtcdServer | undefined;
  const procs: ChildProcess[] = [];
  try {
    etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
    const etcdPid = pidOf(etcd.dataDir);
    const url = await freshDatabase(server, 'e2e');
    const cluster = `e2e-${collectors}`;
    const env = {
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      DATABASE_URL: url,
      LOG_LEVEL: 'warn',
    };
    const migrated = await nexus(['migrate'], env);
    if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);

    const stored = new Map<string, number>();
    let started = 0;
    for (let i = 0; i < collectors; i++) {
      procs.push(
        spawnNexus(
          ['collector'],
          // The sealing job off: the file's readings are of 2025, so every window is closed and
          // the job would seal the window being written, turning the rest of the run into late
          // readings (a backfill, not ingest). A live fleet's window is sealed once, after it ends.
          { ...env, LOG_LEVEL: 'debug', WORKERS: '4', COLLECT_BATCH: '20', COMPACT_INTERVAL: '0' },
          (line) => {
            if (line.includes('"msg":"collector started"')) started++;
            if (!line.includes('"msg":"batch stored"')) return;
            const o = parse(line) as { time?: string; batches?: string[] } | undefined;
            const at = Date.parse(o?.time ?? '');
            for (const id of o?.batches ?? []) if (!stored.has(id)) stored.set(id, at);
          },
        ),
      );
    }
    const collectorProcs = [...procs];
    for (const deadline = Date.now() + 60_000; started < collectors;) {
      if (Date.now() > deadline) throw new Error('collectors did not start');
      if (collectorProcs.some((p) => p.exitCode !== null)) throw new Error('a collector exited');
      await new Promise((r) => setTimeout(r, 50));
    }

    const published = new Map<string, Published>();
    let summary: { records: number; elapsedMs: number; peakRssMb: number } | undefined;
    const streamer = spawnNexus(
      ['streamer', '--csv', file],
      {
        ...env,
        LOG_LEVEL: 'debug',
        LOOP_MODE: 'false',
        TIMESTAMP_MODE: 'original',
        BATCH_SIZE: String(BATCH),
        PUBLISH_CONCURRENCY: String(IN_FLIGHT),
        STREAM_INTERVAL: pace === undefined ? '0' : `${Math.round((1000 * BATCH) / pace.rate)}ms`,
      },
      (line) => {
        if (line.includes('"msg":"batch published"')) {
          const o = parse(line) as { time?: string; batch?: string; ms?: number; records?: number };
          if (o.batch !== undefined)
            published.set(o.batch, {
              created: Date.parse(o.time ?? '') - (o.ms ?? 0),
              records: o.records ?? 0,
            });
        } else if (line.includes('"msg":"summary:')) {
          summary = (parse(line) as { summary?: typeof summary } | undefined)?.summary;
        }
      },
    );
    procs.push(streamer);
    if (pace !== undefined) {
      // Paced for `forSeconds` from its first publish, then a graceful stop (SIGTERM).
      while (published.size === 0 && streamer.exitCode === null) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const timer = setTimeout(() => streamer.kill('SIGTERM'), pace.forSeconds * 1000);
      await exited(streamer);
      clearTimeout(timer);
    } else {
      await exited(streamer);
    }
    if (streamer.exitCode !== 0 || summary === undefined) {
      throw new Error(
        `streamer exited ${streamer.exitCode ?? streamer.signalCode} without a summary`,
      );
    }
    const records = summary.records;
    // Every published message stored (acks follow commits, and so does the 'batch stored' line).
    for (const deadline = Date.now() + 900_000; ;) {
      if ([...published.keys()].every((id) => stored.has(id))) break;
      if (Date.now() > deadline) throw new Error(`${label}: not every message was stored`);
      if (collectorProcs.some((p) => p.exitCode !== null)) throw new Error('a collector exited');
      await new Promise((r) => setTimeout(r, 100));
    }
    const collectorRssMb = collectorProcs.map((p) => peakRssMb(p.pid));
    const etcdRssMb = peakRssMb(etcdPid);
    const lags: number[] = [];
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    let sum = 0;
    for (const [id, p] of published) {
      const at = stored.get(id) ?? Number.NaN;
      lags.push(at - p.created);
      first = Math.min(first, p.created);
      last = Math.max(last, at);
      sum += p.records;
    }
    if (sum !== records) throw new Error(`${label}: ${sum} records logged, ${records} published`);
    lags.sort((a, b) => a - b);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    // Hot rows and sealed chunks (none while the sealing job is off), so the check holds either way.
    const count = await client.query<{ n: string }>(
      'SELECT (SELECT count(*) FROM samples) + (SELECT coalesce(sum(count), 0) FROM sample_chunks) AS n',
    );
    await client.end();
    if (Number(count.rows[0]?.n) !== records) {
      throw new Error(`${label}: stored ${count.rows[0]?.n ?? 0} of ${records} rows`);
    }
    const seconds = (last - first) / 1000;
    const run: E2eRun = {
      label,
      collectors,
      offered: pace?.rate,
      records,
      seconds,
      rate: records / seconds,
      publishRate: records / (summary.elapsedMs / 1000),
      lagP50: percentile(lags, 50),
      lagP99: percentile(lags, 99),
      lagMax: lags.at(-1) ?? Number.NaN,
      streamerRssMb: summary.peakRssMb,
      collectorRssMb,
      etcdRssMb,
    };
    log(
      `${label}: ${records} records in ${seconds.toFixed(1)} s = ${Math.round(run.rate)} records/s; lag p50 ${run.lagP50} ms, p99 ${run.lagP99} ms; RSS streamer ${run.streamerRssMb} MB, collectors ${collectorRssMb.join('/')} MB, etcd ${etcdRssMb} MB`,
    );
    return run;
  } finally {
    for (const p of procs) await stopChild(p);
    await etcd?.destroy();
  }
}

/**
 * The distributed pipeline end to end: streamer -> etcd -> 1, 2 and 4 collector processes ->
 * PostgreSQL, at full speed and at a steady rate, with the raw etcd put ceiling of the same run.
 */
export async function benchEndToEnd(options: {
  file: string;
  collectors: readonly number[];
  steadyRate: number;
  steadySeconds: number;
  ceilingSeconds: number;
}): Promise<Section> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
  let ceiling: number;
  try {
    ceiling = await etcdPutCeiling(etcd.endpoint, options.file, options.ceilingSeconds);
  } finally {
    await etcd.destroy();
  }
  log(`raw etcd put ceiling: ${Math.round(ceiling)} records/s`);
  const server = await startPostgres({ durable: true, baseDir: BENCH_DIR });
  const runs: E2eRun[] = [];
  try {
    for (const n of options.collectors) runs.push(await e2eRun(server, options.file, n));
    // The steady run uses the collector count that was fastest at full speed.
    const best = runs.reduce((a, b) => (b.rate > a.rate ? b : a));
    runs.push(
      await e2eRun(server, options.file, best.collectors, {
        rate: options.steadyRate,
        forSeconds: options.steadySeconds,
      }),
    );
  } finally {
    await server.destroy();
  }
  const rss = (v: readonly number[]): string => v.map((x) => String(Math.round(x))).join(' / ');
  return {
    id: 'end-to-end',
    title: 'End to end, distributed: CSV -> streamer -> etcd -> collectors -> PostgreSQL',
    body: [
      `Every run: a fresh single-member etcd and a fresh PostgreSQL 15 database (both with their data on disk, fsync on), the compiled CLI as separate processes on this machine: the collectors start first (\`WORKERS=4\`, \`COLLECT_BATCH=20\`, \`COMPACT_INTERVAL=0\`: the file's readings are of 2025, so the sealing job would seal the window being written and make the rest of the run late readings, a backfill rather than ingest), then one streamer (\`BATCH_SIZE=${BATCH}\`, \`PUBLISH_CONCURRENCY=${IN_FLIGHT}\`, default \`MAX_QUEUE_DEPTH\`) reads the generated file (${(runs[0]?.records ?? 0).toLocaleString('en-US')} records). A run ends when every message the streamer published has been stored; the row count is then checked. End-to-end records/s is records / (last commit - first batch stamped); streamer records/s is what the streamer itself reports (records published / its run time), and shows whether it kept to the offered rate. Lag is per message (${BATCH} records): from the streamer stamping the batch it has just read from the CSV (its \`batch published\` debug line minus the publish time it reports) to the collector's \`batch stored\` debug line, logged once the transaction has committed and the message is acked (so it includes the ack, a few ms). At full speed the streamer outruns the collectors and the queue absorbs the difference, so the lag there is mostly time spent waiting in the queue and grows through the run; the steady run paces the streamer (\`STREAM_INTERVAL=${Math.round((1000 * BATCH) / options.steadyRate)}ms\`) with the collector count that was fastest at full speed, then stops it with SIGTERM. Peak RSS is each process's high-water mark (the streamer's own \`getrusage\`, \`VmHWM\` for the collectors and etcd).`,
      '',
      table(
        [
          'run',
          'records',
          'seconds',
          'streamer records/s',
          'end-to-end records/s',
          'ratio to raw etcd put',
          'lag p50 ms',
          'lag p99 ms',
          'lag max ms',
          'peak RSS MB: streamer',
          'collectors',
          'etcd',
        ],
        runs.map((r) => [
          r.label,
          r.records,
          r.seconds,
          r.publishRate,
          r.rate,
          `${((r.rate / ceiling) * 100).toFixed(0)} %`,
          r.lagP50,
          r.lagP99,
          r.lagMax,
          r.streamerRssMb,
          rss(r.collectorRssMb),
          r.etcdRssMb,
        ]),
      ),
      '',
      'Ceiling measured in the same run:',
      '',
      table(
        ['ceiling', 'records/s'],
        [
          [
            `raw etcd put of the same ${BATCH}-record envelopes (compressed, as the streamer writes them), ${IN_FLIGHT} in flight, ${options.ceilingSeconds} s, fresh etcd`,
            ceiling,
          ],
        ],
      ),
    ].join('\n'),
  };
}

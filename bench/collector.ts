import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { TelemetryRecord } from '../src/core/record.js';
import { startEtcd } from '../test/helpers/etcd.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { etcdQueue } from '../test/helpers/queues.js';
import {
  loadRecords,
  freshDatabase,
  benchStore,
  BENCH_DIR,
  ROOT,
  log,
  logLine,
  nexus,
  table,
  type Section,
} from './lib.js';

/** Raw COPY of (time, gpu, metric, value) rows, one connection, as fast as PostgreSQL takes it. */
async function rawCopy(
  url: string,
  records: readonly TelemetryRecord[],
  withKey: boolean,
): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(
    `CREATE TABLE raw (time timestamptz NOT NULL, gpu_id int NOT NULL, metric_id smallint NOT NULL, value float8 NOT NULL${withKey ? ', PRIMARY KEY (gpu_id, metric_id, time)' : ''})`,
  );
  const gpuIds = new Map<string, number>();
  const metricIds = new Map<string, number>();
  const lines = records.map((r) => {
    const gk = `${r.hostname}/${r.gpu}`;
    let g = gpuIds.get(gk);
    if (g === undefined) gpuIds.set(gk, (g = gpuIds.size + 1));
    let m = metricIds.get(r.metric);
    if (m === undefined) metricIds.set(r.metric, (m = metricIds.size + 1));
    return `${new Date(r.timestamp).toISOString()}\t${g}\t${m}\t${r.value}\n`;
  });
  const t0 = performance.now();
  for (let i = 0; i < lines.length; i += 10_000) {
    const sink = client.query(copyFrom('COPY raw (time, gpu_id, metric_id, value) FROM STDIN'));
    await pipeline(Readable.from([lines.slice(i, i + 10_000).join('')]), sink);
  }
  const rate = records.length / ((performance.now() - t0) / 1000);
  await client.end();
  return rate;
}

/**
 * SqlStore.write in this process, `writers` at once, batches of 10,000; then the rollup job
 * (SqlStore.rollUp) over everything the writes left pending.
 */
async function storeWrite(
  url: string,
  records: readonly TelemetryRecord[],
  method: 'copy' | 'unnest',
  writers: number,
): Promise<{ write: number; rollup: number }> {
  const store = benchStore(postgresDatabase(url, writers + 1), { writeMethod: method });
  await store.migrate();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < records.length) {
        const from = next;
        next += 10_000;
        await store.write('bench', records.slice(from, from + 10_000));
      }
    }),
  );
  const t1 = performance.now();
  const folded = await store.rollUp();
  const t2 = performance.now();
  await store.close();
  if (folded.moved !== records.length) {
    throw new Error(`the rollup job folded ${folded.moved} of ${records.length} readings`);
  }
  return {
    write: records.length / ((t1 - t0) / 1000),
    rollup: records.length / ((t2 - t1) / 1000),
  };
}

/** Preloads the queue, then times `collectors` collector processes draining it into PostgreSQL. */
async function collectorRun(
  server: PgServer,
  file: string,
  collectors: number,
): Promise<{ rate: number; seconds: number; records: number }> {
  let records = 0;
  const etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
  try {
    const url = await freshDatabase(server);
    const cluster = `bench-${collectors}`;
    const env = {
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      DATABASE_URL: url,
      LOG_LEVEL: 'warn',
    };
    const migrated = await nexus(['migrate'], env);
    if (migrated.code !== 0) throw new Error(migrated.stderr);
    const streamed = await nexus(['streamer', '--csv', file], {
      ...env,
      LOG_LEVEL: 'info',
      LOOP_MODE: 'false',
      STREAM_INTERVAL: '0',
      BATCH_SIZE: '500',
      MAX_QUEUE_DEPTH: '100000000',
    });
    if (streamed.code !== 0) throw new Error(streamed.stderr);
    const { summary } = logLine(streamed.stdout, 'summary:') as { summary: { records: number } };
    records = summary.records;
    const queue = etcdQueue(etcd.endpoint, cluster);
    const t0 = Date.now();
    const procs = Array.from({ length: collectors }, () =>
      spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'collector'], {
        cwd: ROOT,
        env: { ...process.env, ...env, WORKERS: '4', COLLECT_BATCH: '20' },
        stdio: 'ignore',
      }),
    );
    let seconds: number;
    try {
      // Messages are acked only after their rows are committed: an empty queue means all stored.
      // (Polling the queue depth costs etcd a count; counting rows would scan the table.)
      while ((await queue.depth()) > 0) await new Promise((r) => setTimeout(r, 100));
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      // Then until the rollup job has folded everything in (the pending table is small).
      const pending = async (): Promise<number> =>
        Number(
          (await client.query<{ n: string }>('SELECT count(*) AS n FROM samples_pending')).rows[0]
            ?.n,
        );
      while ((await pending()) > 0) await new Promise((r) => setTimeout(r, 100));
      seconds = (Date.now() - t0) / 1000;
      const res = await client.query<{ n: string }>('SELECT count(*) AS n FROM samples');
      await client.end();
      if (Number(res.rows[0]?.n) !== records) {
        throw new Error(`stored ${res.rows[0]?.n ?? 0} of ${records} rows`);
      }
    } finally {
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => new Promise((r) => p.once('exit', r))));
      await queue.close();
    }
    log(`${collectors} collector(s): ${Math.round(records / seconds)} records/s`);
    return { rate: records / seconds, seconds, records };
  } finally {
    await etcd.destroy();
  }
}

export async function benchCollector(options: { records: number; file: string }): Promise<Section> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const server = await startPostgres({ durable: true, baseDir: BENCH_DIR });
  try {
    const records = await loadRecords(options.file, options.records);
    log(`collector bench on ${records.length} records`);
    const copyNoKey = await rawCopy(await freshDatabase(server), records, false);
    const copyKey = await rawCopy(await freshDatabase(server), records, true);
    log(
      `raw COPY: ${Math.round(copyNoKey)} rows/s without key, ${Math.round(copyKey)} with the natural key`,
    );
    const methods: [string, number][] = [];
    const rollups: number[] = [];
    for (const m of ['unnest', 'copy'] as const) {
      for (const w of [1, 4]) {
        const rate = await storeWrite(await freshDatabase(server), records, m, w);
        methods.push([`SqlStore.write, WRITE_METHOD=${m}, ${w} writer(s)`, rate.write]);
        rollups.push(rate.rollup);
        log(`${m} x${w}: ${Math.round(rate.write)} rows/s; rollup ${Math.round(rate.rollup)}`);
      }
    }
    rollups.sort((a, b) => a - b);
    const rollup = rollups[rollups.length >> 1] ?? 0;
    const one = await collectorRun(server, options.file, 1);
    const two = await collectorRun(server, options.file, 2);
    return {
      id: 'collector',
      title: 'Collector: etcd queue -> PostgreSQL',
      body: [
        `${records.length.toLocaleString('en-US')} generated records (${one.records.toLocaleString('en-US')} for the collector runs). PostgreSQL 15 with its data on disk and default durability (fsync and synchronous commit on); etcd likewise. Each row of the first table is measured on a fresh database; the collector runs start with the whole file already in the queue (500 records per message), then time collector processes (\`WORKERS=4\`, \`COLLECT_BATCH=20\`: 10,000 records per transaction) until every row is committed, the queue is empty and the rollup job (which each collector runs every \`ROLLUP_INTERVAL\`, 1 s) has folded every reading into \`samples_1m\` and \`samples_latest\`. \`SqlStore.write\` only inserts (into \`samples\` and \`samples_pending\`); the rollup job's row is its rate over the rows one of those runs left pending (the median of the four runs), in transactions of 100,000.`,
        '',
        table(
          ['what', 'rows/s', 'ratio to raw COPY with key'],
          [
            [
              'raw COPY, no index (ceiling)',
              copyNoKey,
              `${((copyNoKey / copyKey) * 100).toFixed(0)} %`,
            ],
            ['raw COPY, natural primary key (ceiling)', copyKey, '100 %'],
            ...methods.map(([k, v]): [string, number, string] => [
              k,
              v,
              `${((v / copyKey) * 100).toFixed(0)} %`,
            ]),
            [
              'rollup job (SqlStore.rollUp) over the pending rows',
              rollup,
              `${((rollup / copyKey) * 100).toFixed(0)} %`,
            ],
            [
              'collector end to end, 1 process',
              one.rate,
              `${((one.rate / copyKey) * 100).toFixed(0)} %`,
            ],
            [
              'collector end to end, 2 processes',
              two.rate,
              `${((two.rate / copyKey) * 100).toFixed(0)} %`,
            ],
          ],
        ),
      ].join('\n'),
    };
  } finally {
    await server.destroy();
  }
}

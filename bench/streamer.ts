import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import type { TelemetryRecord } from '../src/core/record.js';
import { encodeEnvelopeWithin } from '../src/queue/envelope.js';
import { startEtcd } from '../test/helpers/etcd.js';
import { loadRecords, BENCH_DIR, ROOT, log, logLine, nexus, table, type Section } from './lib.js';

const SAMPLE = join(ROOT, 'samples', 'dcgm_metrics_20250718_134233.csv');

/** A generated file of about `bytes`, made once and kept under .data/bench. */
export async function generatedFile(bytes: number): Promise<string> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const file = join(BENCH_DIR, `generated-${Math.round(bytes / 2 ** 20)}MiB.csv`);
  if (existsSync(file) && statSync(file).size > bytes * 0.9) return file;
  log(`generating ${file}`);
  const res = await nexus(
    ['generate', '--out', file, '--size', String(bytes), '--hosts', '64'],
    {},
  );
  if (res.code !== 0) throw new Error(`generate failed: ${res.stderr}`);
  return file;
}

/** A generated file of about `records` records (kept under .data/bench). */
export async function generatedRecords(records: number): Promise<string> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const file = join(BENCH_DIR, `generated-${records}.csv`);
  if (existsSync(file) && statSync(file).size > records * 300) return file;
  log(`generating ${file}`);
  const res = await nexus(
    ['generate', '--out', file, '--records', String(records), '--hosts', '64'],
    {},
  );
  if (res.code !== 0) throw new Error(`generate failed: ${res.stderr}`);
  return file;
}

/**
 * Raw etcd puts of the messages the streamer sends (the first `batchSize` records of the same
 * file, in the same compact envelope), with the same concurrency.
 */
async function etcdCeiling(
  endpoint: string,
  file: string,
  batchSize: number,
  inFlight: number,
  seconds: number,
): Promise<number> {
  const records = await loadRecords(file, batchSize);
  const envelope = {
    v: 1 as const,
    id: '1-ceiling',
    producer: 'bench',
    cluster: 'ceiling',
    createdAt: Date.now(),
    attempt: 0,
    records: Array.from({ length: batchSize }, (_, i) => records[i % records.length]).filter(
      (r): r is TelemetryRecord => r !== undefined,
    ),
  };
  // The body as the streamer writes it (compressed: QUEUE_COMPRESSION's default).
  const body = encodeEnvelopeWithin(envelope, Infinity, 'zlib');
  const client = new Etcd3({ hosts: `http://${endpoint}` });
  let puts = 0;
  const deadline = Date.now() + seconds * 1000;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      for (let i = 0; Date.now() < deadline; i++) {
        await client.put(`/ceiling/${batchSize}/${w}/${i}`).value(body);
        puts++;
      }
    }),
  );
  const rate = (puts * batchSize) / ((Date.now() - t0) / 1000);
  await client.delete().prefix('/ceiling/');
  client.close();
  return rate;
}

interface Run {
  readonly label: string;
  readonly records: number;
  readonly seconds: number;
  readonly rate: number;
  readonly peakRssMb: number;
}

async function streamRun(
  label: string,
  endpoint: string,
  file: string,
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<Run> {
  const res = await nexus(['streamer', '--csv', file, ...args], {
    ETCD_ENDPOINTS: endpoint,
    CLUSTER_ID: `bench-${Date.now()}`,
    LOOP_MODE: 'false',
    STREAM_INTERVAL: '0',
    MAX_QUEUE_DEPTH: '100000000',
    ...env,
  });
  if (res.code !== 0) throw new Error(`streamer failed: ${res.stdout.slice(-2000)} ${res.stderr}`);
  const { summary } = logLine(res.stdout, 'summary:') as {
    summary: { records: number; elapsedMs: number; peakRssMb: number };
  };
  const run: Run = {
    label,
    records: summary.records,
    seconds: summary.elapsedMs / 1000,
    rate: summary.records / (summary.elapsedMs / 1000),
    peakRssMb: summary.peakRssMb,
  };
  log(`${label}: ${Math.round(run.rate)} records/s, peak RSS ${run.peakRssMb} MB`);
  return run;
}

/**
 * Streamer publish rate into a fresh etcd (on disk, fsync on) and the raw etcd ceiling, on the
 * real sample and on `file` (a generated file of about 1 GB in the full run).
 */
export async function benchStreamer(options: { file: string }): Promise<Section> {
  const big = options.file;
  const runs: Run[] = [];
  const ceilings: [string, number][] = [];
  const fresh = async <T>(fn: (endpoint: string) => Promise<T>): Promise<T> => {
    const etcd = await startEtcd({ baseDir: BENCH_DIR, quotaBytes: 8 * 2 ** 30 });
    try {
      return await fn(etcd.endpoint);
    } finally {
      await etcd.destroy();
    }
  };
  for (const [batch, lanes] of [
    [100, 8],
    [1000, 8],
  ] as const) {
    ceilings.push([
      `raw etcd put, ${batch}-record messages, ${lanes} in flight`,
      await fresh((e) => etcdCeiling(e, big, batch, lanes, 5)),
    ]);
  }
  runs.push(
    await fresh((e) =>
      streamRun('real sample, one pass (2,470 records), BATCH_SIZE=100', e, SAMPLE, {
        BATCH_SIZE: '100',
      }),
    ),
  );
  runs.push(
    await fresh((e) =>
      streamRun(
        'real sample, 40 passes (98,800 records), BATCH_SIZE=100',
        e,
        SAMPLE,
        { BATCH_SIZE: '100', LOOP_MODE: 'true', TIMESTAMP_MODE: 'live' },
        ['--max-loops', '40'],
      ),
    ),
  );
  const size = `${(statSync(big).size / 1e9).toFixed(2)} GB`;
  runs.push(
    await fresh((e) =>
      streamRun(`generated ${size} file, BATCH_SIZE=100`, e, big, { BATCH_SIZE: '100' }),
    ),
  );
  runs.push(
    await fresh((e) =>
      streamRun(`generated ${size} file, BATCH_SIZE=1000`, e, big, { BATCH_SIZE: '1000' }),
    ),
  );
  const ceiling100 = ceilings[0]?.[1] ?? Number.NaN;
  const ceiling1000 = ceilings[1]?.[1] ?? Number.NaN;
  return {
    id: 'streamer',
    title: 'Streamer: CSV -> etcd',
    body: [
      "Each run uses a fresh single-member etcd 3.4 with its data on disk (fsync on), `STREAM_INTERVAL=0`, `PUBLISH_CONCURRENCY=8`, no consumer, and the compiled CLI (`node dist/cli/main.js streamer`), which writes the compact envelope (v2, docs/queue.md), compressed (`QUEUE_COMPRESSION=zlib`, the default). Peak RSS is the streamer process's own (`getrusage` max RSS). The ceilings put the same compact envelopes, compressed (the first records of the generated file, as many as a message holds) with etcd3 straight from one process; the sample runs are compared with them too, though the sample's messages are smaller (more readings of each GPU per message).",
      '',
      table(
        ['run', 'records', 'seconds', 'records/s', 'ratio to raw etcd', 'peak RSS MB'],
        runs.map((r) => [
          r.label,
          r.records,
          r.seconds,
          r.rate,
          `${((r.rate / (r.label.includes('1000') ? ceiling1000 : ceiling100)) * 100).toFixed(0)} %`,
          r.peakRssMb,
        ]),
      ),
      '',
      'Ceilings measured in the same run:',
      '',
      table(['ceiling', 'records/s'], ceilings),
    ].join('\n'),
  };
}

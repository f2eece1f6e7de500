import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { DEFAULT_GENERATE, generateCsv } from '../../src/streamer/csv/generator.js';
import { Streamer, type StreamerOptions } from '../../src/streamer/streamer.js';
import type { Queue } from '../../src/queue/types.js';
import { killHard, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { drain, etcdQueue, naturalKey, recordsOf, TEST_PREFIX } from '../helpers/queues.js';
import { SAMPLE, sampleRows } from '../helpers/sample.js';
import { writeMalformedCsv } from '../fixtures/malformed.js';
import { parse } from 'csv-parse/sync';

const etcd = await sharedEtcd();
const dir = mkdtempSync(join(tmpdir(), 'nexus-streamer-'));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
});

function options(queue: Queue, over: Partial<StreamerOptions> = {}): StreamerOptions {
  return {
    queue,
    csvFile: SAMPLE,
    clusterId: queue.clusterId,
    batchSize: 100,
    intervalMs: 0,
    loop: false,
    timestampMode: 'original',
    maxQueueDepth: 100_000,
    concurrency: 8,
    streamId: `test-${queue.clusterId}`,
    producerId: 'test-producer',
    rejectsFile: join(dir, `${queue.clusterId}.rejects.csv`),
    restart: false,
    logger: silentLogger(),
    ...over,
  };
}

async function generate(
  path: string,
  records: number,
  over: Partial<typeof DEFAULT_GENERATE> = {},
): Promise<number> {
  const perStep = 16 * 8 * 10;
  const out = createWriteStream(path);
  const rows = await generateCsv(
    {
      ...DEFAULT_GENERATE,
      hosts: 16,
      gpusPerHost: 8,
      timestamps: Math.ceil(records / perStep),
      ...over,
    },
    out,
  );
  await new Promise<void>((resolve) => out.end(resolve));
  return rows;
}

/** Environment for the `nexus streamer` child process. */
function cliEnv(cluster: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ETCD_ENDPOINTS: etcd.endpoint,
    CLUSTER_ID: cluster,
    MESSAGE_QUEUE_PREFIX: TEST_PREFIX,
    LOOP_MODE: 'false',
    STREAM_INTERVAL: '0',
    LOG_LEVEL: 'info',
    PROGRESS: 'log',
    NEXUS_DATA_DIR: dir,
    ...extra,
  };
}

describe('streamer into etcd', () => {
  it('streams the real sample with BATCH_SIZE=100: exactly 2,470 records, equal field by field to the CSV', async () => {
    const cluster = uniqueCluster('sample');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const summary = await new Streamer(options(queue)).run();
    assert.equal(summary.records, 2470);
    assert.equal(summary.batches, 25);
    assert.equal(summary.rejects, 0);
    assert.equal(await queue.depth(), 25);
    const deliveries = await drain(queue);
    assert.equal(deliveries.length, 25);
    assert.ok(
      deliveries.every(
        (d) => d.envelope.records.length === 100 || d.envelope.records.length === 70,
      ),
    );
    const got = recordsOf(deliveries);
    assert.equal(got.length, 2470);
    const byKey = new Map(got.map((r) => [naturalKey(r), r]));
    assert.equal(byKey.size, 2470, 'duplicate records');
    for (const want of sampleRows()) {
      const r = byKey.get(`${want.hostname}|${want.gpu}|${want.metric}|${want.timestamp}`);
      assert.ok(r, `missing ${want.hostname} gpu ${want.gpu} ${want.metric}`);
      assert.equal(r.value, want.value);
      assert.equal(r.device, want.device);
      assert.equal(r.uuid, want.uuid);
      assert.equal(r.model, want.model);
      assert.equal(r.container, undefined);
      assert.equal(r.pod, undefined);
      assert.equal(r.namespace, undefined);
      assert.deepEqual(r.labels, want.labels);
    }
    // Envelopes carry their provenance.
    for (const d of deliveries) {
      assert.equal(d.envelope.cluster, cluster);
      const source = d.envelope.source;
      assert.ok(source);
      assert.equal(source.file, 'dcgm_metrics_20250718_134233.csv');
      assert.ok(source.firstLine >= 2 && source.lastLine >= source.firstLine);
    }
    await queue.close();
  });

  it("leaves one key per message that the seed's etcdctl commands list", async () => {
    const cluster = uniqueCluster('etcdctl');
    const queue = etcdQueue(etcd.endpoint, cluster);
    await new Streamer(options(queue, { batchSize: 500 })).run();
    const out = execFileSync(
      'etcdctl',
      [
        '--endpoints',
        etcd.endpoint,
        'get',
        '--prefix',
        `${TEST_PREFIX}/${cluster}/`,
        '--keys-only',
      ],
      {
        env: { ...process.env, ETCDCTL_API: '3' },
      },
    ).toString();
    const keys = out.split('\n').filter((l) => l.trim() !== '');
    assert.equal(keys.length, 5);
    for (const k of keys)
      assert.match(
        k,
        new RegExp(`^${TEST_PREFIX}/${cluster}/\\d{13}_[^_/]+_gpu-\\d+_[A-Za-z0-9.-]+$`),
      );
    const sorted = [...keys].sort();
    assert.deepEqual(keys, sorted, 'etcd lists keys in time order');
    await drain(queue);
    await queue.close();
  });

  it('in loop mode with live timestamps, each pass is new data stamped near now', async () => {
    const cluster = uniqueCluster('loop');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const t0 = Date.now();
    const summary = await new Streamer(
      options(queue, { loop: true, maxLoops: 2, timestampMode: 'live', batchSize: 500 }),
    ).run();
    assert.equal(summary.records, 4940);
    assert.equal(summary.loops, 2);
    const got = recordsOf(await drain(queue));
    assert.equal(new Set(got.map(naturalKey)).size, 4940);
    for (const r of got)
      assert.ok(r.timestamp >= t0 - 5000 && r.timestamp <= Date.now() + 5000, 'not live');
    await queue.close();
  });

  it('waits at MAX_QUEUE_DEPTH with no consumer (1,000,000 records), and resumes when one drains the queue', async () => {
    const file = join(dir, 'million.csv');
    const rows = await generate(file, 1_000_000, { hosts: 25, gpusPerHost: 8, timestamps: 500 });
    assert.equal(rows, 1_000_000);
    const cluster = uniqueCluster('backpressure');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const maxDepth = 40;
    const streamer = new Streamer(
      options(queue, { csvFile: file, batchSize: 1000, maxQueueDepth: maxDepth }),
    );
    const running = streamer.run();
    let maxSeen = 0;
    const watchDepth = setInterval(() => {
      void queue.depth().then((d) => (maxSeen = Math.max(maxSeen, d)));
    }, 100);
    const consumer = await queue.consumer();
    try {
      // The queue fills to the limit and stays there while nobody consumes.
      let depth = 0;
      const fillDeadline = Date.now() + 60_000;
      while (depth < maxDepth && Date.now() < fillDeadline) {
        await new Promise((r) => setTimeout(r, 200));
        depth = await queue.depth();
      }
      assert.equal(depth, maxDepth);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(await queue.depth(), maxDepth, 'the streamer kept publishing into a full queue');
      // A consumer drains; the streamer resumes and finishes; the depth never passed the limit.
      let consumed = 0;
      const streaming = { finished: false };
      void running.then(() => (streaming.finished = true));
      while (!streaming.finished || (await queue.depth()) > 0) {
        const got = await consumer.claim(64, { waitMs: 500 });
        await consumer.ack(got);
        consumed += got.reduce((n, d) => n + d.envelope.records.length, 0);
      }
      const summary = await running;
      assert.equal(summary.records, 1_000_000);
      assert.ok(summary.waitedForQueueMs > 1000);
      assert.equal(consumed, 1_000_000);
      assert.ok(maxSeen <= maxDepth, `queue depth reached ${maxSeen}`);
    } finally {
      clearInterval(watchDepth);
      await streamer.stop();
      await consumer.close();
      await queue.close();
    }
  });

  it('a streamer killed with SIGKILL half-way and restarted publishes every record exactly once', async () => {
    const file = join(dir, 'kill.csv');
    const rows = await generate(file, 60_000);
    const cluster = uniqueCluster('sigkill');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const env = cliEnv(cluster, {
      CSV_FILE: file,
      BATCH_SIZE: '50',
      STREAM_INTERVAL: '5ms',
      PUBLISH_CONCURRENCY: '4',
    });
    const first = spawnNexus(['streamer'], env);
    const firstDone = run(first);
    while ((await queue.depth()) < 300) await new Promise((r) => setTimeout(r, 50));
    await killHard(first);
    const killed = await firstDone;
    assert.equal(killed.signal, 'SIGKILL');
    const partial = await queue.depth();
    assert.ok(partial < rows / 50, 'the first run finished before it was killed');
    const second = await run(spawnNexus(['streamer', '--stream-interval', '0'], env));
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /resuming an interrupted stream/);
    const got = recordsOf(await drain(queue));
    const keys = new Set(got.map(naturalKey));
    assert.equal(got.length, rows, `published ${got.length} records for ${rows} rows`);
    assert.equal(keys.size, rows, 'a record was published twice');
    await queue.close();
  });

  it('SIGTERM publishes what was read, exits 0, and a restart completes the file exactly once', async () => {
    const file = join(dir, 'term.csv');
    const rows = await generate(file, 20_000, { seed: 7 });
    const cluster = uniqueCluster('sigterm');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const env = cliEnv(cluster, { CSV_FILE: file, BATCH_SIZE: '77', STREAM_INTERVAL: '20ms' });
    const child = spawnNexus(['streamer'], env);
    const done = run(child);
    while ((await queue.depth()) < 20) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    const stopped = await done;
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /stopped early \(resumable\)/);
    const again = await run(spawnNexus(['streamer', '--stream-interval', '0'], env));
    assert.equal(again.code, 0, again.stderr);
    const got = recordsOf(await drain(queue));
    assert.equal(got.length, rows);
    assert.equal(new Set(got.map(naturalKey)).size, rows);
    await queue.close();
  });

  it('a completed stream streams again when started again; a changed file starts over', async () => {
    const cluster = uniqueCluster('again');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const first = await new Streamer(options(queue)).run();
    const second = await new Streamer(options(queue)).run();
    assert.equal(first.records, 2470);
    assert.equal(second.records, 2470);
    assert.equal(second.resumed, false);
    assert.equal(recordsOf(await drain(queue)).length, 4940);
    await queue.close();
  });

  it('sets malformed rows aside with line and reason, publishes every valid row, exits 0 with a summary', async () => {
    const file = join(dir, 'malformed.csv');
    const fixture = writeMalformedCsv(file);
    const kinds = new Set(fixture.bad.map((b) => b.reason.source));
    assert.ok(kinds.size >= 10, `only ${kinds.size} kinds of malformed rows`);
    const cluster = uniqueCluster('malformed');
    const rejects = join(dir, 'malformed.rejects.csv');
    const res = await run(
      spawnNexus(
        ['streamer', '--csv', file, '--rejects-file', rejects, '--batch-size', '4'],
        cliEnv(cluster),
      ),
    );
    assert.equal(res.code, 0, res.stderr);
    const summary = res.stdout.split('\n').find((l) => l.includes('"msg":"summary:'));
    assert.ok(summary, `no summary line in: ${res.stdout}`);
    assert.match(
      summary,
      new RegExp(
        `summary: ${fixture.valid} records published .* ${fixture.bad.length} malformed rows set aside`,
      ),
    );
    // Every bad row: in the rejects file with its line and reason, and in the logs.
    const rows = parse<{ line: string; reason: string; row: string }>(readFileSync(rejects), {
      columns: true,
    });
    assert.equal(rows.length, fixture.bad.length);
    for (const bad of fixture.bad) {
      const row = rows.find((r) => r.line === String(bad.line));
      assert.ok(row, `line ${bad.line} missing from the rejects file`);
      assert.match(row.reason, bad.reason);
      assert.ok(
        row.row.length > 0 || /longer than/.test(row.reason),
        `line ${bad.line}: row text missing`,
      );
      assert.ok(res.stdout.includes(`"line":${bad.line},`), `line ${bad.line} not logged`);
    }
    const queue = etcdQueue(etcd.endpoint, cluster);
    const got = recordsOf(await drain(queue));
    assert.equal(got.length, fixture.valid);
    await queue.close();
  });

  it('reports a file it cannot read, with a non-zero exit', async () => {
    const res = await run(
      spawnNexus(['streamer', '--csv', join(dir, 'missing.csv')], cliEnv(uniqueCluster('missing'))),
    );
    assert.equal(res.code, 2);
    assert.match(res.stderr, /cannot read CSV file .*missing\.csv: no such file/);
  });

  it('rejects bad configuration with exit status 2 and a message naming the variable', async () => {
    const res = await run(
      spawnNexus(['streamer'], cliEnv(uniqueCluster('cfg'), { BATCH_SIZE: 'lots' })),
    );
    assert.equal(res.code, 2);
    assert.match(res.stderr, /BATCH_SIZE: "lots" is not an integer/);
  });
});

export type { TelemetryRecord };

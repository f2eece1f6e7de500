import assert from 'node:assert/strict';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { DEFAULT_GENERATE, generateCsv } from '../../src/streamer/csv/generator.js';
import { Streamer, type StreamerOptions } from '../../src/streamer/streamer.js';
import type { Queue } from '../../src/queue/types.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { envelope } from '../conformance/queue-suite.js';
import { killHard, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { sharedPostgres, startPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { etcdQueue, TEST_PREFIX } from '../helpers/queues.js';
import { freePort } from '../helpers/ports.js';
import { rows, scalar, sqlStore, startCollector, until } from '../helpers/pipeline.js';
import { SAMPLE, sampleRows } from '../helpers/sample.js';

const etcd = await sharedEtcd();
const pg = await sharedPostgres();
const dir = mkdtempSync(join(tmpdir(), 'nexus-collector-'));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
  await pg.release();
});

function streamerOptions(queue: Queue, over: Partial<StreamerOptions> = {}): StreamerOptions {
  return {
    queue,
    csvFile: SAMPLE,
    clusterId: queue.clusterId,
    batchSize: 100,
    intervalMs: 0,
    loop: false,
    timestampMode: 'original',
    maxQueueDepth: 1_000_000,
    concurrency: 8,
    streamId: `s-${queue.clusterId}`,
    producerId: 'test',
    rejectsFile: join(dir, 'rejects.csv'),
    restart: false,
    logger: silentLogger(),
    ...over,
  };
}

async function generate(path: string, records: number, seed = 1): Promise<number> {
  const out = createWriteStream(path);
  const rowsWritten = await generateCsv(
    { ...DEFAULT_GENERATE, hosts: 20, gpusPerHost: 8, timestamps: Math.ceil(records / 1600), seed },
    out,
  );
  await new Promise<void>((resolve) => out.end(resolve));
  return rowsWritten;
}

const SAMPLES_JOINED = `
  SELECT h.hostname, g.gpu_index AS gpu, m.name AS metric, nexus_ms(s.time)::text AS ms, s.value
  FROM samples s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id JOIN metrics m ON m.id = s.metric_id`;

function collectorEnv(
  url: string,
  cluster: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    DATABASE_URL: url,
    ETCD_ENDPOINTS: etcd.endpoint,
    CLUSTER_ID: cluster,
    MESSAGE_QUEUE_PREFIX: TEST_PREFIX,
    REGISTRY_PREFIX: `/nexus-test/${cluster}`,
    LEASE_TTL: '3s',
    POLL_TIMEOUT: '500ms',
    WORKERS: '2',
    COLLECT_BATCH: '10',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

describe('collector: etcd queue -> PostgreSQL', () => {
  it('stores the real sample exactly: 2,470 rows equal to the CSV, 31 hosts, 247 GPUs, 10 metrics, and the registry lists the fleet', async () => {
    const cluster = uniqueCluster('sample');
    const url = await pg.server.createDatabase(uniqueDatabase('sample'));
    const c = await startCollector({ endpoint: etcd.endpoint, url, cluster });
    const queue = etcdQueue(etcd.endpoint, cluster);
    await new Streamer(streamerOptions(queue)).run();
    assert.ok(
      await until(
        async () =>
          (await scalar(url, 'SELECT count(*) FROM samples')) === 2470 &&
          (await queue.depth()) === 0,
        30_000,
      ),
    );
    const stored = await rows<{
      hostname: string;
      gpu: number;
      metric: string;
      ms: string;
      value: number;
    }>(url, SAMPLES_JOINED);
    assert.equal(stored.length, 2470);
    const byKey = new Map(
      stored.map((r) => [`${r.hostname}|${r.gpu}|${r.metric}|${r.ms}`, r.value]),
    );
    for (const want of sampleRows()) {
      assert.equal(
        byKey.get(`${want.hostname}|${want.gpu}|${want.metric}|${want.timestamp}`),
        want.value,
        `${want.hostname} ${want.gpu} ${want.metric}`,
      );
    }
    assert.equal(await scalar(url, 'SELECT count(*) FROM hosts'), 31);
    assert.equal(await scalar(url, 'SELECT count(*) FROM gpus'), 247);
    assert.equal(await scalar(url, 'SELECT count(*) FROM metrics'), 10);
    assert.equal(
      await scalar(
        url,
        "SELECT count(*) FROM gpus WHERE model = 'NVIDIA H100 80GB HBM3' AND uuid LIKE 'GPU-%'",
      ),
      247,
    );
    // The collector's rollup job folds every stored reading into the rollup and latest values.
    assert.ok(
      await until(
        async () => (await scalar(url, 'SELECT count(*) FROM samples_pending')) === 0,
        10_000,
      ),
      'the rollup job left readings pending',
    );
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples_latest'), 2470);
    assert.equal(await scalar(url, 'SELECT sum(count) FROM samples_1m'), 2470);
    // The registry in etcd lists the same fleet.
    await c.registry.flush();
    const clusters = await c.registry.clusters();
    assert.deepEqual(
      clusters.map((x) => x.cluster_id),
      [cluster],
    );
    const hosts = await c.registry.hosts(cluster);
    assert.equal(hosts.length, 31);
    assert.equal(
      hosts.reduce((n, h) => n + h.gpu_count, 0),
      247,
    );
    assert.equal((await c.registry.gpus(cluster)).length, 247);
    const live = await c.registry.live(cluster);
    assert.equal(live.length, 247);
    assert.ok(live.every((g) => Object.keys(g.metrics).length === 10));
    assert.equal(c.collector.stats.inserted, 2470);
    await c.stop();
    await queue.close();
  });

  it('streaming the same file twice leaves exactly 2,470 rows', async () => {
    const cluster = uniqueCluster('twice');
    const url = await pg.server.createDatabase(uniqueDatabase('twice'));
    const c = await startCollector({ endpoint: etcd.endpoint, url, cluster });
    const queue = etcdQueue(etcd.endpoint, cluster);
    await new Streamer(streamerOptions(queue)).run();
    await new Streamer(streamerOptions(queue)).run();
    assert.ok(
      await until(
        async () => c.collector.stats.records === 4940 && (await queue.depth()) === 0,
        30_000,
      ),
    );
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples'), 2470);
    assert.equal(c.collector.stats.duplicates, 2470);
    assert.equal(
      await scalar(url, 'SELECT sum(count) FROM samples_1m_all'),
      2470,
      'the rollup counted a duplicate',
    );
    await c.stop();
    await queue.close();
  });

  it('a record the database refuses goes to the dead letters with its reason; the rest of its batch is stored', async () => {
    const cluster = uniqueCluster('refused');
    const url = await pg.server.createDatabase(uniqueDatabase('refused'));
    const queue = etcdQueue(etcd.endpoint, cluster);
    const bad = envelope(cluster, {}, 10);
    const records = bad.records.map((r, i) => ({
      ...r,
      hostname: i === 6 ? 'refused-host' : `host-${i}`,
      timestamp: r.timestamp + i,
    }));
    await queue.publish({ ...bad, records });
    await queue.publish(envelope(cluster, {}, 5));
    // A record within every bound that this database refuses all the same (a rule of its own).
    const pre = sqlStore(url);
    await pre.migrate();
    await pre.close();
    await scalar(
      url,
      "ALTER TABLE hosts ADD CONSTRAINT refuse_test CHECK (hostname <> 'refused-host')",
    );
    const c = await startCollector({ endpoint: etcd.endpoint, url, cluster });
    assert.ok(
      await until(
        async () => (await queue.depth()) === 0 && (await queue.stats()).dead === 1,
        20_000,
      ),
    );
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples'), 14);
    const { items } = await queue.listDeadLetters();
    assert.equal(items.length, 1);
    const dl = items[0];
    assert.ok(dl);
    assert.match(dl.reason, /violates check constraint "refuse_test"/);
    assert.equal(dl.records, 1);
    assert.equal(dl.envelope?.records[0]?.hostname, 'refused-host');
    assert.equal(c.collector.stats.rejected, 1);
    await c.stop();
    await queue.close();
  });

  it("records outside the bounds of a record (any producer's) go to the dead letters with the reason; their neighbours are stored", async () => {
    const cluster = uniqueCluster('bounds');
    const url = await pg.server.createDatabase(uniqueDatabase('bounds'));
    const queue = etcdQueue(etcd.endpoint, cluster);
    const msg = envelope(cluster, {}, 10);
    const bad: Record<number, Partial<TelemetryRecord>> = {
      1: { hostname: 'h'.repeat(200_000) },
      3: { pod: 'pod\u0000x' },
      5: { timestamp: Date.UTC(1990, 0, 1) },
      7: { metric: 'DCGM FI TEMP' },
    };
    const records = msg.records.map((r, i) => ({
      ...r,
      hostname: `host-${i}`,
      timestamp: r.timestamp + i,
      ...bad[i],
    }));
    await queue.publish({ ...msg, records });
    const c = await startCollector({ endpoint: etcd.endpoint, url, cluster });
    assert.ok(
      await until(
        async () => (await queue.depth()) === 0 && (await queue.stats()).dead === 4,
        20_000,
      ),
    );
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples'), 6);
    assert.equal(await scalar(url, 'SELECT max(length(hostname)) FROM hosts'), 6);
    // One dead letter per reason, each holding its record.
    const { items } = await queue.listDeadLetters();
    assert.deepEqual(
      items.map((d) => d.records),
      [1, 1, 1, 1],
    );
    const reasons = items.map((d) => d.reason).sort();
    assert.match(reasons[0] ?? '', /^record out of bounds: Hostname longer than 253 characters/);
    assert.match(reasons[1] ?? '', /^record out of bounds: bad metric_name "DCGM FI TEMP"/);
    assert.match(
      reasons[2] ?? '',
      /^record out of bounds: pod holds a control character \(U\+0000\)/,
    );
    assert.match(reasons[3] ?? '', /^record out of bounds: timestamp out of range "1990-01-01/);
    assert.equal(c.collector.stats.rejected, 4);
    await c.stop();
    await queue.close();
  });

  it('10 collectors on one queue share the work and never store a record twice', async () => {
    const cluster = uniqueCluster('ten');
    const url = await pg.server.createDatabase(uniqueDatabase('ten'));
    const file = join(dir, 'ten.csv');
    const total = await generate(file, 30_000, 3);
    const queue = etcdQueue(etcd.endpoint, cluster);
    await new Streamer(streamerOptions(queue, { csvFile: file, batchSize: 50 })).run();
    const collectors = await Promise.all(
      Array.from({ length: 10 }, () =>
        startCollector({ endpoint: etcd.endpoint, url, cluster }, { workers: 1, batchMessages: 5 }),
      ),
    );
    assert.ok(await until(async () => (await queue.depth()) === 0, 60_000));
    await Promise.all(collectors.map((c) => c.stop()));
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples'), total);
    const stats = collectors.map((c) => c.collector.stats);
    assert.equal(
      stats.reduce((n, s) => n + s.records, 0),
      total,
      'records processed more than once',
    );
    assert.equal(
      stats.reduce((n, s) => n + s.duplicates, 0),
      0,
    );
    assert.ok(
      stats.filter((s) => s.messages > 0).length >= 5,
      `work not shared: ${stats.map((s) => s.messages).join(',')}`,
    );
    await queue.close();
  });

  it('200,000 records, 3 collector processes, two killed with SIGKILL at random moments and restarted: exactly 200,000 rows, queue and dead letters empty', async () => {
    const cluster = uniqueCluster('kills');
    const url = await pg.server.createDatabase(uniqueDatabase('kills'));
    const file = join(dir, 'kills.csv');
    const total = await generate(file, 200_000, 4);
    assert.equal(total, 200_000);
    const env = collectorEnv(url, cluster);
    const spawnCollector = () => spawnNexus(['collector'], env);
    const procs = [spawnCollector(), spawnCollector(), spawnCollector()];
    const queue = etcdQueue(etcd.endpoint, cluster);
    const streaming = new Streamer(
      streamerOptions(queue, { csvFile: file, batchSize: 200, intervalMs: 2 }),
    ).run();
    const rowsNow = () => scalar(url, 'SELECT count(*) FROM samples').catch(() => 0);
    // Kill two of them at random moments while data flows, then start them again.
    for (const i of [0, 1]) {
      await until(
        async () => (await rowsNow()) > 20_000 * (i + 1) + Math.random() * 20_000,
        120_000,
        100,
      );
      const victim = procs[i];
      assert.ok(victim);
      await killHard(victim);
      procs[i] = spawnCollector();
    }
    await streaming;
    const done = await until(
      async () => (await rowsNow()) === total && (await queue.depth()) === 0,
      180_000,
      500,
    );
    const stored = await rowsNow();
    for (const p of procs) p.kill('SIGTERM');
    const exits = await Promise.all(procs.map((p) => run(p)));
    assert.ok(done, `stored ${stored} of ${total}; queue depth ${await queue.depth()}`);
    assert.equal(stored, total);
    assert.equal(
      await scalar(
        url,
        'SELECT count(*) FROM (SELECT DISTINCT gpu_id, metric_id, time FROM samples) d',
      ),
      total,
    );
    // Each collector folds what is pending as it stops: nothing is left pending.
    assert.equal(await scalar(url, 'SELECT count(*) FROM samples_pending'), 0);
    assert.equal(await scalar(url, 'SELECT sum(count) FROM samples_1m'), total);
    const stats = await queue.stats();
    assert.equal(stats.ready + stats.inFlight + stats.delayed, 0);
    assert.equal(stats.dead, 0);
    for (const e of exits) assert.equal(e.code, 0, e.stderr);
    await queue.close();
  });

  it('PostgreSQL stopped for 20 seconds mid-run: the collector stays up, reports not ready, then stores every record exactly once', async () => {
    const server = await startPostgres();
    const cluster = uniqueCluster('outage');
    const url = server.url;
    const file = join(dir, 'outage.csv');
    const total = await generate(file, 16_000, 5);
    const port = await freePort();
    const readyz = async (): Promise<number> =>
      (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    const child = spawnNexus(
      ['collector'],
      collectorEnv(url, cluster, { METRICS_PORT: String(port) }),
    );
    const exited = run(child);
    const queue = etcdQueue(etcd.endpoint, cluster);
    // A slow stream: about 40 seconds of data arriving.
    const streaming = new Streamer(
      streamerOptions(queue, { csvFile: file, batchSize: 100, intervalMs: 250 }),
    ).run();
    const rowsNow = () => scalar(url, 'SELECT count(*) FROM samples').catch(() => -1);
    assert.ok(await until(async () => (await rowsNow()) > 1000, 30_000));
    assert.equal(await readyz(), 200);
    await server.stop();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 20_000));
    assert.equal(child.exitCode, null, 'the collector exited while PostgreSQL was down');
    assert.equal(await readyz(), 503, 'ready while PostgreSQL is down');
    const depthDuringOutage = await queue.depth();
    assert.ok(depthDuringOutage > 0, 'nothing waited in the queue during the outage');
    await server.start();
    await streaming;
    assert.ok(
      await until(
        async () => (await rowsNow()) === total && (await queue.depth()) === 0,
        90_000,
        500,
      ),
      `stored ${await rowsNow()} of ${total}`,
    );
    assert.ok(Date.now() - downAt >= 20_000);
    assert.ok(
      await until(async () => (await readyz()) === 200, 10_000),
      'not ready again after PostgreSQL returned',
    );
    assert.equal(child.exitCode, null, 'the collector exited');
    child.kill('SIGTERM');
    const exit = await exited;
    assert.equal(exit.code, 0);
    assert.match(exit.stdout, /backing off and retrying/);
    assert.match(exit.stdout, /PostgreSQL back/);
    assert.equal(await scalar(url, 'SELECT sum(count) FROM samples_1m'), total);
    assert.equal((await queue.stats()).dead, 0);
    await queue.close();
    await server.destroy();
  });

  it('SIGTERM finishes the batches in flight, acks them and exits 0', async () => {
    const cluster = uniqueCluster('term');
    const url = await pg.server.createDatabase(uniqueDatabase('term'));
    const file = join(dir, 'term.csv');
    const total = await generate(file, 20_000, 6);
    const queue = etcdQueue(etcd.endpoint, cluster);
    await new Streamer(streamerOptions(queue, { csvFile: file, batchSize: 100 })).run();
    const child = spawnNexus(
      ['collector'],
      collectorEnv(url, cluster, { COLLECT_BATCH: '2', WORKERS: '1' }),
    );
    const exited = run(child);
    assert.ok(
      await until(
        async () => (await scalar(url, 'SELECT count(*) FROM samples').catch(() => 0)) > 2000,
        30_000,
        50,
      ),
    );
    child.kill('SIGTERM');
    const exit = await exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stdout, /collector stopped/);
    const stored = await scalar(url, 'SELECT count(*) FROM samples');
    const s = await queue.stats();
    // Everything stored was acked (nothing left claimed), and nothing else was.
    assert.equal(s.inFlight, 0);
    assert.equal(stored + s.ready * 100, total);
    await queue.close();
  });
});

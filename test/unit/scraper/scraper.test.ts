import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { NexusMetrics } from '../../../src/core/metrics.js';
import { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import { DEFAULT_QUEUE_OPTIONS } from '../../../src/queue/options.js';
import { RecordPublisher } from '../../../src/queue/record-publisher.js';
import { offsetOf, rejectKind, Scraper } from '../../../src/scraper/scraper.js';
import { startFixtureExporter, type FixtureExporter } from '../../helpers/dcgm-exporter.js';
import { drain, recordsOf } from '../../helpers/queues.js';

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers) await c();
});

async function exporter(
  options: Parameters<typeof startFixtureExporter>[0] = {},
): Promise<FixtureExporter> {
  const e = await startFixtureExporter(options);
  closers.push(() => e.close());
  return e;
}

/** A server answering every request with `body` (or stalling when body is undefined). */
async function serve(body: string | undefined): Promise<string> {
  const server: Server = createServer((_req, res) => {
    if (body === undefined) return; // never answers
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  const addr = server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}/metrics`;
}

function setup(
  options: {
    maxDepth?: number;
    basicAuth?: { username: string; password: string };
    maxBytes?: number;
    timeoutMs?: number;
  } = {},
) {
  const queue = new MemoryQueue({
    ...DEFAULT_QUEUE_OPTIONS,
    clusterId: 'c1',
    logger: silentLogger(),
  });
  closers.push(() => queue.close());
  const metrics = new NexusMetrics({ component: 'scraper', processMetrics: false });
  const warnings: string[] = [];
  const logger = silentLogger();
  logger.warn = (...args: unknown[]) => {
    warnings.push(String(args.find((a) => typeof a === 'string')));
  };
  const publisher = new RecordPublisher({
    queue,
    producer: 'scrape-test',
    batchSize: 5,
    maxDepth: options.maxDepth ?? 0,
    depthTtlMs: 0,
  });
  const scraper = new Scraper({
    publisher,
    logger,
    metrics,
    intervalMs: 10_000,
    timeoutMs: options.timeoutMs ?? 0,
    http: {
      maxBytes: options.maxBytes ?? 1024 * 1024,
      ...(options.basicAuth === undefined ? {} : { basicAuth: options.basicAuth }),
    },
  });
  return { queue, metrics, scraper, warnings };
}

async function metricValue(
  metrics: NexusMetrics,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const json = await metrics.registry.getSingleMetric(name)?.get();
  const v = json?.values.find((x) =>
    Object.entries(labels).every(([k, want]) => (x.labels as Record<string, unknown>)[k] === want),
  );
  return v?.value;
}

describe('Scraper', () => {
  it('publishes every reading of a scrape with the scrape start time, under its host and GPU', async () => {
    const e = await exporter();
    const { queue, scraper, metrics } = setup();
    scraper.setTargets('static', [{ url: e.url, labels: {} }]);
    const before = Date.now();
    const out = await scraper.scrapeOnce(e.url);
    assert.equal(out.up, true);
    assert.equal(out.published, e.readingsPerScrape);
    const records = recordsOf(await drain(queue, 200));
    assert.equal(records.length, e.readingsPerScrape);
    const ts = new Set(records.map((r) => r.timestamp));
    assert.equal(ts.size, 1);
    const at = [...ts][0] ?? 0;
    assert.ok(at >= before && at <= Date.now());
    assert.deepEqual([...new Set(records.map((r) => `${r.hostname}/${r.gpu}`))].sort(), [
      'fixture-node-1/0',
      'fixture-node-1/1',
      'fixture-node-1/2',
    ]);
    assert.equal(await metricValue(metrics, 'nexus_scrape_up', { target: e.url }), 1);
    assert.equal(
      await metricValue(metrics, 'nexus_scrape_samples_published_total', { target: e.url }),
      e.readingsPerScrape,
    );
  });

  it('basic auth: down (401) without it, up with it', async () => {
    const e = await exporter({
      file: 'node-2-legacy.prom',
      basicAuth: { user: 'u', password: 'p w' },
    });
    const without = setup();
    without.scraper.setTargets('static', [{ url: e.url, labels: {} }]);
    const out = await without.scraper.scrapeOnce(e.url);
    assert.equal(out.up, false);
    assert.equal(out.error, 'HTTP 401');
    assert.equal(await metricValue(without.metrics, 'nexus_scrape_up', { target: e.url }), 0);
    const withAuth = setup({ basicAuth: { username: 'u', password: 'p w' } });
    withAuth.scraper.setTargets('static', [{ url: e.url, labels: {} }]);
    const ok = await withAuth.scraper.scrapeOnce(e.url);
    assert.equal(ok.up, true);
    assert.equal(ok.published, 2);
  });

  it('counts rejects by reason (malformed, NaN/Inf), ignores non-DCGM series, warns once per reason', async () => {
    const l = 'gpu="0",Hostname="h1"';
    const url = await serve(
      [
        `DCGM_FI_DEV_GPU_TEMP{${l}} 40`,
        `DCGM_FI_DEV_GPU_TEMP{${l},x="1"} NaN`,
        `DCGM_FI_DEV_GPU_TEMP{${l},x="2"} +Inf`,
        `DCGM_FI_DEV_GPU_TEMP{${l} 1`,
        'go_goroutines 12',
        `DCGM_FI_DEV_GPU_UTIL{Hostname="h1"} 5`,
      ].join('\n'),
    );
    const { scraper, metrics, warnings } = setup();
    scraper.setTargets('static', [{ url, labels: { rack: 'r1' } }]);
    const first = await scraper.scrapeOnce(url);
    assert.equal(first.published, 1);
    assert.deepEqual(first.rejected, {
      'malformed:bad-label-set': 1,
      'not-a-number': 2,
      'gpu-label': 1,
    });
    assert.deepEqual(first.ignored, { 'not-dcgm': 1 });
    await scraper.scrapeOnce(url);
    assert.equal(warnings.length, 3, warnings.join('\n'));
    assert.equal(
      await metricValue(metrics, 'nexus_scrape_samples_rejected_total', {
        target: url,
        reason: 'not-a-number',
      }),
      4,
    );
    // Dropped: its series go.
    scraper.setTargets('static', []);
    assert.equal(await metricValue(metrics, 'nexus_scrape_up', { target: url }), undefined);
    assert.equal(
      await metricValue(metrics, 'nexus_scrape_samples_rejected_total', {
        target: url,
        reason: 'not-a-number',
      }),
      undefined,
    );
    assert.deepEqual(scraper.health.reasons, ['no scrape targets']);
  });

  it('a body over SCRAPE_MAX_BYTES or an answer past the deadline makes the target down', async () => {
    const big = await serve(`x ${'1'.repeat(5000)}\n`);
    const slow = await serve(undefined);
    const { scraper } = setup({ maxBytes: 1024, timeoutMs: 200 });
    scraper.setTargets('static', [
      { url: big, labels: {} },
      { url: slow, labels: {} },
    ]);
    const a = await scraper.scrapeOnce(big);
    assert.equal(a.up, false);
    assert.match(a.error ?? '', /larger than SCRAPE_MAX_BYTES \(1024 bytes\)/);
    const b = await scraper.scrapeOnce(slow);
    assert.equal(b.up, false);
    assert.match(b.error ?? '', /no complete answer within 200 ms/);
  });

  it('skips and counts a scrape while the queue is at MAX_QUEUE_DEPTH', async () => {
    const e = await exporter();
    const { scraper, metrics } = setup({ maxDepth: 2 });
    scraper.setTargets('static', [{ url: e.url, labels: {} }]);
    const first = await scraper.scrapeOnce(e.url); // 11 readings in 3 messages of 5
    assert.equal(first.published, e.readingsPerScrape);
    const second = await scraper.scrapeOnce(e.url);
    assert.equal(second.skipped, 'backpressure');
    assert.equal(e.scrapes, 1);
    assert.equal(
      await metricValue(metrics, 'nexus_scrape_skipped_total', { reason: 'backpressure' }),
      1,
    );
  });

  it('scrapes on schedule until stopped; a stop lets the scrape in flight publish', async () => {
    const e = await exporter({ tick: true });
    const { scraper, queue } = setup();
    scraper.setTargets('static', [{ url: e.url, labels: {} }]);
    // A 10 s interval: one scheduled scrape at most before stop; scrape one now too.
    scraper.start();
    await scraper.scrapeOnce(e.url);
    await scraper.stop();
    const records = recordsOf(await drain(queue, 200));
    assert.equal(records.length, e.scrapes * e.readingsPerScrape);
  });

  it('offsets and reasons are stable', () => {
    assert.equal(offsetOf('http://a:1/metrics', 10_000), offsetOf('http://a:1/metrics', 10_000));
    assert.ok(offsetOf('http://a:1/metrics', 10_000) < 10_000);
    assert.equal(rejectKind('DCGM_X: timestamp out of range'), 'timestamp');
    assert.equal(rejectKind('DCGM_X: no Hostname label (dcgm-exporter sets it)'), 'hostname-label');
  });
});

/**
 * Load shedding (MAX_EVENT_LOOP_DELAY, MAX_HEAP_USED; @fastify/under-pressure, src/gateway/app.ts):
 * past either bound the API answers 503 with Retry-After and a message naming the bound, counted
 * in nexus_http_refused_total{reason="pressure"}, while health, readiness and metrics still
 * answer; once back under the bound, requests are served again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { NexusMetrics } from '../../../src/core/metrics.js';
import { buildGateway, pressureOf, type Gateway } from '../../../src/gateway/app.js';
import { RETRY_AFTER_S } from '../../../src/gateway/errors.js';
import type { TelemetryStore } from '../../../src/store/types.js';
import { testGatewayOptions } from '../../helpers/gateway.js';
import { pgliteHarness } from '../../helpers/pglite.js';

let store: TelemetryStore;
before(async () => {
  const h = pgliteHarness('pglite', { worker: false });
  ({ store } = await (h.createMigrated === undefined ? h.create({}) : h.createMigrated({})));
  await store.migrate();
});
after(() => store.close());

async function gateway(pressure: {
  maxEventLoopDelayMs: number;
  maxHeapUsedBytes: number;
}): Promise<{ gw: Gateway; metrics: NexusMetrics }> {
  const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
  const gw = await buildGateway({
    ...testGatewayOptions(store.reader),
    metrics,
    fleetMetrics: false,
    pressure,
  });
  return { gw, metrics };
}

/** Asks GET /api/v1/clusters every 50 ms until its status is `status` (up to `ms`); the last answer. */
async function until(
  gw: Gateway,
  status: number,
  ms: number,
): Promise<{ status: number; retryAfter: unknown; message: unknown }> {
  const end = Date.now() + ms;
  for (;;) {
    const res = await gw.app.inject({ method: 'GET', url: '/api/v1/clusters' });
    const body = res.json<{ error?: unknown }>();
    const last = {
      status: res.statusCode,
      retryAfter: res.headers['retry-after'],
      message: body.error,
    };
    if (res.statusCode === status || Date.now() > end) return last;
    await delay(50);
  }
}

async function exempt(gw: Gateway): Promise<void> {
  for (const url of ['/healthz', '/readyz', '/metrics']) {
    const res = await gw.app.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 200, `${url} answered ${res.statusCode} under pressure`);
  }
}

async function refused(metrics: NexusMetrics): Promise<number> {
  const { values } = await metrics.httpRefused.get();
  return values.filter((v) => v.labels.reason === 'pressure').reduce((n, v) => n + v.value, 0);
}

describe('load shedding', () => {
  it('past MAX_HEAP_USED the API answers 503 with Retry-After, saying why; health, readiness and metrics answer', async () => {
    // Any heap is over a bound of 1 KiB: from the first sample (1 s) on, every request is shed.
    const { gw, metrics } = await gateway({ maxEventLoopDelayMs: 0, maxHeapUsedBytes: 1024 });
    try {
      const res = await until(gw, 503, 10_000);
      assert.equal(res.status, 503);
      assert.equal(res.retryAfter, String(RETRY_AFTER_S));
      assert.match(
        String(res.message),
        /^the gateway is overloaded \(heap used \d+ MiB, MAX_HEAP_USED 1024 bytes\); retry shortly$/,
      );
      await exempt(gw);
      assert.ok((await refused(metrics)) >= 1, 'the refusal was not counted');
    } finally {
      await gw.app.close();
    }
  });

  it('past MAX_EVENT_LOOP_DELAY the API answers 503 until the loop is free again', async () => {
    const { gw, metrics } = await gateway({ maxEventLoopDelayMs: 200, maxHeapUsedBytes: 0 });
    try {
      assert.equal((await until(gw, 200, 10_000)).status, 200);
      // Hold the event loop for 1.5 s: the next sample's mean delay is far past 200 ms.
      const end = Date.now() + 1500;
      while (Date.now() < end);
      const shed = await until(gw, 503, 5_000);
      assert.equal(shed.status, 503);
      assert.equal(shed.retryAfter, String(RETRY_AFTER_S));
      assert.match(
        String(shed.message),
        /^the gateway is overloaded \(event-loop delay (\d+ ms|over 1000 ms), MAX_EVENT_LOOP_DELAY 200 ms\); retry shortly$/,
      );
      await exempt(gw);
      assert.ok((await refused(metrics)) >= 1, 'the refusal was not counted');
      // The loop is free: a later sample is under the bound, and requests are served again.
      assert.equal((await until(gw, 200, 10_000)).status, 200);
    } finally {
      await gw.app.close();
    }
  });

  it('says what is over which bound, in milliseconds and MiB; a loop held through a whole sample is over 1000 ms', () => {
    const p = { maxEventLoopDelayMs: 1000, maxHeapUsedBytes: 384 * 1048576 };
    assert.equal(
      pressureOf('eventLoopDelay', 1234.4, p),
      'event-loop delay 1234 ms, MAX_EVENT_LOOP_DELAY 1000 ms',
    );
    assert.equal(
      pressureOf('eventLoopDelay', Infinity, p),
      'event-loop delay over 1000 ms, MAX_EVENT_LOOP_DELAY 1000 ms',
    );
    assert.equal(
      pressureOf('heapUsedBytes', 400 * 1048576, p),
      'heap used 400 MiB, MAX_HEAP_USED 384 MiB',
    );
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import { DEFAULT_GATEWAY, sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { openSocket } from '../helpers/ws-client.js';

let t: TestGateway;
let base: string;
before(async () => {
  t = await sampleGateway({
    socket: {
      ...DEFAULT_GATEWAY.socket,
      maxBufferedBytes: 64 * 1024,
      heartbeatMs: 15_000,
      maxSubscriptions: 4,
      slowClientMs: 60_000,
    },
  });
  const address = await t.gateway.app.listen({ port: 0, host: '127.0.0.1' });
  base = address.replace(/^http/, 'ws');
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

function records(
  n: number,
  over: Partial<TelemetryRecord> = {},
  start = Date.now(),
): TelemetryRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    timestamp: start + i,
    metric: i % 2 === 0 ? 'DCGM_FI_DEV_GPU_TEMP' : 'DCGM_FI_DEV_POWER_USAGE',
    gpu: i % 8,
    hostname: `node-${i % 3}`,
    value: i,
    uuid: `GPU-${i % 8}`,
    labels: {},
    ...over,
  }));
}

type Telemetry = {
  type: 'telemetry';
  id: string;
  cluster_id: string;
  count: number;
  readings: { host_id: string; gpu_id: number; metric: string; value: number; timestamp: string }[];
};

describe('WebSocket /ws', () => {
  it('welcomes, subscribes with a filter, and delivers exactly the matching readings once', async () => {
    const s = await openSocket(`${base}/ws?subscribe=none`);
    const welcome = await s.waitFor((m) => m.type === 'welcome');
    assert.equal(welcome.protocol, 'nexus-live/1');
    s.send({
      type: 'subscribe',
      id: 'temps',
      filter: { cluster_id: 'c1', host_id: ['node-1'], metric: 'DCGM_FI_DEV_GPU_TEMP' },
    });
    await s.waitFor((m) => m.type === 'subscribed' && m.id === 'temps');
    const batch = records(300);
    await t.feed.publish('c1', batch);
    await t.feed.publish('c2', batch);
    const want = batch.filter(
      (r) => r.hostname === 'node-1' && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
    );
    const got = (await s.waitFor((m) => m.type === 'telemetry')) as unknown as Telemetry;
    assert.equal(got.id, 'temps');
    assert.equal(got.cluster_id, 'c1');
    assert.equal(got.count, want.length);
    assert.deepEqual(
      got.readings.map((r) => r.value),
      want.map((r) => r.value),
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(
      s.messages.filter((m) => m.type === 'telemetry').length,
      1,
      'delivered more than once, or other clusters',
    );
    s.send({ type: 'unsubscribe', id: 'temps' });
    await s.waitFor((m) => m.type === 'unsubscribed');
    await t.feed.publish('c1', batch);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.messages.filter((m) => m.type === 'telemetry').length, 1);
    await s.close();
  });

  it('subscribes from the URL, and to everything on a bare /ws', async () => {
    const filtered = await openSocket(`${base}/ws?cluster_id=c3&gpu_id=2,3`);
    const all = await openSocket(`${base}/ws`);
    await filtered.waitFor((m) => m.type === 'subscribed' && m.id === 'default');
    await all.waitFor((m) => m.type === 'subscribed' && m.id === 'default');
    const batch = records(40);
    await t.feed.publish('c3', batch);
    const f = (await filtered.waitFor((m) => m.type === 'telemetry')) as unknown as Telemetry;
    assert.deepEqual(new Set(f.readings.map((r) => r.gpu_id)), new Set([2, 3]));
    assert.equal(f.count, batch.filter((r) => r.gpu === 2 || r.gpu === 3).length);
    const a = (await all.waitFor((m) => m.type === 'telemetry')) as unknown as Telemetry;
    assert.equal(a.count, 40);
    await filtered.close();
    await all.close();
  });

  it('answers ping with pong', async () => {
    const s = await openSocket(`${base}/ws?subscribe=none`);
    s.send({ type: 'ping' });
    await s.waitFor((m) => m.type === 'pong');
    await s.close();
  });

  it('bounds a slow client: drops and counts what does not fit, tells it once it catches up', async () => {
    const s = await openSocket(`${base}/ws?cluster_id=slow`);
    await s.waitFor((m) => m.type === 'subscribed');
    // Stop reading: the server's buffer for this client fills (64 KiB here).
    (s.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    // ~30 MB of readings: more than the loopback socket buffers hold, so the gateway's own buffer
    // for this client fills.
    for (let i = 0; i < 400; i++) await t.feed.publish('slow', records(500, {}, i * 1000));
    await new Promise((r) => setTimeout(r, 300));
    (s.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();
    // Let it catch up, then one more batch: the server reports the drops, then delivers it.
    let before = -1;
    while (before !== s.messages.length) {
      before = s.messages.length;
      await new Promise((r) => setTimeout(r, 300));
    }
    await t.feed.publish('slow', records(1, { value: -1 }, 999_999));
    await s.waitFor(
      (m) =>
        m.type === 'telemetry' && (m as unknown as Telemetry).readings.some((r) => r.value === -1),
    );
    const dropped = s.messages
      .filter((m) => m.type === 'dropped')
      .reduce((n, m) => n + Number(m.count), 0);
    const delivered = s.messages
      .filter((m) => m.type === 'telemetry')
      .reduce((n, m) => n + Number(m.count), 0);
    assert.ok(dropped > 0, 'nothing was dropped: the buffer bound did not apply');
    assert.ok(delivered > 0);
    assert.equal(
      delivered + dropped,
      400 * 500 + 1,
      'every reading is delivered or counted as dropped',
    );
    await s.close();
  });
});

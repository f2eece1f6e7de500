import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { createLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { SocketLimits } from '../../src/gateway/ws/live-socket.js';
import { DEFAULT_GATEWAY, sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { metricSum } from '../helpers/metrics.js';
import { openSocket } from '../helpers/ws-client.js';

/**
 * The WebSocket limits (docs/api.md, "Limits"): connections in all and per address, filter sizes,
 * memory per client and in all, slow clients closed with 4008 (a paused client reads it when it
 * reads again), and the metrics that the shipped alerts watch.
 */
const open: TestGateway[] = [];
after(async () => {
  for (const g of open) await g.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

async function gateway(
  socket: Partial<SocketLimits>,
  trustProxy = '',
): Promise<{ t: TestGateway; ws: string; metrics: NexusMetrics }> {
  const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
  const t = await sampleGateway({
    metrics,
    fleetMetrics: false,
    trustProxy,
    socket: { ...DEFAULT_GATEWAY.socket, ...socket },
  });
  open.push(t);
  const address = await t.gateway.app.listen({ port: 0, host: '127.0.0.1' });
  return { t, ws: address.replace(/^http/, 'ws'), metrics };
}

async function metric(metrics: NexusMetrics, name: string): Promise<number> {
  return metricSum((await metrics.exposition()).body, name) ?? 0;
}

/** Opens a raw socket and resolves with its close code and reason once closed. */
function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
}

function records(n: number, start: number): TelemetryRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    timestamp: start + i,
    metric: 'DCGM_FI_DEV_GPU_TEMP',
    gpu: i % 8,
    hostname: `node-${i % 4}`,
    value: i,
    uuid: `GPU-${i % 8}`,
    labels: {},
  }));
}

type Paused = WebSocket & { _socket: { pause(): void; resume(): void } };

describe('WebSocket connection limits', { timeout: 60_000 }, () => {
  it('closes connections over the gateway limit with 1013, counting /ws and GraphQL together; the gauge follows', async () => {
    const { ws, metrics } = await gateway({ maxConnections: 4, maxConnectionsPerAddress: 100 });
    const sockets = await Promise.all([0, 1, 2].map(() => openSocket(`${ws}/ws?subscribe=none`)));
    for (const s of sockets) await s.waitFor((m) => m.type === 'welcome');
    // A GraphQL subscription client takes the fourth place.
    const gql = createClient({ url: `${ws}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    const events: unknown[] = [];
    const stop = gql.subscribe(
      { query: 'subscription { telemetry { value } }' },
      { next: (e) => events.push(e), error: () => undefined, complete: () => undefined },
    );
    for (let i = 0; i < 200 && (await metric(metrics, 'nexus_websocket_clients')) < 4; i++)
      await sleep(10);
    assert.equal(await metric(metrics, 'nexus_websocket_clients'), 4);
    const extra = new WebSocket(`${ws}/ws`);
    const refusal = await closed(extra);
    assert.equal(refusal.code, 1013);
    assert.match(refusal.reason, /server full: 4 WebSocket connections open; try again/);
    assert.equal(await metric(metrics, 'nexus_websocket_refused_total'), 1);
    // One leaves: a place frees up.
    await sockets[0]?.close();
    for (let i = 0; i < 200 && (await metric(metrics, 'nexus_websocket_clients')) > 3; i++)
      await sleep(10);
    const again = await openSocket(`${ws}/ws?subscribe=none`);
    await again.waitFor((m) => m.type === 'welcome');
    stop();
    await gql.dispose();
    for (const s of [...sockets.slice(1), again]) await s.close();
    for (let i = 0; i < 200 && (await metric(metrics, 'nexus_websocket_clients')) > 0; i++)
      await sleep(10);
    assert.equal(await metric(metrics, 'nexus_websocket_clients'), 0);
  });

  it('closes connections over the per-address limit with 4029; behind a trusted proxy the address is the client', async () => {
    const { ws } = await gateway({ maxConnections: 100, maxConnectionsPerAddress: 2 });
    const two = await Promise.all([0, 1].map(() => openSocket(`${ws}/ws?subscribe=none`)));
    const third = await closed(new WebSocket(`${ws}/ws`));
    assert.equal(third.code, 4029);
    assert.match(third.reason, /too many connections: 2 open from 127\.0\.0\.1/);
    for (const s of two) await s.close();

    const proxied = await gateway({ maxConnections: 100, maxConnectionsPerAddress: 1 }, 'true');
    const from = (ip: string): WebSocket =>
      new WebSocket(`${proxied.ws}/ws?subscribe=none`, { headers: { 'x-forwarded-for': ip } });
    const a = from('10.0.0.1');
    const b = from('10.0.0.2');
    await Promise.all([a, b].map((s) => new Promise((r) => s.once('open', r))));
    assert.equal((await closed(from('10.0.0.1'))).code, 4029);
    a.close();
    b.close();
  });
});

describe('WebSocket filters and memory', { timeout: 60_000 }, () => {
  it("bounds the values in a connection's filters", async () => {
    const { ws } = await gateway({ maxFilterValues: 10 });
    const s = await openSocket(`${ws}/ws?subscribe=none`);
    const hosts = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i}`);
    s.send({ type: 'subscribe', id: 'a', filter: { host_id: hosts(6) } });
    await s.waitFor((m) => m.type === 'subscribed' && m.id === 'a');
    s.send({ type: 'subscribe', id: 'b', filter: { host_id: hosts(5) } });
    const err = await s.waitFor((m) => m.type === 'error' && m.id === 'b');
    assert.match(String(err.error), /filters too large: 11 values .* at most 10/);
    s.send({ type: 'subscribe', id: 'c', filter: { host_id: hosts(4) } });
    await s.waitFor((m) => m.type === 'subscribed' && m.id === 'c');
    await s.close();
  });

  it('shares one copy of a message among the clients of a filter, and bounds what all clients hold unsent', async () => {
    const { t, ws, metrics } = await gateway({
      maxBufferedBytes: 8 << 20,
      maxTotalBufferedBytes: 3 << 20,
      slowClientMs: 60_000,
    });
    const clients = await Promise.all(
      Array.from({ length: 6 }, () => openSocket(`${ws}/ws?cluster_id=shared`)),
    );
    for (const c of clients) await c.waitFor((m) => m.type === 'subscribed');
    for (const c of clients) (c.ws as Paused)._socket.pause();
    // Deliveries of 2,000 readings (about 300 KB) until the loopback buffers are full and the
    // gateway holds the rest, up to its bound for all clients; past it, readings are dropped.
    const server = [...t.gateway.app.websocketServer.clients];
    for (let i = 0; i < 80; i++) {
      await t.feed.publish('shared', records(2000, i * 10_000));
      await sleep(10);
    }
    const held = t.gateway.liveBacklogBytes();
    const perClient = server.map((c) => c.bufferedAmount);
    const sum = perClient.reduce((a, b) => a + b, 0);
    assert.ok(held > 0, 'the gateway holds telemetry for the paused clients');
    assert.ok(held <= 3 << 20, `${held} bytes held; the bound is ${3 << 20}`);
    // Six clients wait for the same messages: one copy of each is held, not six.
    assert.ok(held * 3 < sum, `${held} bytes held for ${sum} bytes unsent to 6 clients`);
    assert.ok((await metric(metrics, 'nexus_websocket_dropped_readings_total')) > 0);
    for (const c of clients) (c.ws as Paused)._socket.resume();
    for (const c of clients) await c.close();
  });

  it('closes a paused client with 4008, which it reads when it reads again; the drop counter moves', async () => {
    const { t, ws, metrics } = await gateway({
      maxBufferedBytes: 64 * 1024,
      heartbeatMs: 200,
      slowClientMs: 600,
    });
    const socket = new WebSocket(`${ws}/ws?cluster_id=paused`) as Paused;
    const messages: string[] = [];
    socket.on('message', (d: Buffer) => messages.push(d.toString()));
    await new Promise((r) => socket.once('open', r));
    while (!messages.some((m) => m.includes('"subscribed"'))) await sleep(10);
    const code = closed(socket);
    socket._socket.pause();
    // Enough to fill the loopback buffers and the gateway's 64 KiB for this client.
    for (let i = 0; i < 60; i++) {
      await t.feed.publish('paused', records(2000, i * 10_000));
      await sleep(20);
    }
    // Paused for several heartbeats and past the slow-client bound.
    await sleep(1500);
    socket._socket.resume();
    const c = await code;
    assert.equal(c.code, 4008, `closed with ${c.code} ${c.reason}`);
    assert.match(c.reason, /too slow/);
    assert.ok((await metric(metrics, 'nexus_websocket_dropped_readings_total')) > 0);
  });

  it('makes a slow GraphQL subscriber wait (its oldest readings dropped), then closes it with 4008', async () => {
    const { t, ws } = await gateway({
      maxBufferedBytes: 64 * 1024,
      slowClientMs: 600,
    });
    const raw = new WebSocket(`${ws}/graphql`, 'graphql-transport-ws') as Paused;
    await new Promise((r) => raw.once('open', r));
    const code = closed(raw);
    raw.send(JSON.stringify({ type: 'connection_init' }));
    const acked = new Promise((r) => raw.once('message', r));
    await acked;
    raw.send(
      JSON.stringify({
        id: '1',
        type: 'subscribe',
        payload: {
          query:
            'subscription { telemetryBatch { count readings { cluster_id host_id gpu_id uuid metric unit timestamp value } } }',
        },
      }),
    );
    await sleep(200);
    raw._socket.pause();
    // About 300 KB an event: more than the loopback buffers hold.
    for (let i = 0; i < 60; i++) {
      await t.feed.publish('gql-slow', records(2000, i * 10_000));
      await sleep(20);
    }
    await sleep(1500);
    raw._socket.resume();
    assert.equal((await code).code, 4008);
  });
});

describe('clients cannot flood the log', { timeout: 60_000 }, () => {
  it('logs bad frames and refused connections at info at most 10 a minute, never as errors', async () => {
    const lines: { level: string; msg: string; held_back?: number }[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: {
        write: (line: string) => {
          lines.push(JSON.parse(line) as { level: string; msg: string });
        },
      },
    });
    const t = await sampleGateway({
      logger,
      socket: { ...DEFAULT_GATEWAY.socket, maxConnectionsPerAddress: 5 },
    });
    open.push(t);
    const ws = (await t.gateway.app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/, 'ws');
    // 30 frames that are not UTF-8 (each closes its connection with 1007), 30 bad messages, and
    // 30 connections over the per-address limit.
    for (let i = 0; i < 30; i++) {
      const s = new WebSocket(`${ws}/ws?subscribe=none`);
      await new Promise((r) => s.once('open', r));
      const c = closed(s);
      s.send(Buffer.from([0xff, 0xfe]), { binary: false });
      assert.equal((await c).code, 1007);
    }
    const s = await openSocket(`${ws}/ws?subscribe=none`);
    for (let i = 0; i < 30; i++) s.sendRaw('{"type": "shout"}');
    await s.waitFor(
      (m) => m.type === 'error' && s.messages.filter((x) => x.type === 'error').length >= 30,
    );
    const held = await Promise.all([0, 1, 2, 3].map(() => openSocket(`${ws}/ws?subscribe=none`)));
    for (let i = 0; i < 30; i++) assert.equal((await closed(new WebSocket(`${ws}/ws`))).code, 4029);
    await s.close();
    for (const h of held) await h.close();
    const mistakes = lines.filter((l) =>
      ['WebSocket peer error', 'bad WebSocket message', 'WebSocket connection refused'].includes(
        l.msg,
      ),
    );
    assert.equal(mistakes.length, 90, 'every mistake is logged, at some level');
    assert.equal(lines.filter((l) => l.level === 'error' || l.level === 'fatal').length, 0);
    assert.equal(mistakes.filter((l) => l.level === 'info').length, 10);
    assert.ok(!lines.some((l) => JSON.stringify(l).includes('"stack"')), 'no stack trace');
  });
});

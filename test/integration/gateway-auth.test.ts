import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import { createClient } from 'graphql-ws';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import WebSocket from 'ws';
import { buildGatewayFor } from '../../src/cli/compose.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger, silentLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import { buildGateway, type Gateway, type GatewayOptions } from '../../src/gateway/app.js';
import type { AuthOptions } from '../../src/gateway/auth/plugin.js';
import { OidcAuthenticator } from '../../src/gateway/auth/oidc.js';
import { SqlTokenStore } from '../../src/gateway/auth/sql-token-store.js';
import { TokenAuthenticator } from '../../src/gateway/auth/token-auth.js';
import { dashboardPlugin } from '../../src/gateway/dashboard/plugin.js';
import { MemoryQueue } from '../../src/queue/memory/memory-queue.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { envelope } from '../conformance/queue-suite.js';
import { run, spawnNexus } from '../helpers/child.js';
import { DEFAULT_GATEWAY, sampleRecords } from '../helpers/gateway.js';
import { startNexusUp } from '../helpers/nexus-up.js';
import { postgresDatabase, sqlStore, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

/**
 * Authentication and authorization of the gateway (docs/api.md, "Authentication"): every route
 * of the running app, enumerated from the app itself, with no token, a read token, an admin
 * token, a revoked and an expired one; WebSocket /ws and GraphQL subscriptions (header,
 * subprotocol, connection_init); /metrics with METRICS_AUTH on and off; rate limits; OIDC; and
 * the acceptance through the real commands: `nexus token create` then `curl` against `nexus
 * gateway` on PostgreSQL and against `nexus up` with its token file.
 */
const pg = await sharedPostgres();
const dir = mkdtempSync(join(tmpdir(), 'nexus-auth-'));
let dbUrl: string;
let store: SqlStore;
/** The test's own handle on the tokens (the gateways have theirs). */
let tokens: SqlTokenStore;
const gateways: Gateway[] = [];
const CLUSTER = 'local-cluster';
const HOST = sampleRecords()[0]?.hostname ?? '';
const tok: Record<'read' | 'admin' | 'revoked' | 'expired', string> = {
  read: '',
  admin: '',
  revoked: '',
  expired: '',
};

/** A dashboard build of two files, as the dashboard plugin serves it. */
function dashboardDir(): string {
  const d = join(dir, 'dashboard');
  mkdirSync(join(d, 'assets'), { recursive: true });
  writeFileSync(join(d, 'index.html'), '<!doctype html><title>Nexus</title>');
  writeFileSync(join(d, 'assets', 'app.js'), 'console.log(1)');
  return d;
}

/** A gateway on the test's store with token auth on its own connection to the same database. */
async function build(over: Partial<GatewayOptions> & { auth?: AuthOptions } = {}) {
  const logs: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString());
        done();
      },
    }),
  });
  const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
  const gateway = await buildGateway({
    reader: store.reader,
    feed: new MemoryFeed(),
    checks: [],
    logger,
    metrics,
    fleetMetrics: false,
    ...DEFAULT_GATEWAY,
    auth: {
      mode: 'token',
      authenticator: new TokenAuthenticator(new SqlTokenStore(postgresDatabase(dbUrl, 2)), {
        cacheTtlMs: 200,
        logger,
      }),
      metricsAuth: true,
      rateLimit: { perMinute: 0, anonPerMinute: 0 },
      recheckMs: 200,
      initTimeoutMs: 500,
    },
    ...over,
  });
  gateways.push(gateway);
  return { gateway, app: gateway.app, metrics, logs };
}

const deadLetters = new MemoryQueue({
  clusterId: CLUSTER,
  maxAttempts: 3,
  retry: { baseMs: 50, capMs: 400, jitter: 0.5 },
  messageTtlMs: 3_600_000,
  leaseTtlMs: 2000,
  pollTimeoutMs: 1000,
  logger: silentLogger(),
});

let main: Awaited<ReturnType<typeof build>>;

before(async () => {
  dbUrl = await pg.server.createDatabase(uniqueDatabase('auth'));
  store = sqlStore(dbUrl);
  await store.migrate();
  await store.write(CLUSTER, sampleRecords());
  tokens = new SqlTokenStore(postgresDatabase(dbUrl, 2));
  tok.read = (await tokens.create({ name: 'read', scope: 'read', expiresAt: null })).token;
  tok.admin = (await tokens.create({ name: 'admin', scope: 'admin', expiresAt: null })).token;
  tok.revoked = (await tokens.create({ name: 'gone', scope: 'admin', expiresAt: null })).token;
  await tokens.revoke('gone');
  const past = Date.now() - 1000;
  tok.expired = (await tokens.create({ scope: 'admin', expiresAt: past }, past - 1000)).token;
  // One dead letter for the admin routes.
  await deadLetters.publish(envelope(CLUSTER));
  const consumer = await deadLetters.consumer();
  const [d] = await consumer.claim(1, { waitMs: 2000 });
  assert.ok(d);
  assert.equal(await consumer.nack(d, 'poison', { retryable: false }), 'dead');
  await consumer.close();
  main = await build({
    deadLetters,
    extensions: [dashboardPlugin(dashboardDir(), silentLogger())],
  });
  await main.app.ready();
});

after(async () => {
  for (const g of gateways) await g.app.close();
  await deadLetters.close();
  await tokens.close();
  await store.close();
  await pg.release();
  rmSync(dir, { recursive: true, force: true });
});

/** A concrete URL of a route (its parameters filled in with the sample's values). */
function concrete(url: string): string {
  return url
    .replace(':cluster_id', CLUSTER)
    .replace(':host_id', HOST)
    .replace(':gpu_id', '0')
    .replace(':name', 'start.js')
    .replace(/\*$/, 'swagger-ui.css');
}

const BODIES: Record<string, unknown> = {
  'POST /graphql': { query: '{ clusters { cluster_id } }' },
  'POST /api/v1/admin/dead-letters/replay': { ids: ['none'] },
};

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('gateway authentication: every route of the app', () => {
  it('opens only health, the pages and their static files; everything else needs a token', () => {
    const open = [
      ...new Set(main.gateway.auth.routes.filter((r) => r.access === 'open').map((r) => r.url)),
    ].sort();
    assert.deepEqual(open, [
      '/',
      '/assets/app.js',
      '/graphiql/assets/:name',
      '/health',
      '/healthz',
      '/index.html',
      '/readyz',
      '/swagger',
      '/swagger/index.html',
      '/swagger/nexus-swagger.js',
      '/swagger/static/*',
      '/swagger/static/index.html',
      '/swagger/static/swagger-initializer.js',
    ]);
    const admin = main.gateway.auth.routes.filter((r) => r.access === 'admin');
    assert.deepEqual(admin.map((r) => `${r.method} ${r.url}`).sort(), [
      'GET /api/v1/admin/dead-letters',
      'HEAD /api/v1/admin/dead-letters',
      'POST /api/v1/admin/dead-letters/replay',
    ]);
  });

  it('no token 401, read token allowed on reads and 403 on admin routes, admin allowed, revoked and expired 401', async () => {
    const routes = main.gateway.auth.routes.filter((r) => r.method !== 'OPTIONS');
    const readId = (await tokens.list()).find((t) => t.name === 'read')?.id;
    assert.ok(routes.length > 30, `${routes.length} routes`);
    const seen: string[] = [];
    for (const r of routes) {
      const key = `${r.method} ${r.url}`;
      const ask = async (headers: Record<string, string>) => {
        const res = await main.app.inject({
          method: r.method as 'GET',
          url: concrete(r.url),
          headers,
          ...(BODIES[key] === undefined ? {} : { payload: BODIES[key] as object }),
        });
        return res;
      };
      const anonymous = await ask({});
      if (r.access === 'open') {
        assert.ok(![401, 403].includes(anonymous.statusCode), `${key}: ${anonymous.statusCode}`);
        continue;
      }
      seen.push(key);
      assert.equal(anonymous.statusCode, 401, `${key} without a token`);
      assert.equal(anonymous.headers['www-authenticate'], 'Bearer realm="nexus"', key);
      if (r.method !== 'HEAD') {
        assert.deepEqual(anonymous.json(), {
          error:
            'this API needs a bearer token: send "Authorization: Bearer <token>" (nexus token create --scope read makes one)',
          code: 'UNAUTHORIZED',
          statusCode: 401,
        });
      }
      for (const bad of ['revoked', 'expired'] as const) {
        const res = await ask(bearer(tok[bad]));
        assert.equal(res.statusCode, 401, `${key} with a ${bad} token`);
        if (r.method !== 'HEAD')
          assert.match(
            res.json<{ error: string }>().error,
            new RegExp(`^the bearer token \\w+ (was revoked|has expired)$`),
          );
      }
      assert.equal((await ask({ authorization: `Basic ${tok.read}` })).statusCode, 401, key);
      assert.equal((await ask(bearer(`nexus_${'x'.repeat(43)}`))).statusCode, 401, key);
      const read = await ask(bearer(tok.read));
      const adminRes = await ask(bearer(tok.admin));
      assert.ok(
        ![401, 403, 429].includes(adminRes.statusCode),
        `${key} admin: ${adminRes.statusCode}`,
      );
      if (r.access === 'admin') {
        assert.equal(read.statusCode, 403, `${key} with a read token`);
        if (r.method !== 'HEAD')
          assert.deepEqual(read.json(), {
            error: `this needs the admin scope, which token:${readId} does not have`,
            code: 'FORBIDDEN',
            statusCode: 403,
          });
      } else {
        assert.ok(![401, 403, 429].includes(read.statusCode), `${key} read: ${read.statusCode}`);
      }
    }
    // The API routes a user knows are among those checked.
    for (const k of [
      'GET /api/v1/clusters',
      'GET /api/v1/telemetry',
      'GET /api/v1/overview',
      'POST /graphql',
      'GET /graphql',
      'GET /ws',
      'GET /metrics',
      'GET /openapi.json',
      'GET /swagger/json',
    ])
      assert.ok(seen.includes(k), k);
  });

  it('with CORS_ORIGINS, a preflight needs no token and a refusal carries the CORS headers (the page can read its 401)', async () => {
    const origin = 'https://grafana.example.com';
    const { app } = await build({ cors: { enabled: true, origins: [origin] } });
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/api/v1/clusters',
      headers: {
        origin,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    });
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], origin);
    const refused = await app.inject({ url: '/api/v1/clusters', headers: { origin } });
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.headers['access-control-allow-origin'], origin);
    const allowed = await app.inject({
      url: '/api/v1/clusters',
      headers: { origin, ...bearer(tok.read) },
    });
    assert.equal(allowed.statusCode, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], origin);
  });

  it('GraphiQL and Swagger UI pages load without a token; the documents and queries they fetch need one', async () => {
    const page = await main.app.inject({
      url: '/graphql',
      headers: { accept: 'text/html' },
    });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /GraphiQL/);
    const query = await main.app.inject({
      url: '/graphql?query={clusters{cluster_id}}',
      headers: { accept: 'text/html' },
    });
    assert.equal(query.statusCode, 401);
    assert.equal((await main.app.inject('/swagger/index.html')).statusCode, 200);
    assert.equal((await main.app.inject('/openapi.json')).statusCode, 401);
    const doc = await main.app.inject({ url: '/openapi.json', headers: bearer(tok.read) });
    const openapi = doc.json<{
      security: unknown;
      paths: Record<string, { get?: { security?: unknown } }>;
    }>();
    assert.deepEqual(openapi.security, [{ bearer: [] }]);
    assert.deepEqual(openapi.paths['/healthz']?.get?.security, []);
    assert.equal(openapi.paths['/api/v1/clusters']?.get?.security, undefined);
  });

  it('dead letters through the API: listed and replayed with an admin token', async () => {
    const list = await main.app.inject({
      url: '/api/v1/admin/dead-letters',
      headers: bearer(tok.admin),
    });
    assert.equal(list.statusCode, 200);
    const page = list.json<{ items: { id: string; reason: string }[] }>();
    assert.deepEqual(
      page.items.map((d) => d.reason),
      ['poison'],
    );
    // A body that is neither form is refused as sent, not coerced into one (nothing replayed).
    for (const [payload, why] of [
      [{ ids: 'x' }, /\/ids: Expected array/],
      [{ ids: [1, 2] }, /\/ids\/0: Expected string/],
      [
        { all: true, extra: 1 },
        /give either \{"ids": \[\.\.\.\]\} or \{"all": true\}, nothing else/,
      ],
      [{ all: 'yes' }, /"all" must be true/],
      [{}, /body must be \{"ids"/],
    ] as const) {
      const refused = await main.app.inject({
        method: 'POST',
        url: '/api/v1/admin/dead-letters/replay',
        headers: bearer(tok.admin),
        payload,
      });
      assert.equal(refused.statusCode, 400, refused.body);
      const body = refused.json<{ error: string; code: string }>();
      assert.match(body.error, why);
      assert.equal(body.code, 'BAD_REQUEST');
    }
    assert.equal((await deadLetters.stats()).dead, 1);
    const replay = await main.app.inject({
      method: 'POST',
      url: '/api/v1/admin/dead-letters/replay',
      headers: bearer(tok.admin),
      payload: { all: true },
    });
    assert.deepEqual(replay.json(), { replayed: 1 });
    assert.equal((await deadLetters.stats()).dead, 0);
  });

  it('failed authentications are counted by reason and logged without the token', async () => {
    const body = (await main.metrics.exposition()).body;
    for (const reason of ['missing', 'malformed', 'invalid', 'revoked', 'expired', 'forbidden'])
      assert.match(
        body,
        new RegExp(`^nexus_auth_failures_total\\{reason="${reason}"[^}]*\\} [1-9]`, 'm'),
        reason,
      );
    const log = main.logs.join('');
    assert.match(
      log,
      /"level":"warn".*"msg":"request refused: not authenticated or not authorized"/,
    );
    for (const t of Object.values(tok)) assert.ok(!log.includes(t), 'a token in the log');
  });
});

/** `p`, or a failure naming `what` after 10 s (a test waits for an event, never for ever). */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within 10 s`)), 10_000);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The code the server closes the socket with. */
function closeCode(socket: WebSocket): Promise<number> {
  return within(
    new Promise<number>((resolve) => socket.once('close', (code) => resolve(code))),
    'close',
  );
}

/** Resolves when the socket opens, or with the HTTP status that refused the handshake. */
function handshake(ws: WebSocket): Promise<number | 'open'> {
  return within(
    new Promise((resolve) => {
      ws.once('open', () => resolve('open'));
      ws.once('unexpected-response', (req, res) => {
        req.destroy();
        resolve(res.statusCode ?? 0);
      });
    }),
    'handshake',
  );
}

describe('gateway authentication: WebSocket /ws and GraphQL subscriptions', () => {
  let ws: string;
  before(async () => {
    ws = (await main.app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/, 'ws');
  });

  it('/ws: 401 without a token or with a revoked one; open with the header or the bearer subprotocol, which is never selected', async () => {
    assert.equal(await handshake(new WebSocket(`${ws}/ws`)), 401);
    assert.equal(
      await handshake(new WebSocket(`${ws}/ws`, ['nexus', `bearer.${tok.revoked}`])),
      401,
    );
    const viaHeader = new WebSocket(`${ws}/ws`, { headers: bearer(tok.read) });
    assert.equal(await handshake(viaHeader), 'open');
    viaHeader.close();
    const viaProtocol = new WebSocket(`${ws}/ws`, ['nexus', `bearer.${tok.read}`]);
    assert.equal(await handshake(viaProtocol), 'open');
    assert.equal(viaProtocol.protocol, 'nexus');
    viaProtocol.close();
  });

  it('an open connection whose token is revoked is closed with 4401', async () => {
    const live = await tokens.create({ scope: 'read', expiresAt: null });
    const socket = new WebSocket(`${ws}/ws`, ['nexus', `bearer.${live.token}`]);
    assert.equal(await handshake(socket), 'open');
    const closed = closeCode(socket);
    await tokens.revoke(live.record.id);
    try {
      assert.equal(await closed, 4401);
    } finally {
      socket.terminate();
    }
  });

  it('GraphQL subscriptions: the token in connection_init or as a subprotocol; refused without', async () => {
    const connect = (
      connectionParams: Record<string, unknown> | undefined,
      impl: typeof WebSocket = WebSocket,
    ) =>
      within(
        new Promise<string>((resolve) => {
          const client = createClient({
            url: `${ws}/graphql`,
            webSocketImpl: impl,
            lazy: false,
            retryAttempts: 0,
            ...(connectionParams === undefined ? {} : { connectionParams }),
            on: {
              connected: (socket) => {
                resolve(`connected ${(socket as WebSocket).protocol}`);
                void client.dispose();
              },
              closed: (e) => resolve(`closed ${(e as { code: number }).code}`),
            },
            onNonLazyError: () => undefined,
          });
        }),
        'connection or close',
      );
    assert.equal(await connect(undefined), 'closed 4401');
    assert.equal(await connect({ authorization: `Bearer ${tok.revoked}` }), 'closed 4401');
    assert.equal(
      await connect({ authorization: `Bearer ${tok.read}` }),
      'connected graphql-transport-ws',
    );
    class WithToken extends WebSocket {
      constructor(url: string | URL | null, protocol?: string | string[]) {
        super(url ?? '', [String(protocol), `bearer.${tok.read}`]);
      }
    }
    assert.equal(
      await connect(undefined, WithToken as unknown as typeof WebSocket),
      'connected graphql-transport-ws',
    );
    class WithHeader extends WebSocket {
      constructor(url: string | URL | null, protocol?: string | string[]) {
        super(url ?? '', protocol, { headers: bearer(tok.read) });
      }
    }
    assert.equal(
      await connect(undefined, WithHeader as unknown as typeof WebSocket),
      'connected graphql-transport-ws',
    );
    // A header with a revoked token is refused at the upgrade, whatever connection_init says.
    class WithRevoked extends WebSocket {
      constructor(url: string | URL | null, protocol?: string | string[]) {
        super(url ?? '', protocol, { headers: bearer(tok.revoked) });
      }
    }
    assert.match(
      await connect(
        { authorization: `Bearer ${tok.read}` },
        WithRevoked as unknown as typeof WebSocket,
      ),
      /^closed /,
    );
    // A connection that never sends connection_init does not hold its slot for good.
    const idle = new WebSocket(`${ws}/graphql`, ['graphql-transport-ws']);
    assert.equal(await handshake(idle), 'open');
    assert.equal(await closeCode(idle), 4401);
  });

  it('a GraphQL upgrade that asks for text/html is a WebSocket like any other: no connection_init, closed with 4401', async () => {
    // The GraphiQL page is for a browser's GET; an upgrade claiming it used to skip the deadline.
    const idle = new WebSocket(`${ws}/graphql`, ['graphql-transport-ws'], {
      headers: { accept: 'text/html' },
    });
    assert.equal(await handshake(idle), 'open');
    assert.equal(await closeCode(idle), 4401);
  });

  it('open GraphQL WebSockets take no API turn: with every turn held by a socket, a request is served', async () => {
    // API_MAX_CONCURRENT counts HTTP requests; sockets have their own limits (WS_MAX_*).
    const { app } = await build({
      api: { maxConcurrent: 2, maxQueued: 4, queueTimeoutMs: 1000, maxPerAddress: 64 },
    });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const sockets = await Promise.all(
      [1, 2, 3].map(async () => {
        const s = new WebSocket(`${base.replace(/^http/, 'ws')}/graphql`, [
          'graphql-transport-ws',
          `bearer.${tok.read}`,
        ]);
        assert.equal(await handshake(s), 'open');
        const acked = new Promise((resolve) => s.once('message', resolve));
        s.send(JSON.stringify({ type: 'connection_init' }));
        await within(acked, 'connection_ack');
        return s;
      }),
    );
    try {
      const res = await fetch(`${base}/api/v1/clusters`, { headers: bearer(tok.read) });
      assert.equal(res.status, 200, await res.text());
    } finally {
      for (const s of sockets) s.terminate();
    }
  });

  it('a subscription whose query is not a string (a parsed document) closes the connection with 4400, unrun', async () => {
    // mercurius would run a parsed document without the checks the text gets (validation,
    // depth, cost): 20 x 20 aliases of every reading.
    const aliases = (n: number, body: string) =>
      Array.from({ length: n }, (_, i) => `a${i}: ${body}`).join(' ');
    const text = `subscription { telemetryBatch { ${aliases(20, 'readings { ...R }')} } } fragment R on Telemetry { ${aliases(20, 'data')} }`;
    const { parse } = await import('graphql');
    const s = new WebSocket(`${ws}/graphql`, ['graphql-transport-ws', `bearer.${tok.read}`]);
    assert.equal(await handshake(s), 'open');
    const messages: string[] = [];
    s.on('message', (m: Buffer) => messages.push(m.toString()));
    const closed = new Promise<[number, string]>((resolve) =>
      s.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    s.send(JSON.stringify({ type: 'connection_init' }));
    const of = (type: string, id?: string) =>
      messages.find((m) => {
        const o = JSON.parse(m) as { type?: string; id?: string };
        return o.type === type && o.id === id;
      });
    assert.ok(await until(async () => of('connection_ack') !== undefined, 5000), 'ack');
    // As text the same query is refused by its cost, and the connection stays.
    s.send(JSON.stringify({ id: 't', type: 'subscribe', payload: { query: text } }));
    assert.ok(await until(async () => of('error', 't') !== undefined, 5000), 'refusal');
    assert.match(of('error', 't') ?? '', /exceeds the maximum/);
    const doc: unknown = JSON.parse(JSON.stringify(parse(text, { noLocation: true })));
    s.send(JSON.stringify({ id: 'd', type: 'subscribe', payload: { query: doc } }));
    const [code, reason] = await within(closed, 'close');
    assert.equal(code, 4400);
    assert.match(reason, /query must be a string/);
    assert.ok(!messages.some((m) => m.includes('"type":"next"')), messages.join('\n'));
  });
});

describe('gateway authentication: /metrics and rate limits', () => {
  it('METRICS_AUTH=false opens /metrics only', async () => {
    const { app } = await build({
      auth: {
        mode: 'token',
        authenticator: new TokenAuthenticator(new SqlTokenStore(postgresDatabase(dbUrl, 1)), {
          cacheTtlMs: 200,
          logger: silentLogger(),
        }),
        metricsAuth: false,
        rateLimit: { perMinute: 5, anonPerMinute: 3 },
      },
    });
    assert.equal((await main.app.inject('/metrics')).statusCode, 401);
    assert.equal(
      (await main.app.inject({ url: '/metrics', headers: bearer(tok.read) })).statusCode,
      200,
    );
    assert.equal((await app.inject('/metrics')).statusCode, 200);
    assert.equal((await app.inject('/api/v1/clusters')).statusCode, 401);

    // Rate limits (same gateway: 5 a minute per token, 3 per address without one).
    const statuses = async (n: number, o: InjectOptions) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await app.inject(o)).statusCode);
      return out;
    };
    // One refused request above; two more 401, then 429.
    assert.deepEqual(await statuses(3, { url: '/api/v1/clusters' }), [401, 401, 429]);
    const limited = await app.inject('/api/v1/clusters');
    assert.equal(limited.statusCode, 429);
    assert.ok(Number(limited.headers['retry-after']) >= 1, String(limited.headers['retry-after']));
    assert.deepEqual(limited.json(), {
      error: `too many requests from 127.0.0.1 without a valid token: at most 3 a minute; retry in ${limited.headers['retry-after']} s`,
      code: 'RATE_LIMITED',
      statusCode: 429,
    });
    // Another address is not affected; health and metrics are never limited.
    assert.equal(
      (await app.inject({ url: '/api/v1/clusters', remoteAddress: '10.1.2.3' })).statusCode,
      401,
    );
    assert.deepEqual(await statuses(8, { url: '/healthz' }), Array(8).fill(200));
    assert.deepEqual(await statuses(8, { url: '/metrics' }), Array(8).fill(200));
    // Per token: the address's limit does not apply to a valid token; the token's own does.
    const read = { url: '/api/v1/clusters', headers: bearer(tok.read) };
    assert.deepEqual(await statuses(6, read), [200, 200, 200, 200, 200, 429]);
    assert.equal((await app.inject({ ...read, headers: bearer(tok.admin) })).statusCode, 200);
  });
});

describe('gateway authentication: OIDC', () => {
  let idp: Server;
  let issuer: string;
  let key: CryptoKey;
  before(async () => {
    const pair = await generateKeyPair('RS256');
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k', alg: 'RS256' };
    idp = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
  });
  after(() => idp.close());

  it('a JWT of the issuer and audience reads with nexus:read and administers with nexus:admin', async () => {
    const { app } = await build({
      deadLetters,
      auth: {
        mode: 'oidc',
        authenticator: new OidcAuthenticator({
          issuer,
          audience: 'nexus',
          jwksUrl: `${issuer}/jwks`,
          scopeClaim: 'scope',
        }),
        metricsAuth: true,
        rateLimit: { perMinute: 0, anonPerMinute: 0 },
      },
    });
    const jwt = (claims: JWTPayload, exp = Math.floor(Date.now() / 1000) + 60) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k' })
        .setIssuer(issuer)
        .setAudience('nexus')
        .setSubject('bob')
        .setExpirationTime(exp)
        .sign(key);
    const get = async (url: string, token: string) =>
      (await app.inject({ url, headers: bearer(token) })).statusCode;
    const reader = await jwt({ scope: 'nexus:read' });
    const admin = await jwt({ scope: 'nexus:admin' });
    assert.equal(await get('/api/v1/clusters', reader), 200);
    assert.equal(await get('/api/v1/admin/dead-letters', reader), 403);
    assert.equal(await get('/api/v1/admin/dead-letters', admin), 200);
    assert.equal(await get('/api/v1/clusters', await jwt({ scope: 'openid' })), 403);
    assert.equal(await get('/api/v1/clusters', await jwt({ scope: 'nexus:read' }, 1000)), 401);
    assert.equal(await get('/api/v1/clusters', tok.read), 401);
  });
});

describe('acceptance: nexus token create, then curl', { timeout: 240_000 }, () => {
  it('nexus gateway (AUTH_MODE=token by default) on PostgreSQL: 401, then 200 with the token; revoked, 401 again', async () => {
    const port = await freePort();
    const env = {
      DATABASE_URL: dbUrl,
      ENABLE_NEXUS: 'false',
      PORT: String(port),
      HOST: '127.0.0.1',
      TOKEN_CACHE_TTL: '500ms',
      LOG_LEVEL: 'warn',
    };
    const gateway = spawnNexus(['gateway'], env);
    const done = run(gateway);
    const http = `http://127.0.0.1:${port}`;
    try {
      const created = await run(
        spawnNexus(['token', 'create', '--scope', 'read', '--name', 'curl'], env),
      );
      assert.equal(created.code, 0, created.stderr);
      const lines = created.stdout.trimEnd().split('\n');
      const token = lines.at(-1) ?? '';
      assert.match(token, /^nexus_[A-Za-z0-9_-]{43}$/);
      assert.match(lines[0] ?? '', /^Created token [0-9a-f]{12} "curl": scope read, expires never/);
      assert.ok(
        await until(
          async () => (await fetch(`${http}/readyz`).catch(() => undefined))?.status === 200,
          30_000,
        ),
      );
      const anonymous = await fetch(`${http}/api/v1/clusters`);
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="nexus"');
      const ok = await fetch(`${http}/api/v1/clusters`, { headers: bearer(token) });
      assert.equal(ok.status, 200);
      assert.deepEqual(
        ((await ok.json()) as { clusters: { cluster_id: string }[] }).clusters.map(
          (c) => c.cluster_id,
        ),
        [CLUSTER],
      );
      const list = await run(spawnNexus(['token', 'list'], env));
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^id +name +scope +created +expires +revoked +last used$/m);
      assert.match(list.stdout, /^[0-9a-f]{12} +curl +read /m);
      assert.ok(!list.stdout.includes(token) && !list.stdout.includes('nexus_'), list.stdout);
      const revoked = await run(spawnNexus(['token', 'revoke', 'curl'], env));
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.ok(
        await until(
          async () =>
            (await fetch(`${http}/api/v1/clusters`, { headers: bearer(token) })).status === 401,
          5000,
        ),
        'the revoked token is refused within TOKEN_CACHE_TTL',
      );
    } finally {
      gateway.kill('SIGTERM');
    }
    assert.equal((await done).code, 0);
  });

  it('nexus up with AUTH_MODE=token: the token of nexus token create --embedded (tokens.json, mode 0600)', async () => {
    const data = join(dir, 'up');
    const up = await startNexusUp(90_000, { NEXUS_DATA_DIR: data, AUTH_MODE: 'token' });
    try {
      assert.ok(await until(() => Promise.resolve(up.logs().includes('Listening on')), 10_000));
      assert.match(
        up.logs(),
        /The API needs a token \(AUTH_MODE=token\): node bin\/nexus\.js token create --scope read --embedded\./,
      );
      assert.equal((await fetch(`${up.url}/api/v1/clusters`)).status, 401);
      const created = await run(
        spawnNexus(['token', 'create', '--embedded', '--scope', 'read'], {
          NEXUS_DATA_DIR: data,
        }),
      );
      assert.equal(created.code, 0, created.stderr);
      const token = created.stdout.trimEnd().split('\n').at(-1) ?? '';
      assert.equal(statSync(join(data, 'tokens.json')).mode & 0o777, 0o600);
      const res = await fetch(`${up.url}/api/v1/clusters`, { headers: bearer(token) });
      assert.equal(res.status, 200);
      // The page loads without one (it asks for the token).
      assert.equal((await fetch(`${up.url}/`)).status, 200);
    } finally {
      await up.stop();
    }
  });

  it('a gateway on every address with AUTH_MODE=none says loudly that the API is open to anyone', async () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    });
    const root = {
      config: loadConfig({ AUTH_MODE: 'none', HOST: '0.0.0.0' }),
      logger,
      stack: { push: () => undefined } as never,
    };
    const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
    const gw = await buildGatewayFor(root, { store, metrics, checks: [], tokens: 'postgres' });
    gateways.push(gw);
    const warn = lines
      .map((l) => JSON.parse(l) as { level: string; msg: string })
      .find((l) => l.level === 'warn');
    assert.equal(
      warn?.msg,
      'AUTH_MODE=none on HOST 0.0.0.0: the API (REST, GraphQL, WebSocket, /metrics) is open to anyone who can reach this address, without a token. Set AUTH_MODE=token (nexus token create) or oidc, or HOST=127.0.0.1',
    );
    // Not on loopback, and not with a token.
    for (const env of [{ AUTH_MODE: 'none', HOST: '127.0.0.1' }, { HOST: '0.0.0.0' }]) {
      lines.length = 0;
      const other = await buildGatewayFor(
        { ...root, config: loadConfig({ ...env, DATABASE_URL: dbUrl }) },
        {
          store,
          metrics: new NexusMetrics({ component: 'gateway', processMetrics: false }),
          checks: [],
          tokens: 'postgres',
        },
      );
      gateways.push(other);
      assert.ok(!lines.some((l) => l.includes('open to anyone')), JSON.stringify(env));
    }
  });
});

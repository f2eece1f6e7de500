/**
 * The gateway's secure HTTP defaults (issue 16): security headers and a strict Content-Security-
 * Policy on the real gateway's routes and pages, CORS off unless CORS_ORIGINS lists origins, and
 * a real `nexus gateway` serving HTTPS and wss:// with a certificate of scripts/certs.sh (its CA
 * trusted by the clients here), refusing plain HTTP on its port. The pages in a browser under the
 * policy: test/e2e/security.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { gatewaySettings } from '../../src/cli/compose.js';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/logger.js';
import { createEtcdClient } from '../../src/etcd/client.js';
import { buildGateway } from '../../src/gateway/app.js';
import { EtcdFeed } from '../../src/registry/etcd/etcd-feed.js';
import { ROOT, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import {
  DEFAULT_GATEWAY,
  NO_AUTH,
  sampleGateway,
  sampleRecords,
  type TestGateway,
} from '../helpers/gateway.js';
import { until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';

const etcd = await sharedEtcd();
after(async () => {
  await etcd.release();
});

/** The policy as directive -> sources. */
function csp(header: unknown): Map<string, string[]> {
  assert.equal(typeof header, 'string', 'a Content-Security-Policy header');
  const out = new Map<string, string[]>();
  for (const d of (header as string).split(';')) {
    const [name, ...sources] = d.trim().split(/\s+/);
    if (name !== undefined && name !== '') out.set(name, sources);
  }
  return out;
}

/** The inline scripts and styles of an HTML page (what a strict policy would refuse). */
function inlineCode(html: string): string[] {
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)]
    .filter((m) => !/\bsrc=/.test(m[1] ?? '') || (m[2] ?? '').trim() !== '')
    .map((m) => m[0].slice(0, 80));
  const styles = [...html.matchAll(/<style\b[\s\S]*?<\/style>/gi)].map((m) => m[0].slice(0, 80));
  const attributes = [...html.matchAll(/\s(on[a-z]+|style)\s*=/gi)].map((m) => m[0]);
  return [...scripts, ...styles, ...attributes];
}

describe('gateway security headers and CORS', { timeout: 120_000 }, () => {
  let tg: TestGateway;
  before(async () => {
    // What `nexus gateway` runs with when nothing is set.
    tg = await sampleGateway({ cors: DEFAULT_GATEWAY.cors });
  });
  after(async () => {
    await tg.close();
  });

  it('sends the policy and the security headers on the API, the pages and errors', async () => {
    const { app } = tg.gateway;
    const pages = [
      { url: '/api/v1/clusters', status: 200 },
      { url: '/openapi.json', status: 200 },
      { url: '/swagger/index.html', status: 200 },
      { url: '/graphql', status: 200, headers: { accept: 'text/html' } },
      { url: '/healthz', status: 200 },
      { url: '/api/v1/clusters/nope', status: 404 },
    ];
    for (const p of pages) {
      const res = await app.inject({
        url: p.url,
        headers: { host: 'nexus.example:8080', ...p.headers },
      });
      assert.equal(res.statusCode, p.status, p.url);
      const policy = csp(res.headers['content-security-policy']);
      assert.deepEqual(policy.get('script-src'), ["'self'"], p.url);
      assert.deepEqual(policy.get('style-src'), ["'self'"], p.url);
      assert.deepEqual(policy.get('frame-ancestors'), ["'none'"], p.url);
      assert.deepEqual(policy.get('object-src'), ["'none'"], p.url);
      assert.deepEqual(
        policy.get('connect-src'),
        ["'self'", 'ws://nexus.example:8080', 'wss://nexus.example:8080'],
        p.url,
      );
      assert.equal(res.headers['x-content-type-options'], 'nosniff', p.url);
      assert.equal(res.headers['x-frame-options'], 'DENY', p.url);
      assert.equal(res.headers['referrer-policy'], 'no-referrer', p.url);
      assert.equal(res.headers['cross-origin-resource-policy'], 'same-origin', p.url);
      // Plain HTTP: no HSTS (a browser would refuse the next plain visit), no upgrade.
      assert.equal(res.headers['strict-transport-security'], undefined, p.url);
      assert.equal(policy.has('upgrade-insecure-requests'), false, p.url);
    }
  });

  it('serves Swagger UI and GraphiQL pages with no inline script or style', async () => {
    const { app } = tg.gateway;
    const swagger = await app.inject({ url: '/swagger/index.html' });
    const graphiql = await app.inject({ url: '/graphql', headers: { accept: 'text/html' } });
    assert.match(swagger.body, /swagger-ui-bundle\.js/);
    assert.match(graphiql.body, /graphiql\.min\.js/);
    assert.deepEqual(inlineCode(swagger.body), [], 'Swagger UI');
    assert.deepEqual(inlineCode(graphiql.body), [], 'GraphiQL');
    // Swagger UI's start script: no validator badge (it would send the address elsewhere).
    const start = await app.inject({ url: '/swagger/nexus-swagger.js' });
    assert.match(start.body, /validatorUrl: null/);
  });

  it('answers no cross-origin request by default', async () => {
    const { app } = tg.gateway;
    const get = await app.inject({
      url: '/api/v1/clusters',
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(get.statusCode, 200);
    assert.equal(get.headers['access-control-allow-origin'], undefined);
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/graphql',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    assert.equal(preflight.headers['access-control-allow-methods'], undefined);
  });

  it('answers the origins of CORS_ORIGINS only', async () => {
    const settings = gatewaySettings(
      loadConfig({ CORS_ORIGINS: 'https://grafana.example.com, http://localhost:3000' }),
    );
    const gw = await buildGateway({
      reader: tg.store.reader,
      checks: [],
      logger: silentLogger(),
      ...settings,
      auth: NO_AUTH,
    });
    try {
      const listed = await gw.app.inject({
        url: '/api/v1/clusters',
        headers: { origin: 'https://grafana.example.com' },
      });
      assert.equal(listed.statusCode, 200);
      assert.equal(listed.headers['access-control-allow-origin'], 'https://grafana.example.com');
      const unlisted = await gw.app.inject({
        url: '/api/v1/clusters',
        headers: { origin: 'https://evil.example' },
      });
      assert.equal(unlisted.headers['access-control-allow-origin'], undefined);
      const preflight = await gw.app.inject({
        method: 'OPTIONS',
        url: '/graphql',
        headers: {
          origin: 'http://localhost:3000',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });
      assert.equal(preflight.statusCode, 204);
      assert.equal(preflight.headers['access-control-allow-origin'], 'http://localhost:3000');
      assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
    } finally {
      await gw.app.close();
    }
  });
});

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** A GET over HTTPS with node's own client (the CA given, or the system's). */
function httpsGet(url: string, options: RequestOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ...options, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('nexus gateway over TLS', { timeout: 180_000 }, () => {
  let dir = '';
  let tg: TestGateway;
  let ca: Buffer;
  let port = 0;
  let child: ReturnType<typeof spawnNexus> | undefined;
  let exited: ReturnType<typeof run> | undefined;
  const cluster = uniqueCluster('tls');
  const prefix = `/tls-${cluster}`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-gw-tls-'));
    execFileSync(join(ROOT, 'scripts', 'certs.sh'), [dir, 'gateway']);
    ca = readFileSync(join(dir, 'ca.crt'));
    tg = await sampleGateway();
    port = await freePort();
    child = spawnNexus(['gateway'], {
      DATABASE_URL: tg.url,
      ETCD_ENDPOINTS: etcd.endpoint,
      REGISTRY_PREFIX: prefix,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      AUTH_MODE: 'none',
      TLS_CERT_FILE: join(dir, 'gateway.crt'),
      TLS_KEY_FILE: join(dir, 'gateway.key'),
    });
    exited = run(child);
    assert.ok(
      await until(
        async () =>
          (await httpsGet(`https://127.0.0.1:${port}/readyz`, { ca }).catch(() => undefined))
            ?.status === 200,
        60_000,
      ),
      'the gateway never answered /readyz over HTTPS',
    );
  });

  after(async () => {
    if (child !== undefined && child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    await tg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers the API over HTTPS to a client trusting the CA, with HSTS (not for localhost)', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const res = await httpsGet(`https://${host}:${port}/api/v1/clusters`, { ca });
      assert.equal(res.status, 200, host);
      const body = JSON.parse(res.body) as { clusters: { cluster_id: string }[] };
      assert.deepEqual(
        body.clusters.map((c) => c.cluster_id),
        ['local-cluster'],
      );
      // Not for localhost: a browser would refuse plain HTTP to every server there for a year.
      assert.equal(
        res.headers['strict-transport-security'],
        host === 'localhost' ? undefined : 'max-age=31536000',
      );
      assert.ok(
        csp(res.headers['content-security-policy']).has('upgrade-insecure-requests'),
        'over TLS the policy upgrades',
      );
    }
  });

  it('is refused by a client that does not trust the CA', async () => {
    await assert.rejects(httpsGet(`https://127.0.0.1:${port}/api/v1/clusters`), (err: unknown) =>
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify|self-signed/i.test(
        `${(err as { code?: string }).code ?? ''} ${String(err)}`,
      ),
    );
  });

  it('refuses plain HTTP on its port', async () => {
    await assert.rejects(
      fetch(`http://127.0.0.1:${port}/api/v1/clusters`, { signal: AbortSignal.timeout(10_000) }),
      (err: unknown) => err instanceof TypeError && /fetch failed/.test(err.message),
    );
  });

  it('pushes live readings over wss://', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca });
    const messages: { type?: string; readings?: { host_id: string; value: number }[] }[] = [];
    ws.on('message', (d: Buffer) =>
      messages.push(JSON.parse(d.toString()) as (typeof messages)[0]),
    );
    const client = createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 5000 });
    const collector = new EtcdFeed({
      client,
      prefix,
      instance: 'tls-collector',
      ttlMs: 30_000,
      leaseTtlMs: 10_000,
      logger: silentLogger(),
    });
    try {
      assert.ok(await until(async () => messages.some((m) => m.type === 'welcome'), 10_000));
      const [first] = sampleRecords();
      assert.ok(first !== undefined);
      const reading = {
        ...first,
        hostname: 'tls-host',
        timestamp: Date.now(),
        value: 42,
      };
      // The collector publishes once the gateway's listener is known to it.
      assert.ok(
        await until(async () => {
          await collector.publish(cluster, [reading]);
          return messages.some(
            (m) => m.type === 'telemetry' && m.readings?.some((r) => r.host_id === 'tls-host'),
          );
        }, 20_000),
        `no live reading over wss: ${JSON.stringify(messages.slice(-3))}`,
      );
    } finally {
      ws.close();
      await collector.close();
      client.close();
    }
  });

  it('will not start with a certificate and no key, or an origin that could never match, saying so (exit 2)', async () => {
    const res = await run(
      spawnNexus(['gateway'], {
        DATABASE_URL: tg.url,
        ENABLE_NEXUS: 'false',
        PORT: String(await freePort()),
        TLS_CERT_FILE: join(dir, 'gateway.crt'),
        TLS_KEY_FILE: '',
      }),
    );
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /TLS_CERT_FILE is set but TLS_KEY_FILE is not/);
    const missing = join(dir, 'missing.key');
    const unreadable = await run(
      spawnNexus(['gateway'], {
        DATABASE_URL: tg.url,
        ENABLE_NEXUS: 'false',
        PORT: String(await freePort()),
        TLS_CERT_FILE: join(dir, 'gateway.crt'),
        TLS_KEY_FILE: missing,
      }),
    );
    assert.equal(unreadable.code, 2, unreadable.stderr);
    assert.match(
      unreadable.stderr,
      new RegExp(`TLS_KEY_FILE: cannot read ${missing}: no such file`),
    );
    const badOrigin = await run(
      spawnNexus(['gateway'], {
        DATABASE_URL: tg.url,
        ENABLE_NEXUS: 'false',
        PORT: String(await freePort()),
        CORS_ORIGINS: 'https://grafana.example.com/',
      }),
    );
    assert.equal(badOrigin.code, 2, badOrigin.stderr);
    assert.match(
      badOrigin.stderr,
      /^nexus: CORS_ORIGINS: "https:\/\/grafana\.example\.com\/" is not an origin: write each as scheme:\/\/host\[:port\]/m,
    );
  });
});

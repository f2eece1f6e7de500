/**
 * The gateway's security headers and CORS (src/gateway/security.ts) on a bare Fastify; the real
 * gateway and its pages in a browser: test/integration/gateway-security.test.ts and
 * test/e2e/security.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { isNexusError } from '../../../src/core/errors.js';
import { registerCors, registerSecurityHeaders } from '../../../src/gateway/security.js';

async function app(
  o: { tls?: boolean; cors?: { enabled: boolean; origins: string[] } } = {},
): Promise<FastifyInstance> {
  const a = Fastify();
  await registerSecurityHeaders(a, { tls: o.tls ?? false });
  await registerCors(a, o.cors ?? { enabled: true, origins: [] });
  a.get('/api/v1/x', async () => ({ ok: true }));
  a.post('/graphql', async () => ({ data: null }));
  return a;
}

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

const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-allow-credentials',
  'access-control-expose-headers',
  'access-control-max-age',
];

function corsHeaders(headers: Record<string, unknown>): string[] {
  return CORS_HEADERS.filter((h) => headers[h] !== undefined);
}

describe('security headers', () => {
  it('sends a strict policy and the other headers on every answer, without HSTS over plain HTTP', async () => {
    const a = await app();
    try {
      for (const url of ['/api/v1/x', '/nothing-here']) {
        const res = await a.inject({ url, headers: { host: 'gw.example:8080' } });
        const p = csp(res.headers['content-security-policy']);
        assert.deepEqual(p.get('default-src'), ["'self'"], url);
        assert.deepEqual(p.get('script-src'), ["'self'"]);
        assert.deepEqual(p.get('script-src-attr'), ["'none'"]);
        assert.deepEqual(p.get('style-src'), ["'self'"]);
        assert.deepEqual(p.get('object-src'), ["'none'"]);
        assert.deepEqual(p.get('frame-ancestors'), ["'none'"]);
        assert.deepEqual(p.get('base-uri'), ["'self'"]);
        assert.deepEqual(p.get('connect-src'), [
          "'self'",
          'ws://gw.example:8080',
          'wss://gw.example:8080',
        ]);
        assert.equal(p.has('upgrade-insecure-requests'), false, 'it would break plain HTTP');
        assert.doesNotMatch(res.headers['content-security-policy'] as string, /unsafe/);
        assert.equal(res.headers['x-content-type-options'], 'nosniff');
        assert.equal(res.headers['x-frame-options'], 'DENY');
        assert.equal(res.headers['referrer-policy'], 'no-referrer');
        assert.equal(res.headers['cross-origin-opener-policy'], 'same-origin');
        assert.equal(res.headers['strict-transport-security'], undefined);
      }
    } finally {
      await a.close();
    }
  });

  it('adds HSTS and upgrade-insecure-requests over TLS, HSTS not for localhost', async () => {
    const a = await app({ tls: true });
    try {
      for (const host of ['nexus.example.com', 'nexus.example.com:8443', '10.0.0.5:8443']) {
        const res = await a.inject({ url: '/api/v1/x', headers: { host } });
        assert.equal(res.headers['strict-transport-security'], 'max-age=31536000', host);
        assert.deepEqual(
          csp(res.headers['content-security-policy']).get('upgrade-insecure-requests'),
          [],
        );
      }
      // A browser would otherwise refuse plain HTTP to every server on localhost for a year.
      for (const host of ['localhost:8443', 'LOCALHOST', 'nexus.localhost:8443']) {
        const res = await a.inject({ url: '/api/v1/x', headers: { host } });
        assert.equal(res.headers['strict-transport-security'], undefined, host);
      }
    } finally {
      await a.close();
    }
  });

  it('names no socket source for a Host header that could change the policy', async () => {
    const a = await app();
    try {
      for (const host of ['evil; script-src *', 'a b', 'x/y']) {
        const res = await a.inject({ url: '/api/v1/x', headers: { host } });
        const p = csp(res.headers['content-security-policy']);
        assert.deepEqual(p.get('connect-src'), ["'self'"], host);
        assert.deepEqual(p.get('script-src'), ["'self'"], host);
      }
    } finally {
      await a.close();
    }
  });
});

describe('CORS', () => {
  it('sends no CORS header at all when CORS_ORIGINS lists nothing', async () => {
    const a = await app({ cors: { enabled: true, origins: [] } });
    try {
      const get = await a.inject({
        url: '/api/v1/x',
        headers: { origin: 'https://evil.example' },
      });
      assert.equal(get.statusCode, 200);
      assert.deepEqual(corsHeaders(get.headers), []);
      const pre = await a.inject({
        method: 'OPTIONS',
        url: '/api/v1/x',
        headers: {
          origin: 'https://evil.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      });
      assert.equal(pre.statusCode, 404);
      assert.deepEqual(corsHeaders(pre.headers), []);
    } finally {
      await a.close();
    }
  });

  it('answers the origins listed, exactly, and no other', async () => {
    const a = await app({
      cors: { enabled: true, origins: ['https://grafana.example.com', 'http://LOCALHOST:3000'] },
    });
    try {
      const listed = await a.inject({
        url: '/api/v1/x',
        headers: { origin: 'https://grafana.example.com' },
      });
      assert.equal(listed.headers['access-control-allow-origin'], 'https://grafana.example.com');
      assert.match(String(listed.headers.vary), /Origin/);
      assert.match(String(listed.headers['access-control-expose-headers']), /retry-after/);
      assert.equal(listed.headers['access-control-allow-credentials'], undefined);
      const local = await a.inject({
        url: '/api/v1/x',
        headers: { origin: 'http://localhost:3000' },
      });
      assert.equal(local.headers['access-control-allow-origin'], 'http://localhost:3000');
      for (const origin of [
        'https://evil.example',
        'https://grafana.example.com.evil.example',
        'http://grafana.example.com',
        'https://grafana.example.com:8443',
        'null',
      ]) {
        const res = await a.inject({ url: '/api/v1/x', headers: { origin } });
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['access-control-allow-origin'], undefined, origin);
      }
      // A browser's preflight for a POST with a token.
      const pre = await a.inject({
        method: 'OPTIONS',
        url: '/graphql',
        headers: {
          origin: 'https://grafana.example.com',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });
      assert.equal(pre.statusCode, 204);
      assert.equal(pre.headers['access-control-allow-origin'], 'https://grafana.example.com');
      assert.match(String(pre.headers['access-control-allow-methods']), /POST/);
      assert.match(String(pre.headers['access-control-allow-headers']), /authorization/);
      assert.equal(pre.headers['access-control-max-age'], '600');
      const unlisted = await a.inject({
        method: 'OPTIONS',
        url: '/graphql',
        headers: {
          origin: 'https://evil.example',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization',
        },
      });
      assert.equal(unlisted.headers['access-control-allow-origin'], undefined);
    } finally {
      await a.close();
    }
  });

  it('answers any origin with * only when * is given, and never when turned off', async () => {
    const any = await app({ cors: { enabled: true, origins: ['*'] } });
    const off = await app({ cors: { enabled: false, origins: ['*'] } });
    try {
      const res = await any.inject({ url: '/api/v1/x', headers: { origin: 'https://a.example' } });
      assert.equal(res.headers['access-control-allow-origin'], '*');
      const none = await off.inject({ url: '/api/v1/x', headers: { origin: 'https://a.example' } });
      assert.deepEqual(corsHeaders(none.headers), []);
    } finally {
      await any.close();
      await off.close();
    }
  });

  it('refuses a list it could never match, naming the entries', async () => {
    for (const [origins, expected] of [
      [['https://a.example/'], /"https:\/\/a\.example\/" is not an origin/],
      [
        ['a.example', 'https://b.example/path'],
        /"a\.example", "https:\/\/b\.example\/path" are not origins/,
      ],
      [['*', 'https://a.example'], /"\*" allows every origin and cannot be listed with others/],
    ] as const) {
      await assert.rejects(
        app({ cors: { enabled: true, origins: [...origins] } }),
        (err: unknown) =>
          isNexusError(err, 'CONFIG_INVALID') &&
          /^CORS_ORIGINS: /.test(err.message) &&
          expected.test(err.message),
      );
    }
  });
});

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { OidcAuthenticator } from '../../../src/gateway/auth/oidc.js';

/**
 * AUTH_MODE=oidc against an identity provider of the test's own: keys it generates, served as a
 * JWKS (and a discovery document) on a loopback port. No network beyond this machine.
 */
let server: Server;
let issuer: string;
let key: CryptoKey;
let other: CryptoKey;
let jwksFetches = 0;

before(async () => {
  const pair = await generateKeyPair('ES256');
  key = pair.privateKey;
  other = (await generateKeyPair('ES256')).privateKey;
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  server = createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
    } else if (req.url === '/jwks') {
      jwksFetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

async function jwt(
  claims: JWTPayload,
  o: { key?: CryptoKey; aud?: string; iss?: string; exp?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(o.iss ?? issuer)
    .setAudience(o.aud ?? 'nexus')
    .setSubject('alice')
    .setIssuedAt(now - 10)
    .setExpirationTime(o.exp ?? now + 300)
    .sign(o.key ?? key);
}

const verdict = async (auth: OidcAuthenticator, token: string) => {
  const v = await auth.verify(token);
  return v.ok ? { id: v.principal.id, scopes: [...v.principal.scopes].sort() } : v.reason;
};

describe('OIDC bearer JWTs (jose, a JWKS on loopback)', () => {
  it('accepts the issuer-signed JWT of its audience, with the scopes of its scope claim; refuses the rest', async () => {
    const auth = new OidcAuthenticator({
      issuer,
      audience: 'nexus',
      jwksUrl: `${issuer}/jwks`,
      scopeClaim: 'scope',
    });
    assert.deepEqual(await verdict(auth, await jwt({ scope: 'openid nexus:read' })), {
      id: 'oidc:alice',
      scopes: ['read'],
    });
    assert.deepEqual(await verdict(auth, await jwt({ scope: 'nexus:admin' })), {
      id: 'oidc:alice',
      scopes: ['admin', 'read', 'write'],
    });
    // nexus:write: ingest only (remote_write), no reading.
    assert.deepEqual(await verdict(auth, await jwt({ scope: 'openid nexus:write' })), {
      id: 'oidc:alice',
      scopes: ['write'],
    });
    // No Nexus scope: authenticated, with nothing granted (the gateway answers 403).
    assert.deepEqual(await verdict(auth, await jwt({ scope: 'openid read' })), {
      id: 'oidc:alice',
      scopes: [],
    });
    assert.equal(
      await verdict(auth, await jwt({ scope: 'nexus:read' }, { aud: 'other' })),
      'invalid',
    );
    assert.equal(
      await verdict(auth, await jwt({ scope: 'nexus:read' }, { iss: 'https://evil.example' })),
      'invalid',
    );
    const past = Math.floor(Date.now() / 1000) - 3600;
    assert.equal(await verdict(auth, await jwt({ scope: 'nexus:read' }, { exp: past })), 'expired');
    assert.equal(
      await verdict(auth, await jwt({ scope: 'nexus:read' }, { key: other })),
      'invalid',
    );
    assert.equal(await verdict(auth, 'nexus_not-a-jwt'), 'malformed');
    // A read JWT's claims changed to admin, its signature kept.
    const [h, p, sig] = (await jwt({ scope: 'nexus:read' })).split('.');
    const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as JWTPayload;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: 'nexus:admin' })).toString('base64url')}.${sig}`;
    assert.equal(await verdict(auth, forged), 'invalid');
    assert.equal(jwksFetches, 1, 'the key set is fetched once and cached');
  });

  it('finds the keys through the discovery document, and reads an array claim named by OIDC_SCOPE_CLAIM', async () => {
    const auth = new OidcAuthenticator({
      issuer,
      audience: 'nexus',
      jwksUrl: '',
      scopeClaim: 'roles',
    });
    assert.deepEqual(await verdict(auth, await jwt({ roles: ['nexus:read', 'x'] })), {
      id: 'oidc:alice',
      scopes: ['read'],
    });
  });

  it('an identity provider that does not answer is a 503 (AUTH_UNAVAILABLE), not a refusal', async () => {
    const auth = new OidcAuthenticator({
      issuer,
      audience: 'nexus',
      jwksUrl: `${issuer}/no-such-jwks`,
      scopeClaim: 'scope',
    });
    await assert.rejects(auth.verify(await jwt({ scope: 'nexus:read' })), {
      code: 'AUTH_UNAVAILABLE',
    });
    assert.throws(
      () => new OidcAuthenticator({ issuer: '', audience: 'x', jwksUrl: '', scopeClaim: 'scope' }),
      /AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE/,
    );
  });
});

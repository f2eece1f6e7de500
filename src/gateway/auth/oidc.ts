import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { NexusError, describeError } from '../../core/errors.js';
import { refused, type Authenticator, type Verdict } from './authenticator.js';
import type { Scope } from './tokens.js';

export interface OidcOptions {
  /** OIDC_ISSUER: the `iss` a JWT must carry. */
  readonly issuer: string;
  /** OIDC_AUDIENCE: an `aud` a JWT must carry. */
  readonly audience: string;
  /** OIDC_JWKS_URL; empty: the jwks_uri of the issuer's discovery document. */
  readonly jwksUrl: string;
  /** OIDC_SCOPE_CLAIM: the claim holding the scopes, a space-separated string or an array. */
  readonly scopeClaim: string;
  /** Clock skew allowed on exp and nbf, in seconds (default 5). */
  readonly clockToleranceS?: number;
}

/** The scope values of the claim that grant Nexus scopes. */
export const OIDC_SCOPES: Readonly<Record<string, Scope>> = {
  'nexus:read': 'read',
  'nexus:write': 'write',
  'nexus:admin': 'admin',
};

/** Signature algorithms accepted: asymmetric ones only (a JWKS holds public keys). */
const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

const JWT_FORM = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The Nexus scopes a JWT's scope claim grants (admin implies read and write). */
export function scopesOf(payload: JWTPayload, claim: string): Set<Scope> {
  const raw = payload[claim];
  const values =
    typeof raw === 'string'
      ? raw.split(' ')
      : Array.isArray(raw)
        ? raw.filter((v): v is string => typeof v === 'string')
        : [];
  const out = new Set<Scope>();
  for (const v of values) {
    const s = OIDC_SCOPES[v];
    if (s === 'admin') out.add('admin').add('read').add('write');
    else if (s !== undefined) out.add(s);
  }
  return out;
}

/**
 * AUTH_MODE=oidc: a bearer JWT is checked with `jose` against the issuer's signing keys (JWKS,
 * fetched and cached by jose, refetched for an unknown key id), its `iss`, `aud`, `exp` and
 * `nbf`. Scopes come from OIDC_SCOPE_CLAIM: `nexus:read` reads, `nexus:write` sends telemetry
 * (remote_write) only, `nexus:admin` does everything.
 */
export class OidcAuthenticator implements Authenticator {
  private keys: Promise<JWTVerifyGetKey> | undefined;

  constructor(private readonly o: OidcOptions) {
    if (o.issuer === '' || o.audience === '') {
      throw new NexusError(
        'CONFIG_INVALID',
        `AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE (${o.issuer === '' ? 'OIDC_ISSUER' : 'OIDC_AUDIENCE'} is empty)`,
      );
    }
    for (const [name, url] of [
      ['OIDC_ISSUER', o.issuer],
      ['OIDC_JWKS_URL', o.jwksUrl],
    ] as const) {
      if (url !== '' && !URL.canParse(url)) {
        throw new NexusError('CONFIG_INVALID', `${name}: "${url}" is not a URL`);
      }
    }
  }

  async verify(credential: string): Promise<Verdict> {
    if (!JWT_FORM.test(credential)) {
      return refused('malformed', 'the bearer token is not a JWT');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(credential, await this.keySet(), {
        issuer: this.o.issuer,
        audience: this.o.audience,
        algorithms: ALGORITHMS,
        clockTolerance: this.o.clockToleranceS ?? 5,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      switch (code) {
        case 'ERR_JWT_EXPIRED':
          return refused('expired', 'the JWT has expired');
        case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
          const claim = (err as { claim?: unknown }).claim;
          return refused(
            'invalid',
            `the JWT's ${typeof claim === 'string' ? `"${claim}" claim` : 'claims'} did not pass: ${describeError(err)}`,
          );
        }
        case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        case 'ERR_JWKS_NO_MATCHING_KEY':
        case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
          return refused('invalid', "the JWT's signature is not the issuer's");
        case 'ERR_JOSE_ALG_NOT_ALLOWED':
        case 'ERR_JOSE_NOT_SUPPORTED':
        case 'ERR_JWS_INVALID':
        case 'ERR_JWT_INVALID':
          return refused('malformed', `the JWT is not usable: ${describeError(err)}`);
        default:
          // The keys could not be fetched (network, timeout, a bad JWKS): not the client's fault.
          this.keys = undefined;
          throw new NexusError(
            'AUTH_UNAVAILABLE',
            `the identity provider's keys cannot be fetched now: ${describeError(err)}`,
            { cause: err },
          );
      }
    }
    const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : '?';
    return {
      ok: true,
      principal: { id: `oidc:${sub}`, scopes: scopesOf(payload, this.o.scopeClaim) },
    };
  }

  async close(): Promise<void> {
    // jose holds no connection.
  }

  /** The key set: OIDC_JWKS_URL, or found once through the issuer's discovery document. */
  private keySet(): Promise<JWTVerifyGetKey> {
    this.keys ??= this.discover().then((url) => createRemoteJWKSet(new URL(url)));
    return this.keys;
  }

  private async discover(): Promise<string> {
    if (this.o.jwksUrl !== '') return this.o.jwksUrl;
    const url = `${this.o.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    const doc = (await res.json()) as { jwks_uri?: unknown };
    if (typeof doc.jwks_uri !== 'string' || !URL.canParse(doc.jwks_uri)) {
      throw new Error(`${url} names no jwks_uri`);
    }
    return doc.jwks_uri;
  }
}

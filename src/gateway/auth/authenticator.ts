import type { Scope } from './tokens.js';

/** Why a request was refused, as nexus_auth_failures_total{reason} counts it. */
export type FailureReason =
  /** No credentials at all. */
  | 'missing'
  /** Not a bearer token of the expected form (a Basic header, a truncated token, not a JWT). */
  | 'malformed'
  /** Well-formed, but no such token (token mode), or a JWT whose signature or claims fail. */
  | 'invalid'
  | 'expired'
  | 'revoked'
  /** Authenticated, without the scope the route needs (403). */
  | 'forbidden';

/** Who made a request. */
export interface Principal {
  /** `token:<id>` or `oidc:<sub>`: the rate limit's key, and what logs name. */
  readonly id: string;
  /** admin implies read: an admin principal holds both. */
  readonly scopes: ReadonlySet<Scope>;
}

export type Verdict =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly reason: FailureReason; readonly message: string };

/**
 * Checks a bearer credential. Refusals are verdicts; a thrown error (AUTH_UNAVAILABLE) means the
 * credential could not be checked now (token store or identity provider unreachable): 503.
 */
export interface Authenticator {
  verify(credential: string): Promise<Verdict>;
  close(): Promise<void>;
}

export const refused = (reason: FailureReason, message: string): Verdict => ({
  ok: false,
  reason,
  message,
});

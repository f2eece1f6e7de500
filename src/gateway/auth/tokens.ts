import { createHash, randomBytes } from 'node:crypto';
import { NexusError } from '../../core/errors.js';

/**
 * Nexus API tokens: `nexus_` and 43 base64url characters (32 random bytes). Only a token's
 * SHA-256 is stored (PostgreSQL's api_tokens, or the embedded mode's tokens.json); the token
 * itself is shown once, by `nexus token create`.
 */

/**
 * read: every read API. write: ingest only (Prometheus remote_write, POST /api/v1/write), reads
 * nothing: the credential a Prometheus holds. admin: everything (read, write, changes to the
 * pipeline).
 */
export type Scope = 'read' | 'write' | 'admin';

export const SCOPES: readonly Scope[] = ['read', 'write', 'admin'];

/** What a well-formed token looks like. */
export const TOKEN_FORMAT = /^nexus_[A-Za-z0-9_-]{43}$/;

/** A stored token: everything but the token itself. Instants in ms since the epoch. */
export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  readonly scope: Scope;
  /** SHA-256 of the token, 64 lowercase hex digits. */
  readonly hash: string;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
  /** Updated at most once a minute per gateway process, not per request. */
  readonly lastUsedAt: number | null;
}

export interface NewToken {
  readonly name?: string | undefined;
  readonly scope: Scope;
  readonly expiresAt: number | null;
}

/** Where tokens are kept: PostgreSQL (distributed) or a file (embedded). */
export interface TokenStore {
  /** Where, in words (for messages). */
  readonly where: string;
  /** Stores a new token's hash; returns the token (to show once) and its record. */
  create(t: NewToken, now?: number): Promise<{ token: string; record: TokenRecord }>;
  /** Every token, oldest first. */
  list(): Promise<TokenRecord[]>;
  /**
   * Revokes the token with this id, or else the unrevoked token with this name. Undefined when
   * there is none; a token revoked before keeps its first revocation time.
   */
  revoke(idOrName: string, now?: number): Promise<TokenRecord | undefined>;
  /** The token whose SHA-256 this is, revoked or expired ones included. */
  findByHash(hash: string): Promise<TokenRecord | undefined>;
  /** Records that the token was used at `at` (never moves last_used_at back). */
  touch(id: string, at: number): Promise<void>;
  close(): Promise<void>;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A new random token, its hash and a new id (12 hex digits). */
export function mintToken(): { token: string; hash: string; id: string } {
  const token = `nexus_${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashToken(token), id: randomBytes(6).toString('hex') };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A token's name as given (--name), checked: 1-64 of letters, digits, `.`, `_`, `-`. */
export function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new NexusError(
      'CONFIG_INVALID',
      `--name: "${name}" is not a token name (1-64 letters, digits, ".", "_" or "-", starting with a letter or digit)`,
    );
  }
  return name;
}

export function checkScope(scope: string): Scope {
  if (scope === 'read' || scope === 'write' || scope === 'admin') return scope;
  throw new NexusError('CONFIG_INVALID', `--scope: "${scope}" is not one of read, write, admin`);
}

/** The scopes a token's scope grants: admin implies read and write; write implies nothing. */
export function grants(scope: Scope): ReadonlySet<Scope> {
  return new Set<Scope>(scope === 'admin' ? ['read', 'write', 'admin'] : [scope]);
}

/** The error for a name already used by a token not revoked. */
export function nameTaken(name: string, id: string): NexusError {
  return new NexusError(
    'CONFIG_INVALID',
    `--name: a token named "${name}" exists (id ${id}): choose another name, or revoke that one first (nexus token revoke ${id})`,
  );
}

import { timingSafeEqual } from 'node:crypto';
import { NexusError, describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { refused, type Authenticator, type Verdict } from './authenticator.js';
import { TOKEN_FORMAT, grants, hashToken, type TokenRecord, type TokenStore } from './tokens.js';

export interface TokenAuthOptions {
  /** How long a lookup is remembered (TOKEN_CACHE_TTL): the bound on a revocation's delay. */
  readonly cacheTtlMs: number;
  /** last_used_at is written at most this often per token (default one minute). */
  readonly touchEveryMs?: number;
  /** Lookups remembered at most (the oldest go first). */
  readonly maxCached?: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

interface Cached {
  readonly at: number;
  readonly record: Promise<TokenRecord | undefined>;
}

/**
 * AUTH_MODE=token: a bearer token is hashed (SHA-256) and looked up in the token store. Lookups
 * are remembered for `cacheTtlMs` (the token store is asked at most once per token per period,
 * whatever the request rate), so a revocation takes effect within that bound; an expiry is
 * checked on every request against the clock. The stored hash is compared in constant time.
 */
export class TokenAuthenticator implements Authenticator {
  private readonly cache = new Map<string, Cached>();
  private readonly touched = new Map<string, number>();
  private readonly now: () => number;

  constructor(
    private readonly store: TokenStore,
    private readonly o: TokenAuthOptions,
  ) {
    this.now = o.now ?? Date.now;
  }

  async verify(credential: string): Promise<Verdict> {
    if (!TOKEN_FORMAT.test(credential)) {
      return refused(
        'malformed',
        'the bearer token is not a Nexus token (nexus_ and 43 characters)',
      );
    }
    const hash = hashToken(credential);
    const now = this.now();
    let record: TokenRecord | undefined;
    try {
      record = await this.lookup(hash, now);
    } catch (err) {
      this.o.logger.error({ err: describeError(err) }, 'the token store cannot be read');
      throw new NexusError(
        'AUTH_UNAVAILABLE',
        'tokens cannot be checked now (the token store does not answer); retry shortly',
        { cause: err },
      );
    }
    if (record === undefined || !sameHash(record.hash, hash)) {
      return refused('invalid', 'the bearer token is not valid');
    }
    if (record.revokedAt !== null) {
      return refused('revoked', `the bearer token ${record.id} was revoked`);
    }
    if (record.expiresAt !== null && record.expiresAt <= now) {
      return refused('expired', `the bearer token ${record.id} has expired`);
    }
    this.noteUse(record.id, now);
    return { ok: true, principal: { id: `token:${record.id}`, scopes: grants(record.scope) } };
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.store.close();
  }

  private lookup(hash: string, now: number): Promise<TokenRecord | undefined> {
    const hit = this.cache.get(hash);
    if (hit !== undefined && now - hit.at < this.o.cacheTtlMs) return hit.record;
    const record = this.store.findByHash(hash);
    if (this.o.cacheTtlMs > 0) {
      this.cache.delete(hash);
      this.cache.set(hash, { at: now, record });
      const max = this.o.maxCached ?? 10_000;
      while (this.cache.size > max) {
        const oldest = this.cache.keys().next().value;
        if (oldest === undefined) break;
        this.cache.delete(oldest);
      }
      // A failed lookup is not remembered.
      record.catch(() => {
        if (this.cache.get(hash)?.record === record) this.cache.delete(hash);
      });
    }
    return record;
  }

  /** last_used_at, written at most once per `touchEveryMs` per token (in the background). */
  private noteUse(id: string, now: number): void {
    const last = this.touched.get(id);
    if (last !== undefined && now - last < (this.o.touchEveryMs ?? 60_000)) return;
    this.touched.set(id, now);
    this.store.touch(id, now).catch((err: unknown) => {
      this.o.logger.warn({ err: describeError(err), token: id }, 'could not record a token use');
    });
  }
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

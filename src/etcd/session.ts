import type { Etcd3, Lease } from 'etcd3';
import { backoffDelay } from '../core/backoff.js';
import { NexusError, concernOf, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { toQueueError } from './client.js';
import { Kv, key as keyBytes, putOp } from './kv.js';

/**
 * A session lease kept alive in the background. Claims and stream ownership live on it, so they
 * vanish on their own when the process dies. If the lease is lost (etcd unreachable for longer than
 * its TTL) the session is renewed with a new lease on the next `id()`; anything held on the old one
 * is gone and the fenced operations that relied on it fail, as they should.
 */
export class Session {
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private granting: Promise<string> | undefined;
  private lostAt: number | undefined;
  private closed = false;
  /** Bumped each time a new lease replaces a lost one. */
  generation = 0;
  /** Keys this session keeps in place (`keep`), with their values. */
  private readonly keptKeys = new Map<string, () => string>();
  private keptInPlace = false;
  private keptProblem = 'not written yet';
  /** etcd refused to keep the keys for this user (a configuration error): not retried. */
  private refused = false;
  private restoring: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly ttlSeconds: number,
    private readonly logger: Logger,
    private readonly onLost?: () => void,
  ) {}

  /**
   * Keeps a key on this session's lease for as long as the session lives: written now, written
   * again on a new lease whenever the lease is lost (etcd unreachable past the TTL, an event loop
   * blocked past it, a revoke), retried with backoff until it is, and checked every half TTL so
   * that a key deleted by any other means comes back too. `inPlace` says whether all are there.
   */
  keep(k: string, value: () => string): Promise<void> {
    this.keptKeys.set(k, value);
    this.checkTimer ??= setInterval(
      () => void this.verify(),
      Math.max(500, (this.ttlSeconds * 1000) / 2),
    );
    this.checkTimer.unref();
    return this.restore();
  }

  /** Undefined when every kept key is in place on the current lease; otherwise why not. */
  get keptStatus(): string | undefined {
    return this.keptInPlace ? undefined : this.keptProblem;
  }

  /** Writes every kept key on the current lease (a new one if it was lost), until it succeeds. */
  private restore(): Promise<void> {
    if (this.refused) return Promise.resolve();
    this.keptInPlace = false;
    this.restoring ??= (async () => {
      for (let attempt = 1; !this.closed; attempt++) {
        try {
          const lease = await this.id();
          await new Kv(this.client).txn(
            [],
            [...this.keptKeys].map(([k, v]) => putOp(k, v(), lease)),
            [],
            'session keys',
          );
          if (attempt > 1)
            this.logger.info({ keys: [...this.keptKeys.keys()] }, 'etcd session keys restored');
          this.keptInPlace = true;
          return;
        } catch (err) {
          this.keptProblem = `session keys not in etcd: ${describeError(err)}`;
          if (concernOf(err) === 'config') {
            // Its role does not allow these keys: no wait fixes that.
            this.refused = true;
            this.logger.error(
              { err: describeError(err), keys: [...this.keptKeys.keys()] },
              'etcd session keys refused (a configuration error); not retrying',
            );
            return;
          }
          if (attempt === 1)
            this.logger.warn(
              { err: describeError(err) },
              'etcd session keys not written; retrying',
            );
          await new Promise((r) =>
            setTimeout(r, backoffDelay({ baseMs: 250, capMs: 5000 }, attempt)).unref(),
          );
        }
      }
    })().finally(() => {
      this.restoring = undefined;
    });
    return this.restoring;
  }

  /** Checks that every kept key is still there on our lease; restores them if not. */
  private async verify(): Promise<void> {
    if (this.closed || this.refused || this.restoring !== undefined || this.keptKeys.size === 0)
      return;
    try {
      const lease = this.leaseId;
      for (const k of this.keptKeys.keys()) {
        const res = await new Kv(this.client).range({ key: keyBytes(k) }, 'session key check');
        const kv = res.kvs[0];
        if (kv === undefined || lease === undefined || kv.lease !== lease || !this.alive) {
          this.keptProblem = `session key ${k} was gone`;
          this.logger.warn({ key: k }, 'etcd session key gone; writing it again');
          if (this.alive && kv !== undefined && kv.lease !== lease) this.invalidate();
          await this.restore();
          return;
        }
      }
      // Every key is there on our lease (unless it was lost, or a restore began, meanwhile): after a
      // check that could not reach etcd, that is the news readiness waits for.
      if (!this.isRestoring && this.alive && this.leaseId === lease && !this.keptInPlace) {
        this.keptInPlace = true;
        this.logger.info({ keys: [...this.keptKeys.keys()] }, 'etcd session keys verified again');
      }
    } catch (err) {
      this.keptInPlace = false;
      this.keptProblem = `session keys unverified: ${describeError(err)}`;
    }
  }

  /** A restore is running (read after an await, where the narrowing of `restoring` does not hold). */
  private get isRestoring(): boolean {
    return this.restoring !== undefined;
  }

  get alive(): boolean {
    return this.leaseId !== undefined && this.lostAt === undefined && !this.closed;
  }

  /** The current lease id, granting a new lease when there is none. */
  async id(): Promise<string> {
    if (this.closed) throw new NexusError('QUEUE_CLOSED', 'session is closed');
    if (this.leaseId !== undefined && this.lostAt === undefined) return this.leaseId;
    this.granting ??= this.grant().finally(() => {
      this.granting = undefined;
    });
    return this.granting;
  }

  private async grant(): Promise<string> {
    const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: true });
    lease.on('lost', (err) => {
      if (this.lease !== lease || this.closed) return;
      this.lostAt = Date.now();
      this.logger.warn({ err: describeError(err), lease: this.leaseId }, 'etcd session lease lost');
      if (this.keptKeys.size > 0) void this.restore();
      this.onLost?.();
    });
    try {
      const id = await lease.grant();
      if (this.closed) {
        await lease.revoke().catch(() => undefined);
        throw new NexusError('QUEUE_CLOSED', 'session is closed');
      }
      this.lease = lease;
      this.leaseId = id;
      if (this.lostAt !== undefined) this.generation++;
      this.lostAt = undefined;
      return id;
    } catch (err) {
      lease.release();
      throw toQueueError(err, 'lease grant');
    }
  }

  /** Marks the lease as gone (etcd said it does not exist): the next `id()` grants a new one. */
  invalidate(): void {
    if (this.leaseId === undefined || this.lostAt !== undefined) return;
    this.lostAt = Date.now();
    this.lease?.release();
    if (this.keptKeys.size > 0) void this.restore();
    this.onLost?.();
  }

  /** Ends the session: with `revoke`, everything on the lease is deleted at once. */
  async close(revoke = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer);
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (lease === undefined) return;
    if (revoke) {
      await lease.revoke().catch(() => lease.release());
    } else {
      lease.release();
    }
  }

  /** Stops keeping the lease alive without revoking it, as a crash would. For tests. */
  abandon(): void {
    this.closed = true;
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer);
    this.lease?.release();
  }
}

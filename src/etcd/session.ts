import type { Etcd3, Lease } from 'etcd3';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { toQueueError } from './client.js';

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

  constructor(
    private readonly client: Etcd3,
    private readonly ttlSeconds: number,
    private readonly logger: Logger,
    private readonly onLost?: () => void,
  ) {}

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
    this.onLost?.();
  }

  /** Ends the session: with `revoke`, everything on the lease is deleted at once. */
  async close(revoke = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
    this.lease?.release();
  }
}

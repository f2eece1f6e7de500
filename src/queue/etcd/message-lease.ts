import type { Etcd3 } from 'etcd3';
import type { Logger } from '../../core/logger.js';
import { toQueueError } from '../../etcd/client.js';
import { putOp, type Kv } from '../../etcd/kv.js';
import type { QueueLayout } from './layout.js';

export interface LedgerEntry {
  readonly grantedAt: number;
  readonly ttlMs: number;
  /** The producer stops attaching messages to the lease this long after it was granted. */
  readonly rotateMs: number;
  readonly producer: string;
}

/**
 * Message TTL through shared leases: a producer attaches every message it publishes to its current
 * lease, granted with TTL = MESSAGE_TTL and never kept alive, and rotates to a new lease every
 * `rotateMs` (a tenth of the TTL, at most an hour). One lease per producer per rotation, not one per
 * message: etcd revokes leases at a bounded rate. Each lease is written to a ledger so that the
 * janitor can rescue messages before their lease expires (see maintenance.ts).
 */
export class MessageLeases {
  private current: { id: string; grantedAt: number } | undefined;
  private granting: Promise<string> | undefined;
  private readonly rotateMs: number;

  constructor(
    private readonly client: Etcd3,
    private readonly kv: Kv,
    private readonly layout: QueueLayout,
    private readonly ttlMs: number,
    private readonly producer: string,
    private readonly logger: Logger,
  ) {
    this.rotateMs = Math.max(1000, Math.min(ttlMs / 10, 3_600_000));
  }

  /** The lease id new messages should carry. */
  async id(now = Date.now()): Promise<string> {
    const cur = this.current;
    if (cur !== undefined && now - cur.grantedAt < this.rotateMs) return cur.id;
    this.granting ??= this.grant().finally(() => {
      this.granting = undefined;
    });
    return this.granting;
  }

  /** Forget the current lease (it was found expired): the next call grants a new one. */
  invalidate(id: string): void {
    if (this.current?.id === id) this.current = undefined;
  }

  private async grant(): Promise<string> {
    const ttlSeconds = Math.max(1, Math.ceil(this.ttlMs / 1000));
    let id: string;
    try {
      const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
      id = res.ID;
    } catch (err) {
      throw toQueueError(err, 'lease grant');
    }
    const grantedAt = Date.now();
    const entry: LedgerEntry = {
      grantedAt,
      ttlMs: ttlSeconds * 1000,
      rotateMs: this.rotateMs,
      producer: this.producer,
    };
    await this.kv.txn(
      [],
      [putOp(this.layout.ledger(id), JSON.stringify(entry))],
      [],
      'lease ledger',
    );
    this.current = { id, grantedAt };
    this.logger.debug({ lease: id, ttlSeconds }, 'granted message lease');
    return id;
  }
}

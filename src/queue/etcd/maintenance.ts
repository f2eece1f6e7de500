import type { Etcd3, IKeyValue } from 'etcd3';
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { decodeEnvelope } from '../envelope.js';
import { isLeaseNotFound, toQueueError } from '../../etcd/client.js';
import { deleteOp, getOp, key, modIs, prefixEnd, putOp, type Kv } from '../../etcd/kv.js';
import type { QueueLayout } from './layout.js';
import type { LedgerEntry } from './message-lease.js';
import { deadLetterValue, logOmitted } from './dead-letter.js';

/**
 * The stats counter of message leases found expired by a sweep (nobody swept them in time), under
 * its name since the first release that kept it.
 */
export const LOST_LEASES = 'expired_unobserved_leases';

/**
 * The queue's housekeeping, run by any consumer (every step is a compare-guarded Txn, so several
 * running at once is safe):
 * - promote delayed retries whose time has come back into the queue;
 * - rescue messages whose lease is about to expire into the dead-letter prefix, counted, so that the
 *   message TTL never silently loses data;
 * - count leases that expired while nobody was watching.
 */
export class Maintenance {
  private lastLeaseSweep = 0;
  /** Due time of the earliest delayed message seen, if any. */
  nextDue: number | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly kv: Kv,
    private readonly layout: QueueLayout,
    private readonly logger: Logger,
    private readonly leaseSweepMs: number,
  ) {}

  /** Moves due delayed messages back into the queue. Returns how many moved. */
  async promoteDue(now = Date.now()): Promise<number> {
    const res = await this.kv.range(
      {
        key: key(this.layout.delayed),
        range_end: key(this.layout.delayedKey(now + 1, '')),
        limit: 64,
      },
      'list delayed',
    );
    let moved = 0;
    await Promise.all(
      res.kvs.map(async (kv) => {
        if (await this.promote(kv)) moved++;
      }),
    );
    const next = await this.kv.range(
      {
        key: key(this.layout.delayed),
        range_end: prefixEnd(this.layout.delayed),
        limit: 1,
        keys_only: true,
      },
      'next delayed',
    );
    const first = next.kvs[0];
    this.nextDue =
      first === undefined ? undefined : this.layout.parseDelayed(first.key.toString())?.due;
    return moved;
  }

  private async promote(kv: IKeyValue): Promise<boolean> {
    const parsed = this.layout.parseDelayed(kv.key.toString());
    if (parsed === undefined) return false;
    const target = this.layout.message(parsed.name);
    const attempt = async (lease: string | undefined): Promise<boolean> => {
      const res = await this.kv.txn(
        [modIs(kv.key.toString(), kv.mod_revision)],
        [deleteOp(kv.key.toString()), putOp(target, kv.value, lease)],
        [],
        'promote delayed',
      );
      return res.succeeded;
    };
    try {
      return await attempt(kv.lease);
    } catch (err) {
      if (kv.lease !== '0' && isLeaseNotFound(err)) return attempt(undefined);
      throw err;
    }
  }

  /** Runs the lease sweep if it is due. */
  async sweepLeasesIfDue(now = Date.now()): Promise<void> {
    if (now - this.lastLeaseSweep < this.leaseSweepMs) return;
    this.lastLeaseSweep = now;
    await this.sweepLeases(now);
  }

  /**
   * Looks at every message lease that producers have rotated away from:
   * - no message left on it: revoke it now (it would expire anyway) and forget it;
   * - expiring within the rescue window with messages on it: move them to the dead-letter prefix
   *   (reason: message TTL expired), counted, so that the TTL never silently loses data;
   * - already gone: it expired while no Nexus component was running; how many messages it still
   *   held cannot be known. Counted and logged as an error.
   */
  async sweepLeases(
    now = Date.now(),
  ): Promise<{ rescued: number; unobserved: number; revoked: number }> {
    const window = Math.max(3 * this.leaseSweepMs, 5000);
    let rescued = 0;
    let unobserved = 0;
    let revoked = 0;
    for await (const page of this.kv.scan(this.layout.leases)) {
      for (const kv of page) {
        const ledgerKey = kv.key.toString();
        const leaseId = ledgerKey.slice(this.layout.leases.length);
        let entry: LedgerEntry;
        try {
          entry = JSON.parse(kv.value.toString()) as LedgerEntry;
        } catch {
          continue;
        }
        // Still (or recently) the current lease of its producer.
        if (
          now - entry.grantedAt < entry.rotateMs + 60_000 &&
          entry.grantedAt + entry.ttlMs - now > window
        ) {
          continue;
        }
        let keys: Buffer[] | undefined;
        try {
          const res = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true });
          keys = Number(res.TTL) < 0 ? undefined : res.keys;
        } catch (err) {
          if (!isLeaseNotFound(err)) throw toQueueError(err, 'lease time-to-live');
          keys = undefined;
        }
        if (keys === undefined) {
          unobserved++;
          this.logger.error(
            {
              lease: leaseId,
              producer: entry.producer,
              expiredAt: new Date(entry.grantedAt + entry.ttlMs).toISOString(),
            },
            'a message lease expired while no Nexus consumer was running: messages still on it were removed by the TTL',
          );
          await this.forget(ledgerKey, kv.mod_revision);
          continue;
        }
        const queued = keys
          .map((k) => k.toString())
          .filter((k) => k.startsWith(this.layout.messages) || k.startsWith(this.layout.delayed));
        if (queued.length === 0) {
          if (await this.forget(ledgerKey, kv.mod_revision)) {
            await this.client.leaseClient.leaseRevoke({ ID: leaseId }).catch(() => undefined);
            revoked++;
          }
          continue;
        }
        if (entry.grantedAt + entry.ttlMs - now > window) continue;
        for (const name of queued) {
          if (await this.rescue(name)) rescued++;
        }
      }
    }
    if (rescued > 0) await this.increment('expired', rescued);
    if (unobserved > 0) await this.increment(LOST_LEASES, unobserved);
    return { rescued, unobserved, revoked };
  }

  private async forget(ledgerKey: string, revision: string): Promise<boolean> {
    const res = await this.kv.txn(
      [modIs(ledgerKey, revision)],
      [deleteOp(ledgerKey)],
      [],
      'forget lease',
    );
    return res.succeeded;
  }

  private async rescue(messageKey: string): Promise<boolean> {
    const isDelayed = messageKey.startsWith(this.layout.delayed);
    const name = isDelayed
      ? (this.layout.parseDelayed(messageKey)?.name ?? messageKey.slice(this.layout.delayed.length))
      : messageKey.slice(this.layout.messages.length);
    const claimKey = this.layout.claim(name);
    const cur = await this.kv.txn([], [getOp(messageKey), getOp(claimKey)], [], 'read expiring');
    const msg = cur.responses[0]?.response_range.kvs[0];
    const claim = cur.responses[1]?.response_range.kvs[0];
    if (msg === undefined) return false;
    // A claimed message is being stored right now: leave it to its consumer.
    if (!isDelayed && claim !== undefined) return false;
    let envelope;
    try {
      envelope = decodeEnvelope(msg.value);
    } catch {
      envelope = undefined;
    }
    const { value, omitted } = deadLetterValue({
      reason: 'message TTL expired before the message was consumed',
      attempts: envelope?.attempt ?? 0,
      deadAt: Date.now(),
      envelope,
      raw: envelope === undefined ? msg.value : undefined,
    });
    const res = await this.kv.txn(
      [
        modIs(messageKey, msg.mod_revision),
        ...(isDelayed
          ? []
          : [
              {
                key: key(claimKey),
                target: 'Create' as const,
                result: 'Equal' as const,
                create_revision: 0,
              },
            ]),
      ],
      [deleteOp(messageKey), putOp(this.layout.deadLetter(name), value)],
      [],
      'rescue expiring message',
    );
    if (res.succeeded) {
      this.logger.warn(
        { message: name },
        'message TTL about to expire: moved to the dead-letter prefix',
      );
      if (omitted !== undefined) logOmitted(this.logger, name, omitted);
    }
    return res.succeeded;
  }

  async increment(counter: string, by: number): Promise<void> {
    const k = this.layout.counter(counter);
    for (let i = 0; i < 20; i++) {
      const res = await this.kv.range({ key: key(k) }, 'read counter');
      const kv = res.kvs[0];
      const current = kv === undefined ? 0 : Number(kv.value.toString()) || 0;
      const txn = await this.kv.txn(
        [modIs(k, kv?.mod_revision ?? 0)],
        [putOp(k, String(current + by))],
        [],
        'increment counter',
      );
      if (txn.succeeded) return;
    }
    this.logger.warn({ counter, by, err: describeError('contention') }, 'could not update counter');
  }
}

import type { Etcd3, Watcher } from 'etcd3';
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { TelemetryRecord } from '../../core/record.js';
import { toQueueError } from '../../etcd/client.js';
import { Kv, putOp } from '../../etcd/kv.js';
import { Session } from '../../etcd/session.js';
import { registryKeyspace, type RegistryKeyspace } from '../../etcd/keyspace.js';
import {
  decodeFeed,
  encodeFeed,
  type FeedBatch,
  type LiveFeed,
  type WireFeedBatch,
} from '../feed.js';

export interface EtcdFeedOptions {
  readonly client: Etcd3;
  /** REGISTRY_PREFIX. */
  readonly prefix: string;
  /** Names this process's feed keys. */
  readonly instance: string;
  /** How long a feed event stays in etcd (watchers that fall behind can catch up within it). */
  readonly ttlMs: number;
  readonly leaseTtlMs: number;
  readonly logger: Logger;
}

/** Largest feed value; a bigger batch is split (etcd's request limit is 1.5 MiB). */
const MAX_RECORDS_PER_EVENT = 8000;

/**
 * The commit feed on etcd:
 *
 *   {prefix}/feed/{cluster}/{instance}.{seq}     a committed batch (compact JSON), on a short lease
 *   {prefix}/listeners/{id}                      a gateway that pushes live data, on its session
 *
 * Collectors publish only while at least one listener is registered, so a fleet without gateways
 * does not pay for the feed. Gateways watch the feed prefix: etcd delivers events in commit order,
 * once each.
 */
export class EtcdFeed implements LiveFeed {
  private readonly kv: Kv;
  private readonly k: RegistryKeyspace;
  private seq = 0;
  private listeners = 0;
  private listenerWatch: Watcher | undefined;
  private watching: Promise<void> | undefined;
  private lease: { id: string; grantedAt: number } | undefined;
  private session: Session | undefined;
  private readonly watchers = new Set<Watcher>();
  private readonly down = new Set<Watcher>();
  /** What each subscriber asked to be told when batches may have been missed. */
  private readonly gaps = new Set<() => void>();
  /** Waiting for the listener key to be back, to report a gap. */
  private relistening = false;
  private closed = false;

  constructor(private readonly o: EtcdFeedOptions) {
    this.kv = new Kv(o.client);
    this.k = registryKeyspace(o.prefix);
  }

  /** Keeps an up-to-date count of listeners (range, then watch). */
  private trackListeners(): Promise<void> {
    this.watching ??= (async () => {
      const prefix = this.k.listeners;
      const watcher = await this.o.client.watch().prefix(prefix).create();
      this.listenerWatch = watcher;
      const recount = async (): Promise<void> => {
        this.listeners = await this.kv.count(prefix);
      };
      watcher.on('put', () => void recount().catch(() => undefined));
      watcher.on('delete', () => void recount().catch(() => undefined));
      watcher.on('connected', () => void recount().catch(() => undefined));
      await recount();
    })().catch((err: unknown) => {
      this.watching = undefined;
      throw err;
    });
    return this.watching;
  }

  private async leaseId(): Promise<string> {
    const now = Date.now();
    if (this.lease !== undefined && now - this.lease.grantedAt < this.o.ttlMs / 2)
      return this.lease.id;
    try {
      const res = await this.o.client.leaseClient.leaseGrant({
        TTL: Math.max(2, Math.ceil(this.o.ttlMs / 1000)),
        ID: 0,
      });
      this.lease = { id: res.ID, grantedAt: now };
      return res.ID;
    } catch (err) {
      throw toQueueError(err, 'feed lease');
    }
  }

  async publish(clusterId: string, records: readonly TelemetryRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.trackListeners();
    if (this.listeners === 0) return;
    const lease = await this.leaseId();
    const at = Date.now();
    for (let i = 0; i < records.length; i += MAX_RECORDS_PER_EVENT) {
      const wire = encodeFeed(clusterId, records.slice(i, i + MAX_RECORDS_PER_EVENT), at);
      this.seq++;
      await this.kv.txn(
        [],
        [
          putOp(
            `${this.k.feed}${clusterId}/${this.o.instance}.${this.seq}`,
            JSON.stringify(wire),
            lease,
          ),
        ],
        [],
        'feed',
      );
    }
  }

  async subscribe(
    clusterId: string,
    onBatch: (batch: FeedBatch) => void,
    onGap?: () => void,
  ): Promise<() => Promise<void>> {
    const prefix = clusterId === '*' ? this.k.feed : `${this.k.feed}${clusterId}/`;
    const watcher = await this.o.client.watch().prefix(prefix).create();
    this.watchers.add(watcher);
    if (onGap !== undefined) this.gaps.add(onGap);
    // etcd3 reconnects a broken watch by itself, resuming from its last revision; events may have
    // gone meanwhile (expired with their lease, or compacted), so the subscriber is told.
    watcher.on('disconnected', () => this.down.add(watcher));
    watcher.on('connected', () => {
      if (this.down.delete(watcher)) onGap?.();
    });
    watcher.on('put', (kv) => {
      try {
        onBatch(decodeFeed(JSON.parse(kv.value.toString()) as WireFeedBatch));
      } catch (err) {
        this.o.logger.warn({ err: describeError(err) }, 'undecodable feed event skipped');
      }
    });
    watcher.on('error', (err) =>
      this.o.logger.warn({ err: describeError(err) }, 'feed watch error'),
    );
    return async () => {
      this.watchers.delete(watcher);
      this.down.delete(watcher);
      if (onGap !== undefined) this.gaps.delete(onGap);
      await watcher.cancel();
    };
  }

  /**
   * Registers this process as a listener on its session, and keeps it registered: after a lost
   * lease (etcd away, or this process stalled, past the TTL) the key is written again on a new
   * lease, retried until it is (Session.keep). Resolves once it is first written.
   */
  async announceListener(id: string): Promise<void> {
    // A lost lease took this listener's key with it: collectors may stop publishing until it is
    // written again, so subscribers are told of a gap once it is back.
    this.session ??= new Session(
      this.o.client,
      Math.max(1, Math.round(this.o.leaseTtlMs / 1000)),
      this.o.logger,
      () => this.gapOnceListening(),
    );
    await this.session.keep(`${this.k.listeners}${id}`, () =>
      JSON.stringify({ id, at: Date.now() }),
    );
  }

  /** Tells every subscriber of a gap once this listener's key is in etcd again. */
  private gapOnceListening(): void {
    if (this.relistening) return;
    this.relistening = true;
    void (async () => {
      try {
        while (!this.closed && this.session?.keptStatus !== undefined)
          await new Promise((resolve) => setTimeout(resolve, 250).unref());
      } finally {
        this.relistening = false;
      }
      if (!this.closed) for (const gap of this.gaps) gap();
    })();
  }

  status(): string | undefined {
    const listener = this.session?.keptStatus;
    if (listener !== undefined) return `live listener not registered: ${listener}`;
    for (const w of this.watchers) if (this.down.has(w)) return 'commit feed watch disconnected';
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.watchers].map((w) => w.cancel().catch(() => undefined)));
    this.watchers.clear();
    await this.listenerWatch?.cancel().catch(() => undefined);
    await this.session?.close(true);
  }
}

import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { backoffDelay, type BackoffPolicy } from '../../core/backoff.js';
import { NexusError, concernOf, describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import {
  decodeEnvelope,
  encodeEnvelopeAgain,
  encodeEnvelopeWithin,
  type QueueCompression,
} from '../envelope.js';
import { QueueConflict } from '../conflict.js';
import { headMessage } from '../head.js';
import { messageNameOf } from '../names.js';
import { pageLimit, randomSuffix, type QueueOptions } from '../options.js';
import type {
  Consumer,
  ConsumerOptions,
  DeadLetter,
  DeadLetterPage,
  HeadMessage,
  MessagePage,
  PublishReceipt,
  Queue,
  QueueStats,
  StreamHandle,
} from '../types.js';
import { Waker } from '../waker.js';
import {
  createEtcdClient,
  isLeaseNotFound,
  type EtcdConnectionOptions,
} from '../../etcd/client.js';
import { EtcdConsumer, type ConsumerContext } from './consumer.js';
import type { DeadLetterRecord } from './dead-letter.js';
import {
  Kv,
  absent,
  deleteOp,
  getOp,
  key,
  modIs,
  prefixEnd,
  putOp,
  rangeOf,
} from '../../etcd/kv.js';
import { QueueLayout } from './layout.js';
import { LOST_LEASES, Maintenance } from './maintenance.js';
import { MessageLeases } from './message-lease.js';
import { Session } from '../../etcd/session.js';
import { EtcdStream } from './stream.js';

/** Housekeeping's timer while consumers exist (maintain() itself runs at most every 250 ms). */
const MAINTAIN_EVERY_MS = 1000;

/**
 * Dead letters, or messages, read in one request (each can be over a MB: the client takes answers
 * of 64 MiB).
 */
const LARGE_VALUES_READ = 32;

/** After a key: the next one in etcd's order. */
const AFTER = Buffer.from([0]);

/** A message's description from its body, or why the body cannot be decoded. */
function described(name: string, body: Buffer): HeadMessage {
  try {
    return headMessage(name, decodeEnvelope(body));
  } catch (err) {
    return { name, problem: describeError(err) };
  }
}

/** Waits before trying the queue watch again (it was a fixed 2 s); consumers poll meanwhile. */
const WATCH_RETRY: BackoffPolicy = { baseMs: 500, capMs: 10_000 };

/**
 * Largest message body published, as written (compressed or not): QUEUE_MESSAGE_TOO_LARGE past it.
 * etcd takes 1.5 MiB a request, and a message must also fit whole in its dead letter, which keeps
 * the body base64 (4 bytes for every 3) with its reason (dead-letter.ts, DEAD_LETTER_MAX_BYTES):
 * 1,150,000 bytes are 1,533,336 in base64. Releases before this one took up to 1,400,000; such a
 * message is stored as any other, and dead-lettered without its body (described: size, SHA-256).
 */
export const MAX_MESSAGE_BYTES = 1_150_000;

export interface EtcdQueueOptions extends QueueOptions {
  /** MESSAGE_QUEUE_PREFIX. */
  readonly prefix: string;
  /** Either a connection to open (and close) or a client shared with others (left open). */
  readonly connection?: EtcdConnectionOptions;
  readonly client?: Etcd3;
  /** Wake consumers with watch (else poll only). */
  readonly enableWatch: boolean;
  /** Names this process in leases and claims. */
  readonly instance?: string;
  /** How often the lease ledger is swept (ms). Default 30 s. */
  readonly leaseSweepMs?: number;
  /** Largest message accepted (MAX_MESSAGE_BYTES by default). */
  readonly maxMessageBytes?: number;
  /** How message bodies are written (QUEUE_COMPRESSION; default `zlib`). Any body is read. */
  readonly compression?: QueueCompression;
  /** How often each consumer looks for claims of its own that it does not hold (ms). Default 10 s. */
  readonly orphanScanMs?: number;
}

/**
 * The production queue on etcd. docs/queue.md specifies its keys, envelope and protocol.
 */
export class EtcdQueue implements Queue {
  readonly backend = 'etcd' as const;
  readonly clusterId: string;
  readonly layout: QueueLayout;
  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  private readonly kv: Kv;
  private readonly logger: Logger;
  private readonly waker = new Waker();
  private readonly leases: MessageLeases;
  private readonly maintenance: Maintenance;
  private readonly consumers = new Set<EtcdConsumer>();
  private readonly instance: string;
  private readonly maxMessageBytes: number;
  private readonly compression: QueueCompression;
  private producerSession: Session | undefined;
  private watcher: Watcher | undefined;
  private watchStarting: Promise<void> | undefined;
  private watchRetry: NodeJS.Timeout | undefined;
  private watchAttempts = 0;
  private lastMaintenance = 0;
  private maintaining: Promise<void> | undefined;
  /** Runs housekeeping while consumers exist, whether or not they claim (maintainWhileConsuming). */
  private maintenanceTimer: NodeJS.Timeout | undefined;
  /** Housekeeping was refused by etcd for this user (said once). */
  private maintenanceRefused = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: EtcdQueueOptions) {
    this.clusterId = options.clusterId;
    this.layout = new QueueLayout(options.prefix, options.clusterId);
    if (options.client !== undefined) {
      this.client = options.client;
      this.ownsClient = false;
    } else if (options.connection !== undefined) {
      this.client = createEtcdClient(options.connection);
      this.ownsClient = true;
    } else {
      throw new NexusError('CONFIG_INVALID', 'EtcdQueue needs a connection or a client');
    }
    this.kv = new Kv(this.client);
    this.logger = options.logger.child({ queue: 'etcd' });
    this.instance = options.instance ?? `nexus-${process.pid}-${randomSuffix()}`;
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.compression = options.compression ?? 'zlib';
    this.leases = new MessageLeases(
      this.client,
      this.kv,
      this.layout,
      options.messageTtlMs,
      this.instance,
      this.logger,
    );
    this.maintenance = new Maintenance(
      this.client,
      this.kv,
      this.layout,
      this.logger,
      options.leaseSweepMs ?? 30_000,
    );
  }

  private ensureOpen(): void {
    if (this.closing !== undefined) throw new NexusError('QUEUE_CLOSED', 'queue is closed');
  }

  async publish(envelope: Parameters<Queue['publish']>[0]): Promise<PublishReceipt> {
    this.ensureOpen();
    const name = messageNameOf(envelope);
    const body = encodeEnvelopeWithin(envelope, this.maxMessageBytes, this.compression);
    const k = this.layout.message(name);
    let leaseId = await this.leases.id();
    let res;
    try {
      res = await this.kv.txn([absent(k)], [putOp(k, body, leaseId)], [], 'publish');
    } catch (err) {
      if (!isLeaseNotFound(err)) throw err;
      this.leases.invalidate(leaseId);
      leaseId = await this.leases.id();
      res = await this.kv.txn([absent(k)], [putOp(k, body, leaseId)], [], 'publish');
    }
    if (!res.succeeded) {
      throw new QueueConflict('exists', `message ${name} already exists`);
    }
    return { id: name };
  }

  private session(): Session {
    this.producerSession ??= new Session(
      this.client,
      Math.max(1, Math.round(this.options.leaseTtlMs / 1000)),
      this.logger,
    );
    return this.producerSession;
  }

  async openStream(streamId: string, owner: string): Promise<StreamHandle> {
    this.ensureOpen();
    return EtcdStream.acquire({
      streamId,
      owner,
      kv: this.kv,
      layout: this.layout,
      leases: this.leases,
      session: this.session(),
      logger: this.logger,
      waitMs: this.options.leaseTtlMs + 5000,
      maxMessageBytes: this.maxMessageBytes,
      compression: this.compression,
    });
  }

  async consumer(options: ConsumerOptions = {}): Promise<Consumer> {
    this.ensureOpen();
    const id = `${options.name ?? 'consumer'}-${randomSuffix()}`;
    const session = new Session(
      this.client,
      Math.max(1, Math.round(this.options.leaseTtlMs / 1000)),
      this.logger.child({ consumer: id }),
    );
    await session.id();
    const ctx: ConsumerContext = {
      kv: this.kv,
      layout: this.layout,
      options: this.options,
      compression: this.compression,
      maxMessageBytes: this.maxMessageBytes,
      waker: this.waker,
      logger: this.logger,
      maintain: () => this.maintain(),
      nextDue: () => this.maintenance.nextDue,
      onClose: (c) => {
        this.consumers.delete(c);
        if (this.consumers.size === 0) this.stopMaintenance();
      },
      ...(this.options.orphanScanMs === undefined
        ? {}
        : { orphanScanMs: this.options.orphanScanMs }),
    };
    const consumer = new EtcdConsumer(id, session, ctx);
    this.consumers.add(consumer);
    this.startWatch();
    this.maintainWhileConsuming();
    return consumer;
  }

  /**
   * Housekeeping on a timer while this process has consumers, besides the claim loop's runs: a
   * collector whose store is down retries its batch and does not claim, and the lease sweep must
   * still rescue messages whose TTL is running out (a PostgreSQL outage longer than MESSAGE_TTL
   * lost them silently, with two collectors up) and promote delayed retries.
   */
  private maintainWhileConsuming(): void {
    if (this.maintenanceTimer !== undefined) return;
    this.maintenanceTimer = setInterval(() => {
      this.maintain().catch(() => undefined); // a refusal is logged by maintain, once
    }, MAINTAIN_EVERY_MS);
    this.maintenanceTimer.unref();
  }

  private stopMaintenance(): void {
    clearInterval(this.maintenanceTimer);
    this.maintenanceTimer = undefined;
  }

  /**
   * Housekeeping, run from the claim loop and every second while consumers exist, at most every
   * 250 ms, one run at a time. A failure is
   * retried on the next run, except a refusal of this user by etcd (a configuration error), which
   * fails the claim that ran it.
   */
  private maintain(): Promise<void> {
    const now = Date.now();
    if (this.maintaining !== undefined) return this.maintaining;
    if (now - this.lastMaintenance < 250) return Promise.resolve();
    this.lastMaintenance = now;
    this.maintaining = (async () => {
      try {
        const moved = await this.maintenance.promoteDue(now);
        if (moved > 0) this.waker.notify();
        await this.maintenance.sweepLeasesIfDue(now);
      } catch (err) {
        if (concernOf(err) !== 'config') {
          this.logger.debug({ err: describeError(err) }, 'queue maintenance failed; will retry');
        } else {
          if (!this.maintenanceRefused) {
            this.maintenanceRefused = true;
            this.logger.error(
              { err: describeError(err) },
              'queue maintenance refused by etcd (a configuration error): delayed retries are not promoted, expiring messages not rescued',
            );
          }
          throw err;
        }
      } finally {
        this.maintaining = undefined;
      }
    })();
    return this.maintaining;
  }

  /** Runs the lease sweep now (also done every leaseSweepMs by consumers). */
  sweepLeases(): ReturnType<Maintenance['sweepLeases']> {
    return this.maintenance.sweepLeases();
  }

  private startWatch(): void {
    if (!this.options.enableWatch || this.watcher !== undefined || this.watchStarting !== undefined)
      return;
    if (this.closing !== undefined) return;
    this.watchStarting = (async () => {
      try {
        const watcher = await this.client.watch().prefix(this.layout.messages).create();
        if (this.closing !== undefined) {
          await watcher.cancel();
          return;
        }
        this.watcher = watcher;
        this.watchAttempts = 0;
        watcher.on('put', () => this.waker.notify());
        watcher.on('connected', () => this.waker.notify());
        watcher.on('error', (err) => {
          // A compacted or broken watch: consumers re-list (the watch manager reconnects).
          this.logger.warn({ err: describeError(err) }, 'queue watch error; consumers re-list');
          this.waker.notify();
        });
      } catch (err) {
        this.watchAttempts++;
        if (this.watchAttempts === 1)
          this.logger.warn(
            { err: describeError(err) },
            'could not start queue watch; polling until it can',
          );
        // Consumers poll meanwhile: the watch is only their wake-up call.
        this.watchRetry = setTimeout(
          () => {
            this.watchRetry = undefined;
            this.startWatch();
          },
          backoffDelay(WATCH_RETRY, this.watchAttempts),
        );
        this.watchRetry.unref();
      } finally {
        this.watchStarting = undefined;
      }
    })();
  }

  async depth(): Promise<number> {
    return this.kv.count(this.layout.messages);
  }

  async stats(): Promise<QueueStats> {
    const res = await this.kv.txn(
      [],
      [
        rangeOf(this.layout.messages, { count_only: true }),
        rangeOf(this.layout.claims, { count_only: true }),
        rangeOf(this.layout.delayed, { count_only: true }),
        rangeOf(this.layout.dead, { count_only: true }),
        getOp(this.layout.counter('expired')),
        rangeOf(this.layout.messages, { limit: 1 }),
        getOp(this.layout.counter(LOST_LEASES)),
      ],
      [],
      'stats',
    );
    const count = (i: number): number => Number(res.responses[i]?.response_range.count ?? 0);
    const messages = count(0);
    const inFlight = Math.min(messages, count(1));
    const kv = res.responses[5]?.response_range.kvs[0];
    const head =
      kv === undefined
        ? undefined
        : described(kv.key.toString().slice(this.layout.messages.length), kv.value);
    return {
      ready: messages - inFlight,
      inFlight,
      delayed: count(2),
      dead: count(3),
      expired: Number(res.responses[4]?.response_range.kvs[0]?.value.toString() ?? 0),
      lostLeases: Number(res.responses[6]?.response_range.kvs[0]?.value.toString() ?? 0),
      oldestCreatedAt: head?.createdAt,
      head,
    };
  }

  async listDeadLetters(options: { limit?: number; after?: string } = {}): Promise<DeadLetterPage> {
    const { items, more } = await this.page(this.layout.dead, options, 'list dead letters', (kv) =>
      toDeadLetter(kv.key.toString().slice(this.layout.dead.length), kv.value),
    );
    const last = items[items.length - 1];
    return { items, next: more && last !== undefined ? last.id : undefined };
  }

  async listMessages(
    options: { limit?: number; after?: string; delayed?: boolean } = {},
  ): Promise<MessagePage> {
    const delayed = options.delayed === true;
    const prefix = delayed ? this.layout.delayed : this.layout.messages;
    const { items: read, more } = await this.page(prefix, options, 'list messages', (kv) => {
      const cursor = kv.key.toString().slice(prefix.length);
      const d = delayed ? this.layout.parseDelayed(kv.key.toString()) : undefined;
      return { cursor, due: d?.due, message: described(d?.name ?? cursor, kv.value) };
    });
    const first = read[0]?.cursor;
    const last = read[read.length - 1]?.cursor;
    // Which of the page's messages a consumer holds: their claims, between its first and last
    // (read after the page: a message claimed or acked meanwhile may show as it was).
    const claimed = new Set<string>();
    if (!delayed && first !== undefined && last !== undefined) {
      const res = await this.kv.range(
        {
          key: key(this.layout.claim(first)),
          range_end: Buffer.concat([key(this.layout.claim(last)), AFTER]),
          keys_only: true,
        },
        'list claims',
      );
      for (const c of res.kvs) claimed.add(c.key.toString().slice(this.layout.claims.length));
    }
    const items = read.map(({ cursor, due, message }) =>
      delayed
        ? { ...message, state: 'delayed' as const, ...(due === undefined ? {} : { due }) }
        : { ...message, state: claimed.has(cursor) ? ('claimed' as const) : ('ready' as const) },
    );
    return { items, next: more ? last : undefined };
  }

  /**
   * Up to `limit` (1 to 1,000, default 100) key-values under `prefix` after the key whose suffix is
   * `after`, read LARGE_VALUES_READ at a time and each made into what `map` makes of it at once
   * (a page holds no more than one read's bodies); `more` when others follow.
   */
  private async page<T>(
    prefix: string,
    options: { limit?: number; after?: string },
    what: string,
    map: (kv: IKeyValue) => T,
  ): Promise<{ items: T[]; more: boolean }> {
    const limit = pageLimit(options.limit);
    let from =
      options.after === undefined
        ? key(prefix)
        : Buffer.concat([key(`${prefix}${options.after}`), AFTER]);
    const items: T[] = [];
    let more = false;
    while (items.length < limit) {
      const res = await this.kv.range(
        {
          key: from,
          range_end: prefixEnd(prefix),
          limit: Math.min(LARGE_VALUES_READ, limit - items.length),
        },
        what,
      );
      for (const kv of res.kvs) items.push(map(kv));
      more = res.more;
      const lastKv = res.kvs[res.kvs.length - 1];
      if (!more || lastKv === undefined) break;
      from = Buffer.concat([lastKv.key, AFTER]);
    }
    return { items, more };
  }

  async replayDeadLetters(ids: readonly string[] | 'all'): Promise<number> {
    let replayed = 0;
    const one = async (deadKey: string, value: Buffer, revision: string): Promise<void> => {
      const name = deadKey.slice(this.layout.dead.length);
      const dl = toDeadLetter(name, value);
      let body: Buffer | undefined;
      if (dl.envelope !== undefined) {
        const { lastError: _dropped, ...rest } = dl.envelope;
        body = encodeEnvelopeAgain({ ...rest, attempt: 0 }, this.compression, this.maxMessageBytes);
      } else {
        // A message this release could not decode (another producer's, a newer envelope version):
        // back as it was, for collectors that can (docs/operations.md: upgrade, then replay).
        body = rawBodyOf(value);
      }
      if (body === undefined) {
        this.logger.warn({ message: name }, 'dead letter holds no message body; cannot replay');
        return;
      }
      const leaseId = await this.leases.id();
      const res = await this.kv.txn(
        [modIs(deadKey, revision), absent(this.layout.message(name))],
        [deleteOp(deadKey), putOp(this.layout.message(name), body, leaseId)],
        [],
        'replay dead letter',
      );
      if (res.succeeded) replayed++;
    };
    if (ids === 'all') {
      for await (const page of this.kv.scan(this.layout.dead, { pageSize: LARGE_VALUES_READ })) {
        for (const kv of page) await one(kv.key.toString(), kv.value, kv.mod_revision);
      }
    } else {
      for (const id of ids) {
        const res = await this.kv.range(
          { key: key(this.layout.deadLetter(id)) },
          'read dead letter',
        );
        const kv = res.kvs[0];
        if (kv !== undefined) await one(kv.key.toString(), kv.value, kv.mod_revision);
      }
    }
    if (replayed > 0) this.waker.notify();
    return replayed;
  }

  async purgeDeadLetters(ids: readonly string[] | 'all'): Promise<number> {
    if (ids === 'all') {
      const res = await this.kv.txn([], [rangeDelete(this.layout.dead)], [], 'purge dead letters');
      return Number(res.responses[0]?.response_delete_range.deleted ?? 0);
    }
    let n = 0;
    for (const id of ids) {
      const res = await this.kv.txn(
        [],
        [deleteOp(this.layout.deadLetter(id))],
        [],
        'purge dead letter',
      );
      n += Number(res.responses[0]?.response_delete_range.deleted ?? 0);
    }
    return n;
  }

  /** The underlying client, for components that share this connection (registry). */
  get etcd(): Etcd3 {
    return this.client;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopMaintenance();
      if (this.watchRetry !== undefined) clearTimeout(this.watchRetry);
      await this.watchStarting;
      await this.watcher?.cancel().catch(() => undefined);
      await Promise.all([...this.consumers].map((c) => c.close().catch(() => undefined)));
      await this.producerSession?.close(true).catch(() => undefined);
      this.waker.notify();
      if (this.ownsClient) this.client.close();
    })();
    return this.closing;
  }
}

function rangeDelete(prefix: string) {
  return { request_delete_range: { key: key(prefix), range_end: prefixEnd(prefix) } };
}

/**
 * The message body a dead letter keeps as it was, if any: an undecodable one (base64 `raw`), or a
 * compressed one this release could not decode (`body`, written by a newer one).
 */
function rawBodyOf(value: Buffer): Buffer | undefined {
  try {
    const { raw, body } = JSON.parse(value.toString()) as DeadLetterRecord;
    const kept = raw ?? body;
    return kept === undefined ? undefined : Buffer.from(kept, 'base64');
  } catch {
    return undefined;
  }
}

function toDeadLetter(id: string, value: Buffer): DeadLetter {
  let record: DeadLetterRecord;
  try {
    record = JSON.parse(value.toString()) as DeadLetterRecord;
  } catch {
    return {
      id,
      reason: 'unreadable dead letter',
      attempts: 0,
      deadAt: 0,
      records: 0,
      envelope: undefined,
    };
  }
  let envelope;
  try {
    if (record.envelope !== undefined) envelope = decodeEnvelope(JSON.stringify(record.envelope));
    else if (record.body !== undefined)
      envelope = decodeEnvelope(Buffer.from(record.body, 'base64'));
  } catch {
    envelope = undefined;
  }
  return {
    id,
    reason: record.reason,
    attempts: record.attempts,
    deadAt: record.deadAt,
    records: envelope?.records.length ?? 0,
    envelope,
    ...(record.omitted === undefined ? {} : { omitted: record.omitted }),
  };
}

import type { IKeyValue, ITxnResponse } from 'etcd3';
import { backoffDelay } from '../../core/backoff.js';
import { NexusError, describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import {
  decodeEnvelope,
  encodeEnvelopeAgain,
  type Envelope,
  type QueueCompression,
} from '../envelope.js';
import type { QueueOptions } from '../options.js';
import {
  ACK_BATCH_MAX,
  type AckResult,
  type ClaimOptions,
  type Consumer,
  type Delivery,
  type NackOptions,
  type NackOutcome,
  type RejectedRecord,
} from '../types.js';
import { groupRejected, wholeMessageGroup, type RejectedGroup } from '../rejected.js';
import type { Waker } from '../waker.js';
import { isLeaseNotFound } from '../../etcd/client.js';
import { DEAD_LETTER_MAX_BYTES, deadLetterValue, logOmitted } from './dead-letter.js';
import { absent, deleteOp, getOp, key, modIs, prefixEnd, putOp, type Kv } from '../../etcd/kv.js';
import type { QueueLayout } from './layout.js';
import type { Session } from '../../etcd/session.js';

/** What the queue gives a consumer to work with. */
export interface ConsumerContext {
  readonly kv: Kv;
  readonly layout: QueueLayout;
  readonly options: QueueOptions;
  /** How a retry's body is written (the queue's QUEUE_COMPRESSION). */
  readonly compression: QueueCompression;
  /** Largest message the queue writes. */
  readonly maxMessageBytes: number;
  readonly waker: Waker;
  readonly logger: Logger;
  /** Promotes due retries and sweeps expiring leases, at most every few hundred ms. */
  maintain(): Promise<void>;
  /** Due time of the earliest delayed retry, if known. */
  nextDue(): number | undefined;
  /** How often a consumer looks for claims of its own that it does not hold (ms; default 10 s). */
  readonly orphanScanMs?: number;
  onClose(consumer: EtcdConsumer): void;
}

interface Held {
  readonly messageKey: string;
  readonly claimKey: string;
  readonly claimRevision: string;
  readonly messageLease: string;
  readonly envelope: Envelope;
}

/**
 * Messages per claim transaction (two compares and two operations each, far under etcd's 128):
 * small, so that losing a race to another consumer costs little.
 */
const CLAIM_CHUNK = 4;
/** Bytes of refused records' dead letters written as JSON by one settle, past which compressed. */
const SETTLE_INLINE_MAX = 512 * 1024;
/** How often a consumer looks for claims of its own that it does not hold, by default. */
const ORPHAN_SCAN_MS = 10_000;

/**
 * A consumer of the etcd queue (docs/queue.md, "Claims"). A claim is a key on the consumer's
 * session lease, created only if absent and only if the message is unchanged; ack and nack are
 * fenced by the claim's revision, so only the holder can complete a message, and a dead
 * consumer's claims vanish with its lease.
 */
export class EtcdConsumer implements Consumer {
  private readonly held = new Map<string, Held>();
  /** Messages whose claim Txn is under way (their claims may exist before they are held). */
  private readonly claiming = new Set<string>();
  private closed = false;
  private lastOrphanScan = Date.now();

  constructor(
    readonly id: string,
    private readonly session: Session,
    private readonly ctx: ConsumerContext,
  ) {}

  get healthy(): boolean {
    return this.session.alive && !this.closed;
  }

  async claim(max: number, options: ClaimOptions): Promise<Delivery[]> {
    const deadline = Date.now() + options.waitMs;
    for (;;) {
      if (this.closed) throw new NexusError('QUEUE_CLOSED', `consumer ${this.id} is closed`);
      await this.ctx.maintain();
      let got: Delivery[];
      try {
        got = await this.tryClaim(max);
      } catch (err) {
        if (!isLeaseNotFound(err)) throw err;
        // Our session lease expired under us: its claims are gone. Start a new session.
        this.session.invalidate();
        this.held.clear();
        continue;
      }
      if (got.length > 0) return got;
      const now = Date.now();
      if (now >= deadline || options.signal?.aborted === true) return [];
      let wait = Math.min(deadline - now, this.ctx.options.pollTimeoutMs);
      const due = this.ctx.nextDue();
      if (due !== undefined) wait = Math.min(wait, Math.max(20, due - now));
      await this.ctx.waker.wait(wait, options.signal);
    }
  }

  /**
   * Claims that may have been written by a claim Txn whose answer was lost (claim key -> the value
   * this consumer wrote): each is deleted if it is still this consumer's, returning the message.
   */
  private readonly uncertain = new Map<string, string>();

  private async releaseUncertain(): Promise<void> {
    for (const [claimKey, value] of [...this.uncertain]) {
      await this.ctx.kv.txn(
        [{ key: key(claimKey), target: 'Value', result: 'Equal', value: key(value) }],
        [deleteOp(claimKey)],
        [],
        'release claim',
      );
      this.uncertain.delete(claimKey);
    }
  }

  /**
   * A claim Txn whose answer was lost can also be applied long after the consumer gave up on it
   * and released what it had written (`releaseUncertain` found nothing then): a member that hung
   * with the request unread applies it once it runs again. Its claim then sits on this consumer's
   * live session lease with nobody working on the message, in flight for as long as the process
   * lives. Every `orphanScanMs` the consumer lists the claims (one per message in flight, so few)
   * and deletes those on its own session lease, naming it, that it neither holds nor is claiming.
   */
  private async releaseOrphans(leaseId: string): Promise<void> {
    const now = Date.now();
    if (now - this.lastOrphanScan < (this.ctx.orphanScanMs ?? ORPHAN_SCAN_MS)) return;
    this.lastOrphanScan = now;
    const { kv, layout } = this.ctx;
    const claims = await kv.range(
      { key: key(layout.claims), range_end: prefixEnd(layout.claims) },
      'list claims',
    );
    let released = 0;
    for (const c of claims.kvs) {
      const name = c.key.toString().slice(layout.claims.length);
      if (c.lease !== leaseId || this.held.has(name) || this.claiming.has(name)) continue;
      let owner: unknown;
      try {
        owner = (JSON.parse(c.value.toString()) as { consumer?: unknown }).consumer;
      } catch {
        continue;
      }
      if (owner !== this.id) continue;
      const res = await kv.txn(
        [modIs(c.key.toString(), c.mod_revision)],
        [deleteOp(c.key.toString())],
        [],
        'release claim',
      );
      if (res.succeeded) released++;
    }
    if (released > 0) {
      this.ctx.logger.warn(
        { consumer: this.id, released },
        `released ${released} claim(s) of this consumer that it did not hold (a claim request applied after it had given up on it): their messages are delivered again`,
      );
    }
  }

  private async tryClaim(max: number): Promise<Delivery[]> {
    await this.releaseUncertain();
    const leaseId = await this.session.id();
    await this.releaseOrphans(leaseId);
    const candidates = await this.listUnclaimed(Math.max(4 * max, 32));
    if (candidates.length === 0) return [];
    // Start at a random point of the window so that consumers spread over it instead of racing
    // for the same head messages.
    const chosen: IKeyValue[] = [];
    const offset = candidates.length > max ? Math.floor(Math.random() * candidates.length) : 0;
    for (let i = 0; i < Math.min(max, candidates.length); i++) {
      const c = candidates[(offset + i) % candidates.length];
      if (c !== undefined) chosen.push(c);
    }
    const claimValue = JSON.stringify({ consumer: this.id, at: Date.now() });
    // Small transactions in parallel: a message another consumer won costs only its own chunk,
    // which is skipped (the next claim looks again), never retried one by one.
    const chunks: IKeyValue[][] = [];
    for (let i = 0; i < chosen.length; i += CLAIM_CHUNK)
      chunks.push(chosen.slice(i, i + CLAIM_CHUNK));
    const names = chosen.map((kv) => kv.key.toString().slice(this.ctx.layout.messages.length));
    for (const name of names) this.claiming.add(name);
    try {
      return await this.claimChunks(chunks, leaseId, claimValue);
    } finally {
      for (const name of names) this.claiming.delete(name);
    }
  }

  /** Claims the chunks (a Txn each, in parallel) and holds what they won. */
  private async claimChunks(
    chunks: readonly IKeyValue[][],
    leaseId: string,
    claimValue: string,
  ): Promise<Delivery[]> {
    const results: { kv: IKeyValue; revision: string; message: IKeyValue | undefined }[] = [];
    const settled = await Promise.allSettled(
      chunks.map((chunk) => this.claimTxn(chunk, leaseId, claimValue)),
    );
    // A claim Txn that failed (a deadline, a member that hung or died) may have committed all the
    // same: its claims would sit on this consumer's live session lease with nobody working on the
    // messages, in flight for as long as the process lives. They are released before anything else.
    const failed = settled.flatMap((r, c) => (r.status === 'rejected' ? [c] : []));
    for (const c of failed) {
      for (const kv of chunks[c] ?? []) {
        const name = kv.key.toString().slice(this.ctx.layout.messages.length);
        this.uncertain.set(this.ctx.layout.claim(name), claimValue);
      }
    }
    const answers = settled.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    if (answers.every((a) => a === undefined)) {
      const first = settled.find((r) => r.status === 'rejected');
      throw first?.status === 'rejected' ? first.reason : new Error('no claim answered');
    }
    answers.forEach((res, c) => {
      if (res?.succeeded !== true) return;
      (chunks[c] ?? []).forEach((kv, j) => {
        results.push({
          kv,
          revision: res.header.revision,
          message: res.responses[2 * j + 1]?.response_range.kvs[0],
        });
      });
    });
    const deliveries: Delivery[] = [];
    const now = Date.now();
    // What cannot be delivered (a message gone meanwhile, a body that cannot be decoded) is dealt
    // with after the rest is held and handed over: an etcd failure there must not lose the
    // deliveries of this claim (held, claimed, never returned, until the process ends).
    const leftOver: (() => Promise<unknown>)[] = [];
    for (const { kv, revision, message } of results) {
      const messageKey = kv.key.toString();
      const name = messageKey.slice(this.ctx.layout.messages.length);
      const claimKey = this.ctx.layout.claim(name);
      if (message === undefined) {
        leftOver.push(() =>
          this.ctx.kv.txn([modIs(claimKey, revision)], [deleteOp(claimKey)], [], 'drop claim'),
        );
        continue;
      }
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(message.value);
      } catch (err) {
        const why = describeError(err);
        leftOver.push(() =>
          this.bury(name, messageKey, claimKey, revision, why, 0, undefined, message.value),
        );
        continue;
      }
      this.held.set(name, {
        messageKey,
        claimKey,
        claimRevision: revision,
        messageLease: message.lease,
        envelope,
      });
      deliveries.push({ id: name, envelope, attempt: envelope.attempt + 1, claimedAt: now });
    }
    for (const step of leftOver) {
      try {
        await step();
      } catch (err) {
        // Its claim stays on this consumer's session, held by nobody: the orphan scan releases
        // it (every ORPHAN_SCAN_MS), and the message is claimed and dealt with again.
        this.ctx.logger.warn(
          { consumer: this.id, err: describeError(err) },
          'could not dead-letter or drop a claimed message; its claim is released and it is tried again',
        );
      }
    }
    return deliveries;
  }

  private claimTxn(
    chunk: readonly IKeyValue[],
    leaseId: string,
    value: string,
  ): Promise<ITxnResponse> {
    const compare = chunk.flatMap((kv) => {
      const name = kv.key.toString().slice(this.ctx.layout.messages.length);
      return [absent(this.ctx.layout.claim(name)), modIs(kv.key.toString(), kv.mod_revision)];
    });
    const success = chunk.flatMap((kv) => {
      const name = kv.key.toString().slice(this.ctx.layout.messages.length);
      return [putOp(this.ctx.layout.claim(name), value, leaseId), getOp(kv.key.toString())];
    });
    return this.ctx.kv.txn(compare, success, [], 'claim');
  }

  /** Claimed messages met at the head of the queue last time: list that many more next time. */
  private headClaimed = 0;

  /** Lists up to `want` messages that nobody has claimed, in key (time) order. */
  private async listUnclaimed(want: number): Promise<IKeyValue[]> {
    const { layout, kv } = this.ctx;
    const out: IKeyValue[] = [];
    let start = key(layout.messages);
    const end = prefixEnd(layout.messages);
    let claimedSeen = 0;
    for (let page = 0; page < 8 && out.length < want; page++) {
      const res = await kv.range(
        {
          key: start,
          range_end: end,
          limit: want - out.length + this.headClaimed,
          keys_only: true,
        },
        'list',
      );
      const first = res.kvs[0];
      const last = res.kvs[res.kvs.length - 1];
      if (first === undefined || last === undefined) break;
      const firstName = first.key.toString().slice(layout.messages.length);
      const lastName = last.key.toString().slice(layout.messages.length);
      const claims = await kv.range(
        {
          key: key(layout.claim(firstName)),
          range_end: Buffer.concat([key(layout.claim(lastName)), Buffer.from([0])]),
          keys_only: true,
        },
        'list claims',
      );
      const claimed = new Set(claims.kvs.map((c) => c.key.toString().slice(layout.claims.length)));
      claimedSeen += claimed.size;
      for (const m of res.kvs) {
        if (!claimed.has(m.key.toString().slice(layout.messages.length))) out.push(m);
      }
      if (!res.more) break;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
    this.headClaimed = Math.min(10_000, claimedSeen);
    return out;
  }

  async ack(deliveries: readonly Delivery[]): Promise<AckResult> {
    const acked: string[] = [];
    const lost: string[] = [];
    const items: [string, Held][] = [];
    for (const d of deliveries) {
      const h = this.held.get(d.id);
      if (h === undefined) lost.push(d.id);
      else items.push([d.id, h]);
    }
    for (let i = 0; i < items.length; i += ACK_BATCH_MAX) {
      const chunk = items.slice(i, i + ACK_BATCH_MAX);
      const res = await this.ctx.kv.txn(
        chunk.map(([, h]) => modIs(h.claimKey, h.claimRevision)),
        chunk.flatMap(([, h]) => [deleteOp(h.messageKey), deleteOp(h.claimKey)]),
        [],
        'ack',
      );
      if (res.succeeded) {
        for (const [id] of chunk) {
          acked.push(id);
          this.held.delete(id);
        }
        continue;
      }
      // Each on its own; every answer is taken into account before a failure is thrown, so that no
      // message acked here stays held (a retry of the call reports it lost: it was acked).
      const singles = await Promise.allSettled(
        chunk.map(async ([id, h]) => {
          const one = await this.ctx.kv.txn(
            [modIs(h.claimKey, h.claimRevision)],
            [deleteOp(h.messageKey), deleteOp(h.claimKey)],
            [],
            'ack',
          );
          return { id, ok: one.succeeded };
        }),
      );
      let failure: { reason: unknown } | undefined;
      for (const single of singles) {
        if (single.status === 'rejected') {
          failure ??= { reason: single.reason };
          continue;
        }
        const { id, ok } = single.value;
        (ok ? acked : lost).push(id);
        this.held.delete(id);
      }
      if (failure !== undefined) throw failure.reason;
    }
    if (lost.length > 0) {
      this.ctx.logger.warn(
        { consumer: this.id, lost: lost.length },
        'ack found claims that had lapsed',
      );
    }
    return { acked, lost };
  }

  async settle(delivery: Delivery, rejected: readonly RejectedRecord[]): Promise<'acked' | 'lost'> {
    if (rejected.length === 0) {
      const res = await this.ack([delivery]);
      return res.acked.length === 1 ? 'acked' : 'lost';
    }
    const h = this.held.get(delivery.id);
    if (h === undefined) return 'lost';
    const now = Date.now();
    const groups = groupRejected(h.envelope, rejected);
    /** Each group's dead letter: its name, its value, and the body it could not keep, if any. */
    const letters = (of: readonly RejectedGroup[], compressed: boolean) =>
      of.map((g) => ({
        name: `${delivery.id}${g.suffix}`,
        ...deadLetterValue({
          reason: g.reason,
          attempts: h.envelope.attempt + 1,
          deadAt: now,
          consumer: this.id,
          envelope: g.envelope,
          raw: undefined,
          compressed,
        }),
      }));
    // Bytes of the dead letters' puts in the transaction: values, keys, and each op's framing.
    const bytes = (ls: readonly { name: string; value: string }[]): number =>
      ls.reduce(
        (n, l) =>
          n +
          Buffer.byteLength(l.value) +
          Buffer.byteLength(this.ctx.layout.deadLetter(l.name)) +
          16,
        0,
      );
    // One transaction for them all, which must fit one etcd request: each group kept as its
    // compressed body when, kept as JSON, they would not (up to 100 groups: reasons can differ
    // reading by reading).
    let written = letters(groups, false);
    if (bytes(written) > SETTLE_INLINE_MAX) written = letters(groups, true);
    // Still too large (groups sharing many series, each repeating their identities): the whole
    // message as one dead letter, which fits (MAX_MESSAGE_BYTES).
    if (bytes(written) > DEAD_LETTER_MAX_BYTES)
      written = letters([wholeMessageGroup(h.envelope, rejected, groups)], true);
    const dead = written.map((l) => putOp(this.ctx.layout.deadLetter(l.name), l.value));
    const res = await this.ctx.kv.txn(
      [modIs(h.claimKey, h.claimRevision)],
      [deleteOp(h.messageKey), deleteOp(h.claimKey), ...dead],
      [],
      'settle',
    );
    this.held.delete(delivery.id);
    if (res.succeeded) {
      this.ctx.logger.warn(
        {
          consumer: this.id,
          message: delivery.id,
          rejected: rejected.length,
          reasons: [...new Set(rejected.map((r) => r.reason))],
        },
        'refused records (out of bounds, or refused by the database) were dead-lettered; the rest of the message was stored',
      );
      for (const l of written)
        if (l.omitted !== undefined) logOmitted(this.ctx.logger, l.name, l.omitted);
    }
    return res.succeeded ? 'acked' : 'lost';
  }

  async nack(delivery: Delivery, reason: string, options: NackOptions = {}): Promise<NackOutcome> {
    const h = this.held.get(delivery.id);
    if (h === undefined) return 'lost';
    const attempt = h.envelope.attempt + 1;
    const { maxAttempts, retry } = this.ctx.options;
    const name = delivery.id;
    if (options.retryable === false || attempt >= maxAttempts) {
      const why = options.retryable === false ? reason : `${reason} (after ${attempt} attempts)`;
      const ok = await this.bury(
        name,
        h.messageKey,
        h.claimKey,
        h.claimRevision,
        why,
        attempt,
        h.envelope,
        undefined,
      );
      this.held.delete(name);
      return ok ? 'dead' : 'lost';
    }
    const due = Date.now() + backoffDelay(retry, attempt);
    const body = encodeEnvelopeAgain(
      { ...h.envelope, attempt, lastError: reason.slice(0, 2000) },
      this.ctx.compression,
      this.ctx.maxMessageBytes,
    );
    const move = (lease: string | undefined): Promise<ITxnResponse> =>
      this.ctx.kv.txn(
        [modIs(h.claimKey, h.claimRevision)],
        [
          deleteOp(h.messageKey),
          deleteOp(h.claimKey),
          putOp(this.ctx.layout.delayedKey(due, name), body, lease),
        ],
        [],
        'nack',
      );
    let res: ITxnResponse;
    try {
      res = await move(h.messageLease);
    } catch (err) {
      if (h.messageLease === '0' || !isLeaseNotFound(err)) throw err;
      res = await move(undefined);
    }
    this.held.delete(name);
    return res.succeeded ? 'retry' : 'lost';
  }

  /** Moves a held message to the dead-letter prefix, fenced by its claim. */
  private async bury(
    name: string,
    messageKey: string,
    claimKey: string,
    claimRevision: string,
    reason: string,
    attempts: number,
    envelope: Envelope | undefined,
    raw: Buffer | undefined,
  ): Promise<boolean> {
    const { value, omitted } = deadLetterValue({
      reason,
      attempts,
      deadAt: Date.now(),
      consumer: this.id,
      envelope,
      raw,
    });
    const res = await this.ctx.kv.txn(
      [modIs(claimKey, claimRevision)],
      [deleteOp(messageKey), deleteOp(claimKey), putOp(this.ctx.layout.deadLetter(name), value)],
      [],
      'dead-letter',
    );
    if (res.succeeded) {
      this.ctx.logger.warn(
        { consumer: this.id, message: name, reason, attempts },
        'message dead-lettered',
      );
      if (omitted !== undefined) logOmitted(this.ctx.logger, name, omitted);
    }
    return res.succeeded;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.held.clear();
    this.ctx.onClose(this);
    await this.session.close(true);
  }

  /** Stops without releasing anything, as a crashed process would. For tests. */
  abandon(): void {
    this.closed = true;
    this.held.clear();
    this.ctx.onClose(this);
    this.session.abandon();
  }
}

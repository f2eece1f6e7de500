import { backoffDelay } from '../../core/backoff.js';
import { NexusError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { QueueConflict } from '../conflict.js';
import { envelopeProblem, type Envelope } from '../envelope.js';
import { groupRejected } from '../rejected.js';
import { messageNameOf } from '../names.js';
import { randomSuffix, type QueueOptions } from '../options.js';
import type {
  AckResult,
  ClaimOptions,
  Consumer,
  ConsumerOptions,
  DeadLetter,
  DeadLetterPage,
  Delivery,
  LaneCheckpoint,
  LaneState,
  NackOptions,
  NackOutcome,
  RejectedRecord,
  PublishReceipt,
  Queue,
  QueueStats,
  StreamHandle,
} from '../types.js';
import { Waker } from '../waker.js';

interface Stored {
  envelope: Envelope;
  readonly createdAt: number;
  readonly expiresAt: number;
  claim: { readonly consumer: MemoryConsumer; readonly token: number } | undefined;
}

interface Delayed {
  readonly name: string;
  readonly due: number;
  readonly envelope: Envelope;
  readonly expiresAt: number;
}

interface StreamState {
  owner: string | undefined;
  ownerToken: number;
  meta: LaneState | undefined;
  readonly lanes: Map<number, { state: LaneState; token: number }>;
}

/**
 * The embedded queue: the same semantics as the etcd queue (claims, fenced acks, session leases,
 * retries with backoff, dead letters, message TTL, fenced stream checkpoints), in one process, in
 * memory. It passes the same conformance suite. Envelopes are passed by reference: a producer must
 * not change an envelope after publishing it.
 */
export class MemoryQueue implements Queue {
  readonly backend = 'memory' as const;
  readonly clusterId: string;
  private readonly messages = new Map<string, Stored>();
  /** Message names in key order; names no longer in `messages` are skipped and compacted away. */
  private order: string[] = [];
  private head = 0;
  private readonly delayed = new Map<string, Delayed>();
  private readonly dead = new Map<string, DeadLetter>();
  private readonly streams = new Map<string, StreamState>();
  private readonly consumers = new Set<MemoryConsumer>();
  private readonly waker = new Waker();
  private readonly logger: Logger;
  private readonly ticker: NodeJS.Timeout;
  private tokens = 0;
  private expiredCount = 0;
  private lastExpirySweep = 0;
  private closed = false;

  constructor(readonly options: QueueOptions) {
    this.clusterId = options.clusterId;
    this.logger = options.logger.child({ queue: 'memory' });
    this.ticker = setInterval(() => this.tick(), 100);
    this.ticker.unref();
  }

  private ensureOpen(): void {
    if (this.closed) throw new NexusError('QUEUE_CLOSED', 'queue is closed');
  }

  private nextToken(): number {
    return ++this.tokens;
  }

  private insert(name: string, stored: Stored): void {
    this.messages.set(name, stored);
    const last = this.order[this.order.length - 1];
    if (last === undefined || name >= last || this.order.length === this.head) {
      this.order.push(name);
    } else {
      let lo = this.head;
      let hi = this.order.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((this.order[mid] ?? '') < name) lo = mid + 1;
        else hi = mid;
      }
      this.order.splice(lo, 0, name);
    }
    this.waker.notify();
  }

  private compact(): void {
    while (this.head < this.order.length && !this.messages.has(this.order[this.head] ?? ''))
      this.head++;
    if (this.head > 1024 && this.head > this.order.length / 2) {
      this.order = this.order.slice(this.head).filter((n) => this.messages.has(n));
      this.head = 0;
    }
  }

  async publish(envelope: Envelope): Promise<PublishReceipt> {
    this.ensureOpen();
    const name = messageNameOf(envelope);
    if (this.messages.has(name) || this.delayed.has(name)) {
      throw new QueueConflict('exists', `message ${name} already exists`);
    }
    const now = Date.now();
    this.insert(name, {
      envelope,
      createdAt: now,
      expiresAt: now + this.options.messageTtlMs,
      claim: undefined,
    });
    return { id: name };
  }

  async openStream(streamId: string, owner: string): Promise<StreamHandle> {
    this.ensureOpen();
    let s = this.streams.get(streamId);
    if (s === undefined) {
      s = { owner: undefined, ownerToken: 0, meta: undefined, lanes: new Map() };
      this.streams.set(streamId, s);
    }
    if (s.owner !== undefined) {
      throw new NexusError(
        'STREAM_OWNED',
        `stream ${streamId} is held by another streamer (${s.owner})`,
      );
    }
    s.owner = owner;
    s.ownerToken = this.nextToken();
    return new MemoryStream(this, streamId, s, s.ownerToken);
  }

  /** Publishes under a stream fence; used by MemoryStream. */
  fencedPublish(
    s: StreamState,
    ownerToken: number,
    envelope: Envelope,
    lane: number,
    expect: string | null,
    state: LaneState,
  ): string {
    this.ensureOpen();
    if (s.ownerToken !== ownerToken || s.owner === undefined) {
      throw new NexusError('STREAM_OWNED', 'lost ownership of the stream');
    }
    const current = s.lanes.get(lane);
    if (String(current?.token ?? 0) !== (expect ?? '0')) {
      throw new QueueConflict('lane-moved', `lane ${lane} moved`, {
        state: current?.state,
        token: current === undefined ? undefined : String(current.token),
      });
    }
    const name = messageNameOf(envelope);
    if (this.messages.has(name) || this.delayed.has(name)) {
      throw new QueueConflict('exists', `message ${name} already exists`);
    }
    const now = Date.now();
    const token = this.nextToken();
    s.lanes.set(lane, { state, token });
    this.insert(name, {
      envelope,
      createdAt: now,
      expiresAt: now + this.options.messageTtlMs,
      claim: undefined,
    });
    return String(token);
  }

  async consumer(options: ConsumerOptions = {}): Promise<Consumer> {
    return this.memoryConsumer(options.name);
  }

  /** The same as consumer(), typed as the memory consumer (tests use its abandon()). */
  memoryConsumer(name = 'consumer'): MemoryConsumer {
    this.ensureOpen();
    const c = new MemoryConsumer(`${name}-${randomSuffix()}`, this);
    this.consumers.add(c);
    return c;
  }

  /** Claims for a consumer: in key order, skipping claimed messages. */
  take(consumer: MemoryConsumer, max: number): Delivery[] {
    this.compact();
    const out: Delivery[] = [];
    const now = Date.now();
    for (let i = this.head; i < this.order.length && out.length < max; i++) {
      const name = this.order[i] ?? '';
      const m = this.messages.get(name);
      if (m === undefined || m.claim !== undefined) continue;
      const problem = envelopeProblem(m.envelope);
      if (problem !== undefined) {
        this.bury(name, m.envelope, problem, m.envelope.attempt);
        continue;
      }
      const token = this.nextToken();
      m.claim = { consumer, token };
      consumer.held.set(name, token);
      out.push({ id: name, envelope: m.envelope, attempt: m.envelope.attempt + 1, claimedAt: now });
    }
    return out;
  }

  holds(consumer: MemoryConsumer, name: string): Stored | undefined {
    const token = consumer.held.get(name);
    const m = this.messages.get(name);
    if (
      token === undefined ||
      m === undefined ||
      m.claim?.token !== token ||
      m.claim.consumer !== consumer
    ) {
      return undefined;
    }
    return m;
  }

  remove(name: string): void {
    this.messages.delete(name);
  }

  retryLater(name: string, m: Stored, reason: string): void {
    const attempt = m.envelope.attempt + 1;
    this.messages.delete(name);
    const due = Date.now() + backoffDelay(this.options.retry, attempt);
    this.delayed.set(name, {
      name,
      due,
      envelope: { ...m.envelope, attempt, lastError: reason.slice(0, 2000) },
      expiresAt: m.expiresAt,
    });
  }

  bury(name: string, envelope: Envelope, reason: string, attempts: number): void {
    this.messages.delete(name);
    this.delayed.delete(name);
    const valid = envelopeProblem(envelope) === undefined;
    this.dead.set(name, {
      id: name,
      reason,
      attempts,
      deadAt: Date.now(),
      records: valid ? envelope.records.length : 0,
      envelope: valid ? envelope : undefined,
    });
    this.logger.warn({ message: name, reason, attempts }, 'message dead-lettered');
  }

  waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
    let wait = Math.min(ms, this.options.pollTimeoutMs);
    let nextDue: number | undefined;
    for (const d of this.delayed.values())
      if (nextDue === undefined || d.due < nextDue) nextDue = d.due;
    if (nextDue !== undefined) wait = Math.min(wait, Math.max(10, nextDue - Date.now()));
    return this.waker.wait(wait, signal);
  }

  /** Promotes due retries, expires old messages into the dead letters, and ends dead sessions. */
  private tick(): void {
    const now = Date.now();
    for (const d of [...this.delayed.values()]) {
      if (d.expiresAt <= now) {
        this.delayed.delete(d.name);
        this.expire(d.name, d.envelope);
      } else if (d.due <= now) {
        this.delayed.delete(d.name);
        this.insert(d.name, {
          envelope: d.envelope,
          createdAt: d.envelope.createdAt,
          expiresAt: d.expiresAt,
          claim: undefined,
        });
      }
    }
    for (const c of this.consumers) {
      if (c.expired(now)) this.endSession(c);
    }
    if (now - this.lastExpirySweep >= 1000) this.sweepExpired(now);
  }

  /**
   * Moves messages whose TTL has run out by `now` into the dead letters, counted. (Runs every
   * second; tests call it with a future time.)
   */
  sweepExpired(now = Date.now()): number {
    this.lastExpirySweep = Date.now();
    let n = 0;
    for (const [name, m] of [...this.messages]) {
      if (m.expiresAt <= now && m.claim === undefined) {
        this.expire(name, m.envelope);
        n++;
      }
    }
    for (const d of [...this.delayed.values()]) {
      if (d.expiresAt <= now) {
        this.delayed.delete(d.name);
        this.expire(d.name, d.envelope);
        n++;
      }
    }
    return n;
  }

  private expire(name: string, envelope: Envelope): void {
    this.expiredCount++;
    this.bury(
      name,
      envelope,
      'message TTL expired before the message was consumed',
      envelope.attempt,
    );
  }

  /** Releases every claim of a consumer (its session ended). */
  endSession(c: MemoryConsumer): void {
    this.consumers.delete(c);
    let released = 0;
    for (const name of c.held.keys()) {
      const m = this.messages.get(name);
      if (m?.claim?.consumer === c) {
        m.claim = undefined;
        released++;
      }
    }
    c.held.clear();
    if (released > 0) {
      // The released messages may sit before `head` no longer; rescan from the start.
      this.head = 0;
      this.waker.notify();
    }
  }

  depth(): Promise<number> {
    return Promise.resolve(this.messages.size);
  }

  stats(): Promise<QueueStats> {
    let inFlight = 0;
    let oldest: number | undefined;
    this.compact();
    const head = this.messages.get(this.order[this.head] ?? '');
    for (const m of this.messages.values()) if (m.claim !== undefined) inFlight++;
    if (head !== undefined) oldest = head.envelope.createdAt;
    return Promise.resolve({
      ready: this.messages.size - inFlight,
      inFlight,
      delayed: this.delayed.size,
      dead: this.dead.size,
      expired: this.expiredCount,
      oldestCreatedAt: oldest,
    });
  }

  /**
   * What it holds, and what would be lost if the process ended now: the messages ready, claimed or
   * waiting for a retry, and their records (dead letters not counted).
   */
  held(): { messages: number; records: number } {
    let records = 0;
    for (const m of this.messages.values()) records += m.envelope.records.length;
    for (const d of this.delayed.values()) records += d.envelope.records.length;
    return { messages: this.messages.size + this.delayed.size, records };
  }

  listDeadLetters(options: { limit?: number; after?: string } = {}): Promise<DeadLetterPage> {
    const limit = Math.max(1, Math.min(options.limit ?? 100, 1000));
    const ids = [...this.dead.keys()]
      .sort()
      .filter((id) => options.after === undefined || id > options.after);
    const page = ids.slice(0, limit);
    const items = page
      .map((id) => this.dead.get(id))
      .filter((d): d is DeadLetter => d !== undefined);
    return Promise.resolve({ items, next: ids.length > limit ? page[page.length - 1] : undefined });
  }

  replayDeadLetters(ids: readonly string[] | 'all'): Promise<number> {
    let n = 0;
    const list = ids === 'all' ? [...this.dead.keys()] : ids;
    const now = Date.now();
    for (const id of list) {
      const d = this.dead.get(id);
      if (d?.envelope === undefined || this.messages.has(id)) continue;
      this.dead.delete(id);
      const { lastError: _dropped, ...rest } = d.envelope;
      this.insert(id, {
        envelope: { ...rest, attempt: 0 },
        createdAt: now,
        expiresAt: now + this.options.messageTtlMs,
        claim: undefined,
      });
      n++;
    }
    return Promise.resolve(n);
  }

  purgeDeadLetters(ids: readonly string[] | 'all'): Promise<number> {
    if (ids === 'all') {
      const n = this.dead.size;
      this.dead.clear();
      return Promise.resolve(n);
    }
    let n = 0;
    for (const id of ids) if (this.dead.delete(id)) n++;
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      clearInterval(this.ticker);
      for (const c of [...this.consumers]) c.markClosed();
      this.consumers.clear();
      this.waker.notify();
    }
    return Promise.resolve();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get maxAttempts(): number {
    return this.options.maxAttempts;
  }
}

export class MemoryConsumer implements Consumer {
  readonly held = new Map<string, number>();
  private lastBeat = Date.now();
  private closed = false;
  private abandoned = false;
  private readonly beat: NodeJS.Timeout;

  constructor(
    readonly id: string,
    private readonly queue: MemoryQueue,
  ) {
    const every = Math.max(10, Math.floor(queue.options.leaseTtlMs / 3));
    this.beat = setInterval(() => {
      this.lastBeat = Date.now();
    }, every);
    this.beat.unref();
  }

  get healthy(): boolean {
    return !this.closed && !this.queue.isClosed;
  }

  expired(now: number): boolean {
    return this.abandoned && now - this.lastBeat > this.queue.options.leaseTtlMs;
  }

  async claim(max: number, options: ClaimOptions): Promise<Delivery[]> {
    const deadline = Date.now() + options.waitMs;
    for (;;) {
      if (this.closed || this.queue.isClosed)
        throw new NexusError('QUEUE_CLOSED', `consumer ${this.id} is closed`);
      const got = this.queue.take(this, max);
      if (got.length > 0) return got;
      const now = Date.now();
      if (now >= deadline || options.signal?.aborted === true) return [];
      await this.queue.waitForWork(deadline - now, options.signal);
    }
  }

  ack(deliveries: readonly Delivery[]): Promise<AckResult> {
    const acked: string[] = [];
    const lost: string[] = [];
    for (const d of deliveries) {
      if (this.queue.holds(this, d.id) !== undefined) {
        this.queue.remove(d.id);
        acked.push(d.id);
      } else {
        lost.push(d.id);
      }
      this.held.delete(d.id);
    }
    return Promise.resolve({ acked, lost });
  }

  async settle(delivery: Delivery, rejected: readonly RejectedRecord[]): Promise<'acked' | 'lost'> {
    const m = this.queue.holds(this, delivery.id);
    this.held.delete(delivery.id);
    if (m === undefined) return 'lost';
    this.queue.remove(delivery.id);
    for (const g of groupRejected(m.envelope, rejected)) {
      this.queue.bury(`${delivery.id}${g.suffix}`, g.envelope, g.reason, m.envelope.attempt + 1);
    }
    return 'acked';
  }

  nack(delivery: Delivery, reason: string, options: NackOptions = {}): Promise<NackOutcome> {
    const m = this.queue.holds(this, delivery.id);
    this.held.delete(delivery.id);
    if (m === undefined) return Promise.resolve('lost');
    const attempt = m.envelope.attempt + 1;
    if (options.retryable === false || attempt >= this.queue.maxAttempts) {
      const why = options.retryable === false ? reason : `${reason} (after ${attempt} attempts)`;
      this.queue.bury(delivery.id, { ...m.envelope, attempt }, why, attempt);
      return Promise.resolve('dead');
    }
    this.queue.retryLater(delivery.id, m, reason);
    return Promise.resolve('retry');
  }

  markClosed(): void {
    this.closed = true;
    clearInterval(this.beat);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.markClosed();
      this.queue.endSession(this);
    }
    return Promise.resolve();
  }

  /** Stops heartbeating without releasing claims, as a crashed process would. For tests. */
  abandon(): void {
    this.closed = true;
    this.abandoned = true;
    clearInterval(this.beat);
  }
}

class MemoryStream implements StreamHandle {
  constructor(
    private readonly queue: MemoryQueue,
    readonly streamId: string,
    private readonly s: StreamState,
    private readonly ownerToken: number,
  ) {}

  private check(): void {
    if (this.s.ownerToken !== this.ownerToken || this.s.owner === undefined) {
      throw new NexusError('STREAM_OWNED', `lost ownership of stream ${this.streamId}`);
    }
  }

  async readMeta(): Promise<LaneState | undefined> {
    return this.s.meta;
  }

  async writeMeta(meta: LaneState): Promise<void> {
    this.check();
    this.s.meta = meta;
  }

  async readLanes(): Promise<LaneCheckpoint[]> {
    return [...this.s.lanes.entries()].map(([lane, v]) => ({
      lane,
      state: v.state,
      token: String(v.token),
    }));
  }

  async publish(
    envelope: Envelope,
    lane: number,
    expectToken: string | null,
    state: LaneState,
  ): Promise<string> {
    return this.queue.fencedPublish(this.s, this.ownerToken, envelope, lane, expectToken, state);
  }

  async reset(): Promise<void> {
    this.check();
    this.s.meta = undefined;
    this.s.lanes.clear();
  }

  async release(): Promise<void> {
    if (this.s.ownerToken === this.ownerToken) this.s.owner = undefined;
  }
}

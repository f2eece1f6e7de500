import { backoffDelay } from '../../core/backoff.js';
import { NexusError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { QueueConflict } from '../conflict.js';
import { envelopeProblem, type Envelope } from '../envelope.js';
import { headMessage } from '../head.js';
import { messageNameOf } from '../names.js';
import { pageLimit, randomSuffix, type QueueOptions } from '../options.js';
import type {
  Consumer,
  ConsumerOptions,
  DeadLetter,
  DeadLetterPage,
  MessagePage,
  PublishReceipt,
  QueuedMessage,
  Queue,
  QueueStats,
  StreamHandle,
} from '../types.js';
import { Waker } from '../waker.js';
import { MemoryConsumer, type Claim, type ClaimHost } from './consumer.js';
import { MemoryStreamRecord, type StreamHost } from './stream.js';

interface Stored {
  envelope: Envelope;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The token of the claim that holds the message, if one does. */
  claim: number | undefined;
}

interface Delayed {
  readonly name: string;
  readonly due: number;
  readonly envelope: Envelope;
  readonly expiresAt: number;
}

/** One page of `all`, in cursor order, after `options.after` (1 to 1,000 items, default 100). */
function pageOf<T>(
  all: readonly { readonly cursor: string; readonly item: T }[],
  options: { limit?: number; after?: string },
): { items: T[]; next: string | undefined } {
  const limit = pageLimit(options.limit);
  const rest = all
    .filter((x) => options.after === undefined || x.cursor > options.after)
    .sort((a, b) => (a.cursor < b.cursor ? -1 : a.cursor > b.cursor ? 1 : 0));
  const page = rest.slice(0, limit);
  return {
    items: page.map((x) => x.item),
    next: rest.length > limit ? page[page.length - 1]?.cursor : undefined,
  };
}

/**
 * The embedded queue: the same semantics as the etcd queue (claims, fenced acks, session leases,
 * retries with backoff, dead letters, message TTL, fenced stream checkpoints), in one process, in
 * memory. It passes the same conformance suite. Envelopes are passed by reference: a producer must
 * not change an envelope after publishing it. Its consumers (consumer.ts) and streams (stream.ts)
 * reach it through the narrow interfaces they declare, ClaimHost and StreamHost.
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
  private readonly streams = new Map<string, MemoryStreamRecord>();
  private readonly consumers = new Set<MemoryConsumer>();
  private readonly waker = new Waker();
  private readonly logger: Logger;
  private readonly ticker: NodeJS.Timeout;
  private tokens = 0;
  private expiredCount = 0;
  private lastExpirySweep = 0;
  private closed = false;

  /** What consumers see of the queue. */
  private readonly claimHost: ClaimHost;
  /** What streams see of the queue. */
  private readonly streamHost: StreamHost;

  constructor(private readonly options: QueueOptions) {
    this.clusterId = options.clusterId;
    this.logger = options.logger.child({ queue: 'memory' });
    this.ticker = setInterval(() => this.tick(), 100);
    this.ticker.unref();
    this.claimHost = {
      leaseTtlMs: options.leaseTtlMs,
      maxAttempts: options.maxAttempts,
      isClosed: () => this.closed,
      take: (max) => this.take(max),
      waitForWork: (ms, signal) => this.waitForWork(ms, signal),
      claimed: (id, token) => this.claimed(id, token),
      remove: (id) => {
        this.messages.delete(id);
      },
      retryLater: (id, reason) => this.retryLater(id, reason),
      bury: (id, envelope, reason, attempts) => this.bury(id, envelope, reason, attempts),
      endSession: (consumer, claims) => this.endSession(consumer, claims),
    };
    this.streamHost = {
      checkOpen: () => this.ensureOpen(),
      nextToken: () => this.nextToken(),
      add: (envelope) => {
        this.add(envelope);
      },
    };
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

  /** Adds a new message, unless one of that name is already there (ready, claimed or delayed). */
  private add(envelope: Envelope): string {
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
    return name;
  }

  async publish(envelope: Envelope): Promise<PublishReceipt> {
    this.ensureOpen();
    return { id: this.add(envelope) };
  }

  async openStream(streamId: string, owner: string): Promise<StreamHandle> {
    this.ensureOpen();
    let s = this.streams.get(streamId);
    if (s === undefined) {
      s = new MemoryStreamRecord(streamId, this.streamHost);
      this.streams.set(streamId, s);
    }
    return s.open(owner);
  }

  async consumer(options: ConsumerOptions = {}): Promise<Consumer> {
    return this.memoryConsumer(options.name);
  }

  /** The same as consumer(), typed as the memory consumer (tests use its abandon()). */
  memoryConsumer(name = 'consumer'): MemoryConsumer {
    this.ensureOpen();
    const c = new MemoryConsumer(`${name}-${randomSuffix()}`, this.claimHost);
    this.consumers.add(c);
    return c;
  }

  /** Claims for a consumer: in key order, skipping claimed messages. */
  private take(max: number): Claim[] {
    this.compact();
    const out: Claim[] = [];
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
      m.claim = token;
      out.push({
        delivery: {
          id: name,
          envelope: m.envelope,
          attempt: m.envelope.attempt + 1,
          claimedAt: now,
        },
        token,
      });
    }
    return out;
  }

  /** The message claimed under `token` (tokens are unique to one claim of one consumer). */
  private claimed(name: string, token: number): Envelope | undefined {
    const m = this.messages.get(name);
    return m !== undefined && m.claim === token ? m.envelope : undefined;
  }

  private retryLater(name: string, reason: string): void {
    const m = this.messages.get(name);
    if (m === undefined) return;
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

  private bury(name: string, envelope: Envelope, reason: string, attempts: number): void {
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

  private waitForWork(ms: number, signal?: AbortSignal): Promise<void> {
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
      if (c.expired(now)) c.endSession();
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

  /** A consumer's session ended: forgets it and releases the claims it held. */
  private endSession(c: MemoryConsumer, claims: ReadonlyMap<string, number>): void {
    this.consumers.delete(c);
    let released = 0;
    for (const [name, token] of claims) {
      const m = this.messages.get(name);
      if (m !== undefined && m.claim === token) {
        m.claim = undefined;
        released++;
      }
    }
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
    const name = this.order[this.head] ?? '';
    const head = this.messages.get(name);
    for (const m of this.messages.values()) if (m.claim !== undefined) inFlight++;
    if (head !== undefined) oldest = head.envelope.createdAt;
    return Promise.resolve({
      ready: this.messages.size - inFlight,
      inFlight,
      delayed: this.delayed.size,
      dead: this.dead.size,
      expired: this.expiredCount,
      lostLeases: 0,
      oldestCreatedAt: oldest,
      head: head === undefined ? undefined : headMessage(name, head.envelope),
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
    const { items, next } = pageOf(
      [...this.dead.entries()].map(([id, d]) => ({ cursor: id, item: d })),
      options,
    );
    return Promise.resolve({ items, next });
  }

  listMessages(
    options: { limit?: number; after?: string; delayed?: boolean } = {},
  ): Promise<MessagePage> {
    // Cursors as the etcd queue's: the message's name, a delayed one's `{due13}_{name}`.
    const all: { cursor: string; item: QueuedMessage }[] =
      options.delayed === true
        ? [...this.delayed.values()].map((d) => ({
            cursor: `${String(d.due).padStart(13, '0')}_${d.name}`,
            item: { ...headMessage(d.name, d.envelope), state: 'delayed', due: d.due },
          }))
        : [...this.messages].map(([name, m]) => ({
            cursor: name,
            item: {
              ...headMessage(name, m.envelope),
              state: m.claim === undefined ? 'ready' : 'claimed',
            },
          }));
    return Promise.resolve(pageOf(all, options));
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
}

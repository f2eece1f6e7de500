import { NexusError } from '../../core/errors.js';
import type { Envelope } from '../envelope.js';
import { groupRejected } from '../rejected.js';
import type {
  AckResult,
  ClaimOptions,
  Consumer,
  Delivery,
  NackOptions,
  NackOutcome,
  RejectedRecord,
} from '../types.js';

/** One message claimed for a consumer: the delivery, and the token its claim holds it by. */
export interface Claim {
  readonly delivery: Delivery;
  readonly token: number;
}

/** What a memory consumer asks of its queue (src/queue/memory/queue.ts). */
export interface ClaimHost {
  /** The consumers' session lease (ms). */
  readonly leaseTtlMs: number;
  /** Deliveries of a failing message before it is dead-lettered. */
  readonly maxAttempts: number;
  isClosed(): boolean;
  /** Claims up to `max` ready messages, in key order, skipping claimed ones. */
  take(max: number): Claim[];
  /** Resolves when work may have arrived, after at most `ms`, or when the signal aborts. */
  waitForWork(ms: number, signal?: AbortSignal): Promise<void>;
  /** The message claimed under `token`, or undefined if that claim no longer stands. */
  claimed(id: string, token: number): Envelope | undefined;
  /** Deletes a message (it is done). */
  remove(id: string): void;
  /** Takes a message out of the queue until its next attempt is due (backoff). */
  retryLater(id: string, reason: string): void;
  /** Moves a message into the dead letters. */
  bury(id: string, envelope: Envelope, reason: string, attempts: number): void;
  /** A consumer's session ended: the queue forgets it and its claims are ready again at once. */
  endSession(consumer: MemoryConsumer, claims: ReadonlyMap<string, number>): void;
}

/**
 * A consumer of the memory queue. Its session is a heartbeat: a consumer that stops beating
 * (abandon(), as a crashed process would) loses its claims once the lease runs out.
 */
export class MemoryConsumer implements Consumer {
  /** Messages this consumer claimed, and the token of each claim. */
  private readonly held = new Map<string, number>();
  private lastBeat = Date.now();
  private closed = false;
  private abandoned = false;
  private readonly beat: NodeJS.Timeout;

  constructor(
    readonly id: string,
    private readonly host: ClaimHost,
  ) {
    const every = Math.max(10, Math.floor(host.leaseTtlMs / 3));
    this.beat = setInterval(() => {
      this.lastBeat = Date.now();
    }, every);
    this.beat.unref();
  }

  get healthy(): boolean {
    return !this.closed && !this.host.isClosed();
  }

  /** True once an abandoned consumer's lease has run out. */
  expired(now: number): boolean {
    return this.abandoned && now - this.lastBeat > this.host.leaseTtlMs;
  }

  async claim(max: number, options: ClaimOptions): Promise<Delivery[]> {
    const deadline = Date.now() + options.waitMs;
    for (;;) {
      if (this.closed || this.host.isClosed())
        throw new NexusError('QUEUE_CLOSED', `consumer ${this.id} is closed`);
      const got = this.host.take(max);
      if (got.length > 0) {
        for (const c of got) this.held.set(c.delivery.id, c.token);
        return got.map((c) => c.delivery);
      }
      const now = Date.now();
      if (now >= deadline || options.signal?.aborted === true) return [];
      await this.host.waitForWork(deadline - now, options.signal);
    }
  }

  /** The message of a delivery if this consumer still holds it; lets go of it either way. */
  private letGo(id: string): Envelope | undefined {
    const token = this.held.get(id);
    this.held.delete(id);
    return token === undefined ? undefined : this.host.claimed(id, token);
  }

  ack(deliveries: readonly Delivery[]): Promise<AckResult> {
    const acked: string[] = [];
    const lost: string[] = [];
    for (const d of deliveries) {
      if (this.letGo(d.id) !== undefined) {
        this.host.remove(d.id);
        acked.push(d.id);
      } else {
        lost.push(d.id);
      }
    }
    return Promise.resolve({ acked, lost });
  }

  async settle(delivery: Delivery, rejected: readonly RejectedRecord[]): Promise<'acked' | 'lost'> {
    const token = this.held.get(delivery.id);
    const held = token === undefined ? undefined : this.host.claimed(delivery.id, token);
    if (held === undefined) {
      this.held.delete(delivery.id);
      return 'lost';
    }
    // The dead letters are made before the message is let go of: if making them fails, it is
    // still held (and can be given back), as with etcd, where one transaction does both.
    const groups = groupRejected(held, rejected);
    this.held.delete(delivery.id);
    this.host.remove(delivery.id);
    for (const g of groups) {
      this.host.bury(`${delivery.id}${g.suffix}`, g.envelope, g.reason, held.attempt + 1);
    }
    return 'acked';
  }

  nack(delivery: Delivery, reason: string, options: NackOptions = {}): Promise<NackOutcome> {
    const envelope = this.letGo(delivery.id);
    if (envelope === undefined) return Promise.resolve('lost');
    const attempt = envelope.attempt + 1;
    if (options.retryable === false || attempt >= this.host.maxAttempts) {
      const why = options.retryable === false ? reason : `${reason} (after ${attempt} attempts)`;
      this.host.bury(delivery.id, { ...envelope, attempt }, why, attempt);
      return Promise.resolve('dead');
    }
    this.host.retryLater(delivery.id, reason);
    return Promise.resolve('retry');
  }

  /** Ends the session: every claim this consumer holds is released. */
  endSession(): void {
    this.host.endSession(this, this.held);
    this.held.clear();
  }

  /** The queue closed: stops heartbeating (claims end with the queue). */
  markClosed(): void {
    this.closed = true;
    clearInterval(this.beat);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.markClosed();
      this.endSession();
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

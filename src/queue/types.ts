import type { Envelope } from './envelope.js';

/** One claimed message, held by one consumer until it acks or nacks it. */
export interface Delivery {
  /** The message name: `{timestamp}_{hostname}_{gpu}_{sequence}`, unique within a cluster queue. */
  readonly id: string;
  readonly envelope: Envelope;
  /** Which delivery this is: 1 the first time, then one more after every nack. */
  readonly attempt: number;
  /** When the consumer claimed it (epoch ms). */
  readonly claimedAt: number;
}

export interface AckResult {
  readonly acked: readonly string[];
  /** Deliveries whose claim had lapsed (another consumer may hold them now): not acked. */
  readonly lost: readonly string[];
}

export type NackOutcome = 'retry' | 'dead' | 'lost';

export interface RejectedRecord {
  /** Index of the record in the envelope. */
  readonly index: number;
  readonly reason: string;
}

export interface NackOptions {
  /** False sends the message straight to the dead-letter prefix (a poison message). */
  readonly retryable?: boolean;
}

export interface ClaimOptions {
  /** How long to wait for messages when none is ready (ms). 0 returns at once. */
  readonly waitMs: number;
  readonly signal?: AbortSignal;
}

/**
 * The most messages one `ack` call deletes in one atomic step (etcd: two operations each, 128 to a
 * transaction); a longer list is acked in several.
 */
export const ACK_BATCH_MAX = 64;

export interface Consumer {
  readonly id: string;
  /** Claims up to `max` ready messages; never two consumers the same one. */
  claim(max: number, options: ClaimOptions): Promise<Delivery[]>;
  /** Deletes the messages, atomically per ACK_BATCH_MAX of them, fenced by this consumer's claims. */
  ack(deliveries: readonly Delivery[]): Promise<AckResult>;
  /**
   * Completes a message some of whose records could not be stored: deletes it and puts the
   * rejected records in the dead-letter prefix (one dead letter per reason), in one atomic step,
   * fenced like ack. `rejected` holds record indexes with the reason each was refused.
   */
  settle(delivery: Delivery, rejected: readonly RejectedRecord[]): Promise<'acked' | 'lost'>;
  /** Gives a message back for a retry after a capped exponential delay, or dead-letters it. */
  nack(delivery: Delivery, reason: string, options?: NackOptions): Promise<NackOutcome>;
  /** True while the consumer's session is alive (claims are valid). */
  readonly healthy: boolean;
  /** Releases held claims (the messages return to the queue at once) and ends the session. */
  close(): Promise<void>;
}

export interface ConsumerOptions {
  /** Stable name for logs and claims; a random suffix is added. */
  readonly name?: string;
}

export interface QueueStats {
  /** Messages waiting to be claimed. */
  readonly ready: number;
  /** Messages claimed by a consumer, not yet acked. */
  readonly inFlight: number;
  /** Messages waiting for their retry time. */
  readonly delayed: number;
  readonly dead: number;
  /** Messages the message TTL took out of the queue (moved to the dead letters or lost). */
  readonly expired: number;
  /**
   * Message leases that expired with no consumer sweeping them: the messages still on them were
   * removed by the TTL, how many cannot be known (0 where messages do not expire this way).
   */
  readonly lostLeases: number;
  /** Creation time (epoch ms) of the oldest message in the queue, if any. */
  readonly oldestCreatedAt: number | undefined;
  /** The oldest message in the queue (ready or claimed), if any: what holds the queue's age. */
  readonly head: HeadMessage | undefined;
}

/** A message described without its records (`nexus queue stats`, the runbooks). */
export interface HeadMessage {
  /** Its name (docs/queue.md, "Message names"). */
  readonly name: string;
  readonly id?: string;
  readonly producer?: string;
  readonly createdAt?: number;
  /** Failed deliveries so far. */
  readonly attempt?: number;
  /** Why its last delivery failed. */
  readonly lastError?: string;
  /** Where its records came from. */
  readonly source?: {
    readonly file: string;
    readonly firstLine: number;
    readonly lastLine: number;
  };
  readonly records?: number;
  /** Why its body cannot be decoded (then only its name is known; a consumer dead-letters it). */
  readonly problem?: string;
}

/** A message in the queue as `nexus queue list` shows it: described, without its records. */
export interface QueuedMessage extends HeadMessage {
  /** ready: waiting for a consumer; claimed: a consumer holds it; delayed: waiting to be retried. */
  readonly state: 'ready' | 'claimed' | 'delayed';
  /** When a delayed message comes back (epoch ms). */
  readonly due?: number;
}

export interface MessagePage {
  readonly items: readonly QueuedMessage[];
  /** Pass as `after` (with the same `delayed`) to get the next page. */
  readonly next: string | undefined;
}

export interface DeadLetter {
  readonly id: string;
  readonly reason: string;
  readonly attempts: number;
  readonly deadAt: number;
  readonly records: number;
  /** The message as it was, when it could be decoded. */
  readonly envelope: Envelope | undefined;
  /** The message body too large to keep in one etcd request, described instead (docs/queue.md). */
  readonly omitted?: OmittedBody;
}

/** A dead letter's message body (`raw` or `body`) that was not kept: its size and SHA-256. */
export interface OmittedBody {
  readonly field: 'raw' | 'body';
  readonly bytes: number;
  readonly sha256: string;
}

export interface DeadLetterPage {
  readonly items: readonly DeadLetter[];
  /** Pass as `after` to get the next page. */
  readonly next: string | undefined;
}

/** A streamer's durable position on one publish lane (see docs/queue.md, "Exactly-once publish"). */
export type LaneState = Readonly<Record<string, unknown>>;

export interface LaneCheckpoint {
  readonly lane: number;
  readonly state: LaneState;
  /** Opaque: the version the next fenced publish on this lane must find. */
  readonly token: string;
}

/**
 * A message made ready for one stream's queue (`StreamHandle.prepare`): in the etcd queue its
 * encoded bytes. A publish in flight holds this, not the records it was made of.
 */
export interface PreparedMessage {
  /** The envelope's id. */
  readonly id: string;
  /** How many records it carries. */
  readonly records: number;
  /** Its size as the queue stores it (etcd: the body, compressed or not); none in memory. */
  readonly bytes?: number;
}

/** A producer's exclusive, durable handle on one named stream. */
export interface StreamHandle {
  readonly streamId: string;
  readMeta(): Promise<LaneState | undefined>;
  writeMeta(meta: LaneState): Promise<void>;
  readLanes(): Promise<LaneCheckpoint[]>;
  /**
   * The message of `envelope`, as this handle's `publish` takes it: encoded once, however many
   * times it is tried. Throws QUEUE_MESSAGE_TOO_LARGE when it is over the queue's limit.
   */
  prepare(envelope: Envelope): PreparedMessage;
  /**
   * Publishes one message (made by this handle's `prepare`) and moves the lane checkpoint in one
   * atomic step, only if the lane is still at `expectToken` (null: the lane was never written).
   * Returns the new token. Throws a QueueConflict (src/queue/conflict.ts) with reason 'lane-moved'
   * when the lane moved, so a message is never published twice.
   */
  publish(
    message: PreparedMessage,
    lane: number,
    expectToken: string | null,
    state: LaneState,
  ): Promise<string>;
  /** Forgets the checkpoint (meta and lanes). */
  reset(): Promise<void>;
  release(): Promise<void>;
}

export interface PublishReceipt {
  readonly id: string;
}

export interface Queue {
  readonly backend: 'etcd' | 'memory';
  readonly clusterId: string;
  /**
   * Publishes one message (atomic). Several calls may be in flight at once. Throws a QueueConflict
   * with reason 'exists' if a message of that name is already in the queue.
   */
  publish(envelope: Envelope): Promise<PublishReceipt>;
  /** Takes exclusive ownership of a stream's checkpoint; throws STREAM_OWNED if another holds it. */
  openStream(streamId: string, owner: string): Promise<StreamHandle>;
  consumer(options?: ConsumerOptions): Promise<Consumer>;
  /** Messages in the queue (ready + in flight): cheap, for backpressure. */
  depth(): Promise<number>;
  stats(): Promise<QueueStats>;
  listDeadLetters(options?: { limit?: number; after?: string }): Promise<DeadLetterPage>;
  /**
   * The messages in the queue, described (name, producer, records, source lines, attempt, last
   * error), in name order (the time of a message's first reading, then its host and GPU): those
   * ready or claimed, or with `delayed` those waiting to be retried, soonest due first. At most
   * `limit` (1 to 1,000, default 100) a page.
   */
  listMessages(options?: {
    limit?: number;
    after?: string;
    delayed?: boolean;
  }): Promise<MessagePage>;
  /** Moves dead letters back into the queue with a fresh attempt count; returns how many. */
  replayDeadLetters(ids: readonly string[] | 'all'): Promise<number>;
  purgeDeadLetters(ids: readonly string[] | 'all'): Promise<number>;
  /** Idempotent. */
  close(): Promise<void>;
}

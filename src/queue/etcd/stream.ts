import { backoffDelay, type BackoffPolicy } from '../../core/backoff.js';
import { NexusError } from '../../core/errors.js';
import { sleep } from '../../core/backoff.js';
import { QueueConflict } from '../conflict.js';
import type { Logger } from '../../core/logger.js';
import { encodeEnvelopeWithin, type Envelope, type QueueCompression } from '../envelope.js';
import { messageNameOf } from '../names.js';
import type { LaneCheckpoint, LaneState, PreparedMessage, StreamHandle } from '../types.js';
import { isLeaseNotFound } from '../../etcd/client.js';
import { absent, deleteOp, getOp, key, modIs, prefixEnd, putOp, type Kv } from '../../etcd/kv.js';
import type { QueueLayout } from './layout.js';
import type { MessageLeases } from './message-lease.js';
import type { Session } from '../../etcd/session.js';
import type { IKeyValue } from 'etcd3';

/**
 * How often a streamer looks whether the stream's previous owner let go (its lease lapsed): never
 * more than every half second, with jitter so that two waiting streamers do not ask in step.
 */
const OWNER_POLL: BackoffPolicy = { baseMs: 250, capMs: 500, jitter: 0.5 };

/** A message encoded for the etcd queue: its key and its bytes. */
class EtcdMessage implements PreparedMessage {
  constructor(
    readonly id: string,
    readonly records: number,
    readonly key: string,
    readonly body: Buffer,
  ) {}

  get bytes(): number {
    return this.body.length;
  }
}

/**
 * A producer's exclusive handle on a stream checkpoint (docs/queue.md, "Exactly-once publish").
 * Ownership is a key on the producer's session lease; every write is fenced by it, and every
 * fenced publish also compares the lane key's revision, so a batch is published at most once.
 */
export class EtcdStream implements StreamHandle {
  private retaking: Promise<void> | undefined;

  private constructor(
    readonly streamId: string,
    private ownerRevision: string,
    private readonly owner: string,
    private readonly session: Session,
    private readonly kv: Kv,
    private readonly layout: QueueLayout,
    private readonly leases: MessageLeases,
    private readonly logger: Logger,
    private readonly maxMessageBytes: number,
    private readonly compression: QueueCompression,
  ) {}

  static async acquire(input: {
    streamId: string;
    owner: string;
    kv: Kv;
    layout: QueueLayout;
    leases: MessageLeases;
    session: Session;
    logger: Logger;
    waitMs: number;
    maxMessageBytes: number;
    compression: QueueCompression;
  }): Promise<EtcdStream> {
    const { streamId, owner, kv, layout, session } = input;
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(streamId)) {
      throw new NexusError(
        'CONFIG_INVALID',
        `STREAM_ID "${streamId}" must be 1-128 of [A-Za-z0-9._:-]`,
      );
    }
    const ownerKey = layout.streamOwner(streamId);
    const deadline = Date.now() + input.waitMs;
    let announced = false;
    for (let attempt = 1; ; attempt++) {
      const leaseId = await session.id();
      const value = JSON.stringify({ owner, at: Date.now() });
      const res = await kv.txn(
        [absent(ownerKey)],
        [putOp(ownerKey, value, leaseId)],
        [getOp(ownerKey)],
        'acquire stream',
      );
      if (res.succeeded) {
        return new EtcdStream(
          streamId,
          res.header.revision,
          owner,
          session,
          kv,
          layout,
          input.leases,
          input.logger,
          input.maxMessageBytes,
          input.compression,
        );
      }
      const holder = res.responses[0]?.response_range.kvs[0]?.value.toString() ?? 'unknown';
      if (Date.now() >= deadline) {
        throw new NexusError(
          'STREAM_OWNED',
          `stream ${streamId} is held by another streamer (${holder}); set STREAM_ID to run a second one`,
          { details: { holder } },
        );
      }
      if (!announced) {
        input.logger.info(
          { stream: streamId, holder },
          'stream is held by another streamer; waiting for its lease to lapse',
        );
        announced = true;
      }
      await sleep(backoffDelay(OWNER_POLL, attempt));
    }
  }

  private ownerFence() {
    return modIs(this.layout.streamOwner(this.streamId), this.ownerRevision);
  }

  private lost(holder: IKeyValue | undefined): NexusError {
    const who = holder?.value.toString() ?? 'nobody';
    return new NexusError(
      'STREAM_OWNED',
      `lost ownership of stream ${this.streamId}: another streamer took it (${who}); is a second streamer running with the same STREAM_ID?`,
      { details: { holder: who } },
    );
  }

  /**
   * After a fenced write found the owner key changed. If it is gone, this streamer's session lease
   * lapsed (etcd was unreachable for longer than LEASE_TTL) and nobody took the stream meanwhile:
   * take it back on the session's current lease, and the caller tries again. The lane keys still
   * fence every publish, so whatever happened in between, nothing is published twice. Several
   * lanes find the key gone at once: one takes it back, the others see it is theirs again. If
   * another streamer holds it, ownership is lost for good.
   */
  private async retake(ownerNow: IKeyValue | undefined): Promise<void> {
    if (this.retaking !== undefined) await this.retaking.catch(() => undefined);
    if (ownerNow?.mod_revision === this.ownerRevision) return;
    if (ownerNow !== undefined) throw this.lost(ownerNow);
    this.retaking ??= this.takeBack().finally(() => {
      this.retaking = undefined;
    });
    await this.retaking;
  }

  private async takeBack(): Promise<void> {
    const ownerKey = this.layout.streamOwner(this.streamId);
    const value = JSON.stringify({ owner: this.owner, at: Date.now() });
    const attempt = async () =>
      this.kv.txn(
        [absent(ownerKey)],
        [putOp(ownerKey, value, await this.session.id())],
        [getOp(ownerKey)],
        'retake stream',
      );
    let res;
    try {
      res = await attempt();
    } catch (err) {
      if (!isLeaseNotFound(err)) throw err;
      // The session had not noticed its lease was gone: a new one, and once more.
      this.session.invalidate();
      res = await attempt();
    }
    if (!res.succeeded) {
      const holder = res.responses[0]?.response_range.kvs[0];
      // Taken back already, by another lane's write of this streamer.
      if (holder?.mod_revision === this.ownerRevision) return;
      throw this.lost(holder);
    }
    this.ownerRevision = res.header.revision;
    this.logger.info(
      { stream: this.streamId },
      'took the stream back: its session lease had lapsed while etcd was unreachable',
    );
  }

  async readMeta(): Promise<LaneState | undefined> {
    const res = await this.kv.range(
      { key: key(this.layout.streamMeta(this.streamId)) },
      'read stream meta',
    );
    const kv = res.kvs[0];
    return kv === undefined ? undefined : (JSON.parse(kv.value.toString()) as LaneState);
  }

  async writeMeta(meta: LaneState, retaken = false): Promise<void> {
    const res = await this.kv.txn(
      [this.ownerFence()],
      [putOp(this.layout.streamMeta(this.streamId), JSON.stringify(meta))],
      [getOp(this.layout.streamOwner(this.streamId))],
      'write stream meta',
    );
    if (res.succeeded) return;
    const owner = res.responses[0]?.response_range.kvs[0];
    if (retaken) throw this.lost(owner);
    await this.retake(owner);
    await this.writeMeta(meta, true);
  }

  async readLanes(): Promise<LaneCheckpoint[]> {
    const prefix = this.layout.streamLanes(this.streamId);
    const res = await this.kv.range(
      { key: key(prefix), range_end: prefixEnd(prefix) },
      'read lanes',
    );
    return res.kvs.map((kv) => ({
      lane: Number(kv.key.toString().slice(prefix.length)),
      state: JSON.parse(kv.value.toString()) as LaneState,
      token: kv.mod_revision,
    }));
  }

  prepare(envelope: Envelope): PreparedMessage {
    const key = this.layout.message(messageNameOf(envelope));
    const body = encodeEnvelopeWithin(envelope, this.maxMessageBytes, this.compression);
    return new EtcdMessage(envelope.id, envelope.records.length, key, body);
  }

  async publish(
    message: PreparedMessage,
    lane: number,
    expectToken: string | null,
    state: LaneState,
    retaken = false,
  ): Promise<string> {
    if (!(message instanceof EtcdMessage)) {
      throw new NexusError('INTERNAL', 'the message was prepared for another kind of queue');
    }
    const { key: messageKey, body } = message;
    const laneKey = this.layout.streamLane(this.streamId, lane);
    // The owner revision this write is fenced with: another lane's retake may move
    // this.ownerRevision while it is in flight, and the failure must be judged against the fence.
    let fenced = this.ownerRevision;
    const attempt = async (leaseId: string) => {
      fenced = this.ownerRevision;
      return this.kv.txn(
        [this.ownerFence(), modIs(laneKey, expectToken ?? 0), absent(messageKey)],
        [putOp(messageKey, body, leaseId), putOp(laneKey, JSON.stringify(state))],
        [
          getOp(this.layout.streamOwner(this.streamId)),
          getOp(laneKey),
          { request_range: { key: key(messageKey), keys_only: true } },
        ],
        'publish',
      );
    };
    let leaseId = await this.leases.id();
    let res;
    try {
      res = await attempt(leaseId);
    } catch (err) {
      if (!isLeaseNotFound(err)) throw err;
      this.leases.invalidate(leaseId);
      leaseId = await this.leases.id();
      res = await attempt(leaseId);
    }
    if (res.succeeded) return res.header.revision;
    const owner = res.responses[0]?.response_range.kvs[0];
    if (owner?.mod_revision !== fenced) {
      // Taken back meanwhile by another lane of this streamer: write again under the new fence.
      if (owner !== undefined && owner.mod_revision === this.ownerRevision)
        return this.publish(message, lane, expectToken, state, retaken);
      if (retaken) throw this.lost(owner);
      await this.retake(owner);
      return this.publish(message, lane, expectToken, state, true);
    }
    const laneNow = res.responses[1]?.response_range.kvs[0];
    if ((laneNow?.mod_revision ?? '0') !== (expectToken ?? '0')) {
      throw new QueueConflict('lane-moved', `lane ${lane} of stream ${this.streamId} moved`, {
        state:
          laneNow === undefined ? undefined : (JSON.parse(laneNow.value.toString()) as unknown),
        token: laneNow?.mod_revision,
      });
    }
    throw new QueueConflict('exists', `message ${messageKey} already exists`);
  }

  async reset(retaken = false): Promise<void> {
    const res = await this.kv.txn(
      [this.ownerFence()],
      [
        deleteOp(this.layout.streamMeta(this.streamId)),
        {
          request_delete_range: {
            key: key(this.layout.streamLanes(this.streamId)),
            range_end: prefixEnd(this.layout.streamLanes(this.streamId)),
          },
        },
      ],
      [getOp(this.layout.streamOwner(this.streamId))],
      'reset stream',
    );
    if (res.succeeded) return;
    const owner = res.responses[0]?.response_range.kvs[0];
    if (retaken) throw this.lost(owner);
    await this.retake(owner);
    await this.reset(true);
  }

  async release(): Promise<void> {
    await this.kv
      .txn(
        [this.ownerFence()],
        [deleteOp(this.layout.streamOwner(this.streamId))],
        [],
        'release stream',
      )
      .catch((err: unknown) => {
        this.logger.warn({ err, stream: this.streamId }, 'could not release stream ownership');
      });
  }
}

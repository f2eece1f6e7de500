import { NexusError } from '../../core/errors.js';
import { QueueConflict } from '../conflict.js';
import type { Envelope } from '../envelope.js';
import type { LaneCheckpoint, LaneState, PreparedMessage, StreamHandle } from '../types.js';

/** What a stream asks of its memory queue (src/queue/memory/queue.ts). */
export interface StreamHost {
  /** Throws QUEUE_CLOSED once the queue is closed. */
  checkOpen(): void;
  /** A fencing token never handed out before by this queue. */
  nextToken(): number;
  /** Adds a message to the queue; throws QueueConflict 'exists' if one of that name is there. */
  add(envelope: Envelope): void;
}

/** A message of the memory queue: the envelope itself, which the queue keeps as it is. */
class MemoryMessage implements PreparedMessage {
  readonly id: string;
  readonly records: number;
  constructor(readonly envelope: Envelope) {
    this.id = envelope.id;
    this.records = envelope.records.length;
  }
}

/** A stream's owner and checkpoint, as the queue keeps them across the handles opened on it. */
interface StreamState {
  owner: string | undefined;
  ownerToken: number;
  meta: LaneState | undefined;
  readonly lanes: Map<number, { state: LaneState; token: number }>;
}

/** One named stream of the memory queue: who owns it, and its checkpoint. */
export class MemoryStreamRecord {
  private readonly s: StreamState = {
    owner: undefined,
    ownerToken: 0,
    meta: undefined,
    lanes: new Map(),
  };

  constructor(
    private readonly streamId: string,
    private readonly host: StreamHost,
  ) {}

  /** Takes ownership of the stream; throws STREAM_OWNED if another holds it. */
  open(owner: string): StreamHandle {
    if (this.s.owner !== undefined) {
      throw new NexusError(
        'STREAM_OWNED',
        `stream ${this.streamId} is held by another streamer (${this.s.owner})`,
      );
    }
    this.s.owner = owner;
    this.s.ownerToken = this.host.nextToken();
    return new MemoryStream(this.host, this.streamId, this.s, this.s.ownerToken);
  }
}

/** A producer's handle on a stream, fenced by the ownership it was opened with. */
class MemoryStream implements StreamHandle {
  constructor(
    private readonly host: StreamHost,
    readonly streamId: string,
    private readonly s: StreamState,
    private readonly ownerToken: number,
  ) {}

  private owns(): boolean {
    return this.s.ownerToken === this.ownerToken && this.s.owner !== undefined;
  }

  private check(): void {
    if (!this.owns()) {
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

  prepare(envelope: Envelope): PreparedMessage {
    return new MemoryMessage(envelope);
  }

  /** Publishes and moves the lane in one step, fenced by ownership and the lane's token. */
  async publish(
    message: PreparedMessage,
    lane: number,
    expectToken: string | null,
    state: LaneState,
  ): Promise<string> {
    if (!(message instanceof MemoryMessage)) {
      throw new NexusError('INTERNAL', 'the message was prepared for another kind of queue');
    }
    this.host.checkOpen();
    if (!this.owns()) throw new NexusError('STREAM_OWNED', 'lost ownership of the stream');
    const current = this.s.lanes.get(lane);
    if (String(current?.token ?? 0) !== (expectToken ?? '0')) {
      throw new QueueConflict('lane-moved', `lane ${lane} moved`, {
        state: current?.state,
        token: current === undefined ? undefined : String(current.token),
      });
    }
    this.host.add(message.envelope);
    const token = this.host.nextToken();
    this.s.lanes.set(lane, { state, token });
    return String(token);
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

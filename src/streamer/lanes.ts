import { NexusError } from '../core/errors.js';
import type { TelemetryRecord } from '../core/record.js';
import type { LaneCheckpoint } from '../queue/types.js';
import { asLane, type Watermark } from './checkpoint.js';

/** BATCH_SIZE records read from the file, published as one message. */
export class Batch {
  #records: TelemetryRecord[] | undefined;
  /** How many records it holds. */
  readonly size: number;

  constructor(
    /** Counts from 0 over the whole stream (loops included): batch i goes on lane i mod lanes. */
    readonly index: number,
    readonly loop: number,
    records: TelemetryRecord[],
    readonly firstLine: number,
    readonly lastLine: number,
    /** Byte offset where the batch ends (where the next one starts). */
    readonly end: number,
  ) {
    this.#records = records;
    this.size = records.length;
  }

  /**
   * The records, once: the publisher encodes them into the message and lets them go, so that a
   * publish in flight holds its encoded bytes only. Held for the round trip, the parsed records of
   * the PUBLISH_CONCURRENCY batches in flight outlived V8's young generation and were copied into
   * the old one: about 18 % of what the streamer allocated on a file of 80 GPUs, now 1.3 %
   * (docs/benchmarks.md, the eleventh session's paragraph under "Scale to 100,000 GPUs").
   */
  take(): TelemetryRecord[] {
    const records = this.#records;
    if (records === undefined) throw new NexusError('INTERNAL', `batch ${this.index} taken twice`);
    this.#records = undefined;
    return records;
  }
}

interface LaneSlot {
  token: string | null;
  /** Last batch published on this lane, and where it ended. */
  last: number;
  lastEnd: number;
  busy: Promise<void> | undefined;
}

/**
 * The publish lanes (PUBLISH_CONCURRENCY, docs/queue.md "Exactly-once publish"): batch i goes on
 * lane i mod n, one publish in flight per lane, each publish moving its lane's checkpoint (a
 * token the next publish on the lane must find). Also the contiguous watermark: the batch up to
 * which every batch is done, whatever order the lanes finish in.
 */
export class Lanes {
  private readonly slots: LaneSlot[];
  /** Batches done above the contiguous watermark. */
  private readonly doneAbove = new Map<number, Watermark>();
  private wm: Watermark | null;

  constructor(count: number, wm: Watermark | null = null) {
    this.slots = Array.from({ length: count }, () => ({
      token: null,
      last: -1,
      lastEnd: -1,
      busy: undefined,
    }));
    this.wm = wm;
  }

  /**
   * The lanes as an interrupted run left them, resuming from `wm`; with the lines each lane had
   * read when that run stopped.
   */
  static resume(
    count: number,
    checkpoints: readonly LaneCheckpoint[],
    wm: Watermark | null,
  ): { lanes: Lanes; linesRead: number[] } {
    const lanes = new Lanes(count, wm);
    const linesRead: number[] = [];
    for (const l of checkpoints) {
      const rec = asLane(l.state);
      const slot = lanes.slots[l.lane];
      if (slot === undefined) continue;
      slot.token = l.token;
      slot.last = rec.batch;
      slot.lastEnd = rec.end;
      linesRead.push(rec.line);
    }
    return { lanes, linesRead };
  }

  /** The lane of batch `index`. */
  laneOf(index: number): number {
    return index % this.slots.length;
  }

  private slot(index: number): LaneSlot {
    const slot = this.slots[this.laneOf(index)];
    if (slot === undefined) throw new NexusError('INTERNAL', 'no lane');
    return slot;
  }

  /** True when batch `index` was published already (by the run this one resumes). */
  alreadyPublished(index: number): boolean {
    return index <= this.slot(index).last;
  }

  /**
   * True when the interrupted run published batch `index` ending at byte `end`: a clean stop may
   * have cut that batch short, and this run must end it at the same place.
   */
  endsAt(index: number, end: number): boolean {
    const slot = this.slots[this.laneOf(index)];
    return slot !== undefined && slot.last === index && slot.lastEnd === end;
  }

  /** The token the next publish on the lane of batch `index` must find. */
  token(index: number): string | null {
    return this.slot(index).token;
  }

  /** Resolves once the lane of batch `index` has no publish in flight. */
  idle(index: number): Promise<void> {
    return this.slot(index).busy ?? Promise.resolve();
  }

  /** The publish now in flight on the lane of batch `index`. */
  sending(index: number, publish: Promise<void>): void {
    this.slot(index).busy = publish;
  }

  /** `batch` is published and its lane moved to `token`: the lane and the watermark move on. */
  published(batch: Batch, token: string): void {
    const slot = this.slot(batch.index);
    slot.token = token;
    slot.last = batch.index;
    slot.lastEnd = batch.end;
    this.done(batch);
  }

  /** `batch` is done: the contiguous watermark moves on over every batch done in a row. */
  done(batch: Batch): void {
    this.doneAbove.set(batch.index, {
      batch: batch.index,
      loop: batch.loop,
      offset: batch.end,
      line: batch.lastLine,
    });
    let next = (this.wm?.batch ?? -1) + 1;
    for (;;) {
      const wm = this.doneAbove.get(next);
      if (wm === undefined) break;
      this.doneAbove.delete(next);
      this.wm = wm;
      next++;
    }
  }

  /** Every batch up to here is done (published or found published). */
  get contiguous(): Watermark | null {
    return this.wm;
  }

  /** The publishes in flight. */
  inFlight(): Promise<void>[] {
    return this.slots.map((l) => l.busy).filter((p): p is Promise<void> => p !== undefined);
  }
}

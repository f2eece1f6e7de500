import type { TelemetryRecord } from '../core/record.js';
import { Batch } from './lanes.js';

/**
 * Cuts the records of a pass over the file into batches of BATCH_SIZE, numbered on from batch to
 * batch across passes. A batch also ends early where `endsAt` says the interrupted run this one
 * resumes ended it (a clean stop cut that batch short), so that resumed batches line up with the
 * ones already published.
 */
export class Batcher {
  private records: TelemetryRecord[] = [];
  private firstLine = 0;
  private lastLine = 0;
  private lastEnd = 0;
  private loop = 0;
  private index = 0;

  constructor(
    private readonly batchSize: number,
    private readonly endsAt: (index: number, end: number) => boolean,
  ) {}

  /** Starts a pass over the file; its first batch gets `firstIndex` if given. */
  startPass(loop: number, firstIndex?: number): void {
    this.loop = loop;
    if (firstIndex !== undefined) this.index = firstIndex;
  }

  /** Adds a record read at `line`, ending at byte `end`; returns a batch when one is full. */
  add(record: TelemetryRecord, line: number, end: number): Batch | undefined {
    if (this.records.length === 0) this.firstLine = line;
    this.records.push(record);
    this.lastLine = line;
    this.lastEnd = end;
    if (this.records.length === this.batchSize || this.endsAt(this.index, end))
      return this.cut(end);
    return undefined;
  }

  /** True when records were added since the last batch. */
  get pending(): boolean {
    return this.records.length > 0;
  }

  /** The records added since the last batch, as a batch (at the end of the file, or stopping). */
  rest(): Batch | undefined {
    return this.records.length > 0 ? this.cut(this.lastEnd) : undefined;
  }

  private cut(end: number): Batch {
    const batch = new Batch(
      this.index++,
      this.loop,
      this.records,
      this.firstLine,
      this.lastLine,
      end,
    );
    this.records = [];
    return batch;
  }
}

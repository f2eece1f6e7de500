import type { Logger } from '../core/logger.js';
import type { StreamHandle } from '../queue/types.js';
import { asMeta, resumePoint, type StreamMeta } from './checkpoint.js';
import { sameFile, shortHash, type FileFingerprint } from './fingerprint.js';
import { Lanes } from './lanes.js';
import type { UntilAnswered } from './queue-outage.js';

/** Where a run starts reading. */
export interface StartPoint {
  readonly loop: number;
  /** Byte offset and line number of the first row to read. */
  readonly offset: number;
  readonly line: number;
  /** Index of the first batch to form. */
  readonly nextIndex: number;
}

export interface Resumption {
  readonly meta: StreamMeta;
  readonly start: StartPoint;
  readonly lanes: Lanes;
  /** True when this run resumes an interrupted one. */
  readonly resumed: boolean;
  /** Lines each lane had read when the previous run stopped (rejects there are already reported). */
  readonly linesRead: readonly number[];
}

export interface ResumeInput {
  readonly handle: StreamHandle;
  readonly untilAnswered: UntilAnswered;
  readonly logger: Logger;
  readonly csvFile: string;
  readonly streamId: string;
  readonly batchSize: number;
  /** PUBLISH_CONCURRENCY: the lanes of a stream started from the top. */
  readonly concurrency: number;
  /** Ignore a checkpoint left by an interrupted run. */
  readonly restart: boolean;
  readonly fingerprint: FileFingerprint;
  /** Where the data rows start: byte offset, and the line of the header. */
  readonly dataStart: number;
  readonly headerLine: number;
}

/**
 * Reads the stream's checkpoint and decides where to start: where an interrupted run of the same
 * file stopped (docs/queue.md, "Exactly-once publish"), or from the top, with a fresh checkpoint,
 * when there is none, a restart was asked for, the previous run completed, the file changed or
 * BATCH_SIZE did.
 */
export async function resume(i: ResumeInput): Promise<Resumption> {
  const { handle, untilAnswered } = i;
  const old = asMeta(await untilAnswered('read the checkpoint', () => handle.readMeta()));
  let why: string | undefined;
  if (old === undefined) why = undefined;
  else if (i.restart) why = 'restart requested';
  else if (old.completed) why = 'the previous run completed';
  else if (!sameFile(old.fingerprint, i.fingerprint)) why = 'the file changed since the checkpoint';
  else if (old.batchSize !== i.batchSize)
    why = `BATCH_SIZE changed (${old.batchSize} -> ${i.batchSize})`;
  if (old !== undefined && why === undefined) {
    const checkpoints = await untilAnswered('read the checkpoint', () => handle.readLanes());
    const wm = resumePoint(old, checkpoints);
    const { lanes, linesRead } = Lanes.resume(old.lanes, checkpoints, wm);
    i.logger.info(
      {
        from_batch: wm === null ? 0 : wm.batch + 1,
        from_line: wm?.line ?? i.headerLine,
        loop: wm?.loop ?? 0,
      },
      'resuming an interrupted stream from its checkpoint',
    );
    return {
      meta: old,
      start: {
        loop: wm?.loop ?? 0,
        offset: wm?.offset ?? i.dataStart,
        line: wm?.line ?? i.headerLine,
        nextIndex: wm === null ? 0 : wm.batch + 1,
      },
      lanes,
      resumed: true,
      linesRead,
    };
  }
  if (old !== undefined) {
    i.logger.info({ reason: why }, 'starting the stream from the top');
    await untilAnswered('reset the checkpoint', () => handle.reset());
  }
  const meta: StreamMeta = {
    v: 1,
    file: i.csvFile,
    fingerprint: i.fingerprint,
    batchSize: i.batchSize,
    lanes: i.concurrency,
    runTag: shortHash(`${i.streamId}:${Date.now()}:${Math.random()}`),
    startedAt: Date.now(),
    completed: false,
    wm: null,
  };
  await untilAnswered('save the checkpoint', () =>
    handle.writeMeta(meta as unknown as Record<string, unknown>),
  );
  return {
    meta,
    start: { loop: 0, offset: i.dataStart, line: i.headerLine, nextIndex: 0 },
    lanes: new Lanes(meta.lanes),
    resumed: false,
    linesRead: [],
  };
}

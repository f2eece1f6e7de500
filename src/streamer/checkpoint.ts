import type { LaneCheckpoint, LaneState } from '../queue/types.js';
import type { FileFingerprint } from './fingerprint.js';

/** A position in the file: the end of batch `batch`. */
export interface Watermark {
  readonly batch: number;
  readonly loop: number;
  /** Byte offset where the next batch starts. */
  readonly offset: number;
  /** Line number of the last line read. */
  readonly line: number;
}

/** Stored in the stream's meta key. */
export interface StreamMeta {
  readonly v: 1;
  readonly file: string;
  readonly fingerprint: FileFingerprint;
  readonly batchSize: number;
  readonly lanes: number;
  /** Makes message ids unique per run of the stream. */
  readonly runTag: string;
  readonly startedAt: number;
  readonly completed: boolean;
  /** All batches up to here are published (written on a clean stop). */
  readonly wm: Watermark | null;
}

/** Stored in each lane key by every fenced publish. */
export interface LaneRecord {
  /** The batch this publish carried, and where it ended. */
  readonly batch: number;
  readonly loop: number;
  readonly end: number;
  readonly line: number;
  readonly records: number;
  /** The contiguous watermark known when the publish was sent. */
  readonly wm: Watermark | null;
}

export function asMeta(state: LaneState | undefined): StreamMeta | undefined {
  if (state === undefined || state.v !== 1) return undefined;
  return state as unknown as StreamMeta;
}

export function asLane(state: LaneState): LaneRecord {
  return state as unknown as LaneRecord;
}

function later(a: Watermark | null, b: Watermark | null): Watermark | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.batch > a.batch ? b : a;
}

/** The furthest point up to which every batch is known to be published. */
export function resumePoint(meta: StreamMeta, lanes: readonly LaneCheckpoint[]): Watermark | null {
  let wm = meta.wm;
  for (const l of lanes) wm = later(wm, asLane(l.state).wm);
  return wm;
}

import { NexusError } from '../../core/errors.js';
import type { Aggregate, Selection } from '../../store/reader.js';
import { END_OF_TIME } from '../../store/reader.js';
import type { LiveFilter } from '../live/hub.js';
import {
  MAX_LIST,
  boundedList,
  decodeCursor,
  parseInstant,
  parseStep,
  type Cursor,
} from '../params.js';

/**
 * GraphQL arguments -> the reader's queries, with the REST API's rules and messages. GraphQL has
 * already checked the types; what is left is the values. `null` means absent.
 */

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

export interface FilterArgs {
  readonly cluster_id?: string | null;
  readonly host_id?: readonly string[] | null;
  readonly gpu_id?: readonly number[] | null;
  readonly uuid?: readonly string[] | null;
  readonly metric?: readonly string[] | null;
  readonly gpu_instance?: readonly number[] | null;
}

export interface RangeArgs {
  readonly from?: string | null;
  readonly to?: string | null;
}

export interface PageArgs extends FilterArgs, RangeArgs {
  readonly limit?: number | null;
  readonly cursor?: string | null;
}

export interface SeriesArgs extends FilterArgs, RangeArgs {
  readonly step?: string | null;
  readonly agg?: Aggregate | null;
}

export const MAX_LIMIT = 10_000;
const METRIC = /^[A-Za-z0-9_:.]{1,128}$/;

function indexes(values: readonly number[] | null | undefined): number[] | undefined {
  if (values === undefined || values === null) return undefined;
  if (values.length === 0) throw bad('gpu_id: give at least one GPU index, or leave gpu_id out');
  if (values.length > MAX_LIST) throw bad(`gpu_id: ${values.length} values; at most ${MAX_LIST}`);
  for (const v of values) {
    if (v < 0 || v > 32767) throw bad(`gpu_id: ${v} is not a GPU index (0, 1, ...)`);
  }
  return [...values];
}

/** MIG GPU instance ids (-1: the whole GPU). */
function instanceIds(values: readonly number[] | null | undefined): number[] | undefined {
  if (values === undefined || values === null) return undefined;
  if (values.length === 0)
    throw bad('gpu_instance: give at least one GPU instance id, or leave gpu_instance out');
  if (values.length > MAX_LIST)
    throw bad(`gpu_instance: ${values.length} values; at most ${MAX_LIST}`);
  for (const v of values) {
    if (v < -1 || v > 32767)
      throw bad(`gpu_instance: ${v} is not a GPU instance id (-1 for the whole GPU, 0, 1, ...)`);
  }
  return [...values];
}

function clusterId(value: string | null | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (value.length === 0 || value.length > 128)
    throw bad('cluster_id: must be 1 to 128 characters');
  return value;
}

/** Which GPUs and metrics (absent: all), as for /api/v1/telemetry. */
export function selectionOf(a: FilterArgs): Selection {
  const cluster = clusterId(a.cluster_id);
  const hosts = boundedList('host_id', a.host_id ?? undefined, 253);
  const gpus = indexes(a.gpu_id);
  const uuids = boundedList('uuid', a.uuid ?? undefined, 128);
  const metrics = boundedList('metric', a.metric ?? undefined, 128);
  const instances = instanceIds(a.gpu_instance);
  return {
    ...(cluster === undefined ? {} : { cluster }),
    ...(hosts === undefined ? {} : { hosts }),
    ...(gpus === undefined ? {} : { gpus }),
    ...(uuids === undefined ? {} : { uuids }),
    ...(instances === undefined ? {} : { instances }),
    ...(metrics === undefined ? {} : { metrics }),
  };
}

/** The filter of a live subscription: same checks, metric names checked by form only (new metrics may appear live). */
export function liveFilterOf(a: FilterArgs): LiveFilter {
  const s = selectionOf(a);
  for (const m of s.metrics ?? []) {
    if (!METRIC.test(m)) throw bad(`metric: "${m.slice(0, 40)}" is not a metric name`);
  }
  return {
    ...(s.cluster === undefined ? {} : { cluster_id: s.cluster }),
    ...(s.hosts === undefined ? {} : { host_id: s.hosts }),
    ...(s.gpus === undefined ? {} : { gpu_id: s.gpus }),
    ...(s.uuids === undefined ? {} : { uuid: s.uuids }),
    ...(s.metrics === undefined ? {} : { metric: s.metrics }),
    ...(s.instances === undefined || s.instances === 'all' ? {} : { gpu_instance: s.instances }),
  };
}

/** from (inclusive) and to (exclusive) in epoch ms; absent ends take the given defaults. */
export function rangeOf(
  a: RangeArgs,
  defaults: { from: (to: number) => number; to: number },
  now: number,
): { from: number; to: number } {
  const to = a.to === undefined || a.to === null ? defaults.to : parseInstant('to', a.to, now);
  const from =
    a.from === undefined || a.from === null ? defaults.from(to) : parseInstant('from', a.from, now);
  if (from >= to) throw bad('from must be before to');
  return { from, to };
}

/** The stored readings' whole range, as /api/v1/telemetry without from and to. */
export const ALL_TIME = { from: (): number => -END_OF_TIME, to: END_OF_TIME };

export function limitOf(value: number | null | undefined, fallback: number): number {
  const n = value ?? fallback;
  if (n < 1 || n > MAX_LIMIT) throw bad(`limit: ${n} is out of range (1 to ${MAX_LIMIT})`);
  return n;
}

export function cursorOf(value: string | null | undefined): Cursor | undefined {
  return value === undefined || value === null ? undefined : decodeCursor(value);
}

/** A downsampling step: REST's parser (at least 1s). */
export function stepOf(value: string): number {
  return parseStep(value);
}

/** REST's default step for a GPU's series: about 600 points over the range, at least 1s. */
export function defaultStepMs(from: number, to: number): number {
  return Math.max(1000, Math.ceil((to - from) / 600 / 1000) * 1000);
}

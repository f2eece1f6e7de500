import { NexusError } from '../../core/errors.js';
import { parseDuration } from '../../core/duration.js';
import type { LatestValue, Series } from '../../store/reader.js';
import { clip, iso } from '../params.js';

/** How the API shows readings and series, shared by the REST routes and GraphQL. */
export function readingOut(r: LatestValue) {
  return {
    cluster_id: r.cluster_id,
    host_id: r.hostname,
    gpu_id: r.gpu_id,
    uuid: r.uuid ?? null,
    metric: r.metric,
    unit: r.unit,
    timestamp: iso(r.timestamp) ?? '',
    value: r.value,
  };
}

/** The longest downsampling step: a year (a longer one would still give one point). */
export const MAX_STEP_MS = 366 * 86_400_000;

export function parseStep(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text, 'step');
  } catch {
    throw new NexusError(
      'BAD_REQUEST',
      `step: "${clip(text)}" is not a duration (e.g. 10s, 1m, 5m, 1h)`,
    );
  }
  if (ms < 1000)
    throw new NexusError('BAD_REQUEST', `step: "${clip(text)}" is below the smallest step, 1s`);
  if (ms > MAX_STEP_MS)
    throw new NexusError('BAD_REQUEST', `step: "${clip(text)}" is above the largest step, 366d`);
  return ms;
}

export function seriesOut(s: Series) {
  return {
    cluster_id: s.cluster_id,
    host_id: s.hostname,
    gpu_id: s.gpu_id,
    uuid: s.uuid ?? null,
    metric: s.metric,
    unit: s.unit,
    points: s.points.map(([t, value, count]) => ({ timestamp: iso(t) ?? '', value, count })),
  };
}

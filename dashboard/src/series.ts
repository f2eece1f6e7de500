/** Time ranges and steps: how much history a chart shows and how finely. */
import type { RangeKey } from './route.js';

export const RANGE_MS: Readonly<Record<RangeKey, number>> = {
  '15m': 15 * 60_000,
  '1h': 3_600_000,
  '6h': 6 * 3_600_000,
  '24h': 24 * 3_600_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000,
};

/** Steps in seconds, from fine to coarse; those of whole minutes come from the 1-minute rollup. */
const STEPS_S = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];

/** At most this many points per chart. */
export const MAX_POINTS = 600;

export interface Step {
  readonly ms: number;
  /** As the API takes it: `2s`, `5m`, `2h`. */
  readonly text: string;
}

/** The finest step that keeps a range within MAX_POINTS points. */
export function stepFor(rangeMs: number, maxPoints = MAX_POINTS): Step {
  const want = rangeMs / maxPoints / 1000;
  const s = STEPS_S.find((x) => x >= want) ?? STEPS_S[STEPS_S.length - 1] ?? 86_400;
  const text = s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`;
  return { ms: s * 1000, text };
}

/** Points further apart than this are drawn with a gap between them, not joined. */
export function gapMs(stepMs: number): number {
  return Math.max(5 * stepMs, 60_000);
}

/** What the dashboard knows about DCGM metrics: names people read, units, heatmap scales. */
import type { PaletteName } from './colors.js';

export const HEAT_METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_FB_USED',
] as const;
export type HeatMetric = (typeof HEAT_METRICS)[number];
export const DEFAULT_HEAT_METRIC: HeatMetric = 'DCGM_FI_DEV_GPU_UTIL';

interface MetricInfo {
  readonly label: string;
  /** A word or two, for buttons and small panels. */
  readonly short: string;
  /** The unit when the API has not said it yet (readings on the WebSocket carry none). */
  readonly unit: string;
}

const KNOWN: Readonly<Record<string, MetricInfo>> = {
  DCGM_FI_DEV_GPU_UTIL: { label: 'GPU utilisation', short: 'Utilisation', unit: '%' },
  DCGM_FI_DEV_GPU_TEMP: { label: 'GPU temperature', short: 'Temperature', unit: 'C' },
  DCGM_FI_DEV_POWER_USAGE: { label: 'Power draw', short: 'Power', unit: 'W' },
  DCGM_FI_DEV_FB_USED: { label: 'Memory used', short: 'Memory', unit: 'MiB' },
  DCGM_FI_DEV_FB_FREE: { label: 'Memory free', short: 'Mem free', unit: 'MiB' },
  DCGM_FI_DEV_MEM_COPY_UTIL: { label: 'Memory copy utilisation', short: 'Mem copy', unit: '%' },
  DCGM_FI_DEV_SM_CLOCK: { label: 'SM clock', short: 'SM clock', unit: 'MHz' },
  DCGM_FI_DEV_MEM_CLOCK: { label: 'Memory clock', short: 'Mem clock', unit: 'MHz' },
  DCGM_FI_DEV_ENC_UTIL: { label: 'Encoder utilisation', short: 'Encoder', unit: '%' },
  DCGM_FI_DEV_DEC_UTIL: { label: 'Decoder utilisation', short: 'Decoder', unit: '%' },
};

/** The order charts and value lists follow; other metrics come after, by name. */
const ORDER = Object.keys(KNOWN);

export function isHeatMetric(s: string): s is HeatMetric {
  return (HEAT_METRICS as readonly string[]).includes(s);
}

/** A metric name from a URL: full (`DCGM_FI_DEV_GPU_TEMP`) or short (`GPU_TEMP`). */
export function heatMetricFrom(s: string | null): HeatMetric | undefined {
  if (s === null) return undefined;
  const full = s.startsWith('DCGM_FI_DEV_') ? s : `DCGM_FI_DEV_${s.toUpperCase()}`;
  return isHeatMetric(full) ? full : undefined;
}

export function metricLabel(name: string): string {
  return KNOWN[name]?.label ?? name.replace(/^DCGM_FI_(DEV_)?/, '').replace(/_/g, ' ');
}

export function metricShort(name: string): string {
  return KNOWN[name]?.short ?? metricLabel(name);
}

export function defaultUnit(name: string): string {
  return KNOWN[name]?.unit ?? '';
}

export function byMetricOrder(a: string, b: string): number {
  const ia = ORDER.indexOf(a);
  const ib = ORDER.indexOf(b);
  if (ia !== ib) return (ia < 0 ? ORDER.length : ia) - (ib < 0 ? ORDER.length : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface HeatScale {
  readonly palette: PaletteName;
  /** The fixed low end of the scale. */
  readonly min: number;
  /** The high end, unless readings go beyond it (the scale then grows to them). */
  readonly max: number;
}

/** Scales that mean the same across fleets: utilisation in %, temperature around the alert levels. */
export const HEAT_SCALES: Readonly<Record<HeatMetric, HeatScale>> = {
  DCGM_FI_DEV_GPU_UTIL: { palette: 'viridis', min: 0, max: 100 },
  DCGM_FI_DEV_GPU_TEMP: { palette: 'turbo', min: 20, max: 90 },
  DCGM_FI_DEV_POWER_USAGE: { palette: 'plasma', min: 0, max: 700 },
  DCGM_FI_DEV_FB_USED: { palette: 'viridis', min: 0, max: 16_384 },
};

/** A round number at or above v, for the top of a scale (1, 2, 2.5, 5 times a power of ten). */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The heatmap metric a number key picks (1 to 4), if any. */
export function heatMetricOfKey(key: string): HeatMetric | undefined {
  const n = Number(key);
  return Number.isInteger(n) && n >= 1 ? HEAT_METRICS[n - 1] : undefined;
}

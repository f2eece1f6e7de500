/**
 * A realistic synthetic GPU fleet for storage measurements: what DCGM reports for the ten gauges of
 * bench/history.ts, per GPU, every `stepMs` with a few milliseconds of scrape jitter.
 *
 * Each GPU alternates idle gaps and jobs (some GPUs stay idle for the whole span). During a job the
 * utilisation sits at a per-job level between 60 and 100 with integer noise; SM clocks jump between
 * fixed idle and boost levels (with rare throttling), the memory clock never moves; temperatures
 * are integers following the load with a lag; power has 3 decimals and follows the load; the frame
 * buffer used is constant per job; encoder and decoder utilisation are 0 except in the few jobs that
 * use them. Deterministic for a given seed.
 */

/** The ten DCGM gauges bench/history.ts stores, in its order. */
export const FLEET_METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_MEM_COPY_UTIL',
  'DCGM_FI_DEV_ENC_UTIL',
  'DCGM_FI_DEV_DEC_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_MEMORY_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_SM_CLOCK',
  'DCGM_FI_DEV_MEM_CLOCK',
] as const;

export type FleetMetric = (typeof FLEET_METRICS)[number];

export interface FleetOptions {
  readonly hosts: number;
  readonly gpusPerHost: number;
  readonly hours: number;
  /** Scrape interval, ms (> 10: scrape jitter is up to +-5 ms). */
  readonly stepMs: number;
  readonly seed: number;
  /** Epoch ms of the first scrape (default 2025-07-18T00:00:00Z). */
  readonly start?: number;
}

/** One series: one metric of one GPU over the whole span, times ascending. */
export interface FleetSeries {
  /** GPU index on its host. */
  readonly gpu: number;
  readonly host: string;
  readonly metric: FleetMetric;
  readonly times: Float64Array;
  readonly values: Float64Array;
}

/** A small seeded PRNG (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const IDLE_SM_CLOCK = 345;
const BOOST_SM_CLOCK = 1980;
const THROTTLED_SM_CLOCKS = [1755, 1830, 1905];
const MEM_CLOCK = 2619;
const FB_TOTAL_MIB = 81_559;

const hostName = (h: number): string => `node-${String(h).padStart(3, '0')}`;
const clamp = (v: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, v));

/**
 * Every series of the fleet, GPU by GPU (the ten metrics of a GPU in FLEET_METRICS order), host by
 * host. Readings per series: hours * 3,600,000 / stepMs.
 */
export function* realisticFleet(options: FleetOptions): Generator<FleetSeries> {
  const { hosts, gpusPerHost, hours, stepMs, seed } = options;
  if (!(stepMs > 10)) throw new RangeError(`stepMs must be > 10, got ${stepMs}`);
  const start = options.start ?? Date.UTC(2025, 6, 18);
  const n = Math.floor((hours * 3_600_000) / stepMs);
  const stepsPerMinute = 60_000 / stepMs;
  const rand = seededRandom(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  /** Exponentially distributed number of steps with the given mean in minutes (at least 1). */
  const steps = (meanMinutes: number): number =>
    Math.max(1, Math.round(-Math.log(1 - rand()) * meanMinutes * stepsPerMinute));

  for (let h = 0; h < hosts; h++) {
    // One scrape of the host gives every GPU and metric the same timestamp.
    const times = new Float64Array(n);
    for (let i = 0; i < n; i++) times[i] = start + i * stepMs + int(-5, 5);
    for (let g = 0; g < gpusPerHost; g++) {
      const cols = FLEET_METRICS.map(() => new Float64Array(n));
      const [util, copy, enc, dec, temp, memTemp, power, fb, sm, mem] = cols as [
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
        Float64Array,
      ];
      const alwaysIdle = rand() < 0.2;
      // Start in the middle of a job or of a gap.
      let busy = !alwaysIdle && rand() < 0.6;
      let left = busy ? steps(90) : steps(30);
      let level = int(60, 100);
      let copyRatio = 0.2 + rand() * 0.6;
      let fbUsed = int(2_000, FB_TOTAL_MIB - 4_000);
      let video = rand() < 0.05;
      let throttled = rand() < 0.1;
      const idleFb = int(4, 7);
      const idlePower = 60 + rand() * 15;
      let gpuTemp = 28 + rand() * 6;
      let hbmTemp = gpuTemp + 2;
      for (let i = 0; i < n; i++) {
        if (left-- <= 0) {
          busy = !alwaysIdle && !busy;
          left = busy ? steps(90) : steps(30);
          level = int(60, 100);
          copyRatio = 0.2 + rand() * 0.6;
          fbUsed = int(2_000, FB_TOTAL_MIB - 4_000);
          video = rand() < 0.05;
          throttled = rand() < 0.1;
        }
        const u = busy ? clamp(level + int(-6, 6), 0, 100) : rand() < 0.02 ? int(1, 3) : 0;
        util[i] = u;
        copy[i] = busy ? clamp(Math.round(u * copyRatio + int(-3, 3)), 0, 100) : 0;
        enc[i] = busy && video ? int(5, 30) : 0;
        dec[i] = busy && video ? int(10, 45) : 0;
        // Temperatures follow the load with a lag (about two minutes at 10 s).
        gpuTemp += (30 + u * 0.4 - gpuTemp) * 0.08 + (rand() - 0.5) * 0.4;
        hbmTemp += (32 + u * 0.45 - hbmTemp) * 0.05 + (rand() - 0.5) * 0.3;
        temp[i] = Math.round(gpuTemp);
        memTemp[i] = Math.round(hbmTemp);
        const watts = busy ? 110 + u * 5.5 + (rand() - 0.5) * 30 : idlePower + (rand() - 0.5) * 3;
        power[i] = Math.round(watts * 1000) / 1000;
        fb[i] = busy ? fbUsed : idleFb;
        sm[i] = busy
          ? throttled && rand() < 0.3
            ? (THROTTLED_SM_CLOCKS[int(0, THROTTLED_SM_CLOCKS.length - 1)] ?? BOOST_SM_CLOCK)
            : BOOST_SM_CLOCK
          : IDLE_SM_CLOCK;
        mem[i] = MEM_CLOCK;
      }
      for (const [m, metric] of FLEET_METRICS.entries()) {
        const values = cols[m];
        if (values === undefined) continue;
        yield { gpu: g, host: hostName(h), metric, times: times.slice(), values };
      }
    }
  }
}

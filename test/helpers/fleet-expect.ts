/**
 * The fleet figures of docs/fleet.md ("Definitions") computed straight from readings, with none of
 * Nexus's code: what the acceptance test compares the endpoints with. Each function follows the
 * definition's words; none reads the rollup or the store.
 */
import type { SampleRow } from './sample.js';

const MINUTE = 60_000;
const HOUR_MS = 3_600_000;
const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';
const POWER = 'DCGM_FI_DEV_POWER_USAGE';
const ENGINE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const XID = 'DCGM_FI_DEV_XID_ERRORS';

/**
 * The part of its physical GPU a row is: 1 for a whole GPU, a MIG instance's compute slices out
 * of 7 (of 4 on an A30) from its profile (`3g.40gb`).
 */
export function migFraction(r: SampleRow | undefined): number {
  const profile = r?.labels.GPU_I_PROFILE;
  const m = profile === undefined ? null : /^(\d+)g\./.exec(profile);
  if (r?.labels.GPU_I_ID === undefined || m === null) return 1;
  return Math.min(1, Number(m[1]) / (/A30/i.test(r.model) ? 4 : 7));
}

/** A GPU (or a MIG instance) as the readings name it. */
export function gpuKey(r: SampleRow): string {
  const instance = r.labels.GPU_I_ID;
  return `${r.hostname}|${r.gpu}${instance === undefined ? '' : `|mig${instance}`}`;
}

interface MinuteAcc {
  workloads: Set<string>;
  utilSum: number;
  utilCount: number;
  powerSum: number;
  powerCount: number;
  energyMin: number;
  energyLast: number;
  energyLastTime: number;
}

export interface UsageFigures {
  gpuHours: number;
  energyKwh: number;
  /** sum(share x util sum), sum(share x util count): the average is their ratio. */
  utilWeightedSum: number;
  utilWeightedCount: number;
}

export interface UsageExpectation {
  readonly groups: Map<string, UsageFigures>;
  readonly unallocated: { gpuHours: number; energyKwh: number };
}

function emptyFigures(): UsageFigures {
  return { gpuHours: 0, energyKwh: 0, utilWeightedSum: 0, utilWeightedCount: 0 };
}

/**
 * Usage of [from, to) (minute-aligned) grouped by namespace, pod (`ns/pod`), host or GPU
 * (`host|gpu`), per the definitions: allocation minutes shared 1/k between the minute's
 * workloads, utilisation from the engine-active ratio where the GPU has it in the range, energy
 * from the counter (resets, look-back before the range) else the minute's average power x 60 s.
 */
export function expectedUsage(
  rows: readonly SampleRow[],
  from: number,
  to: number,
  groupBy: 'namespace' | 'pod' | 'host' | 'gpu',
): UsageExpectation {
  const byGpu = new Map<string, SampleRow[]>();
  for (const r of rows) {
    const k = gpuKey(r);
    let list = byGpu.get(k);
    if (list === undefined) byGpu.set(k, (list = []));
    list.push(r);
  }
  // Pass 1: each GPU row's minutes (its workloads, utilisation, energy).
  const minutesOf = new Map<
    string,
    { frac: number; minutes: Map<number, { a: MinuteAcc; kwh: number | undefined }> }
  >();
  for (const [key, all] of byGpu) {
    all.sort((a, b) => a.timestamp - b.timestamp);
    const inRange = all.filter((r) => r.timestamp >= from && r.timestamp < to);
    // The utilisation metric and the energy source are chosen per hour (docs/fleet.md).
    const hourOf = (t: number): number => Math.floor(t / HOUR_MS);
    const engineHours = new Set(
      inRange.filter((r) => r.metric === ENGINE).map((r) => hourOf(r.timestamp)),
    );
    const counterHours = new Set(
      inRange.filter((r) => r.metric === ENERGY).map((r) => hourOf(r.timestamp)),
    );
    const minutes = new Map<number, MinuteAcc>();
    const acc = (t: number): MinuteAcc => {
      const m = Math.floor(t / MINUTE) * MINUTE;
      let a = minutes.get(m);
      if (a === undefined) {
        a = {
          workloads: new Set(),
          utilSum: 0,
          utilCount: 0,
          powerSum: 0,
          powerCount: 0,
          energyMin: Infinity,
          energyLast: NaN,
          energyLastTime: -Infinity,
        };
        minutes.set(m, a);
      }
      return a;
    };
    for (const r of inRange) {
      const a = acc(r.timestamp);
      if (r.pod !== '') a.workloads.add(`${r.namespace}/${r.pod}`);
      const hasEngine = engineHours.has(hourOf(r.timestamp));
      if (r.metric === (hasEngine ? ENGINE : UTIL)) {
        a.utilSum += hasEngine ? r.value * 100 : r.value;
        a.utilCount++;
      } else if (r.metric === POWER) {
        a.powerSum += r.value;
        a.powerCount++;
      } else if (r.metric === ENERGY) {
        a.energyMin = Math.min(a.energyMin, r.value);
        if (r.timestamp >= a.energyLastTime) {
          a.energyLast = r.value;
          a.energyLastTime = r.timestamp;
        }
      }
    }
    // The counter's last value of the minute before each minute that has one: before the range,
    // the last reading of the closest earlier minute.
    const before = all.filter((r) => r.metric === ENERGY && r.timestamp < from);
    let previousLast: number | undefined = before.at(-1)?.value;
    const out = new Map<number, { a: MinuteAcc; kwh: number | undefined }>();
    for (const m of [...minutes.keys()].sort((x, y) => x - y)) {
      const a = minutes.get(m) as MinuteAcc;
      let joules: number | undefined;
      if (counterHours.has(hourOf(m))) {
        if (!Number.isNaN(a.energyLast)) {
          const mj =
            previousLast === undefined
              ? a.energyLast - a.energyMin
              : a.energyLast < previousLast
                ? a.energyLast
                : a.energyLast - previousLast;
          joules = mj / 1000;
          previousLast = a.energyLast;
        }
      } else if (a.powerCount > 0) {
        joules = (a.powerSum / a.powerCount) * 60;
      }
      out.set(m, { a, kwh: joules === undefined ? undefined : joules / 3_600_000 });
    }
    minutesOf.set(key, { frac: migFraction(all[0]), minutes: out });
  }
  // How many rows of each physical GPU report energy in each minute (a MIG GPU's counter repeats
  // on every instance: each counts its share).
  const reporting = new Map<string, number>();
  for (const [key, { minutes }] of minutesOf) {
    const physical = key.split('|').slice(0, 2).join('|');
    for (const [m, x] of minutes) {
      if (x.kwh === undefined) continue;
      const k = `${physical}@${m}`;
      reporting.set(k, (reporting.get(k) ?? 0) + 1);
    }
  }
  // Pass 2: attribution.
  const groups = new Map<string, UsageFigures>();
  const unallocated = { gpuHours: 0, energyKwh: 0 };
  for (const [key, { frac, minutes }] of minutesOf) {
    const [host] = key.split('|');
    const physical = key.split('|').slice(0, 2).join('|');
    for (const [m, { a, kwh: rowKwh }] of minutes) {
      const kwh = rowKwh === undefined ? 0 : rowKwh / (reporting.get(`${physical}@${m}`) ?? 1);
      if (a.workloads.size === 0) {
        unallocated.gpuHours += frac / 60;
        unallocated.energyKwh += kwh;
        if (groupBy === 'host' || groupBy === 'gpu') {
          const g = groupBy === 'host' ? (host ?? '') : key;
          if (!groups.has(g)) groups.set(g, emptyFigures());
        }
        continue;
      }
      const share = frac / a.workloads.size;
      for (const w of a.workloads) {
        const g =
          groupBy === 'namespace'
            ? (w.split('/')[0] ?? '')
            : groupBy === 'pod'
              ? w
              : groupBy === 'host'
                ? (host ?? '')
                : key;
        let f = groups.get(g);
        if (f === undefined) groups.set(g, (f = emptyFigures()));
        f.gpuHours += share / 60;
        f.energyKwh += kwh / a.workloads.size;
        if (a.utilCount > 0) {
          f.utilWeightedSum += share * a.utilSum;
          f.utilWeightedCount += share * a.utilCount;
        }
      }
    }
  }
  return { groups, unallocated };
}

export interface IdleExpectation {
  readonly key: string;
  readonly namespace: string;
  readonly pod: string;
  readonly idleSince: number;
  readonly lastSeen: number;
  readonly wastedGpuHours: number;
}

/**
 * Idle GPUs per the definition: the last reading carries a pod; utilisation below `threshold` in
 * every reading since the later of the end of the last minute that reached it and the pod's first
 * reading on the GPU; for at least `idleForMs` up to the last reading.
 */
export function expectedIdle(
  rows: readonly SampleRow[],
  threshold: number,
  idleForMs: number,
): IdleExpectation[] {
  const byGpu = new Map<string, SampleRow[]>();
  for (const r of rows) {
    const k = gpuKey(r);
    let list = byGpu.get(k);
    if (list === undefined) byGpu.set(k, (list = []));
    list.push(r);
  }
  const out: IdleExpectation[] = [];
  for (const [key, all] of byGpu) {
    all.sort((a, b) => a.timestamp - b.timestamp);
    const last = all.at(-1);
    if (last === undefined) continue;
    const lastSeen = last.timestamp;
    // The pods of the last reading's minute; the GPU holds the one first seen latest.
    const minute = Math.floor(lastSeen / MINUTE) * MINUTE;
    const firstSeen = new Map<string, { r: SampleRow; first: number }>();
    for (const r of all) {
      if (r.pod === '') continue;
      const k = `${r.namespace}/${r.pod}/${r.container}`;
      if (!firstSeen.has(k)) firstSeen.set(k, { r, first: r.timestamp });
    }
    const inMinute = new Set(
      all
        .filter((r) => r.pod !== '' && r.timestamp >= minute)
        .map((r) => `${r.namespace}/${r.pod}/${r.container}`),
    );
    const holders = [...inMinute].map((k) => firstSeen.get(k)).filter((x) => x !== undefined);
    holders.sort((a, b) => b.first - a.first);
    const holder = holders[0]?.r;
    if (holder === undefined) continue;
    const podStart = holders[0]?.first ?? 0;
    // The utilisation metric is chosen over the pod's tenure; none there: not idle.
    const tenure = all.filter((r) => r.timestamp >= podStart);
    const hasEngine = tenure.some((r) => r.metric === ENGINE);
    if (!hasEngine && !tenure.some((r) => r.metric === UTIL)) continue;
    let busyEnd = -Infinity;
    for (const r of all) {
      if (r.metric !== (hasEngine ? ENGINE : UTIL)) continue;
      const pct = hasEngine ? r.value * 100 : r.value;
      if (pct >= threshold) busyEnd = Math.floor(r.timestamp / MINUTE) * MINUTE + MINUTE;
    }
    const idleSince = Math.max(busyEnd, podStart);
    if (lastSeen - idleSince < idleForMs) continue;
    out.push({
      key,
      namespace: holder.namespace,
      pod: holder.pod,
      idleSince,
      lastSeen,
      wastedGpuHours: (lastSeen - idleSince) / 3_600_000,
    });
  }
  return out.sort((a, b) => b.wastedGpuHours - a.wastedGpuHours);
}

/** XID events per the definition: a change of the latched value to a non-zero code, per series. */
export function expectedXidEvents(
  rows: readonly SampleRow[],
): { key: string; time: number; code: number }[] {
  const last = new Map<string, number>();
  const out: { key: string; time: number; code: number }[] = [];
  for (const r of [...rows]
    .filter((x) => x.metric === XID)
    .sort((a, b) => a.timestamp - b.timestamp)) {
    const k = gpuKey(r);
    const before = last.get(k);
    if (r.value !== 0 && r.value !== before) out.push({ key: k, time: r.timestamp, code: r.value });
    last.set(k, r.value);
  }
  return out;
}

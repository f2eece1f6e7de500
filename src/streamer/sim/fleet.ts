/**
 * The simulated fleet (docs/fleet.md, "The simulated fleet"): a pure, seeded, deterministic model
 * of a small GPU cluster as dcgm-exporter would report it, for `nexus generate --fleet` and the
 * live fleet of `nexus up`.
 *
 * - Hosts x GPUs (default 4 x 8 H100 80GB). Each host is cut into units (a set of GPUs, a single
 *   GPU, or a MIG instance) that run jobs one after another with gaps between them: training
 *   (multi-GPU, hours, high utilisation with checkpoint dips), inference (a daily curve), notebooks
 *   (allocated, idle for long stretches, now and then a burst) and batch. Each job is one pod of
 *   one namespace (training, inference, research, batch); a gap is an unallocated GPU.
 * - Physics per GPU: power follows utilisation (idle ~60-90 W up to the 700 W limit, which sets
 *   the SW power cap reason); temperature follows power and the inlet air with thermal inertia;
 *   SM clocks at a few levels (idle, boost, thermal slowdowns); the energy counter
 *   (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ) adds each reading's power x the interval, and
 *   restarts at 0 when its host reboots.
 * - The incidents of {@link fleetIncidents}, at fixed offsets from the start (divided by `speed`):
 *   one thermal incident, four XIDs (latched until the host's reboot), a reboot, a GPU that falls
 *   off the bus and stops reporting for good, and one that stops and comes back.
 *
 * The same options give the same readings, record for record. Schedules (job lengths, incidents)
 * run `speed` times faster than the clock; physics (thermal inertia, energy) follow the clock of
 * the readings, so energy is always the integral of the reported power.
 */
import type { TelemetryRecord } from '../../core/record.js';
import { hex, prng } from '../csv/generator.js';

export interface FleetOptions {
  readonly seed: number;
  readonly hosts: number;
  readonly gpusPerHost: number;
  /** Time of the first readings (epoch ms) and the time between readings (ms). */
  readonly startMs: number;
  readonly intervalMs: number;
  /** Scenario time per clock time: 1 for a real day; 10 plays a day's jobs and incidents in 2.4 h. */
  readonly speed: number;
  readonly hostPrefix: string;
}

export const DEFAULT_FLEET: FleetOptions = {
  seed: 19,
  hosts: 4,
  gpusPerHost: 8,
  startMs: Date.UTC(2026, 0, 5, 0, 0, 0),
  intervalMs: 30_000,
  speed: 1,
  hostPrefix: 'gpu-node-',
};

export const FLEET_GPU_MODEL = 'NVIDIA H100 80GB HBM3';
const DRIVER = '550.90.07';
const TDP_W = 700;
const FB_TOTAL_MIB = 81_559;
const FB_RESERVED_MIB = 556;
const MIG_PROFILE = '3g.40gb';
const MIG_FB_MIB = 40_320;
const MEM_CLOCK_MHZ = 2619;
/** DCGM_CLOCKS_EVENT_REASON_* bits (dcgm_structs.h). */
export const CLOCK_REASON = {
  gpuIdle: 0x1,
  swPowerCap: 0x4,
  hwSlowdown: 0x8,
  swThermal: 0x20,
  hwThermal: 0x40,
} as const;
const SW_THERMAL_C = 85;
const HW_THERMAL_C = 90;
const INLET_C = 24;
/** Thermal time constant of a GPU and its heatsink (s). */
const TAU_S = 60;

/** The fields of a whole GPU, in the order they are written. */
export const FLEET_METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_MEM_COPY_UTIL',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_MEMORY_TEMP',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_FB_FREE',
  'DCGM_FI_DEV_SM_CLOCK',
  'DCGM_FI_DEV_MEM_CLOCK',
  'DCGM_FI_DEV_XID_ERRORS',
  'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS',
  'DCGM_FI_DEV_POWER_VIOLATION',
  'DCGM_FI_DEV_THERMAL_VIOLATION',
  'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
  'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE',
  'DCGM_FI_PROF_DRAM_ACTIVE',
] as const;
/** A MIG instance has no DEV_GPU_UTIL nor MEM_COPY_UTIL (DCGM does not support them in MIG mode). */
const MIG_METRICS = FLEET_METRICS.filter(
  (m) => m !== 'DCGM_FI_DEV_GPU_UTIL' && m !== 'DCGM_FI_DEV_MEM_COPY_UTIL',
);

/** NVIDIA's XID catalogue, the codes the model raises. */
export const FLEET_XID_MESSAGES: Readonly<Record<number, string>> = {
  13: 'Graphics Engine Exception',
  31: 'GPU memory page fault',
  43: 'GPU stopped processing',
  79: 'GPU has fallen off the bus',
};

const MINUTE = 60_000;
const HOUR = 3_600_000;

export type FleetIncident =
  | {
      readonly kind: 'thermal';
      readonly host: string;
      /** The cooling fails at `start` (inlet air climbs for 5 minutes) and is back at `end`. */
      readonly start: number;
      readonly end: number;
    }
  | {
      readonly kind: 'xid';
      readonly host: string;
      readonly gpu: number;
      readonly code: number;
      readonly message: string;
      readonly at: number;
    }
  | {
      readonly kind: 'reboot';
      readonly host: string;
      /** No readings of the host in [start, end); energy counters restart at 0, XIDs clear. */
      readonly start: number;
      readonly end: number;
    }
  | {
      readonly kind: 'stopped';
      readonly host: string;
      readonly gpu: number;
      /** Its last reading is before `at`; it comes back at `back` (undefined: never). */
      readonly at: number;
      readonly back: number | undefined;
    };

/** Scenario offsets (at speed 1) of the incidents, by host number (1-based) and GPU index. */
const SCENARIO = {
  xid13: { host: 1, gpu: 3, code: 13, at: 40 * MINUTE },
  thermal: { host: 3, start: 60 * MINUTE, end: 80 * MINUTE },
  xid31: { host: 2, gpu: 5, code: 31, at: 3 * HOUR },
  xid79: { host: 2, gpu: 6, code: 79, at: 5 * HOUR, stopsAfter: MINUTE },
  stopped: { host: 3, gpu: 4, at: 7 * HOUR, back: 7 * HOUR + 40 * MINUTE },
  xid43: { host: 3, gpu: 1, code: 43, at: 9 * HOUR },
  reboot: { host: 1, start: 12 * HOUR, end: 12 * HOUR + 5 * MINUTE },
  mig: { host: 4, gpus: [6, 7], instances: [1, 2] },
} as const;

export function hostName(options: FleetOptions, host: number): string {
  return `${options.hostPrefix}${String(host).padStart(2, '0')}`;
}

/**
 * The incidents these options produce, at clock times (start + scenario offset / speed), in time
 * order. Those on a host or GPU the fleet does not have are left out; those after the range a
 * caller generates simply do not happen in it.
 */
export function fleetIncidents(options: FleetOptions): FleetIncident[] {
  const at = (offset: number): number => options.startMs + Math.round(offset / options.speed);
  const has = (host: number, gpu = 0): boolean =>
    host <= options.hosts && gpu < options.gpusPerHost;
  const out: FleetIncident[] = [];
  for (const x of [SCENARIO.xid13, SCENARIO.xid31, SCENARIO.xid79, SCENARIO.xid43]) {
    if (!has(x.host, x.gpu)) continue;
    out.push({
      kind: 'xid',
      host: hostName(options, x.host),
      gpu: x.gpu,
      code: x.code,
      message: FLEET_XID_MESSAGES[x.code] ?? '',
      at: at(x.at),
    });
  }
  const t = SCENARIO.thermal;
  if (has(t.host)) {
    out.push({
      kind: 'thermal',
      host: hostName(options, t.host),
      start: at(t.start),
      end: at(t.end),
    });
  }
  const x79 = SCENARIO.xid79;
  if (has(x79.host, x79.gpu)) {
    out.push({
      kind: 'stopped',
      host: hostName(options, x79.host),
      gpu: x79.gpu,
      // At least two readings with the XID before it goes, at any speed.
      at: Math.max(at(x79.at + x79.stopsAfter), at(x79.at) + 2 * options.intervalMs),
      back: undefined,
    });
  }
  const s = SCENARIO.stopped;
  if (has(s.host, s.gpu)) {
    out.push({
      kind: 'stopped',
      host: hostName(options, s.host),
      gpu: s.gpu,
      at: at(s.at),
      back: at(s.back),
    });
  }
  const r = SCENARIO.reboot;
  if (has(r.host)) {
    out.push({
      kind: 'reboot',
      host: hostName(options, r.host),
      start: at(r.start),
      end: at(r.end),
    });
  }
  const time = (i: FleetIncident): number =>
    i.kind === 'xid' ? i.at : i.kind === 'stopped' ? i.at : i.start;
  return out.sort((a, b) => time(a) - time(b));
}

/** The MIG-enabled GPUs (host name, GPU index) and their instances (GPU_I_ID). */
export function fleetMig(
  options: FleetOptions,
): { host: string; gpu: number; instances: number[] }[] {
  const m = SCENARIO.mig;
  if (m.host > options.hosts) return [];
  return m.gpus
    .filter((g) => g < options.gpusPerHost)
    .map((gpu) => ({ host: hostName(options, m.host), gpu, instances: [...m.instances] }));
}

/** A one-paragraph description of the fleet these options make (the overview shows it). */
export function describeFleet(options: FleetOptions): string {
  const speed = options.speed === 1 ? 'in real time' : `${options.speed}x faster than real time`;
  return `Simulated fleet (seed ${options.seed}): ${options.hosts} hosts x ${options.gpusPerHost} ${FLEET_GPU_MODEL}, a reading every ${options.intervalMs / 1000} s; jobs (training, inference, notebooks, batch) and incidents (a thermal incident, XIDs, a reboot, a GPU lost) play ${speed}. Not real data: nexus up --csv FILE streams a real export.`;
}

/** A seed for a named stream of the fleet's seed (each host, unit and GPU draws its own). */
function subSeed(seed: number, name: string): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)] as T;
}

function between(rand: () => number, lo: number, hi: number): number {
  return lo + rand() * (hi - lo);
}

type JobKind = 'training' | 'inference' | 'notebook' | 'batch';

interface Job {
  readonly kind: JobKind;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  /** Clock times. */
  readonly start: number;
  readonly end: number;
  /** Memory per GPU (MiB) and how hard the job drives power (0..1). */
  readonly fbMiB: number;
  readonly intensity: number;
  readonly level: number;
  /** A notebook's bursts of work, [start, end) clock times (none: nobody touches it again). */
  readonly bursts: readonly (readonly [number, number])[];
}

const NAMESPACE: Record<JobKind, string> = {
  training: 'training',
  inference: 'inference',
  notebook: 'research',
  batch: 'batch',
};
const USERS = ['alice', 'bob', 'chen', 'dana', 'emre', 'fatima', 'goran', 'hiro', 'ines', 'jon'];
const MODELS = ['llama-70b', 'mixtral-8x7b', 'vit-huge', 'whisper-large', 'sdxl', 'bert-large'];

/** A set of GPUs (or one MIG instance) that runs one job at a time. */
interface Unit {
  readonly name: string;
  /** The unit's schedule (jobs, their lengths and bursts), the same at any interval. */
  readonly rand: () => number;
  /** The noise of each reading. */
  readonly noise: () => number;
  readonly kinds: readonly JobKind[];
  /** MIG instance units run smaller jobs. */
  readonly mig: boolean;
  job: Job | undefined;
  /** The current job's end, or the end of the gap before the next one (clock time). */
  until: number;
}

interface Entity {
  readonly gpu: GpuState;
  readonly unit: Unit;
  /** MIG: GPU_I_ID, undefined for a whole GPU. */
  readonly instance: number | undefined;
  util: number;
  labels: Map<string, Readonly<Record<string, string>>>;
  labelsKey: string;
}

interface GpuState {
  readonly host: HostState;
  readonly index: number;
  readonly uuid: string;
  readonly rand: () => number;
  readonly idleW: number;
  readonly entities: Entity[];
  temp: number;
  memTemp: number;
  /** mJ since the driver loaded. */
  energy: number;
  powerViolationNs: number;
  thermalViolationNs: number;
  xid: number;
  reasons: number;
  /** The SM clock (MHz) and power (W) of the current instant. */
  clock: number;
  power: number;
  /** An XID (at this time) killed the job: it ends after this instant's readings. */
  failing: number | undefined;
}

interface HostState {
  readonly number: number;
  readonly name: string;
  readonly gpus: GpuState[];
}

export class FleetModel {
  private readonly hosts: HostState[] = [];
  private readonly incidents: FleetIncident[];
  private step = 0;
  private lastT: number | undefined;

  constructor(readonly options: FleetOptions) {
    if (!(options.speed > 0) || !(options.intervalMs > 0)) {
      throw new RangeError('speed and interval must be positive');
    }
    this.incidents = fleetIncidents(options);
    const mig = fleetMig(options);
    for (let h = 1; h <= options.hosts; h++) {
      const name = hostName(options, h);
      const host: HostState = { number: h, name, gpus: [] };
      const hostRand = prng(subSeed(options.seed, name));
      for (let g = 0; g < options.gpusPerHost; g++) {
        const rand = prng(subSeed(options.seed, `${name}/${g}`));
        const uuid = `GPU-${hex(hostRand, 8)}-${hex(hostRand, 4)}-${hex(hostRand, 4)}-${hex(hostRand, 4)}-${hex(hostRand, 12)}`;
        const idleW = between(rand, 62, 88);
        // Days since the driver loaded, at a typical average draw.
        const energy = Math.round(between(rand, 3, 40) * 86_400 * 260 * 1000);
        host.gpus.push({
          host,
          index: g,
          uuid,
          rand,
          idleW,
          entities: [],
          temp: INLET_C + 6 + 0.062 * idleW,
          memTemp: INLET_C + 4 + 0.055 * idleW,
          energy,
          powerViolationNs: Math.round(between(rand, 0, 5e12)),
          thermalViolationNs: 0,
          xid: 0,
          reasons: CLOCK_REASON.gpuIdle,
          clock: 345,
          power: idleW,
          failing: undefined,
        });
      }
      // Units: host 1 trains on two halves, host 2 mixes pairs and singles, the rest are singles.
      const groups: number[][] =
        h === 1
          ? [
              [0, 1, 2, 3],
              [4, 5, 6, 7],
            ]
          : h === 2
            ? [[0, 1], [2, 3], [4], [5], [6], [7]]
            : Array.from({ length: options.gpusPerHost }, (_, i) => [i]);
      for (const group of groups) {
        const members = group.filter((g) => g < options.gpusPerHost);
        if (members.length === 0) continue;
        const first = members[0] as number;
        const migGpu = mig.find((m) => m.host === name && m.gpu === first);
        if (migGpu !== undefined && members.length === 1) {
          for (const instance of migGpu.instances) {
            const unit = this.unit(
              `${name}/${first}/mig${instance}`,
              ['inference', 'notebook'],
              true,
            );
            const gpu = host.gpus[first] as GpuState;
            gpu.entities.push(entity(gpu, unit, instance));
          }
          continue;
        }
        const kinds: readonly JobKind[] =
          h === 1
            ? ['training', 'training', 'training', 'batch']
            : members.length > 1
              ? ['training', 'batch', 'batch']
              : h === 2
                ? ['inference', 'batch', 'notebook']
                : ['inference', 'inference', 'notebook', 'notebook', 'batch'];
        const unit = this.unit(`${name}/${members.join('+')}`, kinds, false);
        for (const g of members) {
          const gpu = host.gpus[g] as GpuState;
          gpu.entities.push(entity(gpu, unit, undefined));
        }
      }
      this.hosts.push(host);
    }
  }

  private unit(name: string, kinds: readonly JobKind[], mig: boolean): Unit {
    const rand = prng(subSeed(this.options.seed, name));
    const noise = prng(subSeed(this.options.seed, `${name}/noise`));
    const unit: Unit = {
      name,
      rand,
      noise,
      kinds,
      mig,
      job: undefined,
      until: this.options.startMs,
    };
    // At the start most units are already busy, part-way through a job.
    if (rand() < 0.8) {
      const job = this.newJob(unit, this.options.startMs);
      const elapsed = rand() * (job.end - job.start);
      unit.job = {
        ...job,
        start: job.start - elapsed,
        end: job.end - elapsed,
        bursts: job.bursts.map(([a, b]) => [a - elapsed, b - elapsed] as const),
      };
      if (unit.job.end <= this.options.startMs) unit.job = undefined;
      unit.until = unit.job?.end ?? this.options.startMs + this.scenario(rand() * 30 * MINUTE);
    } else {
      unit.until = this.options.startMs + this.scenario(rand() * 45 * MINUTE);
    }
    return unit;
  }

  /** A scenario duration as clock time. */
  private scenario(ms: number): number {
    return Math.round(ms / this.options.speed);
  }

  private newJob(unit: Unit, start: number): Job {
    const r = unit.rand;
    const kind = pick(r, unit.kinds);
    const scale = unit.mig ? MIG_FB_MIB / FB_TOTAL_MIB : 1;
    const span = (lo: number, hi: number): number => this.scenario(between(r, lo, hi));
    switch (kind) {
      case 'training':
        return job(
          kind,
          `train-${pick(r, MODELS)}-${hex(r, 5)}`,
          'trainer',
          start,
          span(2 * HOUR, 9 * HOUR),
          between(r, 60_000, 76_000) * scale,
          between(r, 0.9, 1),
          between(r, 88, 97),
        );
      case 'inference':
        return job(
          kind,
          `serve-${pick(r, MODELS)}-${hex(r, 9)}-${hex(r, 5)}`,
          'server',
          start,
          span(1 * HOUR, 6 * HOUR),
          between(r, 18_000, 42_000) * scale,
          between(r, 0.6, 0.8),
          between(r, 30, 60),
        );
      case 'notebook': {
        const nb = job(
          kind,
          `jupyter-${pick(r, USERS)}-${hex(r, 4)}`,
          'notebook',
          start,
          span(2 * HOUR, 8 * HOUR),
          between(r, 4_000, 30_000) * scale,
          between(r, 0.5, 0.7),
          between(r, 40, 85),
        );
        // Half of the notebooks are never touched again; the others work in bursts of 5 to 25
        // minutes, about every 90 minutes.
        const bursts: [number, number][] = [];
        if (r() >= 0.5) {
          for (let at = start; ;) {
            at += this.scenario(-Math.log(1 - r()) * 90 * MINUTE);
            const end = at + span(5 * MINUTE, 25 * MINUTE);
            if (at >= nb.end) break;
            bursts.push([at, Math.min(end, nb.end)]);
            at = end;
          }
        }
        return { ...nb, bursts };
      }
      case 'batch':
        return job(
          kind,
          `etl-embed-${hex(r, 5)}`,
          'worker',
          start,
          span(20 * MINUTE, 2 * HOUR),
          between(r, 20_000, 60_000) * scale,
          between(r, 0.8, 0.95),
          between(r, 75, 95),
        );
    }
  }

  /** The clock time of the next readings. */
  get nextTime(): number {
    return this.options.startMs + this.step * this.options.intervalMs;
  }

  /** The readings of the next instant (the model's clock advances one interval). */
  next(): TelemetryRecord[] {
    const t = this.nextTime;
    this.step++;
    const dtMs = this.lastT === undefined ? this.options.intervalMs : t - this.lastT;
    this.lastT = t;
    const out: TelemetryRecord[] = [];
    const units = new Set<Unit>();
    for (const host of this.hosts) {
      for (const gpu of host.gpus) for (const e of gpu.entities) units.add(e.unit);
    }
    for (const unit of units) this.advanceUnit(unit, t);
    for (const host of this.hosts) {
      const reboot = this.incidents.find(
        (i): i is Extract<FleetIncident, { kind: 'reboot' }> =>
          i.kind === 'reboot' && i.host === host.name,
      );
      const down = reboot !== undefined && t >= reboot.start && t < reboot.end;
      for (const gpu of host.gpus) {
        if (down) {
          gpu.energy = 0;
          gpu.xid = 0;
          gpu.temp = INLET_C + 2;
          gpu.memTemp = INLET_C + 2;
          // Its jobs are gone; new ones are scheduled 10 minutes after it is back.
          for (const e of gpu.entities) {
            e.unit.job = undefined;
            e.unit.until = reboot.end + this.scenario(10 * MINUTE);
          }
          continue;
        }
        this.advanceGpu(gpu, t, dtMs);
        if (this.reporting(host.name, gpu.index, t)) this.emit(out, gpu, t);
        if (gpu.failing !== undefined) {
          const at = gpu.failing;
          gpu.failing = undefined;
          for (const e of gpu.entities) {
            if (e.unit.job === undefined) continue;
            e.unit.job = undefined;
            e.unit.until = at + this.scenario(between(e.unit.rand, 10 * MINUTE, 40 * MINUTE));
          }
        }
      }
    }
    return out;
  }

  private reporting(host: string, gpu: number, t: number): boolean {
    for (const i of this.incidents) {
      if (i.kind !== 'stopped' || i.host !== host || i.gpu !== gpu) continue;
      if (t >= i.at && (i.back === undefined || t < i.back)) return false;
    }
    return true;
  }

  private advanceUnit(unit: Unit, t: number): void {
    while (t >= unit.until) {
      if (unit.job !== undefined) {
        unit.job = undefined;
        unit.until += this.scenario(between(unit.rand, 5 * MINUTE, 50 * MINUTE));
      } else {
        unit.job = this.newJob(unit, unit.until);
        unit.until = unit.job.end;
      }
    }
  }

  /**
   * How far the host's cooling has failed (0: working, 1: failed): it fails over 5 minutes from
   * the thermal incident's start and recovers over 5 minutes from its end.
   */
  private coolingFailure(host: string, t: number): number {
    for (const i of this.incidents) {
      if (i.kind !== 'thermal' || i.host !== host) continue;
      const ramp = this.scenario(5 * MINUTE);
      if (t >= i.start && t < i.end) return Math.min(1, (t - i.start) / ramp);
      if (t >= i.end && t < i.end + ramp) return 1 - (t - i.end) / ramp;
    }
    return 0;
  }

  private jobUtil(job: Job | undefined, unit: Unit, t: number): number {
    if (job === undefined) return 0;
    const r = unit.noise;
    const scenarioT = (t - this.options.startMs) * this.options.speed;
    switch (job.kind) {
      case 'training': {
        // A checkpoint every 30 minutes of the job, about 2 minutes long.
        const inJob = ((t - job.start) * this.options.speed) % (30 * MINUTE);
        if (inJob < 2 * MINUTE) return between(r, 4, 12);
        return job.level + between(r, -3, 3);
      }
      case 'inference': {
        const hour = (scenarioT / HOUR + 8) % 24;
        const daily = 0.5 + 0.5 * Math.sin((2 * Math.PI * (hour - 9)) / 24);
        return job.level * (0.5 + daily) + between(r, -8, 8);
      }
      case 'notebook': {
        if (job.bursts.some(([a, b]) => t >= a && t < b)) return job.level + between(r, -10, 10);
        return r() < 0.9 ? 0 : between(r, 0.5, 2.5);
      }
      case 'batch':
        return job.level + between(r, -5, 5);
    }
  }

  private advanceGpu(gpu: GpuState, t: number, dtMs: number): void {
    const r = gpu.rand;
    let load = 0;
    let intensity = 0;
    for (const e of gpu.entities) {
      e.util = Math.max(0, Math.min(100, this.jobUtil(e.unit.job, e.unit, t)));
      const share = e.instance === undefined ? 1 : 3 / 7;
      load += share * e.util;
      intensity += share * (e.unit.job?.intensity ?? 0);
    }
    const busy = load > 0.5;
    // The temperature moves toward what the power of the last interval heats it to. A failed
    // cooling: hotter inlet air, and the fans cannot carry the heat away (the thermal resistance
    // doubles).
    const dtS = dtMs / 1000;
    const failure = this.coolingFailure(gpu.host.name, t);
    const inlet = INLET_C + 28 * failure;
    const resistance = 1 + failure;
    const k = 1 - Math.exp(-dtS / TAU_S);
    gpu.temp += (inlet + 6 + 0.062 * resistance * gpu.power - gpu.temp) * k;
    gpu.memTemp += (inlet + 4 + 0.055 * resistance * gpu.power - gpu.memTemp) * k;
    // Thermal slowdowns at the temperature reached: lower clocks, less power.
    let reasons = 0;
    let clock = busy ? 1980 : 345;
    let powerFactor = 1;
    if (gpu.temp >= HW_THERMAL_C) {
      reasons |= CLOCK_REASON.hwThermal | CLOCK_REASON.hwSlowdown;
      clock = busy ? 1095 : 345;
      powerFactor = 0.3;
    } else if (gpu.temp >= SW_THERMAL_C) {
      reasons |= CLOCK_REASON.swThermal;
      clock = busy ? 1410 : 345;
      powerFactor = 0.6;
    }
    const dynamic = (TDP_W - gpu.idleW) * (load / 100) * Math.max(0.5, Math.min(1, intensity));
    let power = gpu.idleW + dynamic * powerFactor * between(r, 0.97, 1.03) + between(r, -1.5, 1.5);
    if (power > TDP_W) {
      power = TDP_W - between(r, 0, 6);
      reasons |= CLOCK_REASON.swPowerCap;
      clock = Math.min(clock, 1755);
    }
    if (!busy) reasons |= CLOCK_REASON.gpuIdle;
    power = Math.round(power * 1000) / 1000;
    gpu.energy += Math.round(power * dtMs);
    if ((reasons & CLOCK_REASON.swPowerCap) !== 0) gpu.powerViolationNs += dtMs * 1e6;
    if ((reasons & (CLOCK_REASON.swThermal | CLOCK_REASON.hwThermal)) !== 0)
      gpu.thermalViolationNs += dtMs * 1e6;
    for (const i of this.incidents) {
      if (
        i.kind === 'xid' &&
        i.host === gpu.host.name &&
        i.gpu === gpu.index &&
        t >= i.at &&
        t - dtMs < i.at
      ) {
        gpu.xid = i.code;
        // The job on the GPU dies of it after this instant (whose readings still carry its pod).
        if (i.code !== 79) gpu.failing = i.at;
      }
    }
    gpu.reasons = reasons;
    gpu.clock = clock;
    gpu.power = power;
  }

  private emit(out: TelemetryRecord[], gpu: GpuState, t: number): void {
    const r = gpu.rand;
    for (const e of gpu.entities) {
      const job = e.unit.job;
      const mig = e.instance !== undefined;
      const fbTotal = mig ? MIG_FB_MIB : FB_TOTAL_MIB - FB_RESERVED_MIB;
      const fbUsed =
        job === undefined
          ? 0
          : Math.round(Math.min(fbTotal - 200, job.fbMiB + between(r, -300, 300)));
      const gr = round6(Math.min(1, (e.util / 100) * between(r, 0.93, 0.99)));
      const tensor = round6(
        gr * (job?.kind === 'training' ? between(r, 0.45, 0.6) : between(r, 0.15, 0.35)),
      );
      const dram = round6(gr * between(r, 0.3, 0.55));
      const values: Record<(typeof FLEET_METRICS)[number], number> = {
        DCGM_FI_DEV_GPU_UTIL: Math.round(Math.min(100, e.util)),
        DCGM_FI_DEV_MEM_COPY_UTIL: Math.round(Math.min(100, e.util * between(r, 0.25, 0.45))),
        DCGM_FI_DEV_GPU_TEMP: Math.round(gpu.temp),
        DCGM_FI_DEV_MEMORY_TEMP: Math.round(gpu.memTemp),
        DCGM_FI_DEV_POWER_USAGE: gpu.power,
        DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION: gpu.energy,
        DCGM_FI_DEV_FB_USED: fbUsed,
        DCGM_FI_DEV_FB_FREE: fbTotal - fbUsed,
        DCGM_FI_DEV_SM_CLOCK: gpu.clock,
        DCGM_FI_DEV_MEM_CLOCK: MEM_CLOCK_MHZ,
        DCGM_FI_DEV_XID_ERRORS: gpu.xid,
        DCGM_FI_DEV_CLOCK_THROTTLE_REASONS: gpu.reasons,
        DCGM_FI_DEV_POWER_VIOLATION: gpu.powerViolationNs,
        DCGM_FI_DEV_THERMAL_VIOLATION: gpu.thermalViolationNs,
        DCGM_FI_PROF_GR_ENGINE_ACTIVE: gr,
        DCGM_FI_PROF_PIPE_TENSOR_ACTIVE: tensor,
        DCGM_FI_PROF_DRAM_ACTIVE: dram,
      };
      const labelsKey = `${job?.pod ?? ''}/${gpu.xid}`;
      if (labelsKey !== e.labelsKey) {
        e.labels = new Map();
        e.labelsKey = labelsKey;
      }
      const hostname = gpu.host.name;
      const device = `nvidia${gpu.index}`;
      const uuid = gpu.uuid;
      const model = FLEET_GPU_MODEL;
      for (const metric of mig ? MIG_METRICS : FLEET_METRICS) {
        const labels = this.labelsOf(e, metric, job);
        const value = values[metric];
        out.push(
          job === undefined
            ? { timestamp: t, metric, gpu: gpu.index, hostname, value, device, uuid, model, labels }
            : {
                timestamp: t,
                metric,
                gpu: gpu.index,
                hostname,
                value,
                device,
                uuid,
                model,
                container: job.container,
                pod: job.pod,
                namespace: job.namespace,
                labels,
              },
        );
      }
    }
  }

  private labelsOf(
    e: Entity,
    metric: string,
    job: Job | undefined,
  ): Readonly<Record<string, string>> {
    const cached = e.labels.get(metric);
    if (cached !== undefined) return cached;
    const gpu = e.gpu;
    const labels: Record<string, string> = {
      DCGM_FI_DRIVER_VERSION: DRIVER,
      Hostname: gpu.host.name,
      UUID: gpu.uuid,
      __name__: metric,
      device: `nvidia${gpu.index}`,
      gpu: String(gpu.index),
      instance: `${gpu.host.name}:9400`,
      job: 'dcgm-exporter',
      modelName: FLEET_GPU_MODEL,
    };
    if (e.instance !== undefined) {
      labels.GPU_I_ID = String(e.instance);
      labels.GPU_I_PROFILE = MIG_PROFILE;
    }
    if (job !== undefined) {
      labels.container = job.container;
      labels.namespace = job.namespace;
      labels.pod = job.pod;
    }
    if (metric === 'DCGM_FI_DEV_XID_ERRORS' && gpu.xid !== 0) {
      labels.err_code = String(gpu.xid);
      labels.err_msg = FLEET_XID_MESSAGES[gpu.xid] ?? '';
    }
    const sorted = Object.freeze(
      Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    );
    e.labels.set(metric, sorted);
    return sorted;
  }
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

function job(
  kind: JobKind,
  pod: string,
  container: string,
  start: number,
  length: number,
  fbMiB: number,
  intensity: number,
  level: number,
): Job {
  return {
    kind,
    namespace: NAMESPACE[kind],
    pod,
    container,
    start,
    end: start + length,
    fbMiB,
    intensity,
    level,
    bursts: [],
  };
}

function entity(gpu: GpuState, unit: Unit, instance: number | undefined): Entity {
  return { gpu, unit, instance, util: 0, labels: new Map(), labelsKey: '' };
}

export interface FleetRange extends FleetOptions {
  /** Readings from startMs up to (not including) startMs + durationMs. */
  readonly durationMs: number;
}

/** Every reading of the fleet over a range, instant by instant (what the lead's tests replay). */
export function* fleetInstants(options: FleetRange): Generator<TelemetryRecord[]> {
  const model = new FleetModel(options);
  while (model.nextTime < options.startMs + options.durationMs) yield model.next();
}

/** Every reading of the fleet over a range, in one array (a day of the default fleet: ~1.6 M). */
export function generateFleetRecords(options: FleetRange): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  for (const instant of fleetInstants(options)) for (const r of instant) out.push(r);
  return out;
}

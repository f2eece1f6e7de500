import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { SAMPLE_METRICS, DCGM_FIELDS } from '../../core/dcgm-fields.js';

export interface GenerateOptions {
  readonly hosts: number;
  readonly gpusPerHost: number;
  /** DCGM field names to emit per GPU and timestamp. */
  readonly metrics: readonly string[];
  readonly timestamps: number;
  /** First timestamp (epoch ms) and spacing between timestamps (ms). */
  readonly startMs: number;
  readonly intervalMs: number;
  /** Fraction of GPUs running a Kubernetes pod (container/pod/namespace filled in). */
  readonly podFraction: number;
  readonly seed: number;
  readonly hostPrefix: string;
  readonly model: string;
}

export const DEFAULT_GENERATE: GenerateOptions = {
  hosts: 32,
  gpusPerHost: 8,
  metrics: SAMPLE_METRICS,
  timestamps: 10,
  startMs: Date.UTC(2025, 6, 18, 20, 0, 0),
  intervalMs: 10_000,
  podFraction: 0.6,
  seed: 42,
  hostPrefix: 'gpu-node-',
  model: 'NVIDIA H100 80GB HBM3',
};

export const HEADER =
  'timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n';

/** mulberry32: a small, fast, seedable PRNG (the fleet model draws from it too). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` random hexadecimal digits (GPU uuids). */
export function hex(rand: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += Math.floor(rand() * 16).toString(16);
  return s;
}

const FB_TOTAL = 81_559;
const NAMESPACES = ['training', 'inference', 'research', 'batch'];

interface GpuState {
  readonly host: string;
  readonly index: number;
  readonly uuid: string;
  readonly pod: { container: string; pod: string; namespace: string } | undefined;
  /** Static CSV prefix per metric, up to (not including) the value. */
  readonly prefix: Map<string, string>;
  readonly labelsBefore: string;
  readonly labelsAfter: string;
  util: number;
  busy: boolean;
  fbUsed: number;
  energy: number;
}

/**
 * Writes DCGM-format CSV (the columns, quoting and labels of dcgm-exporter output) for a synthetic
 * fleet: hosts x GPUs x metrics x timestamps, with values that move like real GPUs (idle or busy
 * phases, temperature and power following utilisation, memory used + free = 80 GB) and Kubernetes
 * workload labels on some GPUs. Deterministic for a given seed. Returns the rows written.
 */
export async function generateCsv(options: GenerateOptions, out: Writable): Promise<number> {
  const rand = prng(options.seed);
  const gpus: GpuState[] = [];
  // Host numbers padded to one width (at least 4 digits), so that names sort in number order.
  const width = Math.max(4, String(options.hosts).length);
  for (let h = 0; h < options.hosts; h++) {
    const host = `${options.hostPrefix}${String(h + 1).padStart(width, '0')}`;
    for (let g = 0; g < options.gpusPerHost; g++) {
      const uuid = `GPU-${hex(rand, 8)}-${hex(rand, 4)}-${hex(rand, 4)}-${hex(rand, 4)}-${hex(rand, 12)}`;
      const withPod = rand() < options.podFraction;
      const ns = NAMESPACES[Math.floor(rand() * NAMESPACES.length)] ?? 'default';
      const pod = withPod
        ? { container: 'main', pod: `${ns}-job-${hex(rand, 5)}-${g}`, namespace: ns }
        : undefined;
      const podCols =
        pod === undefined ? '"","",""' : `"${pod.container}","${pod.pod}","${pod.namespace}"`;
      const prefix = new Map<string, string>();
      for (const m of options.metrics) {
        prefix.set(
          m,
          `","${m}","${g}","nvidia${g}","${uuid}","${options.model}","${host}",${podCols},"`,
        );
      }
      const podLabels =
        pod === undefined
          ? ''
          : `,container=""${pod.container}"",namespace=""${pod.namespace}"",pod=""${pod.pod}""`;
      gpus.push({
        host,
        index: g,
        uuid,
        pod,
        prefix,
        labelsBefore: `","DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""${host}"",UUID=""${uuid}"",__name__=""`,
        labelsAfter: `"",device=""nvidia${g}"",gpu=""${g}"",instance=""${host}:9400"",job=""dgx_dcgm_exporter"",modelName=""${options.model}""${podLabels}"\n`,
        util: 0,
        busy: withPod,
        fbUsed: withPod ? 20_000 + rand() * 55_000 : 0,
        energy: 1e9 + rand() * 1e10,
      });
    }
  }
  let rows = 0;
  let chunk = '';
  const flush = async (): Promise<void> => {
    if (!out.write(chunk)) await once(out, 'drain');
    chunk = '';
  };
  if (!out.write(HEADER)) await once(out, 'drain');
  for (let t = 0; t < options.timestamps; t++) {
    const iso = new Date(options.startMs + t * options.intervalMs)
      .toISOString()
      .replace('.000Z', 'Z');
    for (const gpu of gpus) advance(gpu, rand);
    for (const metric of options.metrics) {
      for (const gpu of gpus) {
        chunk += `"${iso}${gpu.prefix.get(metric) ?? ''}${valueOf(metric, gpu, rand)}${gpu.labelsBefore}${metric}${gpu.labelsAfter}`;
        rows++;
        if (chunk.length > 1 << 20) await flush();
      }
    }
  }
  await flush();
  return rows;
}

function advance(g: GpuState, rand: () => number): void {
  if (rand() < 0.05) g.busy = !g.busy;
  const target = g.busy ? 85 + rand() * 15 : rand() < 0.9 ? 0 : rand() * 20;
  g.util = Math.max(0, Math.min(100, g.util + (target - g.util) * 0.6));
  if (g.busy) g.fbUsed = Math.min(FB_TOTAL - 556, Math.max(1000, g.fbUsed + (rand() - 0.4) * 2000));
  else if (g.fbUsed > 0 && rand() < 0.3) g.fbUsed = 0;
}

function valueOf(metric: string, g: GpuState, rand: () => number): string {
  const u = g.util / 100;
  switch (metric) {
    case 'DCGM_FI_DEV_GPU_UTIL':
      return String(Math.round(g.util));
    case 'DCGM_FI_DEV_MEM_COPY_UTIL':
      return String(Math.round(g.util * (0.3 + rand() * 0.4)));
    case 'DCGM_FI_DEV_ENC_UTIL':
    case 'DCGM_FI_DEV_DEC_UTIL':
      return rand() < 0.97 ? '0' : String(Math.round(rand() * 30));
    case 'DCGM_FI_DEV_GPU_TEMP':
      return String(Math.round(28 + u * 50 + rand() * 6));
    case 'DCGM_FI_DEV_MEMORY_TEMP':
      return String(Math.round(30 + u * 45 + rand() * 5));
    case 'DCGM_FI_DEV_POWER_USAGE':
      return (70 + u * 560 + rand() * 40).toFixed(3);
    case 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION':
      g.energy += (70 + u * 560) * 10_000;
      return String(Math.round(g.energy));
    case 'DCGM_FI_DEV_FB_USED':
      return String(Math.round(g.fbUsed));
    case 'DCGM_FI_DEV_FB_FREE':
      return String(FB_TOTAL - 556 - Math.round(g.fbUsed));
    case 'DCGM_FI_DEV_SM_CLOCK':
      return g.util > 5 ? (rand() < 0.95 ? '1980' : '1965') : '345';
    case 'DCGM_FI_DEV_MEM_CLOCK':
      return '2619';
    case 'DCGM_FI_PROF_GR_ENGINE_ACTIVE':
    case 'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE':
    case 'DCGM_FI_PROF_DRAM_ACTIVE':
      return (u * (0.5 + rand() * 0.5)).toFixed(6);
    default:
      return String(Math.round(rand() * 100));
  }
}

/** Picks the first `n` fields of the catalogue, the sample's ten first. */
export function metricsByCount(n: number): string[] {
  const names = [
    ...SAMPLE_METRICS,
    ...DCGM_FIELDS.map((f) => f.name).filter(
      (f) => !(SAMPLE_METRICS as readonly string[]).includes(f),
    ),
  ];
  return names.slice(0, Math.max(1, Math.min(n, names.length)));
}

/** Writes to a file path, or to stdout for "-". */
export async function generateToFile(options: GenerateOptions, path: string): Promise<number> {
  if (path === '-') return generateCsv(options, process.stdout);
  const out = createWriteStream(path);
  const rows = await generateCsv(options, out);
  await new Promise<void>((resolve, reject) => {
    out.on('error', reject);
    out.end(resolve);
  });
  return rows;
}

/** Bytes per row of these options, measured by generating one timestamp in memory. */
export async function bytesPerRow(options: GenerateOptions): Promise<number> {
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      bytes += Buffer.byteLength(chunk);
      done();
    },
  });
  const rows = await generateCsv({ ...options, timestamps: 1 }, sink);
  return (bytes - HEADER.length) / rows;
}

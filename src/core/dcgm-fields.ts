import { NexusError } from './errors.js';

/**
 * The DCGM fields Nexus knows by name: unit, Prometheus type and help, as dcgm-exporter describes
 * them. Unknown fields are still accepted everywhere; they just have no unit.
 *
 * Sources checked (docs/api.md "Fields and units" lists the catalogue):
 * - the fields, types and help: dcgm-exporter's etc/default-counters.csv and
 *   etc/dcp-metrics-included.csv at NVIDIA/dcgm-exporter@d5e5f510a1b6b393f39a43293ccd9dc985defc79
 *   (active and commented-out lines both);
 * - the units: dcgmlib/dcgm_fields.h at NVIDIA/DCGM@72fa3feaa67d716a75323a8f47c34ff3ee73f824
 *   (DCGM 4.6.0), where dcgm-exporter's help text gives none or a disputed one.
 *
 * Units are DCGM's own, as the readings arrive (the CSV, a scrape, remote_write); convert with
 * {@link conversionFactor}, never with a factor written elsewhere.
 */
export interface DcgmField {
  readonly name: string;
  /** One of {@link UNITS}' keys ('' for a count or a code). */
  readonly unit: DcgmUnit;
  readonly type: 'gauge' | 'counter';
  readonly help: string;
}

/** The quantity a unit measures, and its size in that quantity's base unit. */
const UNITS = {
  '': { quantity: 'count', scale: 1 },
  '%': { quantity: 'percent', scale: 1 },
  ratio: { quantity: 'ratio', scale: 1 },
  C: { quantity: 'celsius', scale: 1 },
  W: { quantity: 'watts', scale: 1 },
  mJ: { quantity: 'joules', scale: 1e-3 },
  MiB: { quantity: 'bytes', scale: 1024 * 1024 },
  'B/s': { quantity: 'bytes_per_second', scale: 1 },
  MHz: { quantity: 'hertz', scale: 1e6 },
  ns: { quantity: 'seconds', scale: 1e-9 },
  bitmask: { quantity: 'bitmask', scale: 1 },
} as const;

export type DcgmUnit = keyof typeof UNITS;
/** A Prometheus base unit (the suffix of a metric name such as nexus_gpu_power_violation_seconds). */
export type BaseUnit = (typeof UNITS)[DcgmUnit]['quantity'];

/*
 * The *_VIOLATION counters are nanoseconds. dcgm_fields.h (NVIDIA/DCGM@72fa3fe, DCGM 4.6.0):
 * "Power Violation time in ns", "Thermal Violation time in ns", "Sync Boost Violation time in ns";
 * DCGM fills them from NVML's nvmlViolationTime_t.violationTime, "violationTime in Nanoseconds"
 * (sdk/nvidia/nvml/dcgm_nvml.h); dcgm-exporter corrected its help text from "(in us)" to "(in ns)"
 * in NVIDIA/dcgm-exporter@e61056b94eb98ab6598bd3a7c2a299a482b16a42 ("fix for vailation time
 * us->ns", #589, 2025-12-04). The board-limit, low-utilisation and reliability counters come from
 * the same NVML structure (their dcgm_fields.h comments give no unit).
 */
function violation(name: string, what: string): DcgmField {
  return {
    name: `DCGM_FI_DEV_${name}_VIOLATION`,
    unit: 'ns',
    type: 'counter',
    help: `Throttling duration due to ${what}`,
  };
}

function count(name: string, type: 'gauge' | 'counter', help: string): DcgmField {
  return { name, unit: '', type, help };
}

function ratio(name: string, help: string): DcgmField {
  return { name, unit: 'ratio', type: 'gauge', help };
}

/**
 * The catalogue. The first nineteen keep their order (the CSV generator picks fields in this
 * order after the sample's ten: `--metrics N` must keep generating the same fields).
 */
export const DCGM_FIELDS: readonly DcgmField[] = [
  { name: 'DCGM_FI_DEV_GPU_UTIL', unit: '%', type: 'gauge', help: 'GPU utilization' },
  { name: 'DCGM_FI_DEV_MEM_COPY_UTIL', unit: '%', type: 'gauge', help: 'Memory utilization' },
  { name: 'DCGM_FI_DEV_ENC_UTIL', unit: '%', type: 'gauge', help: 'Encoder utilization' },
  { name: 'DCGM_FI_DEV_DEC_UTIL', unit: '%', type: 'gauge', help: 'Decoder utilization' },
  { name: 'DCGM_FI_DEV_GPU_TEMP', unit: 'C', type: 'gauge', help: 'GPU temperature' },
  { name: 'DCGM_FI_DEV_MEMORY_TEMP', unit: 'C', type: 'gauge', help: 'Memory temperature' },
  { name: 'DCGM_FI_DEV_POWER_USAGE', unit: 'W', type: 'gauge', help: 'Power draw' },
  {
    // dcgm_fields.h: "Total energy consumption for the GPU in mJ since the driver was last reloaded".
    name: 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION',
    unit: 'mJ',
    type: 'counter',
    help: 'Total energy consumption since boot',
  },
  // dcgm_fields.h says "in MB" for FB_FREE/FB_USED/FB_RESERVED; NVML's MB are 2^20 bytes (MiB).
  { name: 'DCGM_FI_DEV_FB_USED', unit: 'MiB', type: 'gauge', help: 'Framebuffer memory used' },
  { name: 'DCGM_FI_DEV_FB_FREE', unit: 'MiB', type: 'gauge', help: 'Framebuffer memory free' },
  { name: 'DCGM_FI_DEV_SM_CLOCK', unit: 'MHz', type: 'gauge', help: 'SM clock frequency' },
  { name: 'DCGM_FI_DEV_MEM_CLOCK', unit: 'MHz', type: 'gauge', help: 'Memory clock frequency' },
  // dcgm_fields.h: "XID errors. The value is the specific XID error" (a code, not a count).
  count('DCGM_FI_DEV_XID_ERRORS', 'gauge', 'Value of the last XID error encountered'),
  count('DCGM_FI_DEV_PCIE_REPLAY_COUNTER', 'counter', 'Total number of PCIe retries'),
  ratio('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'Ratio of time the graphics engine is active'),
  ratio('DCGM_FI_PROF_PIPE_TENSOR_ACTIVE', 'Ratio of cycles the tensor (HMMA) pipe is active'),
  ratio(
    'DCGM_FI_PROF_DRAM_ACTIVE',
    'Ratio of cycles the device memory interface is active sending or receiving data',
  ),
  violation('POWER', 'power constraints'),
  violation('THERMAL', 'thermal constraints'),
  // The rest of dcgm-exporter's default counters.
  {
    name: 'DCGM_FI_DEV_FB_RESERVED',
    unit: 'MiB',
    type: 'gauge',
    help: 'Framebuffer memory reserved',
  },
  // dcgm_fields.h gives no unit for the NVLink throughput total; dcgm-exporter calls it "counters".
  count(
    'DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL',
    'counter',
    'Total number of NVLink bandwidth counters for all lanes',
  ),
  // dcgm_fields.h: 0 = vGPU not licensed, 1 = licensed.
  count('DCGM_FI_DEV_VGPU_LICENSE_STATUS', 'gauge', 'vGPU License status'),
  count(
    'DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS',
    'counter',
    'Number of remapped rows for uncorrectable errors',
  ),
  count(
    'DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS',
    'counter',
    'Number of remapped rows for correctable errors',
  ),
  count('DCGM_FI_DEV_ROW_REMAP_FAILURE', 'gauge', 'Whether remapping of rows has failed'),
  {
    // dcgm-exporter's default-counters.csv: gauge, "in bytes per second" (a rate, not a total).
    name: 'DCGM_FI_PROF_PCIE_TX_BYTES',
    unit: 'B/s',
    type: 'gauge',
    help: 'The rate of data transmitted over the PCIe bus, protocol headers and payloads',
  },
  {
    name: 'DCGM_FI_PROF_PCIE_RX_BYTES',
    unit: 'B/s',
    type: 'gauge',
    help: 'The rate of data received over the PCIe bus, protocol headers and payloads',
  },
  // The commonly enabled extras (commented out in dcgm-exporter's default-counters.csv).
  violation('SYNC_BOOST', 'sync-boost constraints'),
  violation('BOARD_LIMIT', 'board limit constraints'),
  violation('LOW_UTIL', 'low utilization'),
  violation('RELIABILITY', 'reliability constraints'),
  {
    // dcgm_fields.h: "Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*)";
    // DCGM_FI_DEV_CLOCK_THROTTLE_REASONS is its deprecated name, still what dcgm-exporter serves.
    name: 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS',
    unit: 'bitmask',
    type: 'gauge',
    help: 'Current clock throttle reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*)',
  },
  {
    name: 'DCGM_FI_DEV_CLOCKS_EVENT_REASONS',
    unit: 'bitmask',
    type: 'gauge',
    help: 'Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*)',
  },
  count(
    'DCGM_FI_DEV_ECC_SBE_VOL_TOTAL',
    'counter',
    'Total number of single-bit volatile ECC errors',
  ),
  count(
    'DCGM_FI_DEV_ECC_DBE_VOL_TOTAL',
    'counter',
    'Total number of double-bit volatile ECC errors',
  ),
  count(
    'DCGM_FI_DEV_ECC_SBE_AGG_TOTAL',
    'counter',
    'Total number of single-bit persistent ECC errors',
  ),
  count(
    'DCGM_FI_DEV_ECC_DBE_AGG_TOTAL',
    'counter',
    'Total number of double-bit persistent ECC errors',
  ),
  count(
    'DCGM_FI_DEV_RETIRED_SBE',
    'counter',
    'Total number of retired pages due to single-bit errors',
  ),
  count(
    'DCGM_FI_DEV_RETIRED_DBE',
    'counter',
    'Total number of retired pages due to double-bit errors',
  ),
  count('DCGM_FI_DEV_RETIRED_PENDING', 'counter', 'Total number of pages pending retirement'),
  count(
    'DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL',
    'counter',
    'Total number of NVLink flow-control CRC errors',
  ),
  count(
    'DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL',
    'counter',
    'Total number of NVLink data CRC errors',
  ),
  count('DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL', 'counter', 'Total number of NVLink retries'),
  count(
    'DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL',
    'counter',
    'Total number of NVLink recovery errors',
  ),
  {
    // dcgm-exporter's default-counters.csv: "The number of bytes of active NVLink rx or tx data".
    name: 'DCGM_FI_DEV_NVLINK_BANDWIDTH_L0',
    unit: '',
    type: 'counter',
    help: 'The number of bytes of active NVLink rx or tx data including both header and payload',
  },
  ratio('DCGM_FI_PROF_SM_ACTIVE', 'The ratio of cycles an SM has at least 1 warp assigned'),
  ratio('DCGM_FI_PROF_SM_OCCUPANCY', 'The ratio of number of warps resident on an SM'),
  ratio('DCGM_FI_PROF_PIPE_FP64_ACTIVE', 'Ratio of cycles the fp64 pipes are active'),
  ratio('DCGM_FI_PROF_PIPE_FP32_ACTIVE', 'Ratio of cycles the fp32 pipes are active'),
  ratio('DCGM_FI_PROF_PIPE_FP16_ACTIVE', 'Ratio of cycles the fp16 pipes are active'),
  {
    // dcgm_fields.h words it like DCGM_FI_PROF_PCIE_TX_BYTES ("The total number of bytes of active
    // NvLink tx data"), which dcgm-exporter serves as a rate in bytes per second: taken to be the
    // same (not confirmed from a DCGM document).
    name: 'DCGM_FI_PROF_NVLINK_TX_BYTES',
    unit: 'B/s',
    type: 'gauge',
    help: 'The rate of active NVLink tx data, headers and payloads',
  },
  {
    name: 'DCGM_FI_PROF_NVLINK_RX_BYTES',
    unit: 'B/s',
    type: 'gauge',
    help: 'The rate of active NVLink rx data, headers and payloads',
  },
  // dcgm-exporter's own fields (DCGM_EXP_*, commented out in default-counters.csv).
  count('DCGM_EXP_CLOCK_EVENTS_COUNT', 'counter', 'Reported clock events'),
  count('DCGM_EXP_XID_ERRORS_COUNT', 'counter', 'Reported XIDs during last window'),
  count('DCGM_EXP_GPU_HEALTH_STATUS', 'counter', 'DCGM reported health status'),
  count('DCGM_EXP_P2P_STATUS', 'counter', 'P2P NvLink status'),
];

const BY_NAME = new Map(DCGM_FIELDS.map((f) => [f.name, f]));

export function dcgmField(name: string): DcgmField | undefined {
  return BY_NAME.get(name);
}

/** The base unit a DCGM unit measures (seconds for ns, bytes for MiB, joules for mJ, ...). */
export function baseUnitOf(unit: DcgmUnit): BaseUnit {
  return UNITS[unit].quantity;
}

/**
 * The factor from a catalogued field's DCGM unit to a Prometheus base unit: 1e-9 from
 * DCGM_FI_DEV_POWER_VIOLATION (ns) to seconds, 2^20 from DCGM_FI_DEV_FB_USED (MiB) to bytes, 1e-3
 * from DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ) to joules. An unknown field, or a unit that does
 * not measure `to`, is an INTERNAL error (a table that names the wrong field), raised when the table
 * is built, not a silently wrong number.
 */
export function conversionFactor(fieldName: string, to: BaseUnit): number {
  const field = BY_NAME.get(fieldName);
  if (field === undefined) {
    throw new NexusError('INTERNAL', `${fieldName} is not in the DCGM field catalogue`);
  }
  const unit = UNITS[field.unit];
  if (unit.quantity !== to) {
    throw new NexusError(
      'INTERNAL',
      `${fieldName} is in ${field.unit === '' ? 'no unit' : field.unit} (${unit.quantity}), not ${to}`,
    );
  }
  return unit.scale;
}

/** The ten fields of the bundled sample, in its order. */
export const SAMPLE_METRICS = [
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_MEM_COPY_UTIL',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_GPU_TEMP',
  'DCGM_FI_DEV_FB_USED',
  'DCGM_FI_DEV_FB_FREE',
  'DCGM_FI_DEV_DEC_UTIL',
  'DCGM_FI_DEV_ENC_UTIL',
  'DCGM_FI_DEV_SM_CLOCK',
  'DCGM_FI_DEV_MEM_CLOCK',
] as const;

/**
 * The prefixes a metric name given by a user may leave out, in the order tried: `GPU_TEMP` is
 * `DCGM_FI_DEV_GPU_TEMP`, `GR_ENGINE_ACTIVE` is `DCGM_FI_PROF_GR_ENGINE_ACTIVE`.
 */
const SHORT_NAME_PREFIXES = ['DCGM_FI_DEV_', 'DCGM_FI_PROF_'] as const;

/** The full names a metric name may stand for: itself, then with each left-out prefix. */
export function metricNameForms(name: string): string[] {
  return [name, ...SHORT_NAME_PREFIXES.map((p) => `${p}${name}`)];
}

/** What `lookup` finds for the first of a metric name's forms it knows (metricNameForms). */
export function resolveMetricName<T>(
  name: string,
  lookup: (fullName: string) => T | undefined,
): T | undefined {
  for (const form of metricNameForms(name)) {
    const found = lookup(form);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The bad request for a metric name none of `known` (full names) stands for. */
export function unknownMetric(name: string, known: Iterable<string>): NexusError {
  const list = [...known].sort().join(', ');
  return new NexusError(
    'BAD_REQUEST',
    `unknown metric "${name}"; known metrics: ${list || 'none yet'}`,
  );
}

/**
 * The DCGM fields Nexus knows by name: unit, Prometheus type and help, as dcgm-exporter describes
 * them. Unknown fields are still accepted everywhere; they just have no unit.
 */
export interface DcgmField {
  readonly name: string;
  readonly unit: string;
  readonly type: 'gauge' | 'counter';
  readonly help: string;
}

export const DCGM_FIELDS: readonly DcgmField[] = [
  { name: 'DCGM_FI_DEV_GPU_UTIL', unit: '%', type: 'gauge', help: 'GPU utilization' },
  { name: 'DCGM_FI_DEV_MEM_COPY_UTIL', unit: '%', type: 'gauge', help: 'Memory utilization' },
  { name: 'DCGM_FI_DEV_ENC_UTIL', unit: '%', type: 'gauge', help: 'Encoder utilization' },
  { name: 'DCGM_FI_DEV_DEC_UTIL', unit: '%', type: 'gauge', help: 'Decoder utilization' },
  { name: 'DCGM_FI_DEV_GPU_TEMP', unit: 'C', type: 'gauge', help: 'GPU temperature' },
  { name: 'DCGM_FI_DEV_MEMORY_TEMP', unit: 'C', type: 'gauge', help: 'Memory temperature' },
  { name: 'DCGM_FI_DEV_POWER_USAGE', unit: 'W', type: 'gauge', help: 'Power draw' },
  {
    name: 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION',
    unit: 'mJ',
    type: 'counter',
    help: 'Total energy consumption since boot',
  },
  { name: 'DCGM_FI_DEV_FB_USED', unit: 'MiB', type: 'gauge', help: 'Framebuffer memory used' },
  { name: 'DCGM_FI_DEV_FB_FREE', unit: 'MiB', type: 'gauge', help: 'Framebuffer memory free' },
  { name: 'DCGM_FI_DEV_SM_CLOCK', unit: 'MHz', type: 'gauge', help: 'SM clock frequency' },
  { name: 'DCGM_FI_DEV_MEM_CLOCK', unit: 'MHz', type: 'gauge', help: 'Memory clock frequency' },
  {
    name: 'DCGM_FI_DEV_XID_ERRORS',
    unit: '',
    type: 'gauge',
    help: 'Value of the last XID error encountered',
  },
  {
    name: 'DCGM_FI_DEV_PCIE_REPLAY_COUNTER',
    unit: '',
    type: 'counter',
    help: 'Total number of PCIe retries',
  },
  {
    name: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
    unit: 'ratio',
    type: 'gauge',
    help: 'Ratio of time the graphics engine is active',
  },
  {
    name: 'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE',
    unit: 'ratio',
    type: 'gauge',
    help: 'Ratio of cycles the tensor pipe is active',
  },
  {
    name: 'DCGM_FI_PROF_DRAM_ACTIVE',
    unit: 'ratio',
    type: 'gauge',
    help: 'Ratio of cycles the device memory interface is active',
  },
  {
    name: 'DCGM_FI_DEV_POWER_VIOLATION',
    unit: 'us',
    type: 'counter',
    help: 'Throttling duration due to power constraints',
  },
  {
    name: 'DCGM_FI_DEV_THERMAL_VIOLATION',
    unit: 'us',
    type: 'counter',
    help: 'Throttling duration due to thermal constraints',
  },
];

const BY_NAME = new Map(DCGM_FIELDS.map((f) => [f.name, f]));

export function dcgmField(name: string): DcgmField | undefined {
  return BY_NAME.get(name);
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

/**
 * MIG (Multi-Instance GPU): dcgm-exporter reports each GPU instance of a partitioned GPU as its own
 * series, with the GPU's `gpu` index and UUID plus the instance's id and profile in labels. A
 * reading without them (or with an id that is not one) is the whole GPU's: instance -1.
 */

/** The instance id of a whole (not partitioned, or not per-instance) GPU's readings. */
export const WHOLE_GPU = -1;

/** Label names of the GPU instance id, the current spelling first (lower case: relabelled). */
const ID_LABELS = ['GPU_I_ID', 'gpu_i_id'] as const;
/** Label names of the GPU instance profile (e.g. `1g.10gb`). */
const PROFILE_LABELS = ['GPU_I_PROFILE', 'gpu_i_profile'] as const;

/** Label names that belong to a MIG instance, not to its GPU. */
export const MIG_LABELS: ReadonlySet<string> = new Set([...ID_LABELS, ...PROFILE_LABELS]);

/** Largest instance id stored (a smallint; NVIDIA's are below 16). */
const MAX_INSTANCE = 32_767;

/**
 * The GPU instance id a record's labels carry, or WHOLE_GPU: no label, an empty one, or a value
 * that is not a decimal integer 0..32767 (such a reading is stored as the whole GPU's).
 */
export function migInstanceOf(labels: Readonly<Record<string, string>>): number {
  for (const name of ID_LABELS) {
    const v = labels[name];
    if (v === undefined || v === '') continue;
    if (!/^\d{1,5}$/.test(v)) return WHOLE_GPU;
    const n = Number(v);
    return n <= MAX_INSTANCE ? n : WHOLE_GPU;
  }
  return WHOLE_GPU;
}

/** The GPU instance profile a record's labels carry (undefined: none). */
export function migProfileOf(labels: Readonly<Record<string, string>>): string | undefined {
  for (const name of PROFILE_LABELS) {
    const v = labels[name];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

export const GPU_UTIL = 'DCGM_FI_DEV_GPU_UTIL';
export const GR_ENGINE_ACTIVE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';

/**
 * Utilisation in percent from a GPU's (or MIG instance's) latest values, as docs/fleet.md defines
 * the utilisation metric: DCGM_FI_PROF_GR_ENGINE_ACTIVE (a ratio) x 100 where it has one, else
 * DCGM_FI_DEV_GPU_UTIL (dcgm-exporter gives MIG instances no GPU_UTIL); undefined with neither.
 */
export function utilizationPercent(
  latest: readonly { readonly metric: string; readonly value: number }[],
): number | undefined {
  const engine = latest.find((l) => l.metric === GR_ENGINE_ACTIVE);
  if (engine !== undefined) return engine.value * 100;
  return latest.find((l) => l.metric === GPU_UTIL)?.value;
}

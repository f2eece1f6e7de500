import { Type, type Static } from '@sinclair/typebox';
import { Nullable, StringEnum, Time } from './common.js';

/** Idle GPUs and usage/showback (docs/fleet.md). */

export const IdleQuery = Type.Object(
  {
    util: Type.Optional(
      Type.String({
        maxLength: 32,
        description: 'Utilisation threshold in percent, 0 to 100 (default IDLE_UTIL)',
      }),
    ),
    for: Type.Optional(
      Type.String({
        maxLength: 32,
        description: 'How long below the threshold, a duration like 15m or 1h (default IDLE_FOR)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const IdleGpu = Type.Object({
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  gpu_instance_id: Type.Optional(
    Type.Integer({ description: 'A MIG instance of the GPU (GPU_I_ID); absent for a whole GPU' }),
  ),
  uuid: Nullable(Type.String()),
  model: Nullable(Type.String()),
  namespace: Type.String(),
  pod: Type.String(),
  container: Type.String(),
  utilization_metric: Type.String({
    description:
      'DCGM_FI_PROF_GR_ENGINE_ACTIVE where the GPU reports it, else DCGM_FI_DEV_GPU_UTIL',
  }),
  utilization_percent: Nullable(Type.Number({ description: 'The latest reading, in percent' })),
  idle_since: Time,
  last_seen: Time,
  idle_seconds: Type.Number(),
  wasted_gpu_hours: Type.Number(),
});

export const IdleList = Type.Object({
  cluster_id: Type.String(),
  threshold_percent: Type.Number(),
  idle_for_seconds: Type.Number(),
  count: Type.Integer(),
  wasted_gpu_hours: Type.Number(),
  gpus: Type.Array(IdleGpu),
});

export const USAGE_GROUPS = ['namespace', 'pod', 'host', 'gpu'] as const;

export const UsageQuery = Type.Object(
  {
    // Checked by the handler, whose 400 names the values allowed.
    group_by: Type.Optional(
      Type.String({
        maxLength: 32,
        description: 'What to group the usage by (required): namespace, pod, host or gpu',
        examples: [...USAGE_GROUPS],
      }),
    ),
    from: Type.Optional(
      Type.String({ maxLength: 64, description: 'Start (RFC 3339 or epoch); default to - 24 h' }),
    ),
    to: Type.Optional(Type.String({ maxLength: 64, description: 'End (exclusive); default now' })),
    format: Type.Optional(StringEnum(['json', 'csv'] as const)),
  },
  { additionalProperties: false },
);

const Cost = Nullable(
  Type.Object({ energy: Type.Number(), gpu_hours: Type.Number(), total: Type.Number() }),
);

export const UsageGroup = Type.Object({
  namespace: Type.Optional(Type.String()),
  pod: Type.Optional(Type.String()),
  host_id: Type.Optional(Type.String()),
  gpu_id: Type.Optional(Type.Integer()),
  uuid: Type.Optional(Nullable(Type.String())),
  gpu_hours: Type.Number({
    description: 'GPU-hours allocated (shares of allocation minutes / 60)',
  }),
  avg_utilization_percent: Nullable(Type.Number()),
  energy_kwh: Type.Number(),
  cost: Cost,
  unallocated_gpu_hours: Type.Optional(Type.Number()),
  unallocated_energy_kwh: Type.Optional(Type.Number()),
});

export const UsageReport = Type.Object({
  cluster_id: Type.String(),
  group_by: StringEnum(USAGE_GROUPS),
  from: Time,
  to: Time,
  currency: Type.String(),
  prices: Nullable(Type.Object({ energy_per_kwh: Type.Number(), gpu_hour: Type.Number() })),
  groups: Type.Array(UsageGroup),
  total: Type.Object({ gpu_hours: Type.Number(), energy_kwh: Type.Number(), cost: Cost }),
  unallocated: Type.Object({ gpu_hours: Type.Number(), energy_kwh: Type.Number() }),
});

export type IdleListBody = Static<typeof IdleList>;
export type UsageReportBody = Static<typeof UsageReport>;
export type UsageGroupBody = Static<typeof UsageGroup>;

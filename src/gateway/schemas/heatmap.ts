import { Type, type Static } from '@sinclair/typebox';
import { Nullable, StringEnum, Time } from './common.js';

// GET /api/v1/clusters/{c}/heatmap: the overview heatmap's cells, aggregated to fit max_cells.

/** Fewest and most cells a client may ask for; the default. */
export const HEATMAP_MIN_CELLS = 16;
export const HEATMAP_MAX_CELLS = 20_000;
export const HEATMAP_DEFAULT_CELLS = 2000;

export const HeatmapQuery = Type.Object({
  metric: Type.String({
    minLength: 1,
    maxLength: 128,
    description:
      'The metric, as the telemetry endpoints name it (DCGM_FI_DEV_GPU_UTIL or GPU_UTIL)',
  }),
  prefix: Type.Optional(
    Type.String({
      maxLength: 253,
      description: 'Only hosts whose hostname starts with this (case-sensitive); default all',
    }),
  ),
  from: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 253,
      description:
        "Only hosts at or after this hostname (a run cell's `from`, to drill into a run of hosts)",
    }),
  ),
  to: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 253,
      description: "Only hosts at or before this hostname (a run cell's `to`)",
    }),
  ),
  max_cells: Type.Optional(
    Type.Integer({
      minimum: HEATMAP_MIN_CELLS,
      maximum: HEATMAP_MAX_CELLS,
      default: HEATMAP_DEFAULT_CELLS,
      description: 'Most cells in the answer (16..20000)',
    }),
  ),
});
export type HeatmapQuery = Static<typeof HeatmapQuery>;

const Aggregate = {
  gpus: Type.Integer({ description: 'Live GPUs in the cell' }),
  reporting: Type.Integer({ description: 'GPUs of the cell with a latest value of the metric' }),
  min: Nullable(Type.Number({ description: 'Lowest latest value (null: none reporting)' })),
  avg: Nullable(Type.Number({ description: 'Mean of the latest values (null: none reporting)' })),
  max: Nullable(Type.Number({ description: 'Highest latest value (null: none reporting)' })),
  alerting: Type.Integer({
    description:
      'GPUs of the cell whose latest temperature the overview flags (above 80 C; docs/api.md)',
  }),
};

/** One cell: a GPU (level gpu), a host (level host) or a group of hosts (level group). */
export const HeatmapCell = Type.Object({
  key: Type.String({ description: '<host>/<gpu>, <host>, or the group prefix (or first host)' }),
  host_id: Type.Optional(Type.String()),
  gpu_id: Type.Optional(Type.Integer()),
  uuid: Type.Optional(Nullable(Type.String())),
  value: Type.Optional(Nullable(Type.Number({ description: 'GPU cell: its latest value' }))),
  time: Type.Optional(Nullable(Time)),
  prefix: Type.Optional(
    Type.String({ description: 'Group cell: pass back as `prefix` (with from/to) to drill down' }),
  ),
  from: Type.Optional(Type.String({ description: 'Group cell: its first hostname' })),
  to: Type.Optional(Type.String({ description: 'Group cell: its last hostname' })),
  hosts: Type.Optional(Type.Integer({ description: 'Group cell: hosts in it' })),
  gpus: Type.Optional(Aggregate.gpus),
  reporting: Type.Optional(Aggregate.reporting),
  min: Type.Optional(Aggregate.min),
  avg: Type.Optional(Aggregate.avg),
  max: Type.Optional(Aggregate.max),
  alerting: Type.Optional(Aggregate.alerting),
});
export type HeatmapCell = Static<typeof HeatmapCell>;

export const Heatmap = Type.Object({
  cluster_id: Type.String(),
  metric: Type.String(),
  unit: Type.String({ description: "The metric's unit ('' when unknown)" }),
  level: StringEnum(['gpu', 'host', 'group'], {
    description: 'gpu: one cell per GPU; host: one per host; group: one per group of hosts',
  }),
  prefix: Type.String({ description: 'The prefix asked for ("" for all hosts)' }),
  hosts: Type.Integer({ description: 'Hosts under the prefix (and range) with a live GPU' }),
  gpus: Type.Integer({ description: 'Their live GPUs' }),
  as_of: Time,
  cells: Type.Array(HeatmapCell),
});
export type Heatmap = Static<typeof Heatmap>;

import { Type } from '@sinclair/typebox';
import { Nullable, StringEnum, Time, ref } from './common.js';

/** What names a reading or a series: its cluster, host, GPU and metric. */
const SeriesName = {
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  gpu_instance_id: Type.Optional(
    Type.Integer({
      description:
        "A MIG instance's reading or series: its GPU instance id (absent: the whole GPU)",
    }),
  ),
  mig_profile: Type.Optional(
    Nullable(Type.String({ description: "A MIG instance's profile, e.g. 1g.10gb" })),
  ),
  uuid: Nullable(Type.String()),
  metric: Type.String(),
  unit: Type.String(),
};

/** Readings, series and latest values: GET /api/v1/telemetry, /latest, a GPU's metrics. */
export const Reading = Type.Object(
  {
    ...SeriesName,
    timestamp: Time,
    value: Type.Number(),
  },
  { $id: 'Reading' },
);

export const Series = Type.Object(
  {
    ...SeriesName,
    points: Type.Array(
      Type.Object({
        timestamp: Time,
        value: Type.Number(),
        count: Type.Integer({ description: 'Readings in the step' }),
      }),
    ),
  },
  { $id: 'Series' },
);

export const SeriesColumns = Type.Object(
  {
    ...SeriesName,
    timestamps: Type.Array(Type.Number(), {
      description: 'Epoch milliseconds, ascending (with step: the start of each step)',
    }),
    values: Type.Array(Type.Number(), { description: 'The value at each timestamp' }),
    counts: Type.Optional(
      Type.Array(Type.Integer(), { description: 'With step: readings in each step' }),
    ),
  },
  {
    $id: 'SeriesColumns',
    description: 'A series as columns (format=columns): parallel arrays, no object per reading',
  },
);

export const ReadingPage = Type.Object(
  {
    readings: Type.Array(ref(Reading)),
    count: Type.Integer(),
    next_cursor: Nullable(
      Type.String({ description: 'Pass as cursor to get the next page; null on the last page' }),
    ),
  },
  { $id: 'ReadingPage' },
);

export const SeriesResult = Type.Object(
  {
    series: Type.Array(ref(Series)),
    step: Type.String(),
    agg: Type.String(),
    from: Time,
    to: Time,
    source: StringEnum(['rollup_1m', 'raw'], {
      description:
        'rollup_1m when the step is a whole number of minutes (buckets then align to minutes), raw otherwise',
    }),
  },
  { $id: 'SeriesResult' },
);

export const GpuMetrics = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  gpu_instance_id: Type.Optional(Type.Integer({ description: 'A MIG instance: its GPU_I_ID' })),
  metrics: Type.Array(ref(Reading), { description: 'The latest reading of each metric' }),
  series: Type.Optional(Type.Array(ref(Series), { description: 'When from/to/step are given' })),
});

/**
 * GET /api/v1/telemetry answers one of two shapes: a page of readings, or with `step` series. One
 * object schema with both sets of fields (each shape fills its own), so the serializer needs no
 * anyOf.
 */
export const TelemetryResult = Type.Object(
  {
    readings: Type.Optional(Type.Array(ref(Reading))),
    count: Type.Optional(Type.Integer()),
    next_cursor: Type.Optional(ReadingPage.properties.next_cursor),
    series: Type.Optional(Type.Array(ref(Series))),
    columns: Type.Optional(Type.Array(ref(SeriesColumns))),
    step: Type.Optional(Type.String()),
    agg: Type.Optional(Type.String()),
    from: Type.Optional(Time),
    to: Type.Optional(Time),
    source: Type.Optional(SeriesResult.properties.source),
  },
  {
    $id: 'TelemetryResult',
    description:
      'Without step: readings, count, next_cursor (a page). With step: series, step, agg, from, to, source. With format=columns, `columns` (a series per GPU and metric, as parallel arrays) instead of readings or series.',
  },
);

export const LatestResult = Type.Object({
  readings: Type.Array(ref(Reading)),
  count: Type.Integer(),
});

/** Query parameters of /api/v1/telemetry and /api/v1/telemetry/latest. */
export const TelemetryFilters = {
  cluster_id: Type.Optional(
    Type.String({ minLength: 1, maxLength: 128, description: 'Cluster (default: every cluster)' }),
  ),
  host_id: Type.Optional(Type.String({ description: 'Hostname(s), comma-separated' })),
  gpu_id: Type.Optional(
    Type.String({ description: 'GPU index(es) on the host, or uuid(s) GPU-..., comma-separated' }),
  ),
  uuid: Type.Optional(Type.String({ description: 'GPU uuid(s), comma-separated' })),
  gpu_instance: Type.Optional(
    Type.String({
      description:
        'MIG GPU instance id(s), comma-separated; "gpu": the whole GPU\'s own series (the default); "all": GPUs and every instance',
    }),
  ),
  metric: Type.Optional(
    Type.String({
      description: 'Metric name(s), comma-separated (DCGM_FI_DEV_GPU_TEMP or GPU_TEMP)',
    }),
  ),
  metrics: Type.Optional(Type.String({ description: 'Alias of metric' })),
};

export const RangeParams = {
  from: Type.Optional(
    Type.String({
      description:
        'Start, inclusive: RFC 3339, epoch ms (12+ digits) or s (9-11), now, or relative like -15m (default: the beginning)',
    }),
  ),
  to: Type.Optional(
    Type.String({ description: 'End, exclusive: same forms (default: the end of time)' }),
  ),
  step: Type.Optional(
    Type.String({ description: 'Downsample to this step (e.g. 1m, 5m, 1h, 10s)' }),
  ),
  agg: Type.Optional(
    Type.Union(
      [Type.Literal('avg'), Type.Literal('min'), Type.Literal('max'), Type.Literal('last')],
      { description: 'Aggregate per step (default avg)' },
    ),
  ),
};

export const TelemetryQuery = Type.Object(
  {
    ...TelemetryFilters,
    ...RangeParams,
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_000,
        description: 'Readings per page (default 1000)',
      }),
    ),
    cursor: Type.Optional(Type.String({ description: 'next_cursor of the previous page' })),
    format: Type.Optional(
      StringEnum(['rows', 'columns'], {
        description:
          'rows (default): an object per reading or point; columns: per series, parallel arrays of epoch-ms timestamps and values (and counts with step): smaller and faster for many readings',
      }),
    ),
  },
  { additionalProperties: false },
);

export const LatestQuery = Type.Object(TelemetryFilters, { additionalProperties: false });

export const GpuMetricsQuery = Type.Object(
  { metric: TelemetryFilters.metric, ...RangeParams },
  { additionalProperties: false },
);

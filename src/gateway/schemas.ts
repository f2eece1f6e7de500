import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * The REST API's schemas: one source for request validation, response serialisation, the
 * TypeScript types of the handlers and the OpenAPI document.
 */
/**
 * `type: [T, 'null']` rather than anyOf: the serializer writes it directly (an anyOf costs a
 * validation per value), and @fastify/swagger renders it as OpenAPI's `nullable: true`.
 */
const Nullable = <T extends TSchema>(t: T) =>
  Type.Unsafe<Static<T> | null>({ ...t, type: [t.type as string, 'null'] });
/** A string enum as `enum` (fast to serialise), typed as the union of its values. */
const StringEnum = <const V extends readonly string[]>(
  values: V,
  options: Record<string, unknown> = {},
) => Type.Unsafe<V[number]>({ type: 'string', enum: [...values], ...options });
/** A $ref to a shared schema (registered with addSchema), typed as the schema. */
export const ref = <T extends TSchema>(schema: T) =>
  Type.Unsafe<Static<T>>(Type.Ref(schema.$id ?? ''));
const Time = Type.String({
  format: 'date-time',
  description: 'RFC 3339, UTC, millisecond precision',
});

export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'What is wrong, in words' }),
    code: Type.String({ description: 'Stable machine-readable code' }),
    statusCode: Type.Integer(),
  },
  { $id: 'Error' },
);

export const Cluster = Type.Object(
  {
    cluster_id: Type.String(),
    cluster_name: Type.String(),
    status: StringEnum(['active', 'idle', 'empty'], {
      description: 'active: a reading in the last 5 minutes; idle: older data only; empty: no data',
    }),
    hosts: Type.Integer(),
    gpus: Type.Integer(),
    first_seen: Time,
    last_seen: Nullable(Time),
  },
  { $id: 'Cluster' },
);

export const ClusterList = Type.Object({
  clusters: Type.Array(ref(Cluster)),
  count: Type.Integer(),
});

export const ClusterStats = Type.Object({
  cluster_id: Type.String(),
  samples: Type.Integer({ description: 'Readings stored' }),
  hosts: Type.Integer(),
  gpus: Type.Integer(),
  metrics: Type.Integer(),
  first_timestamp: Nullable(Time),
  last_timestamp: Nullable(Time),
  samples_per_metric: Type.Array(
    Type.Object({ metric: Type.String(), unit: Type.String(), samples: Type.Integer() }),
  ),
});

export const Host = Type.Object(
  {
    cluster_id: Type.String(),
    host_id: Type.String({ description: 'The hostname' }),
    hostname: Type.String(),
    gpus: Type.Integer(),
    first_seen: Time,
    last_seen: Nullable(Time),
  },
  { $id: 'Host' },
);

export const HostList = Type.Object({
  cluster_id: Type.String(),
  hosts: Type.Array(ref(Host)),
  count: Type.Integer(),
});

export const Gpu = Type.Object(
  {
    cluster_id: Type.String(),
    host_id: Type.String(),
    gpu_id: Type.Integer({ description: 'Index of the GPU on its host' }),
    uuid: Nullable(Type.String()),
    model: Nullable(Type.String()),
    device: Nullable(Type.String()),
    first_seen: Time,
    last_seen: Nullable(Time),
  },
  { $id: 'Gpu' },
);

export const GpuList = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpus: Type.Array(ref(Gpu)),
  count: Type.Integer(),
});

export const HostDetail = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  hostname: Type.String(),
  first_seen: Time,
  last_seen: Nullable(Time),
  gpus: Type.Array(ref(Gpu)),
});

export const Reading = Type.Object(
  {
    cluster_id: Type.String(),
    host_id: Type.String(),
    gpu_id: Type.Integer(),
    uuid: Nullable(Type.String()),
    metric: Type.String(),
    unit: Type.String(),
    timestamp: Time,
    value: Type.Number(),
  },
  { $id: 'Reading' },
);

export const Workload = Type.Object({
  namespace: Type.String(),
  pod: Type.String(),
  container: Type.String(),
  first_seen: Time,
  last_seen: Time,
});

export const GpuDetail = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  uuid: Nullable(Type.String()),
  model: Nullable(Type.String()),
  device: Nullable(Type.String()),
  first_seen: Time,
  last_seen: Nullable(Time),
  labels: Type.Record(Type.String(), Type.String()),
  workloads: Type.Array(Workload, {
    description: 'Kubernetes workloads this GPU served, most recent first',
  }),
  latest: Type.Array(ref(Reading)),
});

export const Series = Type.Object(
  {
    cluster_id: Type.String(),
    host_id: Type.String(),
    gpu_id: Type.Integer(),
    uuid: Nullable(Type.String()),
    metric: Type.String(),
    unit: Type.String(),
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
    step: Type.Optional(Type.String()),
    agg: Type.Optional(Type.String()),
    from: Type.Optional(Time),
    to: Type.Optional(Time),
    source: Type.Optional(SeriesResult.properties.source),
  },
  {
    $id: 'TelemetryResult',
    description:
      'Without step: readings, count, next_cursor (a page). With step: series, step, agg, from, to, source.',
  },
);

export const LatestResult = Type.Object({
  readings: Type.Array(ref(Reading)),
  count: Type.Integer(),
});

export const MetricCatalogue = Type.Object({
  metrics: Type.Array(
    Type.Object({
      name: Type.String(),
      unit: Type.String(),
      type: Type.String(),
      help: Type.String(),
    }),
  ),
});

export const Health = Type.Object({
  status: StringEnum(['ok', 'degraded']),
  ready: Type.Boolean(),
  checks: Type.Record(
    Type.String(),
    Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) }),
  ),
  version: Type.String(),
  uptime_s: Type.Number(),
});

/** What this gateway serves besides REST (GET /api/v1/overview), so that clients need not probe. */
export const Features = Type.Object(
  {
    graphql: Type.Boolean({ description: 'GraphQL at /graphql (ENABLE_GRAPHQL)' }),
    websocket: Type.Boolean({
      description:
        'Live push at /ws (ENABLE_WEBSOCKET, and a commit feed); without it, poll the REST API',
    }),
  },
  { additionalProperties: false },
);

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
        'Start, inclusive: RFC 3339, epoch ms, now, or relative like -15m (default: the beginning)',
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
  },
  { additionalProperties: false },
);

export const LatestQuery = Type.Object(TelemetryFilters, { additionalProperties: false });

export const ClusterParams = Type.Object({
  cluster_id: Type.String({ minLength: 1, maxLength: 128 }),
});
export const HostParams = Type.Object({
  cluster_id: Type.String({ minLength: 1, maxLength: 128 }),
  host_id: Type.String({ minLength: 1, maxLength: 253 }),
});
export const GpuParams = Type.Object({
  cluster_id: Type.String({ minLength: 1, maxLength: 128 }),
  host_id: Type.String({ minLength: 1, maxLength: 253 }),
  gpu_id: Type.String({ pattern: '^[0-9]{1,5}$', description: 'Index of the GPU on its host' }),
});
export const GpuMetricsQuery = Type.Object(
  { metric: TelemetryFilters.metric, ...RangeParams },
  { additionalProperties: false },
);

/** Registered with app.addSchema (referenced by $ref, named in the OpenAPI document). */
export const SHARED_SCHEMAS = [ErrorBody, Cluster, Host, Gpu, Reading, Series, TelemetryResult];

export const ErrorRef = ref(ErrorBody);
export const ClusterRef = ref(Cluster);

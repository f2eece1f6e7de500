import { Type } from '@sinclair/typebox';
import { DEFAULT_PAGE, MAX_PAGE } from '../page-size.js';
import { Nullable, StringEnum, Time, ref } from './common.js';
import { Reading } from './telemetry.js';

/** The fleet: clusters, hosts, GPUs, the metric catalogue, and the ids in their paths. */
export const Cluster = Type.Object(
  {
    cluster_id: Type.String(),
    cluster_name: Type.String(),
    status: StringEnum(['active', 'idle', 'empty'], {
      description: 'active: a reading in the last 5 minutes; idle: older data only; empty: no data',
    }),
    hosts: Type.Integer({ description: 'Hosts with a live GPU (or with no GPU)' }),
    gpus: Type.Integer({ description: 'Live GPUs (not retired)' }),
    retired_gpus: Type.Integer({
      description: 'GPUs retired: silent for more than STALE_AFTER while the cluster reported',
    }),
    first_seen: Time,
    last_seen: Nullable(Time),
  },
  { $id: 'Cluster' },
);

export const ClusterList = Type.Object({
  clusters: Type.Array(ref(Cluster)),
  count: Type.Integer({ description: 'Items on this page' }),
  total: Type.Integer({ description: 'Items in the whole (filtered) list' }),
  next_cursor: Nullable(
    Type.String({ description: 'Pass as cursor for the next page; null on the last page' }),
  ),
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
    gpus: Type.Integer({ description: 'Live GPUs (every GPU with include_retired)' }),
    retired: Type.Boolean({ description: 'Every GPU of the host is retired' }),
    first_seen: Time,
    last_seen: Nullable(Time),
  },
  { $id: 'Host' },
);

export const HostList = Type.Object({
  cluster_id: Type.String(),
  hosts: Type.Array(ref(Host)),
  count: Type.Integer({ description: 'Items on this page' }),
  total: Type.Integer({ description: 'Items in the whole (filtered) list' }),
  next_cursor: Nullable(
    Type.String({ description: 'Pass as cursor for the next page; null on the last page' }),
  ),
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
    retired: Type.Boolean({
      description: 'Stopped reporting while its cluster went on (docs/fleet.md); history stays',
    }),
    mig_instances: Type.Optional(
      Type.Array(
        Type.Object({
          gpu_instance_id: Type.Integer(),
          profile: Nullable(Type.String({ description: 'e.g. 1g.10gb' })),
        }),
        {
          description:
            'Its MIG instances (GPU_I_ID, GPU_I_PROFILE), each with its own series: /mig/{gpu_instance_id}',
        },
      ),
    ),
  },
  { $id: 'Gpu' },
);

export const GpuList = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpus: Type.Array(ref(Gpu)),
  count: Type.Integer({ description: 'Items on this page' }),
  total: Type.Integer({ description: 'Items in the whole (filtered) list' }),
  next_cursor: Nullable(
    Type.String({ description: 'Pass as cursor for the next page; null on the last page' }),
  ),
});

/** Every GPU of a cluster, by (hostname, index): GET /api/v1/clusters/{id}/gpus. */
export const ClusterGpuList = Type.Object({
  cluster_id: Type.String(),
  gpus: Type.Array(ref(Gpu)),
  count: Type.Integer({ description: 'Items on this page' }),
  total: Type.Integer({ description: 'Items in the whole (filtered) list' }),
  next_cursor: Nullable(
    Type.String({ description: 'Pass as cursor for the next page; null on the last page' }),
  ),
});

export const HostDetail = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  hostname: Type.String(),
  first_seen: Time,
  last_seen: Nullable(Time),
  gpus: Type.Array(ref(Gpu)),
});

export const Workload = Type.Object({
  namespace: Type.String(),
  pod: Type.String(),
  container: Type.String(),
  first_seen: Time,
  last_seen: Time,
});

const Utilization = Nullable(
  Type.Number({
    description:
      'Latest utilisation in percent: DCGM_FI_PROF_GR_ENGINE_ACTIVE x 100 where reported, else DCGM_FI_DEV_GPU_UTIL (docs/fleet.md); null with neither',
  }),
);

/** A MIG instance of a GPU (GET .../gpus/{gpu_id}/mig/{gpu_instance_id}, and in the GPU's detail). */
export const MigInstance = Type.Object(
  {
    cluster_id: Type.String(),
    host_id: Type.String(),
    gpu_id: Type.Integer({ description: 'Index of its GPU on the host' }),
    gpu_instance_id: Type.Integer({ description: 'GPU_I_ID' }),
    profile: Nullable(Type.String({ description: 'GPU_I_PROFILE, e.g. 1g.10gb' })),
    uuid: Nullable(Type.String()),
    first_seen: Time,
    last_seen: Nullable(Time),
    utilization_percent: Utilization,
    workloads: Type.Array(Workload, { description: 'Workloads this instance served' }),
    latest: Type.Array(ref(Reading)),
  },
  { $id: 'MigInstance' },
);

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
  latest: Type.Array(ref(Reading), {
    description: "The GPU's own latest values (its MIG instances' are under mig_instances)",
  }),
  utilization_percent: Utilization,
  mig_instances: Type.Array(ref(MigInstance), {
    description: 'Its MIG instances, by gpu_instance_id (empty: not partitioned)',
  }),
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

export const MigParams = Type.Object({
  ...GpuParams.properties,
  gpu_instance_id: Type.String({ pattern: '^[0-9]{1,5}$', description: 'GPU_I_ID' }),
});

export const ClusterRef = ref(Cluster);

const paging = {
  limit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: MAX_PAGE,
      description: `Items per page (default ${DEFAULT_PAGE}, at most ${MAX_PAGE})`,
    }),
  ),
  cursor: Type.Optional(
    Type.String({ description: 'next_cursor of the previous page (opaque)', maxLength: 1400 }),
  ),
};
const includeRetired = Type.Optional(
  Type.Boolean({ description: 'List retired GPUs (and hosts) too, flagged (default false)' }),
);
const prefix = Type.Optional(
  Type.String({
    maxLength: 253,
    description: 'Only hosts whose hostname starts with this (case-sensitive)',
  }),
);

/** The clusters' list: paged. */
export const PageQuery = Type.Object(paging, { additionalProperties: false });

/** Lists of hosts and GPUs: paged; retired ones are left out unless asked for. */
export const RetiredQuery = Type.Object(
  { include_retired: includeRetired, ...paging },
  { additionalProperties: false },
);

/** Lists of a cluster's hosts and GPUs: paged, retired ones left out, by hostname prefix. */
export const PrefixQuery = Type.Object(
  { include_retired: includeRetired, prefix, ...paging },
  { additionalProperties: false },
);

/** GET /api/v1/search: hosts, GPUs, namespaces and pods by name. */
export const SearchQuery = Type.Object(
  {
    q: Type.String({
      minLength: 1,
      maxLength: 128,
      description:
        'A prefix of a name, or of any part of it after -, ., _ or / (case-insensitive); a GPU by its uuid, with or without GPU-',
    }),
    cluster_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    kind: Type.Optional(
      Type.String({ description: 'Comma list of host, gpu, namespace, pod (default all)' }),
    ),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, description: 'Hits at most (default 20)' }),
    ),
  },
  { additionalProperties: false },
);

export const SearchHit = Type.Object(
  {
    kind: StringEnum(['host', 'gpu', 'namespace', 'pod']),
    cluster_id: Type.String(),
    label: Type.String({
      description: 'What to show: the hostname, uuid, namespace, namespace/pod',
    }),
    host_id: Type.Optional(Type.String()),
    gpu_id: Type.Optional(Type.Integer({ description: 'Index of the GPU on host_id' })),
    uuid: Type.Optional(Type.String()),
    namespace: Type.Optional(Type.String()),
    pod: Type.Optional(Type.String()),
    gpus: Type.Optional(
      Type.Integer({
        description: 'host: its live GPUs; namespace: GPUs running its workloads now',
      }),
    ),
  },
  { $id: 'SearchHit' },
);

export const SearchResult = Type.Object({
  q: Type.String(),
  count: Type.Integer({ description: 'Hits returned' }),
  truncated: Type.Boolean({ description: 'More matched than limit (or than a search looks at)' }),
  hits: Type.Array(ref(SearchHit), {
    description: 'Exact matches first, then by kind (host, gpu, namespace, pod), then label',
  }),
});

import { Type } from '@sinclair/typebox';
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

/** Lists of hosts and GPUs: retired ones are left out unless asked for. */
export const RetiredQuery = Type.Object(
  {
    include_retired: Type.Optional(
      Type.Boolean({ description: 'List retired GPUs (and hosts) too, flagged (default false)' }),
    ),
  },
  { additionalProperties: false },
);

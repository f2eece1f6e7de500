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

export const ClusterRef = ref(Cluster);

import { buildSchema, type GraphQLSchema } from 'graphql';
import { attachScalars } from './scalars.js';

/**
 * The GraphQL API in SDL: the source of truth for the gateway's schema and for
 * docs/schema.graphql (scripts/export-graphql-schema.ts writes it; a unit test keeps the two equal).
 * The resolvers are in resolvers.ts.
 */

const FILTERS = `
    "Cluster (default: every cluster). An unknown cluster is an error (NOT_FOUND, HTTP 404)."
    cluster_id: String
    "Hostnames (default: every host)."
    host_id: [String!]
    "GPU indexes on their hosts (default: every GPU)."
    gpu_id: [Int!]
    "GPU uuids, GPU-... (default: every GPU)."
    uuid: [String!]
    "MIG GPU instance ids; -1 is the whole GPU's own series (default: [-1], whole GPUs only)."
    gpu_instance: [Int!]
    "Metric names, DCGM_FI_DEV_GPU_TEMP or GPU_TEMP (default: every metric). An unknown metric is an error (HTTP 400)."
    metric: [String!]`;

const LIVE_FILTERS = `
    "Cluster (default: every cluster)."
    cluster_id: String
    "Hostnames (default: every host)."
    host_id: [String!]
    "GPU indexes on their hosts (default: every GPU)."
    gpu_id: [Int!]
    "GPU uuids (default: every GPU)."
    uuid: [String!]
    "Metric names, DCGM_FI_DEV_GPU_TEMP or GPU_TEMP (default: every metric); checked for form only, as a metric may appear live before it is stored."
    metric: [String!]
    "MIG GPU instance ids; -1 is the whole GPU's own readings (default: [-1], whole GPUs only)."
    gpu_instance: [Int!]`;

const RANGE = `
    "Start, inclusive: RFC 3339 (2025-07-18T20:42:34Z), epoch milliseconds (12 or more digits) or seconds (9 to 11), now, or relative to now (-15m, now-1h, -7d)."
    from: String
    "End, exclusive: same forms."
    to: String`;

export const SDL = `
"""
An instant: an RFC 3339 string, sent in UTC with milliseconds (2025-07-18T20:42:34.000Z).
"""
scalar DateTime @specifiedBy(url: "https://www.rfc-editor.org/rfc/rfc3339")

"Any JSON value."
scalar JSON

"active: a reading in the last 5 minutes; idle: older data only; empty: no data."
enum ClusterStatus {
  active
  idle
  empty
}

"How the readings of a step become one point."
enum Aggregate {
  avg
  min
  max
  last
}

"rollup_1m when the step is a whole number of minutes (buckets then align to minutes), raw otherwise."
enum SeriesSource {
  rollup_1m
  raw
}

"""
Nexus GPU telemetry: the fleet (clusters, hosts, GPUs), stored readings, downsampled series,
latest values. Field names are those of the REST API (/api/v1). Live data: the subscriptions, over
WebSocket at /graphql (graphql-ws protocol).

Errors come back as GraphQL errors with extensions.code and an HTTP status: a bad argument (a time
that is not a time, an unknown metric, a malformed cursor, a limit out of range), a malformed,
too deep (over 8 levels), too costly (estimated cost over 50,000) or too long (over 20,000
characters) query is a 400; a list under an unknown cluster or host (hosts, gpus, clusterStats,
telemetry with cluster_id) a 404; the store unavailable a 503. A lookup of one object (cluster,
host, gpu, Cluster.host, Host.gpu) answers null, with 200, when nothing has that id.
"""
type Query {
  "The clusters, by name: limit (1 to 1000) after the cursor (a HostPage's next_cursor, or REST's)."
  clusters(limit: Int = 100, after: String): [Cluster!]!
  "One cluster; null when no cluster has this id."
  cluster(cluster_id: String!): Cluster
  "The hosts of a cluster, by hostname, limit (1 to 1000) after the cursor. An unknown cluster is an error (404)."
  hosts(cluster_id: String!, limit: Int = 100, after: String): [Host!]!
  "A page of a cluster's hosts, by hostname (prefix: hostname prefix, case-sensitive), with the total and the next page's cursor."
  hostsPage(cluster_id: String!, limit: Int = 100, after: String, prefix: String): HostPage!
  "One host; null when the cluster has no such host."
  host(cluster_id: String!, host_id: String!): Host
  "The GPUs of a cluster, or of one of its hosts, by host and index, limit (1 to 1000) after the cursor. An unknown cluster or host is an error (404)."
  gpus(cluster_id: String!, host_id: String, limit: Int = 100, after: String): [Gpu!]!
  "Hosts, GPUs, namespaces and pods by a prefix of their name or of a part of it (kind: host, gpu, namespace, pod; limit 1 to 100)."
  search(q: String!, cluster_id: String, kind: [String!], limit: Int = 20): SearchResult!
  "One GPU; null when the host has no GPU with this index."
  gpu(cluster_id: String!, host_id: String!, gpu_id: Int!): Gpu
  "The metric catalogue."
  metrics: [Metric!]!
  "Statistics of a cluster. An unknown cluster is an error (404)."
  clusterStats(cluster_id: String!): ClusterStats!
  """
  Stored readings ordered by GPU, metric and time: the first \`limit\` (1 to 10,000) after \`cursor\`.
  For page after page use telemetryPage, which gives next_cursor.
  """
  telemetry(${FILTERS}${RANGE}
    limit: Int = 100
    "next_cursor of a telemetryPage."
    cursor: String
  ): [Telemetry!]!
  "Stored readings page by page, as GET /api/v1/telemetry: pass next_cursor as cursor for the next page."
  telemetryPage(${FILTERS}${RANGE}
    limit: Int = 1000
    "next_cursor of the previous page."
    cursor: String
  ): TelemetryPage!
  "Downsampled series, one per GPU and metric, as GET /api/v1/telemetry with step."
  series(${FILTERS}
    "Start, inclusive: RFC 3339, epoch milliseconds (12 or more digits) or seconds (9 to 11), now, or relative (-15m)."
    from: String!
    "End, exclusive (default now)."
    to: String
    "Step, e.g. 10s, 1m, 5m, 1h (at least 1s)."
    step: String!
    agg: Aggregate = avg
  ): SeriesResult!
  "The latest reading of each GPU and metric."
  latest(${FILTERS}
  ): [Telemetry!]!
}

type Subscription {
  "Each reading matching the filter, as collectors commit it: one event per reading."
  telemetry(${LIVE_FILTERS}
  ): Telemetry!
  "Each committed batch's readings matching the filter: one event per batch."
  telemetryBatch(${LIVE_FILTERS}
  ): TelemetryBatch!
  "Each GPU event matching the filter, as it is recorded (docs/fleet.md, Events)."
  events(
    "Cluster (default: every cluster)."
    clusterId: String
    "Event types (default: every type)."
    types: [EventType!]
    "Hostnames (default: every host)."
    hostIds: [String!]
  ): GpuEvent!
}

"What happened to a GPU (docs/fleet.md, Events)."
enum EventType {
  xid
  throttle
  health
  stopped
  reappeared
}

"A GPU event: an XID error, throttling, a health change, a GPU that stopped reporting or came back."
type GpuEvent {
  id: ID!
  type: EventType!
  time: DateTime!
  "When a throttle ended; null while it lasts, and for the other types."
  ended_at: DateTime
  "info, warning or critical."
  severity: String!
  cluster_id: String!
  host_id: String!
  gpu_id: Int!
  uuid: String
  "xid: the XID code; throttle: the throttling reasons' bitmask."
  code: Int
  message: String!
  details: JSON!
}

"Events of each type in the range, matching every filter but the types."
type EventCounts {
  xid: Int!
  throttle: Int!
  health: Int!
  stopped: Int!
  reappeared: Int!
}

"A page of a cluster's events, newest first."
type EventPage {
  cluster_id: String!
  from: DateTime!
  to: DateTime!
  counts: EventCounts!
  events: [GpuEvent!]!
  "Pass as cursor for the next page; null on the last."
  next_cursor: String
}

"A page of hosts: total counts the whole (filtered) list; next_cursor is null on the last page."
type HostPage {
  hosts: [Host!]!
  total: Int!
  next_cursor: String
}

"A search hit: kind says which of the optional fields it has (as GET /api/v1/search)."
type SearchHit {
  kind: String!
  cluster_id: String!
  label: String!
  host_id: String
  gpu_id: Int
  uuid: String
  namespace: String
  pod: String
  gpus: Int
}

"Search hits: exact matches first, then by kind (host, gpu, namespace, pod), then label."
type SearchResult {
  q: String!
  count: Int!
  truncated: Boolean!
  hits: [SearchHit!]!
}

"A cluster. host_count and gpu_count are the REST API's hosts and gpus (here hosts is the list)."
type Cluster {
  cluster_id: String!
  cluster_name: String!
  status: ClusterStatus!
  host_count: Int!
  gpu_count: Int!
  first_seen: DateTime!
  "Newest reading stored."
  last_seen: DateTime
  "Its hosts, by hostname, limit (1 to 1000) after the cursor."
  hosts(limit: Int = 100, after: String): [Host!]!
  "One of its hosts; null when there is none with this name."
  host(host_id: String!): Host
  stats: ClusterStats!
  "GPUs retired (silent for more than STALE_AFTER while the cluster reported); gpu_count counts live ones."
  retired_gpu_count: Int!
  "Its GPU events, newest first, as GET /api/v1/clusters/{cluster_id}/events (to defaults to now, from to 24 hours before)."
  events(
    type: [EventType!]
    from: String
    to: String
    hostId: String
    "With hostId."
    gpuId: Int
    "Events per page, 1 to 1000."
    limit: Int = 100
    cursor: String
  ): EventPage!
  """
  GPUs holding a workload whose utilisation stayed below util percent (default IDLE_UTIL) for at
  least for (a duration like 15m; default IDLE_FOR), most GPU-hours wasted first (docs/fleet.md).
  """
  idleGpus(util: Float, for: String): IdleReport!
  """
  GPU-hours allocated, utilisation while allocated, energy and cost per group over [from, to)
  (default the last 24 hours; at most 400 days), as GET /api/v1/clusters/{id}/usage.
  """
  usage(groupBy: UsageGroupBy!, from: DateTime, to: DateTime): UsageReport!
}

enum UsageGroupBy {
  namespace
  pod
  host
  gpu
}

type IdleReport {
  cluster_id: String!
  threshold_percent: Float!
  idle_for_seconds: Float!
  count: Int!
  wasted_gpu_hours: Float!
  gpus: [IdleGpu!]!
}

type IdleGpu {
  host_id: String!
  gpu_id: Int!
  "A MIG instance of the GPU (GPU_I_ID); null for a whole GPU."
  gpu_instance_id: Int
  uuid: String
  model: String
  namespace: String!
  pod: String!
  container: String!
  utilization_metric: String!
  "The latest reading of the utilisation metric, in percent."
  utilization_percent: Float
  idle_since: DateTime!
  last_seen: DateTime!
  idle_seconds: Float!
  wasted_gpu_hours: Float!
}

type UsageCost {
  energy: Float!
  gpu_hours: Float!
  total: Float!
}

type UsagePrices {
  energy_per_kwh: Float!
  gpu_hour: Float!
}

"One group: its keys (namespace; namespace and pod; host_id; host_id, gpu_id and uuid) and figures."
type UsageGroup {
  namespace: String
  pod: String
  host_id: String
  gpu_id: Int
  uuid: String
  gpu_hours: Float!
  avg_utilization_percent: Float
  energy_kwh: Float!
  "Null when neither ENERGY_PRICE_PER_KWH nor GPU_HOUR_PRICE is set."
  cost: UsageCost
  "Grouped by host or GPU: observed GPU-hours without a workload, and their energy."
  unallocated_gpu_hours: Float
  unallocated_energy_kwh: Float
}

type UsageTotal {
  gpu_hours: Float!
  energy_kwh: Float!
  cost: UsageCost
}

type UsageUnallocated {
  gpu_hours: Float!
  energy_kwh: Float!
}

type UsageReport {
  cluster_id: String!
  group_by: UsageGroupBy!
  from: DateTime!
  to: DateTime!
  currency: String!
  prices: UsagePrices
  groups: [UsageGroup!]!
  total: UsageTotal!
  unallocated: UsageUnallocated!
}

"A host. gpu_count is the REST API's gpus (here gpus is the list)."
type Host {
  cluster_id: String!
  "The hostname."
  host_id: String!
  hostname: String!
  gpu_count: Int!
  first_seen: DateTime!
  last_seen: DateTime
  "The cluster it belongs to."
  cluster: Cluster!
  "Its GPUs, by index, limit (1 to 1000) after the cursor."
  gpus(limit: Int = 100, after: String): [Gpu!]!
  "One of its GPUs; null when there is none with this index."
  gpu(gpu_id: Int!): Gpu
}

type Gpu {
  cluster_id: String!
  host_id: String!
  "Index of the GPU on its host."
  gpu_id: Int!
  uuid: String
  model: String
  device: String
  first_seen: DateTime!
  last_seen: DateTime
  "The host it sits in."
  host: Host!
  "Prometheus labels of its latest reading, name -> value."
  labels: JSON!
  "Kubernetes workloads this GPU served, most recent first."
  workloads: [Workload!]!
  "The latest reading of each of its metrics (of the named ones only, when metric is given); its MIG instances' are under migInstances."
  latest(metric: [String!]): [Telemetry!]!
  "Latest utilisation in percent: DCGM_FI_PROF_GR_ENGINE_ACTIVE x 100 where reported, else DCGM_FI_DEV_GPU_UTIL; null with neither."
  utilization_percent: Float
  "Its MIG instances (GPU_I_ID, GPU_I_PROFILE), by gpu_instance_id; empty when not partitioned."
  migInstances: [MigInstance!]!
  "One metric downsampled, as GET .../gpus/{gpu_id}/metrics: points is empty when there is no reading in the range."
  series(
    "Metric name, DCGM_FI_DEV_GPU_TEMP or GPU_TEMP."
    metric: String!
    "Start, inclusive (default: an hour before to)."
    from: String
    "End, exclusive (default now)."
    to: String
    "Step (default: about 600 points over the range, at least 1s)."
    step: String
    agg: Aggregate = avg
  ): Series!
}

"A MIG instance of a GPU, with its own series (GET .../gpus/{gpu_id}/mig/{gpu_instance_id})."
type MigInstance {
  cluster_id: String!
  host_id: String!
  "Index of its GPU on the host."
  gpu_id: Int!
  "GPU_I_ID."
  gpu_instance_id: Int!
  "GPU_I_PROFILE, e.g. 1g.10gb."
  profile: String
  uuid: String
  first_seen: DateTime!
  last_seen: DateTime
  "Latest utilisation in percent: DCGM_FI_PROF_GR_ENGINE_ACTIVE x 100 (MIG instances have no GPU_UTIL), else DCGM_FI_DEV_GPU_UTIL."
  utilization_percent: Float
  workloads: [Workload!]!
  latest: [Telemetry!]!
  "One metric of the instance downsampled, as GET .../mig/{gpu_instance_id}/metrics."
  series(
    metric: String!
    from: String
    to: String
    step: String
    agg: Aggregate = avg
  ): Series!
}

type Workload {
  namespace: String!
  pod: String!
  container: String!
  first_seen: DateTime!
  last_seen: DateTime!
}

type Metric {
  name: String!
  unit: String!
  "gauge or counter."
  type: String!
  help: String!
}

"One reading: one metric of one GPU at one instant."
type Telemetry {
  cluster_id: String!
  host_id: String!
  gpu_id: Int!
  "A MIG instance's reading: its GPU instance id (null: the whole GPU's)."
  gpu_instance_id: Int
  mig_profile: String
  uuid: String
  metric: String!
  unit: String!
  timestamp: DateTime!
  value: Float!
  "The whole reading as one JSON object (the REST API's reading): cluster_id, host_id, gpu_id, uuid, metric, unit, timestamp, value."
  data: JSON!
}

type TelemetryPage {
  readings: [Telemetry!]!
  count: Int!
  "Pass as cursor to get the next page; null on the last page."
  next_cursor: String
}

type SeriesPoint {
  "Start of the step."
  timestamp: DateTime!
  value: Float!
  "Readings in the step."
  count: Int!
}

type Series {
  cluster_id: String!
  host_id: String!
  gpu_id: Int!
  "A MIG instance's series: its GPU instance id (null: the whole GPU's)."
  gpu_instance_id: Int
  mig_profile: String
  uuid: String
  metric: String!
  unit: String!
  points: [SeriesPoint!]!
}

type SeriesResult {
  series: [Series!]!
  step: String!
  agg: Aggregate!
  from: DateTime!
  to: DateTime!
  source: SeriesSource!
}

type MetricStats {
  metric: String!
  unit: String!
  "Readings stored (a Float: GraphQL's Int has 32 bits)."
  samples: Float!
}

type ClusterStats {
  cluster_id: String!
  "Readings stored (a Float: GraphQL's Int has 32 bits)."
  samples: Float!
  hosts: Int!
  gpus: Int!
  metrics: Int!
  first_timestamp: DateTime
  last_timestamp: DateTime
  samples_per_metric: [MetricStats!]!
}

"The readings of one committed batch that match a subscription."
type TelemetryBatch {
  cluster_id: String!
  "When the collector committed them."
  committed_at: DateTime!
  readings: [Telemetry!]!
  count: Int!
  """
  Readings this subscription lost since its previous event because it read too slowly (it holds
  at most 10,000 unsent readings; the oldest go first).
  """
  dropped: Int!
}
`;

/** The schema with its scalars working; the plugin adds the resolvers. A new object each call. */
export function buildGraphqlSchema(): GraphQLSchema {
  const schema = buildSchema(SDL);
  attachScalars(schema);
  return schema;
}

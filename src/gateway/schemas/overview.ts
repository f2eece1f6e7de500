import { Type, type Static } from '@sinclair/typebox';
import { StringEnum } from './common.js';

// GET /api/v1/overview: the fleet at a glance, what the gateway serves, and its alerts.

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

/** The simulated fleet `nexus up` streams without a CSV (docs/fleet.md, "The simulated fleet"). */
export const Simulation = Type.Object(
  {
    description: Type.String(),
    seed: Type.Integer(),
    speed: Type.Number({
      description: 'Jobs and incidents run this many times faster than the clock',
    }),
    interval_s: Type.Number({ description: 'Seconds between readings of a GPU' }),
    hosts: Type.Integer(),
    gpus_per_host: Type.Integer(),
    started_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type Simulation = Static<typeof Simulation>;

export const Alert = Type.Object({
  severity: StringEnum(['warning', 'critical']),
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  metric: Type.String(),
  value: Type.Number(),
  message: Type.String(),
  since: Type.String({ format: 'date-time', description: 'Time of the reading' }),
});

/** One cluster in the overview: its live and retired GPUs, its power draw. */
export const OverviewCluster = Type.Object({
  cluster_id: Type.String(),
  gpus: Type.Integer({ description: 'Live GPUs (not retired)' }),
  retired_gpus: Type.Integer(),
  power_watts: Type.Number({
    description: 'Sum of the latest DCGM_FI_DEV_POWER_USAGE of its live GPUs (0 without readings)',
  }),
  idle_gpus: Type.Integer({
    description:
      'GPUs holding a workload below IDLE_UTIL for at least IDLE_FOR (GET /api/v1/clusters/{id}/idle)',
  }),
});

export const Overview = Type.Object({
  clusters: Type.Integer(),
  hosts: Type.Integer(),
  gpus: Type.Integer({ description: 'Live GPUs (not retired)' }),
  retired_gpus: Type.Integer({
    description: 'GPUs retired: silent for more than STALE_AFTER while their cluster reported',
  }),
  power_watts: Type.Number({ description: 'Sum of the clusters power_watts' }),
  by_cluster: Type.Array(OverviewCluster),
  ingest: Type.Union(
    [Type.Object({ records_per_s: Type.Number(), window_s: Type.Integer() }), Type.Null()],
    {
      description:
        'Readings committed per second, as the live feed saw them; null without a live feed',
    },
  ),
  queue: Type.Union([
    Type.Object({
      ready: Type.Integer(),
      in_flight: Type.Integer(),
      delayed: Type.Integer(),
      dead: Type.Integer(),
      oldest_age_s: Type.Union([Type.Number(), Type.Null()]),
    }),
    Type.Null(),
  ]),
  collectors: Type.Array(
    Type.Object({
      id: Type.String(),
      hostname: Type.String(),
      pid: Type.Integer(),
      started_at: Type.String(),
      version: Type.String(),
    }),
  ),
  alerts: Type.Array(Alert, {
    description: 'GPUs flagged now, most severe first: at most 100 (alerts_total counts them all)',
  }),
  alerts_total: Type.Integer({ description: 'Every alert now, over the clusters shown' }),
  idle_gpus: Type.Integer({
    description:
      'GPUs holding a workload below IDLE_UTIL for at least IDLE_FOR (GET /api/v1/clusters/{id}/idle), over the clusters shown',
  }),
  features: Features,
  simulated: Type.Boolean({
    description:
      'True while this process streams the built-in simulated fleet (nexus up without a CSV): the readings are not real',
  }),
  simulation: Type.Union([Simulation, Type.Null()], {
    description: 'The simulated fleet, while simulated is true; null otherwise',
  }),
});

export const OverviewQuery = Type.Object(
  { cluster_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) },
  { additionalProperties: false },
);

export type Alert = Static<typeof Alert>;

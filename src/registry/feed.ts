import { WHOLE_GPU, migInstanceOf } from '../core/mig.js';
import type { TelemetryRecord } from '../core/record.js';

/** A reading as the live feed carries it. */
export interface FeedRecord {
  readonly hostname: string;
  readonly gpu: number;
  /** A MIG instance's reading: its GPU instance id (absent: the whole GPU's). */
  readonly gpu_instance_id?: number;
  readonly uuid?: string;
  readonly metric: string;
  readonly timestamp: number;
  readonly value: number;
}

/** A wire row of a MIG instance's reading: the six of every row, then the GPU instance id. */
type FeedRow7 = [number, number, number, number, number, number, number];

/** Readings of one cluster that one collector has just committed. */
export interface FeedBatch {
  readonly cluster_id: string;
  /** When the collector committed them (epoch ms). */
  readonly committed_at: number;
  readonly records: readonly FeedRecord[];
}

/**
 * The commit feed (docs/api.md, "Live data"): collectors announce every reading they store for the
 * first time, right after the commit; gateways listen and push to their WebSocket and GraphQL
 * subscribers. A reading is announced once: a redelivered batch announces only what it stored.
 */
export interface LiveFeed {
  publish(clusterId: string, records: readonly TelemetryRecord[]): Promise<void>;
  /**
   * Calls back with every batch of the cluster (or of all clusters, '*') from now on, and `onGap`
   * whenever batches may have been missed since (the watch was broken and resumed, or this
   * process's listener registration lapsed, so collectors stopped publishing for a while): what is
   * kept from the feed should then be read again from the store.
   */
  subscribe(
    clusterId: string,
    onBatch: (batch: FeedBatch) => void,
    onGap?: () => void,
  ): Promise<() => Promise<void>>;
  /** Says that this process listens (so collectors publish); until close(), whatever happens. */
  announceListener(id: string): Promise<void>;
  /** Undefined while live push works (listening, and the feed received); otherwise why not. */
  status(): string | undefined;
  close(): Promise<void>;
}

/**
 * Compact wire form of a feed batch: hosts, uuids and metrics once each, then one small array per
 * reading: [host, gpu, uuid, metric, timestamp - t0, value], and a MIG instance's GPU instance id
 * after them (absent for a whole GPU's: gateways of earlier releases read the six they know).
 */
export interface WireFeedBatch {
  readonly v: 1;
  readonly c: string;
  readonly at: number;
  readonly t0: number;
  readonly h: string[];
  readonly u: string[];
  readonly m: string[];
  readonly r: ([number, number, number, number, number, number] | FeedRow7)[];
}

export function encodeFeed(
  clusterId: string,
  records: readonly TelemetryRecord[],
  at: number,
): WireFeedBatch {
  const hosts = new Map<string, number>();
  const uuids = new Map<string, number>();
  const metrics = new Map<string, number>();
  const index = (m: Map<string, number>, k: string): number => {
    let i = m.get(k);
    if (i === undefined) m.set(k, (i = m.size));
    return i;
  };
  let t0 = Number.POSITIVE_INFINITY;
  for (const r of records) if (r.timestamp < t0) t0 = r.timestamp;
  if (!Number.isFinite(t0)) t0 = 0;
  const rows = records.map((r): [number, number, number, number, number, number] | FeedRow7 => {
    const row: [number, number, number, number, number, number] = [
      index(hosts, r.hostname),
      r.gpu,
      r.uuid === undefined ? -1 : index(uuids, r.uuid),
      index(metrics, r.metric),
      r.timestamp - t0,
      r.value,
    ];
    const instance = migInstanceOf(r.labels);
    return instance === WHOLE_GPU ? row : [...row, instance];
  });
  return {
    v: 1,
    c: clusterId,
    at,
    t0,
    h: [...hosts.keys()],
    u: [...uuids.keys()],
    m: [...metrics.keys()],
    r: rows,
  };
}

/** A stored reading as the feed carries it (the same fields, in the same order, as decodeFeed's). */
export function feedRecord(r: TelemetryRecord): FeedRecord {
  const { hostname, gpu, uuid, metric, timestamp, value } = r;
  const instance = migInstanceOf(r.labels);
  return {
    hostname,
    gpu,
    ...(instance === WHOLE_GPU ? {} : { gpu_instance_id: instance }),
    ...(uuid === undefined ? {} : { uuid }),
    metric,
    timestamp,
    value,
  };
}

export function decodeFeed(w: WireFeedBatch): FeedBatch {
  return {
    cluster_id: w.c,
    committed_at: w.at,
    records: w.r.map(([h, gpu, u, m, dt, value, instance]) => {
      const uuid = u >= 0 ? w.u[u] : undefined;
      return {
        hostname: w.h[h] ?? '',
        gpu,
        ...(instance === undefined || instance === WHOLE_GPU ? {} : { gpu_instance_id: instance }),
        ...(uuid === undefined ? {} : { uuid }),
        metric: w.m[m] ?? '',
        timestamp: w.t0 + dt,
        value,
      };
    }),
  };
}

import type { TelemetryRecord } from '../core/record.js';

export interface ClusterInfo {
  readonly cluster_id: string;
  readonly first_seen: number;
  readonly last_seen: number;
}

export interface HostInfo {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_count: number;
  readonly first_seen: number;
  readonly last_seen: number;
}

export interface GpuInfo {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu: number;
  readonly uuid: string | undefined;
  readonly model: string | undefined;
  readonly device: string | undefined;
  readonly first_seen: number;
  readonly last_seen: number;
}

/** A GPU's latest value of each metric, as last flushed by a collector. */
export interface LiveGpu {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu: number;
  readonly uuid: string | undefined;
  /** Time of the newest reading. */
  readonly time: number;
  readonly metrics: Readonly<Record<string, { readonly value: number; readonly time: number }>>;
}

/** A running Nexus process, on a session lease: it disappears when the process does. */
export interface MemberInfo {
  readonly id: string;
  readonly role: 'collector' | 'gateway' | 'streamer' | 'embedded';
  readonly hostname: string;
  readonly pid: number;
  readonly cluster_id: string;
  readonly started_at: number;
  readonly version: string;
}

export interface LiveChange {
  readonly gpu: LiveGpu;
}

/**
 * The fleet registry (docs/storage.md, "Registry in etcd"): clusters, hosts and GPUs with their
 * metadata, each GPU's latest values at a bounded rate, and the live members, so that gateways can
 * list the fleet and push live updates without polling PostgreSQL.
 */
export interface FleetRegistry {
  /** Takes in what a committed batch says about the fleet; written out at a bounded rate. */
  observe(clusterId: string, records: readonly TelemetryRecord[]): void;
  /** Writes out what observe() gathered now (also done every flush interval). */
  flush(): Promise<void>;
  /** Announces this process until it stops. */
  register(member: MemberInfo): Promise<void>;
  clusters(): Promise<ClusterInfo[]>;
  hosts(clusterId: string): Promise<HostInfo[]>;
  gpus(clusterId: string, hostname?: string): Promise<GpuInfo[]>;
  live(clusterId: string, hostname?: string): Promise<LiveGpu[]>;
  members(): Promise<MemberInfo[]>;
  /** Calls back on every live update of a cluster's GPUs; returns the stop function. */
  watchLive(clusterId: string, onChange: (gpu: LiveGpu) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

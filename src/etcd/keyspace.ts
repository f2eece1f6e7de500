import { NexusError } from '../core/errors.js';

/**
 * Where Nexus keeps its keys in etcd, per prefix family, for every cluster (docs/queue.md,
 * docs/storage.md). The queue's layout (src/queue/etcd/layout.ts), the registry, the feed and the
 * etcd roles (roles.ts) all derive their keys from here, so a role covers exactly what the
 * components write. Each prefix ends with "/".
 */
export interface QueueKeyspace {
  /** MESSAGE_QUEUE_PREFIX without its trailing slashes. */
  readonly base: string;
  /** Messages, one key per message: `P/{cluster}/{name}`. */
  readonly messages: string;
  readonly claims: string;
  readonly delayed: string;
  readonly dead: string;
  /** Stream owners, metas and lane checkpoints. */
  readonly streams: string;
  /** The ledger of message leases. */
  readonly leases: string;
  readonly stats: string;
}

/** The queue's prefixes under MESSAGE_QUEUE_PREFIX (which must start with "/"). */
export function queueKeyspace(prefix: string): QueueKeyspace {
  const p = prefix.replace(/\/+$/, '');
  if (!p.startsWith('/') || p.length < 2) {
    throw new NexusError('CONFIG_INVALID', `MESSAGE_QUEUE_PREFIX "${prefix}" must start with "/"`);
  }
  return {
    base: p,
    messages: `${p}/`,
    claims: `${p}.claims/`,
    delayed: `${p}.delayed/`,
    dead: `${p}.dead/`,
    streams: `${p}.streams/`,
    leases: `${p}.leases/`,
    stats: `${p}.stats/`,
  };
}

export interface RegistryKeyspace {
  /** REGISTRY_PREFIX without its trailing slashes. */
  readonly base: string;
  readonly clusters: string;
  readonly hosts: string;
  readonly gpus: string;
  readonly live: string;
  /** Members, by role: `R/members/{role}/{id}`. */
  readonly members: string;
  /** The commit feed: `R/feed/{cluster}/{instance}.{seq}`. */
  readonly feed: string;
  /** Gateways that push live data. */
  readonly listeners: string;
}

/** The fleet registry's and the commit feed's prefixes under REGISTRY_PREFIX. */
export function registryKeyspace(prefix: string): RegistryKeyspace {
  const p = prefix.replace(/\/+$/, '');
  return {
    base: p,
    clusters: `${p}/clusters/`,
    hosts: `${p}/hosts/`,
    gpus: `${p}/gpus/`,
    live: `${p}/live/`,
    members: `${p}/members/`,
    feed: `${p}/feed/`,
    listeners: `${p}/listeners/`,
  };
}

import { NexusError } from '../../core/errors.js';
import { queueKeyspace } from '../../etcd/keyspace.js';

/**
 * Where everything lives in etcd (docs/queue.md). Messages are alone under the queue prefix, one
 * key per message, so that `etcdctl get --prefix {prefix}/ --keys-only | wc -l` counts them;
 * bookkeeping lives under sibling prefixes.
 */
export class QueueLayout {
  readonly messages: string;
  readonly claims: string;
  readonly delayed: string;
  readonly dead: string;
  readonly streams: string;
  readonly leases: string;
  readonly stats: string;

  constructor(
    readonly prefix: string,
    readonly clusterId: string,
  ) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(clusterId)) {
      throw new NexusError(
        'CONFIG_INVALID',
        `CLUSTER_ID "${clusterId}" must be 1-128 characters of letters, digits, ".", "_" and "-"`,
      );
    }
    const k = queueKeyspace(prefix);
    this.messages = `${k.messages}${clusterId}/`;
    this.claims = `${k.claims}${clusterId}/`;
    this.delayed = `${k.delayed}${clusterId}/`;
    this.dead = `${k.dead}${clusterId}/`;
    this.streams = `${k.streams}${clusterId}/`;
    this.leases = `${k.leases}${clusterId}/`;
    this.stats = `${k.stats}${clusterId}/`;
  }

  message(name: string): string {
    return this.messages + name;
  }
  claim(name: string): string {
    return this.claims + name;
  }
  deadLetter(name: string): string {
    return this.dead + name;
  }
  /** Delayed retries sort by due time: `{due13}_{name}`. */
  delayedKey(dueMs: number, name: string): string {
    return `${this.delayed}${String(Math.max(0, Math.trunc(dueMs))).padStart(13, '0')}_${name}`;
  }
  parseDelayed(k: string): { due: number; name: string } | undefined {
    const rest = k.slice(this.delayed.length);
    const i = rest.indexOf('_');
    if (i <= 0) return undefined;
    return { due: Number(rest.slice(0, i)), name: rest.slice(i + 1) };
  }
  streamOwner(id: string): string {
    return `${this.streams}${id}/owner`;
  }
  streamMeta(id: string): string {
    return `${this.streams}${id}/meta`;
  }
  streamLanes(id: string): string {
    return `${this.streams}${id}/lanes/`;
  }
  streamLane(id: string, lane: number): string {
    return `${this.streamLanes(id)}${String(lane).padStart(3, '0')}`;
  }
  ledger(leaseId: string): string {
    return this.leases + leaseId;
  }
  counter(name: string): string {
    return this.stats + name;
  }
}

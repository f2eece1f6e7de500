import type { Etcd3, IKeyValue } from 'etcd3';
import { decodeKeySegment, encodeKeySegment } from '../../core/key-segment.js';
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { TelemetryRecord } from '../../core/record.js';
import { Kv, absent, getOp, key, modIs, prefixEnd, putOp } from '../../etcd/kv.js';
import { Session } from '../../etcd/session.js';
import { registryKeyspace, type RegistryKeyspace } from '../../etcd/keyspace.js';
import { FleetState, type Dirty, type StoredHost } from '../fleet-state.js';
import type {
  ClusterInfo,
  FleetRegistry,
  GpuInfo,
  HostInfo,
  LiveGpu,
  MemberInfo,
} from '../types.js';

export interface EtcdRegistryOptions {
  readonly client: Etcd3;
  /** REGISTRY_PREFIX, default /nexus. */
  readonly prefix: string;
  /** How often gathered state is written (LIVE_INTERVAL). */
  readonly flushIntervalMs: number;
  /** At most this many GPUs' live values per flush; the rest wait for the next. */
  readonly maxLivePerFlush: number;
  readonly leaseTtlMs: number;
  readonly logger: Logger;
}

const PUTS_PER_TXN = 100;

function parse<T>(kv: IKeyValue): T | undefined {
  try {
    return JSON.parse(kv.value.toString()) as T;
  } catch {
    return undefined;
  }
}

/**
 * The fleet registry in etcd (docs/storage.md, "Registry in etcd"):
 *
 *   {prefix}/clusters/{cluster}                    ClusterInfo
 *   {prefix}/hosts/{cluster}/{host}                HostInfo (without gpu_count)
 *   {prefix}/gpus/{cluster}/{host}/{gpu}           GpuInfo
 *   {prefix}/live/{cluster}/{host}/{gpu}           LiveGpu: latest value of each metric
 *   {prefix}/members/{role}/{id}                   MemberInfo, on the member's session lease
 *
 * Hostnames are percent-encoded (`%`, `_`, `/`). Metadata is merged on write (earliest first_seen,
 * latest last_seen) under a revision compare, so collectors that each saw part of the fleet never
 * undo each other.
 */
export class EtcdRegistry implements FleetRegistry {
  private readonly kv: Kv;
  private readonly state = new FleetState();
  private readonly k: RegistryKeyspace;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private session: Session | undefined;
  private closed = false;

  constructor(private readonly o: EtcdRegistryOptions) {
    this.kv = new Kv(o.client);
    this.k = registryKeyspace(o.prefix);
  }

  private clusterKey(c: string): string {
    return `${this.k.clusters}${c}`;
  }
  private hostKey(c: string, h: string): string {
    return `${this.k.hosts}${c}/${encodeKeySegment(h)}`;
  }
  private gpuKey(c: string, h: string, g: number): string {
    return `${this.k.gpus}${c}/${encodeKeySegment(h)}/${g}`;
  }
  private liveKey(c: string, h: string, g: number): string {
    return `${this.k.live}${c}/${encodeKeySegment(h)}/${g}`;
  }

  observe(clusterId: string, records: readonly TelemetryRecord[]): void {
    if (this.closed) return;
    this.state.observe(clusterId, records);
    if (this.timer === undefined) {
      this.timer = setInterval(() => {
        // A write still under way (etcd slow to answer) says once how it ended, not once a tick.
        if (this.flushing !== undefined) return;
        void this.flush().catch((err: unknown) => {
          this.o.logger.warn({ err: describeError(err) }, 'registry flush failed; will retry');
        });
      }, this.o.flushIntervalMs);
      this.timer.unref();
    }
  }

  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    const dirty = this.state.take(this.o.maxLivePerFlush);
    try {
      await this.mergeMetadata(dirty);
      const live = dirty.live.map((l) =>
        putOp(this.liveKey(l.cluster_id, l.hostname, l.gpu), JSON.stringify(l)),
      );
      for (let i = 0; i < live.length; i += PUTS_PER_TXN) {
        await this.kv.txn([], live.slice(i, i + PUTS_PER_TXN), [], 'registry live');
      }
    } catch (err) {
      this.state.restore(dirty);
      throw err;
    }
  }

  /**
   * Writes metadata, merged with what is there, under revision compares (retried on a race).
   * Entries this process writes for the first time are written at once where their keys do not
   * exist yet (a first sight of a fleet costs one transaction per chunk, not a read and a write);
   * a chunk in which any key exists (another collector wrote it, or this one before a restart)
   * is read and merged as the others are.
   */
  private async mergeMetadata(dirty: Dirty): Promise<void> {
    const items: { key: string; value: ClusterInfo | StoredHost | GpuInfo }[] = [
      ...dirty.clusters.map((c) => ({ key: this.clusterKey(c.cluster_id), value: c })),
      ...dirty.hosts.map((h) => ({ key: this.hostKey(h.cluster_id, h.hostname), value: h })),
      ...dirty.gpus.map((g) => ({ key: this.gpuKey(g.cluster_id, g.hostname, g.gpu), value: g })),
    ];
    const first = items.filter((i) => dirty.first.has(i.value));
    const again = items.filter((i) => !dirty.first.has(i.value));
    for (let i = 0; i < first.length; i += PUTS_PER_TXN) {
      const chunk = first.slice(i, i + PUTS_PER_TXN);
      const res = await this.kv.txn(
        chunk.map((c) => absent(c.key)),
        chunk.map((c) => putOp(c.key, JSON.stringify(c.value))),
        [],
        'registry create',
      );
      if (!res.succeeded) again.push(...chunk);
    }
    for (let i = 0; i < again.length; i += 50) {
      const chunk = again.slice(i, i + 50);
      for (let attempt = 0; ; attempt++) {
        const cur = await this.kv.txn(
          [],
          chunk.map((c) => getOp(c.key)),
          [],
          'registry read',
        );
        const compares = [];
        const puts = [];
        for (const [j, item] of chunk.entries()) {
          const kv = cur.responses[j]?.response_range.kvs[0];
          const old =
            kv === undefined ? undefined : parse<{ first_seen: number; last_seen: number }>(kv);
          const merged = {
            ...item.value,
            first_seen: Math.min(item.value.first_seen, old?.first_seen ?? item.value.first_seen),
            last_seen: Math.max(item.value.last_seen, old?.last_seen ?? item.value.last_seen),
          };
          compares.push(modIs(item.key, kv?.mod_revision ?? 0));
          puts.push(putOp(item.key, JSON.stringify(merged)));
        }
        const res = await this.kv.txn(compares, puts, [], 'registry write');
        if (res.succeeded || attempt >= 5) break;
      }
    }
  }

  /** Registers a member on this process's session, and keeps it registered (Session.keep). */
  async register(member: MemberInfo): Promise<void> {
    this.session ??= new Session(
      this.o.client,
      Math.max(1, Math.round(this.o.leaseTtlMs / 1000)),
      this.o.logger,
    );
    await this.session.keep(`${this.k.members}${member.role}/${member.id}`, () =>
      JSON.stringify(member),
    );
  }

  private async list<T>(prefix: string): Promise<{ key: string; value: T }[]> {
    const out: { key: string; value: T }[] = [];
    for await (const page of this.kv.scan(prefix)) {
      for (const kv of page) {
        const v = parse<T>(kv);
        if (v !== undefined) out.push({ key: kv.key.toString(), value: v });
      }
    }
    return out;
  }

  async clusters(): Promise<ClusterInfo[]> {
    return (await this.list<ClusterInfo>(this.k.clusters)).map((x) => x.value);
  }

  async hosts(clusterId: string): Promise<HostInfo[]> {
    const [hosts, gpus] = await Promise.all([
      this.list<StoredHost>(`${this.k.hosts}${clusterId}/`),
      this.kv.range(
        {
          key: key(`${this.k.gpus}${clusterId}/`),
          range_end: prefixEnd(`${this.k.gpus}${clusterId}/`),
          keys_only: true,
        },
        'count gpus',
      ),
    ]);
    const counts = new Map<string, number>();
    const base = `${this.k.gpus}${clusterId}/`.length;
    for (const kv of gpus.kvs) {
      const host = decodeKeySegment(kv.key.toString().slice(base).split('/')[0] ?? '');
      counts.set(host, (counts.get(host) ?? 0) + 1);
    }
    return hosts.map((h) => ({ ...h.value, gpu_count: counts.get(h.value.hostname) ?? 0 }));
  }

  async gpus(clusterId: string, hostname?: string): Promise<GpuInfo[]> {
    const prefix =
      hostname === undefined
        ? `${this.k.gpus}${clusterId}/`
        : `${this.k.gpus}${clusterId}/${encodeKeySegment(hostname)}/`;
    return (await this.list<GpuInfo>(prefix)).map((x) => x.value);
  }

  async live(clusterId: string, hostname?: string): Promise<LiveGpu[]> {
    const prefix =
      hostname === undefined
        ? `${this.k.live}${clusterId}/`
        : `${this.k.live}${clusterId}/${encodeKeySegment(hostname)}/`;
    return (await this.list<LiveGpu>(prefix)).map((x) => x.value);
  }

  async members(): Promise<MemberInfo[]> {
    return (await this.list<MemberInfo>(this.k.members)).map((x) => x.value);
  }

  async watchLive(
    clusterId: string,
    onChange: (gpu: LiveGpu) => void,
  ): Promise<() => Promise<void>> {
    const watcher = await this.o.client.watch().prefix(`${this.k.live}${clusterId}/`).create();
    watcher.on('put', (kv) => {
      const v = parse<LiveGpu>(kv);
      if (v !== undefined) onChange(v);
    });
    watcher.on('error', (err) =>
      this.o.logger.warn({ err: describeError(err) }, 'registry watch error'),
    );
    return async () => {
      await watcher.cancel();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.flush().catch((err: unknown) => {
      this.o.logger.warn({ err: describeError(err) }, 'final registry flush failed');
    });
    this.closed = true;
    await this.session?.close(true);
  }
}

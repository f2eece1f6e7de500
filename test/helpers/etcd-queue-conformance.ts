/**
 * The queue conformance suite (test/conformance/queue-suite.ts) on an etcd: plain
 * (queue-etcd.test.ts) or with TLS and a client certificate (queue-etcd-secure.test.ts).
 */
import type { EtcdConnectionOptions } from '../../src/etcd/client.js';
import { Kv, putOp } from '../../src/etcd/kv.js';
import { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import { queueConformance } from '../conformance/queue-suite.js';
import { firstLine, killHard, spawnTs } from './child.js';

export interface EtcdTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export function etcdQueueConformance(o: {
  readonly name: string;
  readonly endpoint: string;
  readonly prefix: string;
  readonly tls?: EtcdTls;
  /** After the queues are closed. */
  readonly teardown: () => Promise<void>;
}): void {
  const connection: EtcdConnectionOptions = {
    endpoints: [o.endpoint],
    timeoutMs: 5000,
    ...o.tls,
  };
  const queues = new Map<unknown, EtcdQueue>();
  const etcdOf = (q: unknown): EtcdQueue => {
    const found = queues.get(q);
    if (found === undefined) throw new Error('not an etcd queue of this test');
    return found;
  };
  queueConformance({
    name: o.name,
    create: (options) => {
      const q = new EtcdQueue({
        ...options,
        prefix: o.prefix,
        connection,
        enableWatch: true,
        leaseSweepMs: 1000,
      });
      queues.set(q, q);
      return Promise.resolve(q);
    },
    crashConsumer: async (queue, options, count) => {
      const child = spawnTs('test/helpers/crash-consumer.ts', [
        o.endpoint,
        o.prefix,
        queue.clusterId,
        String(count),
        String(options.leaseTtlMs),
        ...(o.tls === undefined ? [] : [JSON.stringify(o.tls)]),
      ]);
      const line = await firstLine(child);
      await killHard(child);
      return JSON.parse(line) as string[];
    },
    putGarbage: async (queue, name) => {
      const q = etcdOf(queue);
      await new Kv(q.etcd).txn([], [putOp(q.layout.message(name), 'this is not json')]);
    },
    expireNow: async (queue) => {
      await etcdOf(queue).sweepLeases();
    },
    teardown: async () => {
      await Promise.all([...queues.values()].map((q) => q.close()));
      await o.teardown();
    },
  });
}

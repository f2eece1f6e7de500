import { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import { Kv, putOp } from '../../src/etcd/kv.js';
import { queueConformance } from '../conformance/queue-suite.js';
import { sharedEtcd } from '../helpers/etcd.js';
import { firstLine, killHard, spawnTs } from '../helpers/child.js';

const PREFIX = '/conformance/queue';
const etcd = await sharedEtcd();
const queues = new Map<unknown, EtcdQueue>();
const etcdOf = (q: unknown): EtcdQueue => {
  const found = queues.get(q);
  if (found === undefined) throw new Error('not an etcd queue of this test');
  return found;
};

queueConformance({
  name: 'etcd',
  create: (options) => {
    const q = new EtcdQueue({
      ...options,
      prefix: PREFIX,
      connection: { endpoints: [etcd.endpoint], timeoutMs: 5000 },
      enableWatch: true,
      leaseSweepMs: 1000,
    });
    queues.set(q, q);
    return Promise.resolve(q);
  },
  crashConsumer: async (queue, options, count) => {
    const child = spawnTs('test/helpers/crash-consumer.ts', [
      etcd.endpoint,
      PREFIX,
      queue.clusterId,
      String(count),
      String(options.leaseTtlMs),
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
    await etcd.release();
  },
});

import { sharedEtcd } from '../helpers/etcd.js';
import { etcdQueueConformance } from '../helpers/etcd-queue-conformance.js';

const etcd = await sharedEtcd();

etcdQueueConformance({
  name: 'etcd',
  endpoint: etcd.endpoint,
  prefix: '/conformance/queue',
  teardown: () => etcd.release(),
});

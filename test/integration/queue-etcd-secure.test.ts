/**
 * The queue's conformance suite (test/conformance/queue-suite.ts: claims, fenced acks, retries,
 * dead letters, TTL, exactly-once streams, a consumer killed with SIGKILL) once more, against the
 * etcd of `make setup-etcd-secure`: client TLS, a client certificate required, auth enabled, the
 * queue used as the `admin` user of its settings file (the union of the streamer's and the
 * collector's rights; etcd-secure.test.ts runs each component as its own user and checks what
 * each may not do). Whatever works on plain etcd must work on the secure one.
 */
import { etcdQueueConformance } from '../helpers/etcd-queue-conformance.js';
import { secureEtcd } from '../helpers/secure-etcd.js';

const etcd = await secureEtcd('nexus-queue-secure');
const setup = await etcd.make('setup-etcd-secure');
if (setup.code !== 0) throw new Error(`make setup-etcd-secure: ${setup.stdout}${setup.stderr}`);
const admin = etcd.settings('admin');

etcdQueueConformance({
  name: 'etcd with TLS, client certificates and RBAC (make setup-etcd-secure)',
  endpoint: admin.ETCD_ENDPOINTS ?? '',
  // The prefix the roles were made for (MESSAGE_QUEUE_PREFIX's default); clusters are the suite's own.
  prefix: '/telemetry/queue',
  tls: {
    caFile: admin.ETCD_CA_FILE ?? '',
    certFile: admin.ETCD_CERT_FILE ?? '',
    keyFile: admin.ETCD_KEY_FILE ?? '',
  },
  teardown: async () => {
    try {
      await etcd.make('stop-etcd');
    } finally {
      etcd.destroy();
    }
  },
});

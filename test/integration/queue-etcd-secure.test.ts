/**
 * The queue's conformance suite (test/conformance/queue-suite.ts: claims, fenced acks, retries,
 * dead letters, TTL, exactly-once streams, a consumer killed with SIGKILL) once more, against the
 * etcd of `make setup-etcd-secure`: client TLS, a client certificate required, auth enabled, the
 * queue used as the `admin` user of its settings file (the union of the streamer's and the
 * collector's rights; etcd-secure.test.ts runs each component as its own user and checks what
 * each may not do). Whatever works on plain etcd must work on the secure one.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kv, putOp } from '../../src/etcd/kv.js';
import { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import { queueConformance } from '../conformance/queue-suite.js';
import { ROOT, firstLine, killHard, spawnTs } from '../helpers/child.js';
import { freePort } from '../helpers/ports.js';

const dataDir = mkdtempSync(join(tmpdir(), 'nexus-queue-secure-'));
const secureDir = join(dataDir, 'etcd-secure');
const [etcdPort, peerPort] = [await freePort(), await freePort()];
const make = (target: string): void => {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^ETCDCTL_|^ETCD_/.test(k)),
  );
  execFileSync(
    'make',
    [
      '--no-print-directory',
      '-o',
      'setup-dev',
      target,
      `DATA_DIR=${dataDir}`,
      `ETCD_PORT=${etcdPort}`,
      `ETCD_PEER=${peerPort}`,
    ],
    { cwd: ROOT, env, stdio: 'pipe', timeout: 120_000 },
  );
};
/** Stopped by its pid whatever happens (a failed test, a timeout): etcd runs in its own session. */
const killEtcd = (): void => {
  const pidFile = join(secureDir, 'etcd.pid');
  if (!existsSync(pidFile)) return;
  try {
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  } catch {
    // gone already
  }
};
process.once('exit', killEtcd);
make('setup-etcd-secure');

/** The admin user's settings file (DATA_DIR/etcd-secure/admin.env). */
const settings = Object.fromEntries(
  readFileSync(join(secureDir, 'admin.env'), 'utf8')
    .split('\n')
    .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1] ?? '', m[2] ?? '']),
);
const endpoint = settings.ETCD_ENDPOINTS ?? '';
const tls = {
  caFile: settings.ETCD_CA_FILE ?? '',
  certFile: settings.ETCD_CERT_FILE ?? '',
  keyFile: settings.ETCD_KEY_FILE ?? '',
};
// The prefix the roles were made for (MESSAGE_QUEUE_PREFIX's default); clusters are the suite's own.
const PREFIX = '/telemetry/queue';
const queues = new Map<unknown, EtcdQueue>();
const etcdOf = (q: unknown): EtcdQueue => {
  const found = queues.get(q);
  if (found === undefined) throw new Error('not an etcd queue of this test');
  return found;
};

queueConformance({
  name: 'etcd with TLS, client certificates and RBAC (make setup-etcd-secure)',
  create: (options) => {
    const q = new EtcdQueue({
      ...options,
      prefix: PREFIX,
      connection: { endpoints: [endpoint], timeoutMs: 5000, ...tls },
      enableWatch: true,
      leaseSweepMs: 1000,
    });
    queues.set(q, q);
    return Promise.resolve(q);
  },
  crashConsumer: async (queue, options, count) => {
    const child = spawnTs('test/helpers/crash-consumer.ts', [
      endpoint,
      PREFIX,
      queue.clusterId,
      String(count),
      String(options.leaseTtlMs),
      JSON.stringify(tls),
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
    try {
      make('stop-etcd');
    } finally {
      killEtcd();
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
});

/**
 * Child process for the conformance suite: claims N messages from the etcd queue, prints their ids
 * as one JSON line, then waits to be killed with SIGKILL (so nothing is released or acked).
 */
import { silentLogger } from '../../src/core/logger.js';
import { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';

const [endpoint, prefix, clusterId, count, leaseTtlMs, tls] = process.argv.slice(2);
/** TLS files of a secure etcd (its CA, this client's certificate and key), as JSON, if any. */
const files = tls === undefined ? {} : (JSON.parse(tls) as Record<string, string>);
const queue = new EtcdQueue({
  clusterId: clusterId ?? '',
  prefix: prefix ?? '',
  connection: { endpoints: [endpoint ?? ''], timeoutMs: 5000, ...files },
  enableWatch: true,
  maxAttempts: 3,
  retry: { baseMs: 50, capMs: 400 },
  messageTtlMs: 3_600_000,
  leaseTtlMs: Number(leaseTtlMs),
  pollTimeoutMs: 1000,
  logger: silentLogger(),
});
const consumer = await queue.consumer({ name: 'doomed' });
const got = await consumer.claim(Number(count), { waitMs: 5000 });
process.stdout.write(`${JSON.stringify(got.map((d) => d.id))}\n`);
setInterval(() => undefined, 1 << 30);

/**
 * The etcd client's configuration (src/etcd/client.ts): TLS settings it cannot use are setting
 * errors that name the setting, and etcd refusing the connection's user is a configuration error
 * that names the user and where, never an outage to wait out.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
} from 'etcd3';
import { exitStatusOf } from '../../../src/cli/exit.js';
import { isNexusError } from '../../../src/core/errors.js';
import { createEtcdClient, toQueueError } from '../../../src/etcd/client.js';
import { ROOT } from '../../helpers/child.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-etcd-client-'));
after(() => rmSync(dir, { recursive: true, force: true }));
execFileSync(join(ROOT, 'scripts/certs.sh'), [dir, 'collector'], { stdio: 'ignore' });
const files = {
  caFile: join(dir, 'ca.crt'),
  certFile: join(dir, 'collector.crt'),
  keyFile: join(dir, 'collector.key'),
};

describe('etcd client: TLS settings and refusals (src/etcd/client.ts)', () => {
  it('refuses a certificate without its key, an unreadable file and plain http:// with TLS, naming the setting', () => {
    const endpoints = ['localhost:2379'];
    assert.throws(
      () => createEtcdClient({ endpoints, certFile: files.certFile, timeoutMs: 1000 }),
      (err: unknown) =>
        isNexusError(err, 'CONFIG_INVALID') &&
        /ETCD_CERT_FILE is set but ETCD_KEY_FILE is not/.test(err.message),
    );
    assert.throws(
      () =>
        createEtcdClient({ endpoints, ...files, caFile: join(dir, 'missing.crt'), timeoutMs: 1 }),
      (err: unknown) =>
        isNexusError(err, 'CONFIG_INVALID') &&
        err.message.startsWith(`ETCD_CA_FILE: cannot read ${join(dir, 'missing.crt')}`),
    );
    assert.throws(
      () => createEtcdClient({ endpoints: ['http://10.0.0.5:2379'], ...files, timeoutMs: 1 }),
      /ETCD_ENDPOINTS: http:\/\/10\.0\.0\.5:2379 is plain http:\/\/, but TLS is on/,
    );
  });

  it('a permission denied names the user (the CN of its certificate) and where, and is a configuration error', () => {
    const client = createEtcdClient({ endpoints: ['localhost:2379'], ...files, timeoutMs: 1000 });
    try {
      const err = toQueueError(
        new EtcdPermissionDeniedError('etcdserver: permission denied'),
        'ack',
        {
          client,
          keys: [
            '/telemetry/queue/c1/1752871354000_h_gpu-0_1',
            '/telemetry/queue.claims/c1/1752871354000_h_gpu-0_1',
          ],
        },
      );
      assert.equal(err.code, 'ETCD_ACCESS_DENIED');
      assert.equal(err.retryable, false);
      assert.equal(exitStatusOf(err), 2);
      assert.equal(
        err.message,
        `etcd refused ack under /telemetry/queue/c1/, /telemetry/queue.claims/c1/ for user "collector" (the CN of ${files.certFile}): permission denied (its role does not allow it; the roles: nexus etcd-roles, docs/operations.md "Secure etcd")`,
      );
    } finally {
      client.close();
    }
  });

  it('names a user signing in with a password, and says when etcd refuses the password', () => {
    const client = createEtcdClient({
      endpoints: ['localhost:2379'],
      username: 'pw-reader',
      password: 'secret',
      timeoutMs: 1000,
    });
    try {
      const denied = toQueueError(
        new EtcdPermissionDeniedError('etcdserver: permission denied'),
        'scan',
        {
          client,
          keys: ['/nexus/clusters/'],
        },
      );
      assert.match(
        denied.message,
        /^etcd refused scan under \/nexus\/clusters\/ for user "pw-reader" \(ETCD_USERNAME\): permission denied/,
      );
      const password = toQueueError(
        new EtcdAuthenticationFailedError(
          'etcdserver: authentication failed, invalid user ID or password',
        ),
        'range',
        { client },
      );
      assert.equal(password.code, 'ETCD_ACCESS_DENIED');
      assert.doesNotMatch(password.message, /secret/);
      assert.match(password.message, /^etcd refused the password of user "pw-reader"/);
    } finally {
      client.close();
    }
  });

  it('a client certificate etcd does not accept, or a server certificate not trusted, is a configuration error too', () => {
    const refused = toQueueError(
      new Error(
        '14 UNAVAILABLE: No connection established. Last error: 80EC84FB477F0000:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42\n (2026-12-04T23:29:50.574Z). Resolution note: ',
      ),
      'claim',
    );
    assert.equal(refused.code, 'ETCD_ACCESS_DENIED');
    assert.equal(
      refused.message,
      'etcd refused the TLS connection for claim: it wants a client certificate signed by the CA it trusts (check ETCD_CERT_FILE and ETCD_KEY_FILE)',
    );
    const untrusted = toQueueError(
      new Error(
        '14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ',
      ),
      'stats',
    );
    assert.equal(untrusted.code, 'ETCD_ACCESS_DENIED');
    assert.equal(
      untrusted.message,
      "etcd's server certificate is not trusted (stats): check ETCD_CA_FILE and that the ETCD_ENDPOINTS name is in the certificate (unable to verify the first certificate)",
    );
  });

  it('a request larger than etcd takes is too large, not etcd over its quota', () => {
    const big = toQueueError(
      new GRPCResourceExhastedError(
        '8 RESOURCE_EXHAUSTED: grpc: received message larger than max (3719766 vs. 2097152)',
      ),
      'dead-letter',
    );
    assert.equal(big.code, 'QUEUE_MESSAGE_TOO_LARGE');
    assert.equal(big.retryable, false);
    const full = toQueueError(
      new GRPCResourceExhastedError(
        '8 RESOURCE_EXHAUSTED: etcdserver: mvcc: database space exceeded',
      ),
      'publish',
    );
    assert.equal(full.code, 'QUEUE_QUOTA_EXCEEDED');
    assert.equal(full.retryable, true);
  });

  it('a request etcd refuses as it is (too many operations, a key twice) is not waited out', () => {
    for (const text of [
      '3 INVALID_ARGUMENT: etcdserver: too many operations in txn request',
      '3 INVALID_ARGUMENT: etcdserver: duplicate key given in txn request',
    ]) {
      const err = toQueueError(new GRPCInvalidArgumentError(text), 'ack');
      assert.equal(err.code, 'QUEUE_REQUEST_REFUSED', text);
      assert.equal(err.retryable, false);
      assert.match(err.message, /^etcd ack failed: .*a retry would be refused too\)$/);
    }
    // The too-large refusal keeps its own code.
    const big = toQueueError(
      new GRPCInvalidArgumentError('3 INVALID_ARGUMENT: etcdserver: request is too large'),
      'settle',
    );
    assert.equal(big.code, 'QUEUE_MESSAGE_TOO_LARGE');
  });

  it('an unreachable etcd stays an outage to wait out', () => {
    const err = toQueueError(new Error('14 UNAVAILABLE: No connection established'), 'claim');
    assert.equal(err.code, 'QUEUE_UNAVAILABLE');
    assert.equal(err.retryable, true);
  });
});

describe('etcd client of several members: close', () => {
  it('stops probing a member its gates took out (no probe after close)', async () => {
    // Three "members" that accept connections and never answer: requests time out, one member
    // is taken out (a minority), and its probes (HTTP GET /version) arrive here.
    const probes: number[] = [];
    const sockets = new Set<Socket>();
    const servers = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<Server>((resolve) => {
            const server = createServer((socket) => {
              sockets.add(socket);
              socket.once('data', (d: Buffer) => {
                if (d.toString('latin1').startsWith('GET /version')) probes.push(Date.now());
              });
            });
            server.listen(0, '127.0.0.1', () => resolve(server));
          }),
      ),
    );
    const endpoints = servers.map((s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`);
    const client = createEtcdClient({ endpoints, timeoutMs: 200 });
    try {
      for (let i = 0; i < 12 && probes.length === 0; i++) {
        await client
          .get('k')
          .string()
          .catch(() => undefined);
        if (i >= 5) await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(probes.length > 0, 'a member was taken out and probed');
    } finally {
      client.close();
    }
    // Probed after 1 s, then (each probe timing out after 1 s) 2 s and 4 s later: none now.
    const sent = probes.length;
    await new Promise((r) => setTimeout(r, 4500));
    assert.equal(probes.length, sent);
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
});

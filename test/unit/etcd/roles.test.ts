/**
 * The etcd roles of Nexus (src/etcd/roles.ts) for custom prefixes: each component's role covers
 * the keys it writes and reads (from the same layouts the queue and the registry use), and nothing
 * it must not touch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { registryKeyspace } from '../../../src/etcd/keyspace.js';
import {
  etcdctlScript,
  nexusRoles,
  type Access,
  type RoleComponent,
  type RoleDefinition,
} from '../../../src/etcd/roles.js';
import { QueueLayout } from '../../../src/queue/etcd/layout.js';

const roles = nexusRoles({ queuePrefix: '/acme/q/', registryPrefix: '/acme/fleet/' });
const role = (c: RoleComponent): RoleDefinition => {
  const r = roles.find((d) => d.component === c);
  assert.ok(r, c);
  return r;
};

/** Whether the role lets its user read (range, watch) or write (put, delete) a key. */
function allows(def: RoleDefinition, key: string, want: 'read' | 'write'): boolean {
  const ok = (a: Access): boolean => a === 'readwrite' || a === want;
  return def.grants.some((g) => key.startsWith(g.prefix) && ok(g.access));
}

const q = new QueueLayout('/acme/q/', 'east-1');
const r = registryKeyspace('/acme/fleet/');
const keys = {
  message: q.message('1752871354000_host_gpu-0_1-abc'),
  claim: q.claim('1752871354000_host_gpu-0_1-abc'),
  delayed: q.delayedKey(1752871355000, '1752871354000_host_gpu-0_1-abc'),
  dead: q.deadLetter('1752871354000_host_gpu-0_1-abc'),
  owner: q.streamOwner('file.csv-1a2b'),
  lane: q.streamLane('file.csv-1a2b', 3),
  ledger: q.ledger('7587862338223187'),
  counter: q.counter('expired'),
  cluster: `${r.clusters}east-1`,
  host: `${r.hosts}east-1/host-1`,
  gpu: `${r.gpus}east-1/host-1/0`,
  live: `${r.live}east-1/host-1/0`,
  collectorMember: `${r.members}collector/collector-h-1`,
  gatewayMember: `${r.members}gateway/gateway-h-2`,
  feed: `${r.feed}east-1/collector-h-1.7`,
  listener: `${r.listeners}gateway-h-2`,
} as const;
type Key = keyof typeof keys;

function check(c: RoleComponent, want: 'read' | 'write', yes: readonly Key[]): void {
  const def = role(c);
  for (const k of Object.keys(keys) as Key[]) {
    assert.equal(allows(def, keys[k], want), yes.includes(k), `${c} ${want} ${k}: ${keys[k]}`);
  }
}

describe('nexus etcd-roles: the role definitions (src/etcd/roles.ts)', () => {
  it('one role and one user per component, the user named as its certificate CN', () => {
    assert.deepEqual(
      roles.map((d) => [d.component, d.role, d.user]),
      [
        ['streamer', 'nexus-streamer', 'streamer'],
        ['scraper', 'nexus-scraper', 'scraper'],
        ['collector', 'nexus-collector', 'collector'],
        ['gateway', 'nexus-gateway', 'gateway'],
        ['admin', 'nexus-admin', 'admin'],
      ],
    );
  });

  it('the streamer writes messages, its stream checkpoints and the lease ledger, nothing else', () => {
    check('streamer', 'write', ['message', 'owner', 'lane', 'ledger']);
    check('streamer', 'read', ['message', 'owner', 'lane']);
  });

  it('the scraper publishes messages and writes the lease ledger: no stream checkpoints, nothing else', () => {
    check('scraper', 'write', ['message', 'ledger']);
    check('scraper', 'read', ['message']);
  });

  it('the collector claims, acks, retries, dead-letters, sweeps leases, and keeps the registry and the feed', () => {
    const queue: Key[] = ['message', 'claim', 'delayed', 'dead', 'ledger', 'counter'];
    const registry: Key[] = ['cluster', 'host', 'gpu', 'live', 'collectorMember'];
    check('collector', 'write', [...queue, ...registry, 'feed']);
    check('collector', 'read', [...queue, ...registry, 'listener']);
  });

  it('the gateway only reads the queue (no forged message, no purge) and writes only its own announcements', () => {
    check('gateway', 'write', ['gatewayMember', 'listener']);
    check('gateway', 'read', [
      'message',
      'claim',
      'delayed',
      'dead',
      'counter',
      'cluster',
      'host',
      'gpu',
      'live',
      'collectorMember',
      'gatewayMember',
      'feed',
      'listener',
    ]);
  });

  it('with ENABLE_REMOTE_WRITE the gateway also publishes: messages and the lease ledger, nothing more', () => {
    const rw = nexusRoles({
      queuePrefix: '/acme/q/',
      registryPrefix: '/acme/fleet/',
      remoteWrite: true,
    });
    const gateway = rw.find((d) => d.component === 'gateway');
    assert.ok(gateway);
    const writes = (Object.keys(keys) as Key[]).filter((k) => allows(gateway, keys[k], 'write'));
    assert.deepEqual(writes, ['message', 'ledger', 'gatewayMember', 'listener']);
    const reads = (Object.keys(keys) as Key[]).filter((k) => allows(gateway, keys[k], 'read'));
    assert.deepEqual(
      reads,
      (Object.keys(keys) as Key[]).filter((k) => allows(role('gateway'), keys[k], 'read')),
    );
    // The other roles are the same either way.
    assert.deepEqual(
      rw.filter((d) => d.component !== 'gateway'),
      roles.filter((d) => d.component !== 'gateway'),
    );
  });

  it('the admin reads and writes everything Nexus keeps, and no role reaches outside the two prefixes', () => {
    const all = Object.keys(keys) as Key[];
    check('admin', 'write', all);
    check('admin', 'read', all);
    for (const d of roles) {
      for (const g of d.grants) {
        assert.ok(
          /^\/acme\/q(\.[a-z]+)?\//.test(g.prefix) || g.prefix.startsWith('/acme/fleet/'),
          `${d.role}: ${g.prefix}`,
        );
        assert.ok(g.prefix.endsWith('/'), `${d.role}: ${g.prefix} is a whole path level`);
      }
    }
  });

  it('prints the same roles as etcdctl commands', () => {
    const script = etcdctlScript(roles, { enableAuth: true });
    assert.match(
      script,
      /^etcdctl role grant-permission --prefix=true nexus-gateway read \/acme\/q\.dead\/$/m,
    );
    assert.match(script, /^etcdctl user add gateway --no-password$/m);
    assert.match(script, /^etcdctl user grant-role gateway nexus-gateway$/m);
    assert.match(script, /^etcdctl auth enable$/m);
    assert.doesNotMatch(script, /nexus-gateway (write|readwrite) \/acme\/q/);
  });

  it('refuses a queue prefix that does not start with "/"', () => {
    assert.throws(
      () => nexusRoles({ queuePrefix: 'telemetry', registryPrefix: '/nexus' }),
      /MESSAGE_QUEUE_PREFIX "telemetry" must start with "\/"/,
    );
  });
});

import { randomBytes } from 'node:crypto';
import {
  EtcdRoleNotFoundError,
  EtcdUserNotFoundError,
  GRPCNotImplementedError,
  type Etcd3,
  type IPermission,
} from 'etcd3';
import { queueKeyspace, registryKeyspace } from './keyspace.js';
import { toQueueError } from './client.js';
import { prefixEnd } from './kv.js';

/**
 * The etcd roles of Nexus, one role and one user per component, each allowed only the key
 * prefixes that component really uses (read from every etcd call it makes: docs/operations.md,
 * "Secure etcd"). `nexus etcd-roles` prints or applies them; `make setup-etcd-secure` applies
 * them through it. etcd permissions are per key range: read (range, watch), write (put, delete:
 * etcd does not tell them apart), or both. Lease grants and keep-alives need no permission; a
 * lease revoke needs write on every key still attached to it.
 */

export type Access = 'read' | 'write' | 'readwrite';

export interface Grant {
  /** A key prefix (every key starting with it). */
  readonly prefix: string;
  readonly access: Access;
  /** What the component does there. */
  readonly why: string;
}

export type RoleComponent = 'streamer' | 'scraper' | 'collector' | 'gateway' | 'admin';

export interface RoleDefinition {
  readonly component: RoleComponent;
  /** The etcd role. */
  readonly role: string;
  /** The etcd user: the common name (CN) of the component's client certificate. */
  readonly user: string;
  readonly grants: readonly Grant[];
}

export interface RolePrefixes {
  /** MESSAGE_QUEUE_PREFIX. */
  readonly queuePrefix: string;
  /** REGISTRY_PREFIX. */
  readonly registryPrefix: string;
  /**
   * ENABLE_REMOTE_WRITE: the gateway publishes Prometheus remote_write readings, so its role may
   * also write messages (create-only publishes) and the lease ledger; without it, it reads only.
   */
  readonly remoteWrite?: boolean;
}

/** The role definitions for these prefixes, every cluster (CLUSTER_ID) included. */
export function nexusRoles(prefixes: RolePrefixes): RoleDefinition[] {
  const q = queueKeyspace(prefixes.queuePrefix);
  const r = registryKeyspace(prefixes.registryPrefix);
  return [
    {
      component: 'streamer',
      role: 'nexus-streamer',
      user: 'streamer',
      grants: [
        {
          prefix: q.messages,
          access: 'readwrite',
          why: 'publishes messages (create-only), reads the depth for backpressure',
        },
        {
          prefix: q.streams,
          access: 'readwrite',
          why: 'its stream ownership, meta and lane checkpoints',
        },
        { prefix: q.leases, access: 'write', why: 'records each message lease in the ledger' },
      ],
    },
    {
      // nexus scrape publishes as the streamer does, without stream checkpoints.
      component: 'scraper',
      role: 'nexus-scraper',
      user: 'scraper',
      grants: [
        {
          prefix: q.messages,
          access: 'readwrite',
          why: 'publishes messages (create-only), reads the depth for backpressure',
        },
        { prefix: q.leases, access: 'write', why: 'records each message lease in the ledger' },
      ],
    },
    {
      component: 'collector',
      role: 'nexus-collector',
      user: 'collector',
      grants: [
        {
          prefix: q.messages,
          access: 'readwrite',
          why: 'lists, watches and claims messages; deletes them on ack; puts back due retries',
        },
        { prefix: q.claims, access: 'readwrite', why: 'its claims (on its session lease)' },
        { prefix: q.delayed, access: 'readwrite', why: 'retries waiting for their time' },
        {
          prefix: q.dead,
          access: 'readwrite',
          why: 'dead-letters what cannot be stored; counts them',
        },
        {
          prefix: q.leases,
          access: 'readwrite',
          why: 'sweeps the lease ledger (rescues messages before their TTL)',
        },
        { prefix: q.stats, access: 'readwrite', why: 'counts messages the TTL took' },
        { prefix: r.clusters, access: 'readwrite', why: 'the fleet registry' },
        { prefix: r.hosts, access: 'readwrite', why: 'the fleet registry' },
        { prefix: r.gpus, access: 'readwrite', why: 'the fleet registry' },
        { prefix: r.live, access: 'readwrite', why: 'latest values per GPU' },
        {
          prefix: `${r.members}collector/`,
          access: 'readwrite',
          why: 'registers itself as a member',
        },
        { prefix: r.feed, access: 'write', why: 'publishes committed batches to the gateways' },
        {
          prefix: r.listeners,
          access: 'read',
          why: 'publishes the feed only while a gateway listens',
        },
      ],
    },
    {
      component: 'gateway',
      role: 'nexus-gateway',
      user: 'gateway',
      grants: [
        prefixes.remoteWrite === true
          ? {
              prefix: q.messages,
              access: 'readwrite',
              why: 'queue depth and head age (overview); publishes remote_write readings (ENABLE_REMOTE_WRITE)',
            }
          : { prefix: q.messages, access: 'read', why: 'queue depth and head age (overview)' },
        ...(prefixes.remoteWrite === true
          ? [
              {
                prefix: q.leases,
                access: 'write',
                why: 'records the lease of each remote_write message in the ledger (ENABLE_REMOTE_WRITE)',
              } as const,
            ]
          : []),
        { prefix: q.claims, access: 'read', why: 'messages in flight (overview)' },
        { prefix: q.delayed, access: 'read', why: 'retries waiting (overview)' },
        { prefix: q.dead, access: 'read', why: 'dead letters counted (overview)' },
        { prefix: q.stats, access: 'read', why: 'messages the TTL took (overview)' },
        { prefix: r.clusters, access: 'read', why: 'the fleet registry' },
        { prefix: r.hosts, access: 'read', why: 'the fleet registry' },
        { prefix: r.gpus, access: 'read', why: 'the fleet registry' },
        { prefix: r.live, access: 'read', why: 'latest values per GPU, watched' },
        { prefix: r.members, access: 'read', why: 'the members (overview)' },
        {
          prefix: `${r.members}gateway/`,
          access: 'readwrite',
          why: 'registers itself as a member',
        },
        { prefix: r.feed, access: 'read', why: 'watches committed batches (live data)' },
        {
          prefix: r.listeners,
          access: 'readwrite',
          why: 'announces itself as a live listener',
        },
      ],
    },
    {
      component: 'admin',
      role: 'nexus-admin',
      user: 'admin',
      grants: [
        ...(['messages', 'claims', 'delayed', 'dead', 'streams', 'leases', 'stats'] as const).map(
          (k): Grant => ({
            prefix: q[k],
            access: 'readwrite',
            why: 'operators: nexus queue stats, nexus dlq list/replay/purge, etcdctl',
          }),
        ),
        { prefix: `${r.base}/`, access: 'readwrite', why: 'the whole registry and feed' },
      ],
    },
  ];
}

const PERM_TYPE: Record<Access, IPermission['permType']> = {
  read: 'Read',
  write: 'Write',
  readwrite: 'Readwrite',
};

/** The roles as a table a person reads. */
export function describeRoles(defs: readonly RoleDefinition[]): string {
  const lines: string[] = [];
  for (const d of defs) {
    lines.push(`role ${d.role}, user ${d.user} (certificate CN=${d.user}):`);
    const width = Math.max(...d.grants.map((g) => g.prefix.length));
    for (const g of d.grants) {
      lines.push(`  ${g.access.padEnd(9)} ${g.prefix.padEnd(width)}  ${g.why}`);
    }
    lines.push('');
  }
  lines.push(
    'root: etcd\'s own superuser (role root; certificate CN=root): manages users and roles; "auth enable" needs it.',
  );
  return `${lines.join('\n')}\n`;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The same roles as etcdctl commands (run with the root user's credentials). Users get no
 * password: they sign in with a client certificate whose CN is their name (etcd 3.4.23 or later;
 * with passwords, `etcdctl user passwd NAME` after). A role re-applied keeps any permission it
 * had besides these: revoke those by hand, or use `nexus etcd-roles --apply`.
 */
export function etcdctlScript(
  defs: readonly RoleDefinition[],
  options: { enableAuth: boolean },
): string {
  const lines = ['# Nexus etcd roles: run with the root user (etcdctl --cert root.crt ...)'];
  for (const d of defs) {
    lines.push(`etcdctl role add ${shellQuote(d.role)}`);
    for (const g of d.grants) {
      lines.push(
        `etcdctl role grant-permission --prefix=true ${shellQuote(d.role)} ${g.access} ${shellQuote(g.prefix)}`,
      );
    }
    lines.push(`etcdctl user add ${shellQuote(d.user)} --no-password`);
    lines.push(`etcdctl user grant-role ${shellQuote(d.user)} ${shellQuote(d.role)}`);
  }
  if (options.enableAuth) {
    lines.push('etcdctl user add root --no-password   # if there is no root user yet');
    lines.push('etcdctl user grant-role root root');
    lines.push('etcdctl auth enable');
  }
  return `${lines.join('\n')}\n`;
}

/** What `applyRoles` changed, one line each. */
export interface ApplyReport {
  readonly changes: string[];
}

function sameBytes(a: Buffer | undefined, b: Buffer): boolean {
  return a !== undefined && Buffer.compare(a, b) === 0;
}

/**
 * Makes each role exactly its definition (permissions it should not have are revoked), creates the
 * users that are missing (no password: they sign in with their certificate) and grants them their
 * role; with `enableAuth`, also makes sure the root user exists with the root role and turns
 * authentication on. Safe to run again: what is already in place is left as it is. Needs a
 * connection as etcd's root user once authentication is on.
 */
export async function applyRoles(
  client: Etcd3,
  defs: readonly RoleDefinition[],
  options: { enableAuth: boolean },
): Promise<ApplyReport> {
  const changes: string[] = [];
  const auth = client.auth;
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toQueueError(err, what, { client });
    }
  };
  for (const d of defs) {
    let current: IPermission[] | undefined;
    try {
      current = (await auth.roleGet({ role: d.role })).perm;
    } catch (err) {
      if (!(err instanceof EtcdRoleNotFoundError)) throw toQueueError(err, 'role get', { client });
    }
    if (current === undefined) {
      await call('role add', () => auth.roleAdd({ name: d.role }));
      changes.push(`role ${d.role} created`);
      current = [];
    }
    const wanted = d.grants.map((g) => ({
      key: Buffer.from(g.prefix),
      range_end: prefixEnd(g.prefix),
      permType: PERM_TYPE[g.access],
      prefix: g.prefix,
      access: g.access,
    }));
    for (const p of current) {
      const keep = wanted.some(
        (w) => sameBytes(p.key, w.key) && sameBytes(p.range_end, w.range_end),
      );
      if (keep) continue;
      await call('role revoke-permission', () =>
        auth.roleRevokePermission({ role: d.role, key: p.key, range_end: p.range_end }),
      );
      changes.push(
        `role ${d.role}: revoked ${p.permType.toLowerCase()} on ${p.key.toString()}..${p.range_end.toString()}`,
      );
    }
    for (const w of wanted) {
      const has = current.some(
        (p) =>
          sameBytes(p.key, w.key) &&
          sameBytes(p.range_end, w.range_end) &&
          p.permType === w.permType,
      );
      if (has) continue;
      await call('role grant-permission', () =>
        auth.roleGrantPermission({
          name: d.role,
          perm: { permType: w.permType, key: w.key, range_end: w.range_end },
        }),
      );
      changes.push(`role ${d.role}: ${w.access} on ${w.prefix}`);
    }
    await ensureUser(client, d.user, d.role, changes);
  }
  if (options.enableAuth) {
    await ensureUser(client, 'root', 'root', changes);
    // etcd 3.4 cannot say whether authentication is on (no AuthStatus): enabling it again is a
    // no-op there.
    const enabled = await auth.authStatus().then(
      (res) => res.enabled,
      (err: unknown) => {
        if (err instanceof GRPCNotImplementedError) return undefined;
        throw toQueueError(err, 'auth status', { client });
      },
    );
    if (enabled !== true) {
      await call('auth enable', () => auth.authEnable());
      if (enabled === false) changes.push('authentication enabled');
    }
  }
  return { changes };
}

async function ensureUser(
  client: Etcd3,
  user: string,
  role: string,
  changes: string[],
): Promise<void> {
  const auth = client.auth;
  let roles: string[] | undefined;
  try {
    roles = (await auth.userGet({ name: user })).roles;
  } catch (err) {
    if (!(err instanceof EtcdUserNotFoundError)) throw toQueueError(err, 'user get', { client });
  }
  if (roles === undefined) {
    try {
      // No password: the user signs in with a certificate whose CN is its name. An etcd too old
      // for the option gets a random password nobody knows instead.
      await auth.userAdd({
        name: user,
        password: randomBytes(32).toString('base64url'),
        options: { no_password: true },
      });
    } catch (err) {
      throw toQueueError(err, 'user add', { client });
    }
    changes.push(`user ${user} created (signs in with its certificate, CN=${user})`);
    roles = [];
  }
  if (!roles.includes(role)) {
    try {
      await auth.userGrantRole({ user, role });
    } catch (err) {
      throw toQueueError(err, 'user grant-role', { client });
    }
    changes.push(`user ${user}: role ${role} granted`);
  }
}

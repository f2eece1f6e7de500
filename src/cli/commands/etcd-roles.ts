import { Command } from 'commander';
import { isNexusError, NexusError } from '../../core/errors.js';
import { createEtcdClient } from '../../etcd/client.js';
import {
  applyRoles,
  describeRoles,
  etcdctlScript,
  nexusRoles,
  type RoleDefinition,
} from '../../etcd/roles.js';
import { etcdConnection } from '../backends.js';
import { addSettings, configFrom } from '../settings.js';

interface EtcdRolesOptions {
  apply?: boolean;
  enableAuth?: boolean;
  etcdctl?: boolean;
  json?: boolean;
}

/**
 * `nexus etcd-roles`: the etcd roles of Nexus for the configured prefixes (src/etcd/roles.ts),
 * printed (a table, etcdctl commands or JSON), or applied to the etcd that ETCD_* names, as its
 * root user (`make setup-etcd-secure` does, on its own etcd).
 */
export function etcdRolesCommand(): Command {
  const cmd = new Command('etcd-roles')
    .description(
      'Print the etcd roles of Nexus (one per component, least privilege on the configured prefixes), or apply them',
    )
    .option('--apply', 'create or update the roles and users on the etcd of ETCD_* (as root)')
    .option('--enable-auth', "with --apply: make sure etcd's root user exists, then auth enable")
    .option('--etcdctl', 'print the roles as etcdctl commands')
    .option('--json', 'print the roles as JSON')
    .option(
      '--registry-prefix <value>',
      'etcd key prefix of the fleet registry. env REGISTRY_PREFIX',
    )
    .addHelpText(
      'after',
      '\nEach component signs in as its own etcd user: the CN of its client certificate (etcd\n' +
        "--client-cert-auth), or ETCD_USERNAME/ETCD_PASSWORD. --apply needs etcd's root user once\n" +
        'authentication is on. ENABLE_REMOTE_WRITE=true: the gateway may also publish to the queue\n' +
        '(Prometheus remote_write). docs/operations.md, "Secure etcd".',
    );
  addSettings(cmd, ['common', 'queue']);
  cmd.action(async (o: EtcdRolesOptions) => {
    const config = configFrom(cmd);
    const defs = nexusRoles({
      queuePrefix: config.queuePrefix,
      registryPrefix: config.registryPrefix,
      remoteWrite: config.enableRemoteWrite,
    });
    if (o.apply !== true) {
      if (o.enableAuth === true) cmd.error('--enable-auth goes with --apply');
      process.stdout.write(
        o.json === true
          ? `${JSON.stringify(defs, null, 2)}\n`
          : o.etcdctl === true
            ? etcdctlScript(defs, { enableAuth: true })
            : describeRoles(defs),
      );
      return;
    }
    await apply(defs, config, o.enableAuth === true);
  });
  return cmd;
}

async function apply(
  defs: readonly RoleDefinition[],
  config: ReturnType<typeof configFrom>,
  enableAuth: boolean,
): Promise<void> {
  const client = createEtcdClient(etcdConnection(config));
  try {
    const report = await applyRoles(client, defs, { enableAuth }).catch((err: unknown) => {
      if (isNexusError(err, 'ETCD_ACCESS_DENIED')) {
        throw new NexusError(
          'ETCD_ACCESS_DENIED',
          `${err.message}; managing roles and users needs etcd's root user`,
          { cause: err },
        );
      }
      throw err;
    });
    for (const line of report.changes) process.stdout.write(`${line}\n`);
    process.stdout.write(
      `etcd roles in place on ${config.etcdEndpoints.join(',')}: ${defs
        .map((d) => `${d.role} (user ${d.user})`)
        .join(
          ', ',
        )}; ${report.changes.length === 0 ? 'nothing changed' : `${report.changes.length} change(s)`}\n`,
    );
  } finally {
    client.close();
  }
}

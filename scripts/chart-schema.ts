/**
 * values.schema.json of the Helm chart (deployments/helm/telemetry-pipeline), generated from the
 * settings table of src/core/config.ts: the chart's `config`, `collector.config`,
 * `gateway.config`, `streamer.config` and `scraper.config` maps are keyed by environment variable, and each
 * setting's schema gives its type, choices, bounds, help and default. Settings marked secret are
 * not allowed there (secrets come from Secrets, as files). The rest of the values (image, etcd,
 * postgresql, autoscaling, ...) is described by hand below.
 *
 *   npx tsx scripts/chart-schema.ts           writes the schema
 *   npx tsx scripts/chart-schema.ts --check   exits 1 when the committed one differs
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { SETTINGS, type SettingSpec } from '../src/core/config.js';

type Json = null | boolean | number | string | readonly Json[] | { readonly [key: string]: Json };
type Schema = { readonly [key: string]: Json };
type Group = SettingSpec['group'];

export const SCHEMA_PATH = fileURLToPath(
  new URL('../deployments/helm/telemetry-pipeline/values.schema.json', import.meta.url),
);

/** The setting groups each config map of the chart takes (the groups its commands read). */
export const CONFIG_MAPS: Readonly<Record<string, readonly Group[]>> = {
  config: ['common', 'queue', 'database', 'roles'],
  'collector.config': ['common', 'queue', 'database', 'collector'],
  'gateway.config': ['common', 'queue', 'database', 'collector', 'gateway'],
  'streamer.config': ['common', 'queue', 'streamer'],
  'scraper.config': ['common', 'queue', 'scraper'],
};

const DURATION = '^(\\d+|(\\d+(\\.\\d+)?(ms|s|m|h|d|w))+)$';

/** The default of a setting as the chart would write it (a number, a boolean, or text). */
function typedDefault(s: SettingSpec): Json {
  const d = s.default ?? '';
  if (s.kind === 'int' || s.kind === 'number') return Number(d);
  if (s.kind === 'bool') return d === 'true';
  return d;
}

/** The JSON schema of one setting's value in a config map. */
export function settingSchema(s: SettingSpec): Schema {
  const description = `${s.help} (${s.env}, --${s.flag})`;
  const common = { description, default: typedDefault(s) };
  switch (s.kind) {
    case 'int':
      return {
        type: 'integer',
        ...(s.min === undefined ? {} : { minimum: s.min }),
        ...(s.max === undefined ? {} : { maximum: s.max }),
        ...common,
      };
    case 'number':
      return {
        type: 'number',
        ...(s.min === undefined ? {} : { minimum: s.min }),
        ...(s.max === undefined ? {} : { maximum: s.max }),
        ...common,
      };
    case 'bool':
      return { type: 'boolean', ...common };
    case 'enum':
      return { type: 'string', enum: [...(s.choices ?? [])], ...common };
    case 'duration':
      // A duration (250ms, 3s, 1h30m, 7d) or a bare number of milliseconds.
      return { type: ['string', 'integer'], pattern: DURATION, minimum: 0, ...common };
    case 'list':
      // Comma-separated text, or a YAML list the chart joins with commas.
      return { type: ['string', 'array'], items: { type: 'string' }, ...common };
    case 'string':
      return { type: 'string', ...common };
  }
}

/** A config map: every non-secret setting of the groups, nothing else. */
export function configMapSchema(description: string, groups: readonly Group[]): Schema {
  const properties: Record<string, Schema> = {};
  for (const s of Object.values(SETTINGS) as SettingSpec[]) {
    if (s.secret === true || !groups.includes(s.group)) continue;
    properties[s.env] = settingSchema(s);
  }
  return {
    type: 'object',
    description:
      `${description} Nexus settings keyed by environment variable (groups: ${groups.join(', ')}). ` +
      'Secrets are not allowed here: they come from Secrets, mounted as files (*_FILE).',
    properties,
    additionalProperties: false,
  };
}

// The hand-written rest of the values.
const str = (description: string, extra: Schema = {}): Schema => ({
  type: 'string',
  description,
  ...extra,
});
const int = (description: string, minimum = 0, extra: Schema = {}): Schema => ({
  type: 'integer',
  minimum,
  description,
  ...extra,
});
const bool = (description: string): Schema => ({ type: 'boolean', description });
const obj = (description: string, properties: Record<string, Schema>): Schema => ({
  type: 'object',
  description,
  properties,
  additionalProperties: false,
});
const map = (description: string): Schema => ({
  type: 'object',
  description,
  additionalProperties: { type: 'string' },
});
const free = (description: string): Schema => ({ type: 'object', description });
const list = (description: string): Schema => ({ type: 'array', description });
const quantity: Schema = { type: ['string', 'number'] };
const resources = (description: string): Schema =>
  obj(`${description}: Kubernetes requests and limits`, {
    requests: { type: 'object', additionalProperties: quantity },
    limits: { type: 'object', additionalProperties: quantity },
  });
const image = (description: string): Schema =>
  obj(description, {
    repository: str('Image repository', { minLength: 1 }),
    tag: str('Image tag'),
    pullPolicy: str('When the kubelet pulls the image', {
      enum: ['IfNotPresent', 'Always', 'Never'],
    }),
  });
const autoscaleBounds = {
  minReplicas: int('Fewest replicas', 1),
  maxReplicas: int('Most replicas', 1),
};

export function chartSchema(): Schema {
  const maps = Object.fromEntries(
    Object.entries(CONFIG_MAPS).map(([name, groups]) => [
      name,
      configMapSchema(
        name === 'config' ? 'Common to every component.' : `Of the ${name.split('.')[0]}.`,
        groups,
      ),
    ]),
  ) as Record<string, Schema>;
  const mapOf = (name: string): Schema => {
    const m = maps[name];
    if (m === undefined) throw new Error(`no config map ${name}`);
    return m;
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $comment:
      'GENERATED by scripts/chart-schema.ts from the settings table of src/core/config.ts: do not edit',
    title: 'Values of the Nexus Helm chart (telemetry-pipeline)',
    type: 'object',
    additionalProperties: false,
    properties: {
      global: free('Values shared with subcharts (none: this chart has no dependencies)'),
      nameOverride: str('Replaces "nexus" in the names of the objects'),
      fullnameOverride: str('Replaces <release>-nexus as the prefix of every name'),
      image: image('The one Nexus image of every component'),
      imagePullSecrets: list('Secrets of the registry the images come from'),
      config: mapOf('config'),
      etcd: obj('The etcd cluster (queue, checkpoints, registry)', {
        image: image('etcd image (3.5.x)'),
        replicas: int('Members (odd: 3 survives one lost)', 1, { enum: [1, 3, 5, 7] }),
        resources: resources('Each member'),
        persistence: obj('Each member’s volume', {
          size: str('Size of the claim'),
          storageClass: str('StorageClass; empty: the default'),
        }),
        quotaBackendBytes: int('--quota-backend-bytes', 1048576),
        autoCompaction: obj('--auto-compaction-mode and -retention', {
          mode: str('periodic or revision', { enum: ['periodic', 'revision'] }),
          retention: str('A duration (periodic) or a count (revision)', { minLength: 1 }),
        }),
        snapshotCount: int('--snapshot-count', 1),
        pdbMinAvailable: int('PodDisruptionBudget minAvailable', 1),
        antiAffinity: str('One member per node: hard (required) or soft (preferred)', {
          enum: ['hard', 'soft'],
        }),
        nodeSelector: map('Node selector of the members'),
        tolerations: list('Tolerations of the members'),
        tls: obj('Peer and client TLS, client certificates, auth with a user per component', {
          enabled: bool('TLS and auth (false: plain HTTP, no auth)'),
          certManager: obj('Certificates from cert-manager', {
            enabled: bool('false: existingSecrets'),
            issuerRef: free('Issuer of the certificates; empty: a self-signed CA of the release'),
            duration: str('Lifetime of the certificates'),
            renewBefore: str('Renewal before the end'),
          }),
          existingSecrets: obj(
            'kubernetes.io/tls Secrets (tls.crt, tls.key, ca.crt) when certManager is off',
            {
              server: str('Serving certificate of the members'),
              peer: str('Peer certificate of the members'),
              root: str('Client certificate CN=root'),
              streamer: str('Client certificate CN=streamer'),
              scraper: str('Client certificate CN=scraper (with scraper.enabled)'),
              collector: str('Client certificate CN=collector'),
              gateway: str('Client certificate CN=gateway'),
            },
          ),
        }),
        rolesJob: obj(
          'nexus etcd-roles --apply --enable-auth (a post-install, post-upgrade hook)',
          {
            resources: resources('The Job'),
            backoffLimit: int('Attempts before the Job fails'),
          },
        ),
      }),
      postgresql: obj('PostgreSQL', {
        enabled: bool('Deploy a PostgreSQL (false: mode external)'),
        mode: str('cloudnative-pg, statefulset (trying out) or external', {
          enum: ['cloudnative-pg', 'statefulset', 'external'],
        }),
        database: str('Database of Nexus', { minLength: 1 }),
        roles: obj('Passwords of the roles of nexus migrate --create-roles', {
          existingSecret: str(
            'Secret with owner-password, collector-password, gateway-password; empty: generated',
          ),
        }),
        cloudnativepg: obj('The CloudNativePG Cluster', {
          instances: int('Instances (primary and replicas)', 1),
          imageName: str('PostgreSQL image; empty: the operator’s default'),
          storageSize: str('Size of each volume'),
          storageClass: str('StorageClass; empty: the default'),
          resources: resources('Each instance'),
          parameters: map('postgresql.conf parameters'),
          enablePDB: bool('The operator’s PodDisruptionBudget'),
          operatorNamespace: str('Namespace of the operator (NetworkPolicy)'),
        }),
        statefulset: obj('The plain StatefulSet', {
          image: str('PostgreSQL image', { minLength: 1 }),
          existingSecret: str('Secret with key password (postgres); empty: generated'),
          storageSize: str('Size of the volume'),
          storageClass: str('StorageClass; empty: the default'),
          resources: resources('The pod'),
        }),
        external: obj('Your own PostgreSQL', {
          host: str('Host'),
          port: int('Port', 1, { maximum: 65535 }),
          database: str('Database'),
          adminUser: str('Administrator of nexus migrate --create-roles'),
          existingSecret: str('Secret with key password: the administrator’s password'),
          sslMode: str('DB_SSLMODE of every component', {
            enum: ['disable', 'require', 'verify-ca', 'verify-full'],
          }),
          caSecret: str('Secret with key ca.crt (DB_SSLROOTCERT); empty: the system’s CAs'),
        }),
      }),
      migrate: obj('The migrate Job (nexus migrate --create-roles)', {
        resources: resources('The Job'),
        backoffLimit: int('Attempts before the Job fails'),
        ttlSecondsAfterFinished: {
          type: ['integer', 'null'],
          minimum: 0,
          description: 'Seconds a finished Job stays; null: until the next upgrade',
        },
      }),
      collector: obj('The collectors', {
        replicas: int('Collectors when nothing scales them', 0),
        config: mapOf('collector.config'),
        resources: resources('A collector'),
        pdbMaxUnavailable: int('PodDisruptionBudget maxUnavailable', 1),
        nodeSelector: map('Node selector'),
        tolerations: list('Tolerations'),
        autoscaling: obj('Scaling of the collectors', {
          keda: obj('A KEDA ScaledObject on queue depth and lag', {
            enabled: bool('KEDA (false: the HPA on CPU)'),
            prometheusAddress: str('Prometheus that KEDA asks', { minLength: 1 }),
            ...autoscaleBounds,
            readyMessagesPerCollector: int('Ready messages per collector', 1),
            lagSeconds: int('Age of the oldest message beyond which KEDA adds collectors', 1),
            cooldownPeriod: int('Seconds without load before scaling down'),
          }),
          hpa: obj('An HPA on CPU when KEDA is off', {
            enabled: bool('The HPA'),
            ...autoscaleBounds,
            targetCPUUtilizationPercentage: int('Target CPU in percent of the request', 1),
          }),
        }),
      }),
      gateway: obj('The gateways', {
        replicas: int('Gateways when the HPA is off', 0),
        config: mapOf('gateway.config'),
        resources: resources('A gateway'),
        pdbMaxUnavailable: int('PodDisruptionBudget maxUnavailable', 1),
        nodeSelector: map('Node selector'),
        tolerations: list('Tolerations'),
        tls: obj('HTTPS at the gateway', {
          existingSecret: str('kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt); empty: HTTP'),
        }),
        service: obj('The Service', {
          type: str('Service type', { enum: ['ClusterIP', 'NodePort', 'LoadBalancer'] }),
          port: int('Service port', 1, { maximum: 65535 }),
        }),
        ingress: obj('An Ingress to the gateway', {
          enabled: bool('The Ingress'),
          className: str('IngressClass; empty: the default'),
          annotations: map('Annotations'),
          host: str('Host name', { minLength: 1 }),
          tlsSecret: str('Secret of the host’s certificate; empty: no TLS'),
        }),
        autoscaling: obj('The HPA of the gateways', {
          enabled: bool('The HPA'),
          ...autoscaleBounds,
          targetCPUUtilizationPercentage: int('Target CPU in percent of the request', 1),
          requestsPerSecond: { type: 'number', minimum: 0, description: 'Requests/s per gateway' },
        }),
      }),
      streamer: obj('The streamer Job', {
        enabled: bool('Run the streamer Job'),
        config: mapOf('streamer.config'),
        input: obj('CSV files', {
          existingClaim: str('PersistentVolumeClaim mounted at /input; empty: none'),
        }),
        resources: resources('The streamer'),
        backoffLimit: int('Attempts before the Job fails'),
      }),
      scraper: obj('The scraper Deployment (nexus scrape: live ingest from dcgm-exporter)', {
        enabled: bool('Run the scraper'),
        config: mapOf('scraper.config'),
        rbac: bool(
          'A Role (list and watch EndpointSlices) and RoleBinding in the namespace of SCRAPE_KUBERNETES_SERVICE',
        ),
        resources: resources('The scraper'),
      }),
      metrics: obj('Prometheus Operator objects', {
        serviceMonitor: obj('ServiceMonitors (and the streamer’s and scraper’s PodMonitors)', {
          enabled: bool('The monitors'),
          interval: str('Scrape interval'),
          labels: map('Extra labels'),
          gatewayTokenSecret: obj('A read token for the gateway’s /metrics', {
            name: str('Secret name; empty: no token'),
            key: str('Key of the token'),
          }),
        }),
        prometheusRule: obj('The PrometheusRule of deploy/observability/alerts.yml', {
          enabled: bool('The PrometheusRule'),
          labels: map('Extra labels'),
        }),
      }),
      networkPolicy: obj('NetworkPolicies', {
        enabled: bool('NetworkPolicies for every component'),
        defaultDeny: bool('Deny all other ingress in the namespace'),
        gatewayFrom: list('NetworkPolicy peers allowed to the gateway; empty: anyone'),
        prometheus: obj('Where Prometheus runs', {
          namespaceSelector: free('Namespace selector'),
          podSelector: free('Pod selector'),
        }),
      }),
    },
  };
}

/** The schema as committed: JSON formatted by Prettier, as `npx prettier --check` wants it. */
export async function chartSchemaText(): Promise<string> {
  const options = (await resolveConfig(SCHEMA_PATH)) ?? {};
  return format(JSON.stringify(chartSchema()), { ...options, filepath: SCHEMA_PATH });
}

async function main(): Promise<void> {
  const text = await chartSchemaText();
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(SCHEMA_PATH, 'utf8');
    } catch {
      committed = '';
    }
    if (committed !== text) {
      process.stderr.write(
        `${SCHEMA_PATH} differs from the settings table: run npx tsx scripts/chart-schema.ts\n`,
      );
      process.exitCode = 1;
    }
    return;
  }
  writeFileSync(SCHEMA_PATH, text);
  process.stdout.write(`wrote ${SCHEMA_PATH}\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}

/**
 * The deployment artefacts, rendered and checked offline with the helm and kubectl of the
 * project's own dev dependency: `helm lint`, `kubectl kustomize` of each overlay and `helm
 * template` with the default and the production values; every rendered object against its
 * Kubernetes or CRD schema; our own rules (test/helpers/k8s.ts: probes, resources, non-root,
 * NetworkPolicies, no literal secrets); and what each deployment must contain (issue 17).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { join } from 'node:path';
import { SETTINGS, secretFile, type SettingSpec } from '../../src/core/config.js';
import {
  CHART,
  containersOf,
  helmTemplate,
  isObj,
  k8sTools,
  kustomize,
  kustomizeDir,
  kustomizeWith,
  listAt,
  objAt,
  podOf,
  ref,
  ruleProblems,
  rulesMatchAlerts,
  schemaError,
  strAt,
  tool,
  unknownFieldErrors,
  type K8sObject,
} from '../helpers/k8s.js';

const PRODUCTION_VALUES = join(CHART, 'values-production.yaml');

const renders: Record<string, () => K8sObject[]> = {
  'kustomize dev': () => kustomize('dev'),
  'kustomize production': () => kustomize('production'),
  // Live ingest, as an operator adds it: the scraper and remote_write components in the overlay,
  // and the scraper's Role and RoleBinding in the exporter's namespace (applied on their own).
  'kustomize production with the scraper and remote_write': () => [
    ...kustomizeWith('production', ['scraper', 'remote-write']),
    ...kustomizeDir('scraper-rbac'),
  ],
  'helm default values': () => helmTemplate(),
  // The streamer Job and the scraper are off by default; the production render turns them on so
  // they are checked too.
  'helm production values': () =>
    helmTemplate([
      '-f',
      PRODUCTION_VALUES,
      '--set',
      'streamer.enabled=true',
      '--set',
      'scraper.enabled=true',
    ]),
};

/** Every environment variable a nexus container may set: the settings table, their *_FILE forms, and the OpenTelemetry/Node ones the CLI reads. */
const KNOWN_ENV = new Set<string>([
  ...Object.values(SETTINGS as Record<string, SettingSpec>).flatMap((s) => {
    const file = secretFile(s);
    return file === undefined ? [s.env] : [s.env, file.env];
  }),
  'NODE_OPTIONS',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_SERVICE_NAME',
  'OTEL_RESOURCE_ATTRIBUTES',
  'OTEL_TRACES_EXPORTER',
  'OTEL_SDK_DISABLED',
]);

const COMMANDS = new Set([
  'streamer',
  'scrape',
  'collector',
  'gateway',
  'migrate',
  'etcd-roles',
  'up',
  'token',
  'compact',
]);

const component = (o: K8sObject): string | undefined => {
  const fromPod = podOf(o)?.labels['app.kubernetes.io/component'];
  return fromPod ?? o.metadata.labels?.['app.kubernetes.io/component'];
};
const byKindAndComponent = (
  objects: readonly K8sObject[],
  kind: string,
  comp: string,
): K8sObject[] => objects.filter((o) => o.kind === kind && component(o) === comp);
const one = (
  objects: readonly K8sObject[],
  kind: string,
  comp: string,
  where: string,
): K8sObject => {
  const found = byKindAndComponent(objects, kind, comp);
  assert.equal(
    found.length,
    1,
    `${where}: ${found.length} ${kind}(s) of component ${comp}, expected 1`,
  );
  return found[0] as K8sObject;
};
const nexusContainers = (objects: readonly K8sObject[]) =>
  objects.flatMap((o) => {
    const pod = podOf(o);
    if (pod === undefined) return [];
    return containersOf(pod)
      .filter(({ container }) => /(^|\/)nexus[:@]/.test(strAt(container, 'image') ?? ''))
      .map(({ container, init }) => ({ owner: o, container, init }));
  });
/** What a container's environment holds: the ConfigMaps of its envFrom, then its env. */
function effectiveSettings(
  objects: readonly K8sObject[],
  container: Readonly<Record<string, unknown>>,
): Map<string, string> {
  const settings = new Map<string, string>();
  for (const from of listAt(container, 'envFrom')) {
    const cmName = strAt(from, 'configMapRef', 'name');
    if (cmName === undefined) continue;
    const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === cmName);
    assert.ok(cm !== undefined, `its ConfigMap ${cmName} is rendered`);
    for (const [k, v] of Object.entries(objAt(cm, 'data') ?? {})) settings.set(k, String(v));
  }
  for (const e of listAt(container, 'env'))
    settings.set(strAt(e, 'name') ?? '', strAt(e, 'value') ?? '');
  return settings;
}
const args = (c: Readonly<Record<string, unknown>>): string[] =>
  [...listAt(c, 'command'), ...listAt(c, 'args')].map(String);

describe('deployment artefacts (offline: helm 3.17 and kubectl 1.30 from the dev dependency)', () => {
  it('the tools are the ones the dev dependency ships', () => {
    const { helm, kubectl } = k8sTools();
    assert.ok(tool(helm, ['version', '--short']).startsWith('v3.17'), 'helm 3.17');
    assert.ok(tool(kubectl, ['version', '--client']).includes('v1.30'), 'kubectl 1.30');
  });

  it('the checks catch what they are for: a misspelt field, a missing probe, a literal password', async () => {
    const bad: K8sObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'bad', labels: { 'app.kubernetes.io/part-of': 'nexus' } },
      spec: {
        selector: { matchLabels: { app: 'bad' } },
        template: {
          metadata: { labels: { app: 'bad' } },
          spec: {
            containers: [
              {
                name: 'c',
                image: 'nexus:0.1.0',
                livenessProbes: { httpGet: { path: '/healthz', port: 8080 } },
                env: [{ name: 'DB_PASSWORD', value: 'hunter2' }],
              },
            ],
          },
        },
      },
    };
    assert.equal(
      await schemaError(bad),
      undefined,
      'the schema alone lets the misspelt field through',
    );
    const unknown = unknownFieldErrors([bad]);
    assert.equal(unknown.length, 1, unknown.join('\n'));
    assert.ok(unknown[0]?.includes('livenessProbes"\' does not exist'), unknown[0]);
    const problems = ruleProblems([bad]).join('\n');
    for (const p of [
      'no liveness and readiness probes',
      'DB_PASSWORD is a literal value',
      'runAsNonRoot',
      'no cpu and memory requests',
      'no default-deny NetworkPolicy',
    ]) {
      assert.ok(problems.includes(p), `${p} in:\n${problems}`);
    }
    const typo = structuredClone(bad) as unknown as { spec: { replicas: unknown } };
    typo.spec.replicas = 'three';
    assert.ok(
      (await schemaError(typo as unknown as K8sObject))?.includes('replicas'),
      'a wrong type fails the schema',
    );
  });

  it("remote_write on the gateway (gateway.config.ENABLE_REMOTE_WRITE) reaches the etcd-roles Job, so the gateway's role may publish", () => {
    const rolesEnv = (extra: string[]): Map<string, string> => {
      const objects = helmTemplate(extra);
      const job = one(objects, 'Job', 'etcd-roles', 'helm');
      const [c] = nexusContainers([job]);
      assert.ok(c !== undefined);
      return effectiveSettings(objects, c.container);
    };
    assert.equal(rolesEnv([]).get('ENABLE_REMOTE_WRITE'), undefined);
    assert.equal(
      rolesEnv(['--set', 'gateway.config.ENABLE_REMOTE_WRITE=true']).get('ENABLE_REMOTE_WRITE'),
      'true',
    );
  });

  it('remote_write with kustomize (components/remote-write): the gateway takes it and the etcd-roles Job lets its role publish', () => {
    const settingOf = (objects: readonly K8sObject[], kind: string, comp: string) => {
      const [c] = nexusContainers([one(objects, kind, comp, 'kustomize')]);
      assert.ok(c !== undefined);
      return effectiveSettings(objects, c.container).get('ENABLE_REMOTE_WRITE');
    };
    const without = kustomize('production');
    assert.equal(settingOf(without, 'Deployment', 'gateway'), undefined);
    assert.equal(settingOf(without, 'Job', 'etcd-roles'), undefined);
    const withIt = kustomizeWith('production', ['remote-write']);
    assert.equal(settingOf(withIt, 'Deployment', 'gateway'), 'true');
    assert.equal(settingOf(withIt, 'Job', 'etcd-roles'), 'true');
  });

  it('helm lint passes with the default and the production values', () => {
    const { helm } = k8sTools();
    for (const extra of [[], ['-f', PRODUCTION_VALUES]]) {
      const out = tool(helm, ['lint', '--strict', CHART, ...extra]);
      assert.ok(out.includes('0 chart(s) failed'), out);
    }
  });

  for (const [name, render] of Object.entries(renders)) {
    describe(name, () => {
      const objects = render();

      it('renders objects, each valid against its Kubernetes or CRD schema', async () => {
        assert.ok(objects.length > 20, `${objects.length} objects`);
        const errors = (await Promise.all(objects.map(schemaError))).filter((e) => e !== undefined);
        assert.deepEqual(errors, []);
      });

      it("no object has a field the Kubernetes or CRD API does not know (the models' types, strictly)", () => {
        assert.deepEqual(unknownFieldErrors(objects), []);
      });

      it('every container has resources and a non-root security context, every long-running one probes; every Service a NetworkPolicy; no literal secret', () => {
        assert.deepEqual(ruleProblems(objects), []);
      });

      it('names are unique per kind and every object is labelled as part of nexus', () => {
        const seen = new Set<string>();
        for (const o of objects) {
          const key = `${o.kind}/${o.metadata.name}`;
          assert.ok(!seen.has(key), `${key} twice`);
          seen.add(key);
          assert.equal(
            o.metadata.labels?.['app.kubernetes.io/part-of'],
            'nexus',
            `${ref(o)} part-of label`,
          );
        }
      });

      it('nexus containers run a real command, set only real settings, and take secrets from files', () => {
        const containers = nexusContainers(objects);
        assert.ok(containers.length >= 4, `${containers.length} nexus containers`);
        const images = new Set(containers.map(({ container }) => strAt(container, 'image')));
        assert.equal(images.size, 1, `one image for every component: ${[...images].join(', ')}`);
        for (const { owner, container } of containers) {
          const where = `${ref(owner)} ${strAt(container, 'name') ?? ''}`;
          const argv = args(container);
          const cmd = argv.find((a) => COMMANDS.has(a));
          assert.ok(cmd !== undefined, `${where}: runs ${argv.join(' ')}`);
          const settings = effectiveSettings(objects, container);
          for (const env of settings.keys()) {
            assert.ok(
              KNOWN_ENV.has(env),
              `${where}: ${env} is not a Nexus setting (src/core/config.ts)`,
            );
          }
          // Every file a setting names is in a volume the container mounts (or in the image's /app).
          const mounts = listAt(container, 'volumeMounts').map((m) => strAt(m, 'mountPath') ?? '');
          for (const [env, value] of settings) {
            const isPath =
              env.endsWith('_FILE') ||
              /^DB_SSL(ROOTCERT|CERT|KEY)$/.test(env) ||
              env === 'NEXUS_DATA_DIR';
            if (!isPath || !value.startsWith('/') || value.startsWith('/app/')) continue;
            assert.ok(
              mounts.some((m) => value === m || value.startsWith(m.endsWith('/') ? m : `${m}/`)),
              `${where}: ${env}=${value} is in none of its mounts (${mounts.join(', ')})`,
            );
          }
          for (const v of listAt(container, 'env')) {
            const envName = strAt(v, 'name') ?? '';
            const spec = Object.values(SETTINGS as Record<string, SettingSpec>).find(
              (s) => s.env === envName,
            );
            if (spec?.secret === true && !envName.endsWith('_FILE')) {
              assert.equal(
                objAt(v, 'valueFrom', 'secretKeyRef') !== undefined,
                true,
                `${where}: ${envName} must come from a Secret (better: ${envName}_FILE)`,
              );
            }
          }
        }
      });

      it('the streamer, collector and gateway probe /healthz and /readyz on their ports', () => {
        for (const comp of ['collector', 'gateway']) {
          const d = one(objects, 'Deployment', comp, name);
          const c = listAt(podOf(d)?.spec, 'containers')[0];
          assert.equal(
            strAt(c, 'livenessProbe', 'httpGet', 'path'),
            '/healthz',
            `${comp} liveness`,
          );
          assert.equal(
            strAt(c, 'readinessProbe', 'httpGet', 'path'),
            '/readyz',
            `${comp} readiness`,
          );
          const port = objAt(c, 'readinessProbe', 'httpGet')?.port;
          const ports = listAt(c, 'ports').map((p) => [
            strAt(p, 'name'),
            isObj(p) ? p.containerPort : undefined,
          ]);
          assert.ok(
            ports.some(([n, num]) => n === port || num === port),
            `${comp}: readiness port ${String(port)} is one of its container ports`,
          );
          if (comp === 'collector') {
            const metricsPort = listAt(c, 'env').find((e) => strAt(e, 'name') === 'METRICS_PORT');
            assert.ok(
              metricsPort !== undefined,
              'collector sets METRICS_PORT (its /healthz, /readyz, /metrics)',
            );
          }
        }
      });

      it('etcd: 3 members, TLS for peers and clients, PDB minAvailable 2, anti-affinity, compaction and a quota', () => {
        const sts = one(objects, 'StatefulSet', 'etcd', name);
        assert.equal(objAt(sts, 'spec')?.replicas, 3);
        const c = listAt(podOf(sts)?.spec, 'containers').find((x) =>
          /etcd/.test(strAt(x, 'image') ?? ''),
        );
        assert.ok(c !== undefined, 'an etcd container');
        const argv = [
          ...args(c as Record<string, unknown>),
          ...listAt(c, 'env').map((e) => `${strAt(e, 'name') ?? ''}=${strAt(e, 'value') ?? ''}`),
        ].join(' ');
        for (const flag of [
          'quota-backend-bytes',
          'auto-compaction-retention',
          'auto-compaction-mode',
          'client-cert-auth',
          'peer-client-cert-auth',
          'peer-trusted-ca-file',
          'trusted-ca-file',
        ]) {
          assert.ok(
            argv.toLowerCase().includes(flag.replaceAll('-', '_')) || argv.includes(flag),
            `etcd sets ${flag}: ${argv.slice(0, 300)}`,
          );
        }
        assert.ok(argv.includes('https://'), 'etcd speaks TLS');
        assert.ok(
          objAt(podOf(sts)?.spec, 'affinity', 'podAntiAffinity') !== undefined,
          'anti-affinity',
        );
        const pdbs = objects.filter(
          (o) =>
            o.kind === 'PodDisruptionBudget' &&
            objAt(o, 'spec', 'selector', 'matchLabels')?.['app.kubernetes.io/component'] === 'etcd',
        );
        assert.equal(pdbs.length, 1, 'one PDB for etcd');
        assert.equal(objAt(pdbs[0], 'spec')?.minAvailable, 2);
        // The streamer's space check waits at 80 % of ETCD_QUOTA_BYTES: it must be etcd's quota.
        const quotaArg = args(c as Record<string, unknown>).find((a) =>
          a.startsWith('--quota-backend-bytes='),
        );
        const quotaEnv = (n: string): string | undefined =>
          strAt(
            listAt(c, 'env').find((e) => strAt(e, 'name') === n),
            'value',
          );
        const quota = quotaArg
          ?.split('=')[1]
          ?.replace(/^\$\((\w+)\)$/, (_m, n: string) => quotaEnv(n) ?? '');
        assert.ok(
          quota !== undefined && /^\d+$/.test(quota),
          `etcd's quota is a number: ${String(quota)}`,
        );
        for (const { owner, container } of nexusContainers(objects).filter(
          ({ owner }) => component(owner) === 'streamer',
        )) {
          const settings = effectiveSettings(objects, container);
          assert.equal(
            settings.get('ETCD_QUOTA_BYTES') ?? SETTINGS.etcdQuotaBytes.default,
            quota,
            `${ref(owner)}: ETCD_QUOTA_BYTES is etcd's --quota-backend-bytes`,
          );
        }
        const rolesJob = one(objects, 'Job', 'etcd-roles', name);
        const rc = nexusContainers([rolesJob]).map(({ container }) => args(container).join(' '));
        assert.ok(
          rc.some((a) => a.includes('etcd-roles') && a.includes('--apply')),
          `etcd-roles --apply: ${rc.join(' | ')}`,
        );
      });

      it('PostgreSQL, migrations with roles, and the components wired to them', () => {
        const cnpg = objects.filter(
          (o) => o.kind === 'Cluster' && o.apiVersion.startsWith('postgresql.cnpg.io/'),
        );
        const sts = byKindAndComponent(objects, 'StatefulSet', 'postgresql');
        assert.equal(
          cnpg.length + sts.length,
          1,
          'one PostgreSQL: a CloudNativePG Cluster or the plain StatefulSet',
        );
        if (name.includes('production')) {
          assert.equal(cnpg.length, 1, 'production uses CloudNativePG');
          assert.ok(
            Number(objAt(cnpg[0], 'spec')?.instances) >= 3,
            'production runs 3 PostgreSQL instances',
          );
        }
        const migrate = one(objects, 'Job', 'migrate', name);
        const mc = nexusContainers([migrate]).map(({ container }) => args(container).join(' '));
        assert.ok(
          mc.some((a) => a.includes('migrate') && a.includes('--create-roles')),
          `migrate --create-roles: ${mc.join(' | ')}`,
        );
        const streamer = byKindAndComponent(objects, 'Job', 'streamer').concat(
          byKindAndComponent(objects, 'Deployment', 'streamer'),
        );
        assert.ok(streamer.length >= 1 || name.includes('helm'), 'a streamer (Job or Deployment)');
      });

      it('autoscaling: the gateway on CPU and requests, the collector on queue depth and lag (KEDA in production)', () => {
        const hpas = objects.filter((o) => o.kind === 'HorizontalPodAutoscaler');
        const gatewayHpa = hpas.find(
          (h) => strAt(h, 'spec', 'scaleTargetRef', 'name')?.endsWith('gateway') === true,
        );
        // The dev overlay runs one gateway and one collector, not scaled.
        if (name === 'kustomize dev') return;
        assert.ok(gatewayHpa !== undefined, 'an HPA for the gateway');
        assert.ok(
          listAt(gatewayHpa, 'spec', 'metrics').some((m) => strAt(m, 'resource', 'name') === 'cpu'),
          'gateway HPA on CPU',
        );
        if (name.includes('production')) {
          assert.ok(
            listAt(gatewayHpa, 'spec', 'metrics').some((m) => strAt(m, 'type') === 'Pods'),
            'gateway HPA on requests (a Pods metric)',
          );
          const so = one(objects, 'ScaledObject', 'collector', name);
          assert.ok(
            strAt(so, 'spec', 'scaleTargetRef', 'name')?.endsWith('collector'),
            'KEDA scales the collector',
          );
          const queries = listAt(so, 'spec', 'triggers')
            .map((t) => strAt(t, 'metadata', 'query') ?? '')
            .join(' ');
          assert.ok(
            queries.includes('nexus_queue_messages'),
            `a trigger on queue depth: ${queries}`,
          );
          assert.ok(listAt(so, 'spec', 'triggers').length >= 2, 'and one on lag');
          const ingress = one(objects, 'Ingress', 'gateway', name);
          assert.ok(listAt(ingress, 'spec', 'tls').length >= 1, 'production ingress has TLS');
        }
      });

      it('PodDisruptionBudgets for etcd, the gateway and the collector', () => {
        const pdbComponents = objects
          .filter((o) => o.kind === 'PodDisruptionBudget')
          .map((o) => objAt(o, 'spec', 'selector', 'matchLabels')?.['app.kubernetes.io/component']);
        for (const c of ['etcd', 'gateway', 'collector'])
          assert.ok(pdbComponents.includes(c), `a PDB for ${c}`);
      });

      it('the scraper (helm scraper.enabled, kustomize components/scraper): one at a time, its own etcd user, and only list and watch on the EndpointSlices it follows', () => {
        // Off by default in the chart and in the overlays (docs/ingest.md).
        if (!/helm production values|with the scraper/.test(name)) {
          assert.equal(byKindAndComponent(objects, 'Deployment', 'scraper').length, 0, 'off');
          return;
        }
        const d = one(objects, 'Deployment', 'scraper', name);
        assert.equal(objAt(d, 'spec')?.replicas, 1, 'a second would scrape every target twice');
        assert.equal(strAt(d, 'spec', 'strategy', 'type'), 'Recreate');
        const [c] = nexusContainers([d]);
        assert.ok(c !== undefined);
        assert.deepEqual(args(c.container), ['scrape']);
        const env = effectiveSettings(objects, c.container);
        const service = env.get('SCRAPE_KUBERNETES_SERVICE') ?? '';
        assert.match(service, /^[a-z0-9-]+\/[a-z0-9-]+(:\w+)?$/);
        assert.equal(env.get('METRICS_PORT'), '9464', 'its /healthz, /readyz and /metrics');
        assert.equal(env.has('DB_HOST'), false, 'no database');
        // Its etcd client certificate is the scraper user's (CN=scraper).
        const secret = listAt(podOf(d)?.spec, 'volumes')
          .map((v) => strAt(v, 'secret', 'secretName'))
          .find((n) => n?.includes('etcd-client'));
        const cert = objects.find(
          (o) => o.kind === 'Certificate' && strAt(o, 'spec', 'secretName') === secret,
        );
        assert.equal(strAt(cert, 'spec', 'commonName'), 'scraper');
        // The ServiceAccount may list and watch EndpointSlices in the exporter's namespace only.
        const account = strAt(podOf(d)?.spec, 'serviceAccountName');
        const binding = objects.find(
          (o) =>
            o.kind === 'RoleBinding' &&
            listAt(o, 'subjects').some((x) => strAt(x, 'name') === account),
        );
        assert.ok(binding !== undefined, 'its ServiceAccount is bound');
        assert.equal(binding.metadata.namespace, service.split('/')[0]);
        // The subject is that ServiceAccount, in the namespace it is deployed in (helm template
        // leaves it to --namespace, the overlays set it).
        const sa = objects.find((o) => o.kind === 'ServiceAccount' && o.metadata.name === account);
        const subject = listAt(binding, 'subjects').find((x) => strAt(x, 'name') === account);
        assert.equal(strAt(subject, 'namespace'), sa?.metadata.namespace ?? 'nexus');
        const role = objects.find(
          (o) =>
            o.kind === 'Role' &&
            o.metadata.name === strAt(binding, 'roleRef', 'name') &&
            o.metadata.namespace === binding.metadata.namespace,
        );
        assert.deepEqual(listAt(role, 'rules'), [
          {
            apiGroups: ['discovery.k8s.io'],
            resources: ['endpointslices'],
            verbs: ['list', 'watch'],
          },
        ]);
        // etcd takes its connections; Prometheus scrapes it through a PodMonitor.
        const etcdPolicy = objects.find(
          (o) => o.kind === 'NetworkPolicy' && o.metadata.name.endsWith('-etcd'),
        );
        assert.match(
          JSON.stringify(etcdPolicy),
          /"app.kubernetes.io\/component":"scraper"|"values":\[[^\]]*"scraper"/,
        );
        assert.ok(
          objects.some((o) => o.kind === 'PodMonitor' && component(o) === 'scraper'),
          'a PodMonitor',
        );
      });

      it('monitoring: ServiceMonitors or PodMonitors for the components, and a PrometheusRule equal to deploy/observability/alerts.yml', () => {
        const monitors = objects.filter(
          (o) => o.kind === 'ServiceMonitor' || o.kind === 'PodMonitor',
        );
        assert.ok(monitors.length >= 1, 'a ServiceMonitor or PodMonitor');
        const rules = objects.filter((o) => o.kind === 'PrometheusRule');
        assert.equal(rules.length, 1, 'one PrometheusRule');
        assert.ok(
          rulesMatchAlerts(rules[0] as K8sObject),
          'its groups are exactly deploy/observability/alerts.yml',
        );
      });
    });
  }
});

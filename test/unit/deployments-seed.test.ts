/**
 * The seed's deployment steps, checked offline with the project's own helm and kubectl:
 *
 *   kubectl apply -f deployments/k8s/etcd-cluster.yaml
 *   kubectl apply -f deployments/k8s/postgresql.yaml
 *   helm install nexus-pipeline deployments/helm/telemetry-pipeline/
 *   kubectl get pods -l app=nexus-pipeline
 *
 * The first two files are the chart's etcd and PostgreSQL for that release (scripts/k8s-seed.ts),
 * marked as its objects so that the install adopts them: one etcd and one PostgreSQL in all. No
 * cluster answers here, so what is checked is what the adoption rests on.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SEED_FILES, SEED_NAMESPACE, SEED_RELEASE, seedFile } from '../../scripts/k8s-seed.js';
import {
  CHART,
  k8sTools,
  parseManifests,
  podOf,
  ref,
  schemaError,
  tool,
  unknownFieldErrors,
  type K8sObject,
} from '../helpers/k8s.js';
import { ROOT } from '../helpers/child.js';

/** `helm install nexus-pipeline deployments/helm/telemetry-pipeline/`, rendered. */
const install = (): K8sObject[] =>
  parseManifests(
    tool(k8sTools().helm, ['template', SEED_RELEASE, CHART, '--namespace', SEED_NAMESPACE]),
  );

const key = (o: K8sObject): string => `${o.apiVersion} ${o.kind} ${o.metadata.name}`;

/** An object without the annotations that mark it as the release's (what adoption compares). */
function unmarked(o: K8sObject): unknown {
  const annotations = { ...o.metadata.annotations };
  delete annotations['meta.helm.sh/release-name'];
  delete annotations['meta.helm.sh/release-namespace'];
  const metadata: Record<string, unknown> = { ...o.metadata, annotations };
  if (Object.keys(annotations).length === 0) delete metadata.annotations;
  return { ...o, metadata };
}

describe('the seed deployment steps: etcd-cluster.yaml, postgresql.yaml, then helm install nexus-pipeline', () => {
  const files = Object.keys(SEED_FILES);
  const seed = new Map(
    files.map((f) => [f, parseManifests(readFileSync(join(ROOT, f), 'utf8'))] as const),
  );
  const chart = new Map(install().map((o) => [key(o), o] as const));

  it('each file is what scripts/k8s-seed.ts makes of the chart now (run it after changing the chart)', async () => {
    for (const f of files) {
      assert.equal(
        readFileSync(join(ROOT, f), 'utf8'),
        await seedFile(f),
        `${f} is stale: npx tsx scripts/k8s-seed.ts`,
      );
    }
  });

  it('step 1 is the etcd cluster with its certificates, step 2 PostgreSQL; nothing else', () => {
    const kinds = (f: string): string[] =>
      [...new Set((seed.get(f) ?? []).map((o) => o.kind))].sort();
    assert.deepEqual(kinds('deployments/k8s/etcd-cluster.yaml'), [
      'Certificate',
      'Issuer',
      'PodDisruptionBudget',
      'Service',
      'StatefulSet',
    ]);
    const etcd = (seed.get('deployments/k8s/etcd-cluster.yaml') ?? []).find(
      (o) => o.kind === 'StatefulSet',
    );
    assert.equal((etcd?.spec as { replicas?: number } | undefined)?.replicas, 3);
    // The certificates' files as the chart mounts them (0440), not 0670: the chart's `0440` is
    // octal to Kubernetes (YAML 1.1), and the file is written as the number it means.
    const modes = JSON.stringify(etcd).match(/"defaultMode":(\d+)/g) ?? [];
    assert.ok(modes.length >= 2, 'the TLS volumes');
    for (const m of modes) assert.equal(m, `"defaultMode":${String(0o440)}`);
    assert.deepEqual(kinds('deployments/k8s/postgresql.yaml'), ['Cluster']);
  });

  it('helm install adopts every object: the same object in the release, marked as its own', () => {
    for (const [f, objects] of seed) {
      assert.ok(objects.length > 0, f);
      for (const o of objects) {
        const mine = chart.get(key(o));
        assert.ok(mine !== undefined, `${f}: ${ref(o)} is not in the release's objects`);
        assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm', ref(o));
        const annotations = o.metadata.annotations ?? {};
        assert.equal(annotations['meta.helm.sh/release-name'], SEED_RELEASE, ref(o));
        assert.equal(annotations['meta.helm.sh/release-namespace'], SEED_NAMESPACE, ref(o));
        assert.equal(o.metadata.namespace, undefined, `${ref(o)}: kubectl apply's namespace`);
        // Nothing for the install to change: adopted as it runs.
        assert.deepEqual(unmarked(o), unmarked(mine), `${f}: ${ref(o)} differs from the chart's`);
      }
    }
  });

  it('every object is valid against its Kubernetes or CRD schema, strictly', async () => {
    const all = [...seed.values()].flat();
    for (const o of all) assert.equal(await schemaError(o), undefined, ref(o));
    assert.deepEqual(unknownFieldErrors(all), []);
  });

  it('step 4: every pod of the release, etcd and PostgreSQL included, is labelled app=nexus-pipeline', () => {
    let pods = 0;
    for (const o of chart.values()) {
      const pod = podOf(o);
      if (o.kind === 'Cluster') {
        // CloudNativePG labels its instances' pods with the Cluster's inheritedMetadata.
        const inherited = (o.spec as { inheritedMetadata?: { labels?: Record<string, string> } })
          .inheritedMetadata?.labels;
        assert.equal(inherited?.app, SEED_RELEASE, ref(o));
        pods++;
        continue;
      }
      if (pod === undefined) continue;
      assert.equal(pod.labels.app, SEED_RELEASE, `${ref(o)}: its pods' labels`);
      pods++;
    }
    assert.ok(pods >= 5, `${pods} workloads`);
  });
});

/**
 * Writes deployments/k8s/base/observability/prometheusrule.yaml: a prometheus-operator
 * PrometheusRule whose groups are exactly those of deploy/observability/alerts.yml (the source of
 * truth), formatted by Prettier like the rest of the repository. A unit test
 * (test/unit/deployments-k8s.test.ts) fails when the committed file and alerts.yml differ.
 *
 *   npx tsx scripts/k8s-prometheusrule.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';

const ROOT = join(import.meta.dirname, '..');
export const ALERTS_FILE = join(ROOT, 'deploy', 'observability', 'alerts.yml');
export const RULE_FILE = join(
  ROOT,
  'deployments',
  'k8s',
  'base',
  'observability',
  'prometheusrule.yaml',
);

/** The groups of an alerts file (Prometheus rule file format). */
export function ruleGroups(alertsText: string): unknown[] {
  const doc: unknown = parse(alertsText);
  if (typeof doc !== 'object' || doc === null || !('groups' in doc) || !Array.isArray(doc.groups)) {
    throw new Error('alerts.yml: no top-level groups list');
  }
  return doc.groups as unknown[];
}

/** The text prometheusrule.yaml must hold for this alerts file. */
export async function prometheusRuleDocument(alertsText: string): Promise<string> {
  const rule = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'nexus', labels: { 'app.kubernetes.io/component': 'observability' } },
    spec: { groups: ruleGroups(alertsText) },
  };
  const header =
    '# Generated from deploy/observability/alerts.yml by scripts/k8s-prometheusrule.ts: do not edit;\n' +
    '# edit alerts.yml and run `npx tsx scripts/k8s-prometheusrule.ts`.\n';
  const options = (await resolveConfig(RULE_FILE)) ?? {};
  return format(header + stringify(rule, { lineWidth: 0 }), { ...options, filepath: RULE_FILE });
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  writeFileSync(RULE_FILE, await prometheusRuleDocument(readFileSync(ALERTS_FILE, 'utf8')));
  process.stdout.write(`wrote ${RULE_FILE}\n`);
}

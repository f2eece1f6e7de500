import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  ALERTS_FILE,
  prometheusRuleDocument,
  RULE_FILE,
  ruleGroups,
} from '../../scripts/k8s-prometheusrule.js';

const alerts = readFileSync(ALERTS_FILE, 'utf8');
const committed = readFileSync(RULE_FILE, 'utf8');

describe('deployments/k8s PrometheusRule', () => {
  it('is the file scripts/k8s-prometheusrule.ts generates from deploy/observability/alerts.yml', async () => {
    const generated = await prometheusRuleDocument(alerts);
    assert.ok(
      committed === generated,
      'deployments/k8s/base/observability/prometheusrule.yaml differs from alerts.yml: run npx tsx scripts/k8s-prometheusrule.ts',
    );
  });

  it('holds exactly the groups of alerts.yml', () => {
    const rule = parse(committed) as { kind: string; spec: { groups: unknown[] } };
    assert.equal(rule.kind, 'PrometheusRule');
    assert.deepEqual(rule.spec.groups, ruleGroups(alerts));
  });

  it('no longer matches once alerts.yml changes', async () => {
    const edited = alerts.replace('for: 10m', 'for: 15m');
    assert.notEqual(edited, alerts, 'the edit must change alerts.yml');
    assert.ok(
      (await prometheusRuleDocument(edited)) !== committed,
      'an edited alerts.yml must make the check fail',
    );
  });
});

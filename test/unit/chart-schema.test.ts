import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { SETTINGS, type SettingSpec } from '../../src/core/config.js';
import { CONFIG_MAPS, SCHEMA_PATH, chartSchemaText } from '../../scripts/chart-schema.js';

/**
 * The Helm chart's values.schema.json is the one scripts/chart-schema.ts generates from the
 * settings table, its PrometheusRule's copy of the alerts is deploy/observability/alerts.yml byte
 * for byte, and helm lint (the project's own helm, scripts/k8s-tools.sh) refuses a secret in a
 * config map, a wrong type, a value out of bounds or not among the choices, and takes the
 * settings it should, which then reach the containers' environment.
 */

const root = join(import.meta.dirname, '..', '..');
const chart = join(root, 'deployments', 'helm', 'telemetry-pipeline');
const helmBin = join(
  execFileSync('bash', [join(root, 'scripts', 'k8s-tools.sh')], { encoding: 'utf8' }).trim(),
  'helm',
);
const scratch = mkdtempSync(join(tmpdir(), 'nexus-chart-schema-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function helm(...args: string[]): { ok: boolean; output: string } {
  const res = spawnSync(helmBin, args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  if (res.error !== undefined)
    assert.fail(`helm ${args[0] ?? ''} could not run: ${res.error.message}`);
  return { ok: res.status === 0, output: `${res.stdout}${res.stderr}` };
}

let n = 0;
function valuesFile(text: string): string {
  n += 1;
  const path = join(scratch, `values-${n}.yaml`);
  writeFileSync(path, text);
  return path;
}

function lint(values: string): { ok: boolean; output: string } {
  return helm('lint', chart, '-f', valuesFile(values));
}

const settings = Object.values(SETTINGS) as SettingSpec[];

describe('chart values.schema.json', () => {
  it('is the one scripts/chart-schema.ts generates from the settings table', async () => {
    const committed = readFileSync(SCHEMA_PATH, 'utf8');
    assert.ok(
      committed === (await chartSchemaText()),
      'values.schema.json is stale: run npx tsx scripts/chart-schema.ts',
    );
  });

  it('gives every non-secret setting of its groups to each config map, and no secret', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as {
      properties: Record<string, { properties: Record<string, unknown> }>;
    };
    const mapSchema = (name: string): Record<string, Record<string, unknown>> => {
      const [top, sub] = name.split('.');
      const node = schema.properties[top ?? ''];
      assert.ok(node !== undefined, `no ${top ?? ''} in the schema`);
      const m = sub === undefined ? node : node.properties[sub];
      return (m as { properties: Record<string, Record<string, unknown>> }).properties;
    };
    for (const [name, groups] of Object.entries(CONFIG_MAPS)) {
      const props = mapSchema(name);
      const expected = settings
        .filter((s) => s.secret !== true && groups.includes(s.group))
        .map((s) => s.env);
      assert.deepEqual(Object.keys(props).sort(), [...expected].sort(), name);
      for (const s of settings.filter((x) => x.secret === true)) {
        assert.equal(props[s.env], undefined, `${name} takes the secret ${s.env}`);
      }
    }
    const collector = mapSchema('collector.config');
    assert.deepEqual(collector['WORKERS'], {
      type: 'integer',
      minimum: 1,
      maximum: 256,
      description: 'Batches a collector writes at once (WORKERS, --workers)',
      default: 4,
    });
    assert.deepEqual(mapSchema('gateway.config')['AUTH_MODE']?.['enum'], ['none', 'token', 'oidc']);
    assert.equal(mapSchema('config')['ENABLE_WATCH_API']?.['default'], true);
  });
});

describe('helm lint with the schema', () => {
  it('passes with the default and the production values', () => {
    const byDefault = helm('lint', chart);
    assert.ok(byDefault.ok, byDefault.output.slice(-2000));
    const production = helm('lint', chart, '-f', join(chart, 'values-production.yaml'));
    assert.ok(production.ok, production.output.slice(-2000));
  });

  it('refuses a secret in a config map, naming it', () => {
    for (const [values, name] of [
      ['config:\n  DB_PASSWORD: hunter2\n', 'DB_PASSWORD'],
      ['gateway:\n  config:\n    DATABASE_URL: postgres://u:p@db/telemetry\n', 'DATABASE_URL'],
      ['collector:\n  config:\n    ETCD_KEY_FILE: /key.pem\n', 'ETCD_KEY_FILE'],
      ['config:\n  DB_COLLECTOR_PASSWORD: x\n', 'DB_COLLECTOR_PASSWORD'],
    ] as const) {
      const res = lint(values);
      assert.equal(res.ok, false, `${name} accepted`);
      assert.ok(res.output.includes(`Additional property ${name} is not allowed`), res.output);
    }
  });

  it('refuses a wrong type, a value out of bounds, and a value not among the choices', () => {
    const cases = [
      ['collector:\n  config:\n    WORKERS: many\n', 'collector.config.WORKERS: Invalid type'],
      ['gateway:\n  config:\n    ENABLE_GRAPHQL: "yes"\n', 'gateway.config.ENABLE_GRAPHQL'],
      ['collector:\n  config:\n    WORKERS: 1000\n', 'collector.config.WORKERS: Must be less'],
      [
        'gateway:\n  config:\n    AUTH_MODE: open\n',
        'gateway.config.AUTH_MODE: gateway.config.AUTH_MODE must be one of',
      ],
      ['config:\n  ETCD_TIMEOUT: soon\n', 'config.ETCD_TIMEOUT: Does not match pattern'],
      ['streamer:\n  config:\n    WORKERS: 4\n', 'Additional property WORKERS is not allowed'],
      ['etcd:\n  replicas: "3"\n', 'etcd.replicas: Invalid type'],
    ] as const;
    for (const [values, message] of cases) {
      const res = lint(values);
      assert.equal(res.ok, false, `accepted: ${values}`);
      assert.ok(res.output.includes(message), `${message} not in: ${res.output.slice(-1500)}`);
    }
  });

  it('takes valid settings, and they reach the environment of the containers', () => {
    const values =
      'config:\n  LOG_LEVEL: debug\n  ETCD_TIMEOUT: 10s\n' +
      'collector:\n  config:\n    WORKERS: 8\n    RETRY_CAP: 60000\n' +
      'gateway:\n  config:\n    CORS_ORIGINS: [https://a.example, https://b.example]\n    LOG_LEVEL: warn\n';
    const file = valuesFile(values);
    const linted = helm('lint', chart, '-f', file);
    assert.ok(linted.ok, linted.output.slice(-2000));
    const rendered = helm('template', 't', chart, '-f', file);
    assert.ok(rendered.ok, rendered.output.slice(-2000));
    const env = (name: string): Record<string, string> => {
      for (const doc of parseAllDocuments(rendered.output)) {
        const o = doc.toJS() as {
          kind?: string;
          metadata?: { name?: string };
          spec?: {
            template?: {
              spec?: { containers?: { env?: { name: string; value?: string }[] }[] };
            };
          };
        } | null;
        if (o?.kind !== 'Deployment' || o.metadata?.name !== name) continue;
        const vars = o.spec?.template?.spec?.containers?.[0]?.env ?? [];
        return Object.fromEntries(vars.map((v) => [v.name, v.value ?? '']));
      }
      return assert.fail(`no Deployment ${name}`);
    };
    const collector = env('t-nexus-collector');
    assert.equal(collector['WORKERS'], '8');
    assert.equal(collector['RETRY_CAP'], '60000');
    assert.equal(collector['LOG_LEVEL'], 'debug');
    assert.equal(collector['ETCD_TIMEOUT'], '10s');
    assert.equal(collector['DB_USER'], 'nexus_collector');
    assert.equal(collector['DB_PASSWORD_FILE'], '/var/run/secrets/nexus/db/password');
    const gateway = env('t-nexus-gateway');
    assert.equal(gateway['CORS_ORIGINS'], 'https://a.example,https://b.example');
    assert.equal(gateway['LOG_LEVEL'], 'warn');
    assert.equal(gateway['WORKERS'], undefined);
  });
});

describe('the chart’s copy of the alerts', () => {
  it('is deploy/observability/alerts.yml byte for byte, and the PrometheusRule carries it', () => {
    const source = readFileSync(join(root, 'deploy', 'observability', 'alerts.yml'));
    const copy = readFileSync(join(chart, 'files', 'alerts.yml'));
    assert.ok(
      source.equals(copy),
      'deployments/helm/telemetry-pipeline/files/alerts.yml differs from deploy/observability/alerts.yml: copy it again',
    );
    const rendered = helm('template', 't', chart, '--show-only', 'templates/monitoring.yaml');
    assert.ok(rendered.ok, rendered.output.slice(-2000));
    const rule = parseAllDocuments(rendered.output)
      .map((d) => d.toJS() as { kind?: string; spec?: unknown } | null)
      .find((o) => o?.kind === 'PrometheusRule');
    const alerts = parseAllDocuments(source.toString('utf8'))[0]?.toJS() as unknown;
    assert.deepEqual(rule?.spec, alerts);
  });
});

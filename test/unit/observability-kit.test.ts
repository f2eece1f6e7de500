import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { loadMigrations } from '../../src/store/migrate.js';
import { PGliteDatabase } from '../../src/store/pglite/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import { TABLE_GRANTS } from '../../src/store/postgres/roles.js';
import { migratedDump } from '../helpers/pglite.js';

/**
 * The operator's kit (deploy/observability, docs/operations.md): the alerting rules pass promtool
 * and their unit tests, the Prometheus config validates, the Grafana dashboard is valid JSON with
 * its two data sources, and every Nexus metric the kit queries exists in src/core/metrics.ts, so a
 * renamed metric fails here. The dashboard's PromQL goes through promtool and its SQL runs on the
 * real schema (PGlite).
 */

const root = join(import.meta.dirname, '..', '..');
const read = (...path: string[]): string => readFileSync(join(root, ...path), 'utf8');

const alertsYml = read('deploy', 'observability', 'alerts.yml');
const alertsTestYml = read('deploy', 'observability', 'alerts.test.yml');
const operationsMd = read('docs', 'operations.md');
const metricsSource = read('src', 'core', 'metrics.ts');

// --- promtool --------------------------------------------------------------------------------

function promtool(...args: string[]): { ok: boolean; output: string } {
  const res = spawnSync('promtool', args, { cwd: root, encoding: 'utf8', timeout: 60_000 });
  if (res.error !== undefined) {
    const missing = (res.error as NodeJS.ErrnoException).code === 'ENOENT';
    assert.fail(
      missing
        ? 'promtool is not installed: run make setup-dev (it installs Debian\'s "prometheus" package, which provides promtool)'
        : `promtool ${args.join(' ')} could not run: ${res.error.message}`,
    );
  }
  return { ok: res.status === 0, output: `${res.stdout}${res.stderr}` };
}

function assertPromtool(...args: string[]): void {
  const { ok, output } = promtool(...args);
  assert.ok(ok, `promtool ${args.join(' ')} failed:\n${output}`);
}

// --- metric names ----------------------------------------------------------------------------

interface Declared {
  readonly name: string;
  readonly type: string;
  readonly help: string;
}

/** The metrics src/core/metrics.ts declares by name, parsed from the source. */
const ownMetrics: Declared[] = [
  ...metricsSource.matchAll(
    /new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'([^']+)',\s*help:\s*'([^']*)'/g,
  ),
].map((m) => ({ name: m[2] ?? '', type: (m[1] ?? '').toLowerCase(), help: m[3] ?? '' }));

let declaredCache: Promise<Map<string, string>> | undefined;

/**
 * Every metric a Nexus process exposes, with its type: those parsed from the source, plus the
 * process and Node.js metrics prom-client adds (nexus_process_*, nexus_nodejs_*), read from a
 * NexusMetrics registry since their names are built at run time.
 */
function declaredMetrics(): Promise<Map<string, string>> {
  declaredCache ??= (async () => {
    const out = new Map(ownMetrics.map((m) => [m.name, m.type]));
    const live = await new NexusMetrics({ component: 'test' }).registry.getMetricsAsJSON();
    const liveNames = new Set(live.map((m) => m.name));
    for (const m of ownMetrics)
      assert.ok(liveNames.has(m.name), `${m.name} is parsed from the source but not registered`);
    for (const m of live)
      if (/^nexus_(process|nodejs)_/.test(m.name)) out.set(m.name, String(m.type));
    return out;
  })();
  return declaredCache;
}

/** The metric a series name belongs to (histogram series end in _bucket, _sum, _count). */
function known(name: string, declared: Map<string, string>): boolean {
  if (declared.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m === null) return false;
  const type = declared.get(m[1] ?? '');
  return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
}

const nexusNames = (text: string): string[] => [
  ...new Set([...text.matchAll(/\bnexus_[a-z0-9_]+/g)].map((m) => m[0])),
];

// --- alert rules -----------------------------------------------------------------------------

interface AlertRule {
  readonly name: string;
  readonly block: string;
}

const alertRules: AlertRule[] = alertsYml
  .split(/^\s*- alert: /m)
  .slice(1)
  .map((block) => ({ name: block.split('\n')[0]?.trim() ?? '', block }));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const h = fenced ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (h === null) continue;
    out.add(
      (h[1] ?? '')
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return out;
}

// --- the dashboard ---------------------------------------------------------------------------

interface Target {
  readonly refId?: string;
  readonly datasource?: { type?: string; uid?: string };
  readonly expr?: string;
  readonly rawSql?: string;
}
interface Panel {
  readonly id?: number;
  readonly type?: string;
  readonly title?: string;
  readonly datasource?: { type?: string; uid?: string };
  readonly targets?: Target[];
  readonly panels?: Panel[];
}
interface Dashboard {
  readonly uid?: string;
  readonly title?: string;
  readonly schemaVersion?: number;
  readonly __inputs?: { name: string; type: string; pluginId: string }[];
  readonly panels?: Panel[];
  readonly templating?: {
    list?: { name: string; query?: string; datasource?: { type?: string; uid?: string } }[];
  };
}

const dashboardText = read('deploy', 'observability', 'grafana-dashboard.json');

function allPanels(panels: readonly Panel[] = []): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels)]);
}

function parseDashboard(): Dashboard {
  return JSON.parse(dashboardText) as Dashboard;
}

function targetsOf(d: Dashboard, type: string): { panel: Panel; target: Target }[] {
  return allPanels(d.panels).flatMap((panel) =>
    (panel.targets ?? [])
      .filter((t) => (t.datasource?.type ?? panel.datasource?.type) === type)
      .map((target) => ({ panel, target })),
  );
}

const PG_PLUGIN = 'grafana-postgresql-datasource';

// =============================================================================================

describe('observability kit: Prometheus rules and config (promtool)', () => {
  it('alerts.yml passes promtool check rules', () => {
    assertPromtool('check', 'rules', 'deploy/observability/alerts.yml');
  });

  it('alerts.test.yml passes promtool test rules', () => {
    assertPromtool('test', 'rules', 'deploy/observability/alerts.test.yml');
  });

  it('prometheus.yml passes promtool check config (with the rule files it loads)', () => {
    assertPromtool('check', 'config', 'deploy/observability/prometheus.yml');
  });

  it("the dashboard's PromQL parses (promtool check rules on the expressions)", () => {
    const d = parseDashboard();
    const exprs = targetsOf(d, 'prometheus').map(({ target }) => target.expr ?? '');
    assert.ok(exprs.length > 0, 'no Prometheus query in the dashboard');
    const rules = exprs
      .map((e, i) => {
        const expr = e
          .replaceAll('$__rate_interval', '5m')
          .replaceAll('$__interval', '1m')
          .replaceAll('$__range', '1h')
          .replaceAll('$cluster', '.*')
          .replaceAll('$host', '.*');
        assert.doesNotMatch(expr, /\$/, `unexpanded variable in ${e}`);
        return `      - record: grafana:query_${i}\n        expr: ${JSON.stringify(expr)}\n`;
      })
      .join('');
    const dir = mkdtempSync(join(tmpdir(), 'nexus-kit-'));
    try {
      const file = join(dir, 'dashboard-queries.yml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}`);
      assertPromtool('check', 'rules', file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('observability kit: alerts', () => {
  it('has the alerts the operators need', () => {
    const names = alertRules.map((a) => a.name);
    for (const n of [
      'NexusQueueBacklogGrowing',
      'NexusQueueOldestMessageTooOld',
      'NexusDeadLetters',
      'NexusCollectorDown',
      'NexusNoCollectorUp',
      'NexusNoCollectorReady',
      'NexusEtcdDatabaseNearQuota',
      'NexusEtcdDatabaseQuotaCritical',
      'NexusStoreUnavailable',
      'NexusWebSocketReadingsDropped',
      'NexusGPUTemperatureHigh',
      'NexusGPUTemperatureCritical',
      'NexusGPUIdleWithWorkload',
      'NexusGPUPowerThrottling',
      'NexusGPUNotReporting',
    ])
      assert.ok(names.includes(n), `alert ${n} is missing from alerts.yml`);
    assert.equal(new Set(names).size, names.length, 'duplicate alert names');
  });

  it('every alert has a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const headings = anchors(operationsMd);
    for (const { name, block } of alertRules) {
      assert.match(block, /\n\s+severity: (info|warning|critical)\n/, `${name}: severity`);
      assert.match(block, /\n\s+summary: \S/, `${name}: summary`);
      assert.match(block, /\n\s+description: \S/, `${name}: description`);
      const runbook = /\n\s+runbook_url: docs\/operations\.md#([a-z0-9-]+)\n/.exec(block)?.[1];
      assert.ok(runbook !== undefined, `${name}: runbook_url docs/operations.md#<anchor>`);
      assert.ok(headings.has(runbook), `${name}: no heading #${runbook} in docs/operations.md`);
    }
  });

  it('alerts.test.yml tests every alert firing and not firing', () => {
    const firing = new Set<string>();
    const silent = new Set<string>();
    for (const m of alertsTestYml.matchAll(/alertname: (\w+)\n\s+exp_alerts:( \[\])?/g)) {
      if (m[2] === undefined) firing.add(m[1] ?? '');
      else silent.add(m[1] ?? '');
    }
    for (const { name } of alertRules) {
      assert.ok(firing.has(name), `${name} is never tested firing`);
      assert.ok(silent.has(name), `${name} is never tested not firing`);
    }
  });

  it('NexusGPUIdleWithWorkload fires on the GPUs GET /api/v1/clusters/{id}/idle lists: nexus_gpu_idle_seconds, no second wait', () => {
    const rule = alertRules.find((a) => a.name === 'NexusGPUIdleWithWorkload');
    assert.ok(rule !== undefined, 'NexusGPUIdleWithWorkload is in alerts.yml');
    const expr = /expr: \|\n([\s\S]*?)\n\s+labels:/.exec(rule.block)?.[1] ?? '';
    assert.deepEqual(nexusNames(expr), [
      'nexus_gpu_idle_seconds',
      'nexus_gpu_last_reading_timestamp_seconds',
    ]);
    // The gateway lists a GPU once it has been idle IDLE_FOR: a `for` would wait that again.
    assert.equal(/\n\s+for: /.test(rule.block), false, 'no for: on the idle alert');
  });

  it('every nexus_* metric the rules use exists in src/core/metrics.ts', async () => {
    const declared = await declaredMetrics();
    const used = nexusNames(alertsYml);
    assert.ok(used.length > 10, 'no metric found in alerts.yml');
    for (const name of used)
      assert.ok(known(name, declared), `alerts.yml uses ${name}, not in src/core/metrics.ts`);
  });
});

describe('observability kit: Grafana dashboard', () => {
  it('is valid JSON with a uid, a title, a schema version and cluster/host variables', () => {
    const d = parseDashboard();
    assert.ok(typeof d.uid === 'string' && d.uid.length > 0, 'uid');
    assert.ok(typeof d.title === 'string' && d.title.length > 0, 'title');
    assert.ok((d.schemaVersion ?? 0) >= 36, 'schemaVersion');
    const vars = (d.templating?.list ?? []).map((v) => v.name);
    assert.ok(vars.includes('cluster') && vars.includes('host'), `variables: ${vars.join(', ')}`);
    const ids = allPanels(d.panels).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  });

  it('declares a Prometheus and a PostgreSQL data source as inputs, and uses only them', () => {
    const d = parseDashboard();
    const inputs = d.__inputs ?? [];
    const prom = inputs.find((i) => i.type === 'datasource' && i.pluginId === 'prometheus');
    const pg = inputs.find((i) => i.type === 'datasource' && i.pluginId === PG_PLUGIN);
    assert.ok(prom, 'no Prometheus data source in __inputs');
    assert.ok(pg, 'no PostgreSQL data source in __inputs');
    const uids = new Map([
      ['prometheus', `\${${prom.name}}`],
      [PG_PLUGIN, `\${${pg.name}}`],
    ]);
    for (const p of allPanels(d.panels).filter((p) => p.type !== 'row')) {
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title ?? ''}" has no query`);
      for (const t of p.targets ?? []) {
        const ds = t.datasource ?? p.datasource;
        assert.equal(ds?.uid, uids.get(ds?.type ?? ''), `panel "${p.title ?? ''}": data source`);
      }
    }
    for (const v of d.templating?.list ?? [])
      assert.equal(v.datasource?.uid, uids.get(v.datasource?.type ?? ''), `variable ${v.name}`);
    assert.ok(targetsOf(d, 'prometheus').length > 0, 'no Prometheus panel');
    assert.ok(targetsOf(d, PG_PLUGIN).length > 0, 'no PostgreSQL panel');
  });

  it('every nexus_* metric its Prometheus queries use exists in src/core/metrics.ts', async () => {
    const declared = await declaredMetrics();
    const d = parseDashboard();
    const used = nexusNames(
      targetsOf(d, 'prometheus')
        .map(({ target }) => target.expr)
        .join('\n'),
    );
    assert.ok(used.length > 10, 'no metric found in the Prometheus queries');
    for (const name of used)
      assert.ok(known(name, declared), `the dashboard uses ${name}, not in src/core/metrics.ts`);
  });

  describe('its SQL runs on the Nexus schema', () => {
    let db: PGliteDatabase;
    let store: SqlStore;
    const now = Date.now();
    const from = new Date(now - 3 * 3_600_000).toISOString();
    const to = new Date(now + 60_000).toISOString();

    before(async () => {
      db = new PGliteDatabase('memory://', await migratedDump());
      await db.ready();
      store = new SqlStore({
        db,
        logger: silentLogger(),
        writeMethod: 'unnest',
        retentionDays: 0,
        rollupRetentionDays: 0,
        partitionAheadMs: 0,
        compactDelayMs: 3_600_000,
      });
      await store.migrate();
      const records: TelemetryRecord[] = [];
      const metrics = {
        DCGM_FI_DEV_GPU_TEMP: (g: number) => 60 + g * 10,
        DCGM_FI_DEV_GPU_UTIL: (g: number) => (g === 0 ? 0 : 90),
        DCGM_FI_DEV_POWER_USAGE: (g: number) => 300 + g,
      };
      for (const [host, stale] of [
        ['h1', false],
        ['h2', true],
      ] as const)
        for (let gpu = 0; gpu < 3; gpu++)
          for (let minute = 0; minute < 30; minute++)
            for (const [metric, value] of Object.entries(metrics))
              records.push({
                timestamp: now - (stale ? 120 : 30) * 60_000 + minute * 60_000 - 1_000,
                metric,
                gpu,
                hostname: host,
                value: value(gpu),
                uuid: `GPU-${host}-${gpu}`,
                model: 'NVIDIA H100 80GB HBM3',
                ...(gpu < 2
                  ? { namespace: 'ml', pod: `train-${host}-${gpu}`, container: 'main' }
                  : {}),
                labels: {},
              });
      await store.write('c1', records);
      // The panels read the folded rollup and latest values, as the collectors' rollup job
      // leaves them within ROLLUP_INTERVAL.
      await store.rollUp();
    });

    after(async () => {
      await store.close();
    });

    function expand(sql: string): string {
      const out = sql
        .replace(
          /\$__timeGroupAlias\(([^,]+),\s*\$__interval\)/g,
          'floor(extract(epoch from $1)/60)*60 AS "time"',
        )
        .replace(/\$__timeFilter\(([^)]+)\)/g, `$1 BETWEEN '${from}' AND '${to}'`)
        .replaceAll('$__timeFrom()', `'${from}'`)
        .replaceAll('$__timeTo()', `'${to}'`)
        .replaceAll('$cluster', `'c1'`)
        .replaceAll('$host', `'h1','h2'`)
        .replaceAll('$metric', 'DCGM_FI_DEV_POWER_USAGE');
      assert.doesNotMatch(out, /\$/, `unexpanded macro or variable in:\n${out}`);
      return out;
    }

    it('every panel query and variable query runs, and the fleet panels find the data', async () => {
      const d = parseDashboard();
      const queries = [
        ...targetsOf(d, PG_PLUGIN).map(({ panel, target }) => ({
          title: panel.title ?? '',
          sql: target.rawSql ?? '',
        })),
        ...(d.templating?.list ?? [])
          .filter((v) => v.datasource?.type === PG_PLUGIN)
          .map((v) => ({ title: `variable ${v.name}`, sql: v.query ?? '' })),
      ];
      assert.ok(queries.length >= 4, 'too few SQL queries');
      for (const q of queries) {
        let rows: unknown[];
        try {
          rows = (await db.query(expand(q.sql))).rows;
        } catch (err) {
          assert.fail(`"${q.title}": ${err instanceof Error ? err.message : String(err)}`);
        }
        assert.ok(rows.length > 0, `"${q.title}" returned no row on a populated database`);
      }
    });

    it('the top 10 is ordered by temperature and the stale GPUs are found', async () => {
      const d = parseDashboard();
      const sqlOf = (title: RegExp): string => {
        const t = targetsOf(d, PG_PLUGIN).find(({ panel }) => title.test(panel.title ?? ''));
        assert.ok(t, `no panel ${String(title)}`);
        return expand(t.target.rawSql ?? '');
      };
      const top = (await db.query<{ temperature: number }>(sqlOf(/top 10 hottest/i))).rows;
      assert.deepEqual(
        top.map((r) => r.temperature),
        [80, 80, 70, 70, 60, 60],
      );
      const stale = (await db.query<{ host: string }>(sqlOf(/not reporting/i))).rows;
      assert.deepEqual(
        stale.map((r) => r.host),
        ['h2', 'h2', 'h2'],
      );
    });
  });
});

describe('observability kit: docs/operations.md', () => {
  it('has a row for every metric of src/core/metrics.ts, with its type and help', () => {
    assert.ok(ownMetrics.length > 30, 'could not parse the metrics from src/core/metrics.ts');
    const rows = operationsMd.split('\n').filter((l) => l.startsWith('| `nexus_'));
    for (const m of ownMetrics) {
      const row = rows.find((r) => r.startsWith(`| \`${m.name}\``));
      assert.ok(row, `${m.name} has no row in the metric table of docs/operations.md`);
      const cells = row.split('|').map((c) => c.trim());
      assert.equal(cells[2], m.type, `${m.name}: type in docs/operations.md`);
      assert.ok(row.includes(m.help), `${m.name}: the row does not give its help "${m.help}"`);
    }
  });

  it('mentions no nexus_ metric that does not exist', async () => {
    const declared = await declaredMetrics();
    // The roles table names PostgreSQL relations (nexus_identity...), the upgrade notes the
    // schema's SQL functions (nexus_ts...): not metrics.
    const relations = new Set(TABLE_GRANTS.map((g) => g.table));
    for (const m of loadMigrations())
      for (const f of m.sql.matchAll(/\bFUNCTION\s+(nexus_[a-z0-9_]+)\s*\(/gi))
        relations.add(f[1] ?? '');
    for (const name of nexusNames(operationsMd))
      assert.ok(
        known(name, declared) || relations.has(name) || /^nexus_(process|nodejs)_$/.test(name),
        `docs/operations.md mentions ${name}, not in src/core/metrics.ts`,
      );
  });
});

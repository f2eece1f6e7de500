/**
 * The usage page (`#/usage?cluster=..&group_by=namespace&range=24h`): GPU-hours allocated, average
 * utilisation while allocated, energy and cost per namespace, pod, host or GPU over a range ending
 * now (GET /api/v1/clusters/{c}/usage, docs/fleet.md), as a table and a bar chart, and the same
 * as the endpoint's CSV, downloaded with this tab's token.
 */
import { api, download, isAbort, message, type UsageGroup, type UsageResult } from './api.js';
import { h, notice, setText } from './dom.js';
import {
  clusterSelect,
  pickCluster,
  problem,
  segmented,
  table,
  type Column,
} from './fleet-page.js';
import { formatDateTime, formatNumber, parseTime, plural } from './format.js';
import { DEFAULT_RANGE, GROUP_BYS, USAGE_RANGES, type GroupBy, type Route } from './route.js';
import { Router } from './router.js';
import { lineColor } from './multi-chart.js';
import type { Context, Crumb, View } from './view.js';

type UsageRoute = Extract<Route, { view: 'usage' }>;

const RANGE_MS: Readonly<Record<UsageRoute['range'], number>> = {
  '1h': 3_600_000,
  '6h': 6 * 3_600_000,
  '24h': 86_400_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000,
};
/** Bars in the chart (the table has every group). */
const MAX_BARS = 20;
const GROUP_LABEL: Readonly<Record<GroupBy, string>> = {
  namespace: 'Namespace',
  pod: 'Pod',
  host: 'Host',
  gpu: 'GPU',
};

/** A group's name, as the chart and the CSV's key columns read. */
export function groupName(g: UsageGroup, by: GroupBy): string {
  switch (by) {
    case 'namespace':
      return g.namespace ?? '(none)';
    case 'pod':
      return `${g.namespace ?? '(none)'}/${g.pod ?? '(none)'}`;
    case 'host':
      return g.host_id ?? '?';
    case 'gpu':
      return `${g.host_id ?? '?'}/${g.gpu_id ?? '?'}`;
  }
}

function money(v: number, currency: string): string {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(v);
  } catch {
    return `${formatNumber(v)} ${currency}`;
  }
}

export class UsageView implements View {
  readonly el: HTMLElement;
  readonly crumbs: readonly Crumb[] = [{ label: 'Fleet', href: '#/' }, { label: 'Usage' }];
  private route: UsageRoute;
  private readonly body: HTMLElement;
  private readonly chart: HTMLElement;
  private readonly sub: HTMLElement;
  private readonly select: ReturnType<typeof clusterSelect>;
  private readonly groupBy: ReturnType<typeof segmented<GroupBy>>;
  private readonly range: ReturnType<typeof segmented<UsageRoute['range']>>;
  private readonly csv: HTMLButtonElement;
  private readonly csvState: HTMLElement;
  private ctl: AbortController | undefined;
  private query: { cluster: string; from: string; to: string } | undefined;

  constructor(
    route: UsageRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.select = clusterSelect((cluster) => {
      this.ctx.router.go({ ...this.route, cluster }, { replace: true });
    });
    this.groupBy = segmented(
      'Group by',
      GROUP_BYS,
      (g) => GROUP_LABEL[g],
      (groupBy) => {
        this.ctx.router.go({ ...this.route, groupBy }, { replace: true });
      },
    );
    this.range = segmented(
      'Time range',
      USAGE_RANGES,
      (r) => r,
      (range) => {
        this.ctx.router.go({ ...this.route, range }, { replace: true });
      },
    );
    this.csv = h('button', {
      type: 'button',
      class: 'btn',
      'data-testid': 'usage-csv',
      text: 'Download CSV',
      title: 'The table as CSV (GET …/usage?format=csv)',
    });
    this.csv.addEventListener('click', () => void this.downloadCsv());
    this.csvState = h('span', { class: 'hint', role: 'status' });
    this.sub = h('div', { class: 'page-sub', 'data-testid': 'usage-summary' });
    this.chart = h('div', { class: 'bars', 'data-testid': 'usage-chart' });
    this.body = h('div', {}, notice('loading', 'Loading the usage…'));
    this.el = h(
      'div',
      { class: 'page page-usage', 'data-testid': 'page-usage' },
      h(
        'header',
        { class: 'page-head' },
        h('div', {}, h('h1', { text: 'Usage and showback' }), this.sub),
        h(
          'div',
          { class: 'toolbar' },
          this.groupBy.el,
          this.range.el,
          this.select.el,
          this.csv,
          this.csvState,
        ),
      ),
      h('section', { class: 'panel' }, this.chart),
      h('section', { class: 'panel' }, this.body),
    );
    this.mark();
    void this.load();
  }

  update(route: Route): boolean {
    if (route.view !== 'usage') return false;
    this.route = route;
    this.mark();
    void this.load();
    return true;
  }

  key(): boolean {
    return false;
  }

  destroy(): void {
    this.ctl?.abort();
  }

  private mark(): void {
    this.groupBy.mark(this.route.groupBy);
    this.range.mark(this.route.range);
  }

  private async load(): Promise<void> {
    this.ctl?.abort();
    const ctl = new AbortController();
    this.ctl = ctl;
    const { groupBy, range } = this.route;
    // Whole minutes: the usage comes from the 1-minute rollup.
    const to = Math.floor(Date.now() / 60_000) * 60_000;
    const from = to - RANGE_MS[range];
    let res: UsageResult;
    try {
      const picked = await pickCluster(
        this.route.cluster,
        ctl.signal,
        '/api/v1/clusters/{cluster_id}/usage',
      );
      this.select.set(picked.ids, picked.cluster);
      if (picked.cluster === undefined) {
        if (picked.problem !== undefined) this.body.replaceChildren(problem(picked.problem));
        this.chart.replaceChildren();
        return;
      }
      const q = {
        cluster: picked.cluster,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
      };
      res = await api.usage(q.cluster, { group_by: groupBy, from: q.from, to: q.to }, ctl.signal);
      this.query = q;
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      this.body.replaceChildren(notice('error', `Cannot load the usage: ${message(err)}`));
      this.chart.replaceChildren();
      return;
    }
    this.show(res, groupBy);
  }

  private show(res: UsageResult, by: GroupBy): void {
    const cur = res.currency;
    setText(
      this.sub,
      `${res.cluster_id} · ${formatDateTime(parseTime(res.from))} – ${formatDateTime(parseTime(res.to))} · ${formatNumber(res.total.gpu_hours)} GPU-hours · ${formatNumber(res.total.energy_kwh)} kWh${res.total.cost === null ? '' : ` · ${money(res.total.cost.total, cur)}`}`,
    );
    this.el.dataset.groups = String(res.groups.length);
    this.el.dataset.groupBy = by;
    this.showChart(res, by);
    if (res.groups.length === 0) {
      this.body.replaceChildren(
        notice('empty', 'No GPU was allocated to a workload in this range.'),
        this.unallocated(res),
      );
      return;
    }
    const num = (
      key: string,
      title: string,
      get: (g: UsageGroup) => number | null | undefined,
    ): Column<UsageGroup> => ({
      title,
      key,
      num: true,
      cell: (g) => {
        const v = get(g);
        return v === null || v === undefined
          ? '–'
          : h('span', { 'data-value': v, text: formatNumber(v) });
      },
    });
    const keys: Column<UsageGroup>[] = [];
    if (by === 'namespace' || by === 'pod')
      keys.push({ title: 'Namespace', key: 'namespace', cell: (g) => g.namespace ?? '(none)' });
    if (by === 'pod') keys.push({ title: 'Pod', key: 'pod', cell: (g) => g.pod ?? '(none)' });
    if (by === 'host')
      keys.push({
        title: 'Host',
        key: 'host_id',
        cell: (g) =>
          g.host_id === undefined
            ? '?'
            : h('a', {
                href: Router.href({
                  view: 'host',
                  cluster: res.cluster_id,
                  host: g.host_id,
                  metric: 'DCGM_FI_DEV_GPU_UTIL',
                }),
                text: g.host_id,
              }),
      });
    if (by === 'gpu') {
      keys.push({ title: 'Host', key: 'host_id', cell: (g) => g.host_id ?? '?' });
      keys.push({
        title: 'GPU',
        key: 'gpu_id',
        cell: (g) =>
          g.host_id === undefined || g.gpu_id === undefined
            ? '?'
            : h('a', {
                href: Router.href({
                  view: 'gpu',
                  cluster: res.cluster_id,
                  host: g.host_id,
                  gpu: g.gpu_id,
                  range: DEFAULT_RANGE,
                }),
                text: `GPU ${g.gpu_id}`,
                title: g.uuid ?? undefined,
              }),
      });
    }
    const columns: Column<UsageGroup>[] = [
      ...keys,
      num('gpu_hours', 'GPU-hours', (g) => g.gpu_hours),
      num('avg_utilization_percent', 'Avg utilisation %', (g) => g.avg_utilization_percent),
      num('energy_kwh', 'Energy kWh', (g) => g.energy_kwh),
    ];
    if (by === 'host' || by === 'gpu') {
      columns.push(
        num('unallocated_gpu_hours', 'Unallocated GPU-hours', (g) => g.unallocated_gpu_hours),
      );
      columns.push(
        num('unallocated_energy_kwh', 'Unallocated kWh', (g) => g.unallocated_energy_kwh),
      );
    }
    const prices = res.prices;
    if (prices !== null) {
      columns.push(num('cost_energy', `Energy cost ${cur}`, (g) => g.cost?.energy));
      columns.push(num('cost_gpu_hours', `GPU-hour cost ${cur}`, (g) => g.cost?.gpu_hours));
      columns.push(num('cost_total', `Cost ${cur}`, (g) => g.cost?.total));
    }
    const foot = columns.map((c, i): string | HTMLElement => {
      if (i === 0) return 'Total';
      const t = res.total;
      const v =
        c.key === 'gpu_hours'
          ? t.gpu_hours
          : c.key === 'energy_kwh'
            ? t.energy_kwh
            : c.key === 'cost_energy'
              ? t.cost?.energy
              : c.key === 'cost_gpu_hours'
                ? t.cost?.gpu_hours
                : c.key === 'cost_total'
                  ? t.cost?.total
                  : undefined;
      return v === undefined ? '' : h('strong', { 'data-value': v, text: formatNumber(v) });
    });
    this.body.replaceChildren(
      table(columns, res.groups, 'usage-table', foot),
      this.unallocated(res),
      h('p', {
        class: 'hint',
        text:
          prices === null
            ? 'No prices are set (ENERGY_PRICE_PER_KWH, GPU_HOUR_PRICE): no cost columns.'
            : `Prices: ${money(prices.energy_per_kwh, cur)} per kWh, ${money(prices.gpu_hour, cur)} per GPU-hour.`,
      }),
    );
  }

  private unallocated(res: UsageResult): HTMLElement {
    return h('p', {
      class: 'hint',
      'data-testid': 'usage-unallocated',
      'data-gpu-hours': res.unallocated.gpu_hours,
      'data-energy-kwh': res.unallocated.energy_kwh,
      text: `Unallocated (GPUs reporting without a workload): ${formatNumber(res.unallocated.gpu_hours)} GPU-hours, ${formatNumber(res.unallocated.energy_kwh)} kWh.`,
    });
  }

  /** Horizontal bars of GPU-hours and energy per group, the largest MAX_BARS groups. */
  private showChart(res: UsageResult, by: GroupBy): void {
    const groups = res.groups.slice(0, MAX_BARS);
    if (groups.length === 0) {
      this.chart.replaceChildren();
      return;
    }
    const maxH = Math.max(...groups.map((g) => g.gpu_hours), 1e-9);
    const maxE = Math.max(...groups.map((g) => g.energy_kwh), 1e-9);
    const bar = (v: number, max: number, color: string, text: string): HTMLElement => {
      // Styles set as properties: the Content-Security-Policy refuses style attributes.
      const b = h('div', { class: 'bar' });
      b.style.width = `${((v / max) * 100).toFixed(2)}%`;
      b.style.background = color;
      return h('div', { class: 'bar-track' }, b, h('span', { class: 'bar-text', text }));
    };
    const more = res.groups.length - MAX_BARS;
    this.chart.replaceChildren(
      h(
        'div',
        { class: 'bars-head' },
        h('span', { text: GROUP_LABEL[by] }),
        h('span', { text: 'GPU-hours' }),
        h('span', { text: 'Energy (kWh)' }),
      ),
      ...groups.map((g) =>
        h(
          'div',
          { class: 'bar-row', 'data-testid': 'usage-bar' },
          h('span', { class: 'bar-label', title: groupName(g, by), text: groupName(g, by) }),
          bar(g.gpu_hours, maxH, lineColor(0), formatNumber(g.gpu_hours)),
          bar(g.energy_kwh, maxE, lineColor(1), formatNumber(g.energy_kwh)),
        ),
      ),
    );
    if (more > 0)
      this.chart.append(
        h('div', { class: 'more', text: `and ${plural(more, 'more group')} in the table` }),
      );
  }

  private async downloadCsv(): Promise<void> {
    const q = this.query;
    if (q === undefined) return;
    const by = this.route.groupBy;
    this.csv.disabled = true;
    setText(this.csvState, 'Downloading…');
    try {
      const { blob, filename } = await download(
        `/api/v1/clusters/${encodeURIComponent(q.cluster)}/usage`,
        { group_by: by, from: q.from, to: q.to, format: 'csv' },
        `nexus-usage-${q.cluster}-${by}.csv`,
      );
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      window.setTimeout(() => {
        URL.revokeObjectURL(href);
      }, 10_000);
      setText(this.csvState, '');
    } catch (err) {
      setText(this.csvState, `Download failed: ${message(err)}`);
    } finally {
      this.csv.disabled = false;
    }
  }
}

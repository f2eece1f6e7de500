/**
 * The GPU page (`#/gpu/{cluster}/{host}/{gpu}?range=1h`): identity, labels and pods from
 * GET /api/v1/clusters/{c}/hosts/{h}/gpus/{g}; one chart per metric from GET /api/v1/telemetry with
 * a step that keeps each chart under ~600 points; live readings of this GPU tail the charts and
 * the latest values. A MIG-partitioned GPU lists its instances; the charts are of the whole GPU or
 * of one instance (`gpu_instance=`), as picked; a GPU reported only by its instances opens on the
 * first.
 */
import { api, ApiError, isAbort, message, type GpuDetail, type SeriesResult } from './api.js';
import { h, notice, setText } from './dom.js';
import { parseTime } from './format.js';
import { GpuInfo } from './gpu-info.js';
import type { LiveReading } from './live.js';
import { MetricChart } from './metric-chart.js';
import { byMetricOrder, DEFAULT_HEAT_METRIC } from './metrics.js';
import { RANGES, type RangeKey, type Route } from './route.js';
import { Router } from './router.js';
import { RANGE_MS, stepFor } from './series.js';
import { onThemeChange } from './theme.js';
import type { Context, Crumb, View } from './view.js';

type GpuRoute = Extract<Route, { view: 'gpu' }>;

export class GpuView implements View {
  readonly el: HTMLElement;
  crumbs: readonly Crumb[];
  private route: GpuRoute;
  private readonly charts = new Map<string, MetricChart>();
  private readonly chartsGrid: HTMLElement;
  private readonly chartsState: HTMLElement;
  private readonly stepInfo: HTMLElement;
  private readonly rangeButtons = new Map<RangeKey, HTMLButtonElement>();
  private readonly title: HTMLElement;
  private readonly subtitle: HTMLElement;
  private readonly resize: ResizeObserver;
  private readonly stopTheme: () => void;
  private readonly info = new GpuInfo((instance) => {
    this.pick(instance);
  });
  private readonly chartTarget: HTMLElement;
  /** Whose charts are drawn: a MIG instance's, or the whole GPU's (undefined). */
  private instance: number | undefined;
  /** Whether the charts were picked (by hand, or for a GPU reported only by its instances). */
  private picked = false;
  private detail: GpuDetail | undefined;
  private instanceTimer: number | undefined;
  private unsubscribe: (() => void) | undefined;
  private detailCtl: AbortController | undefined;
  private seriesCtl: AbortController | undefined;
  private seriesLoaded = false;
  private pending: LiveReading[] = [];

  constructor(
    route: GpuRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.crumbs = this.makeCrumbs();
    this.title = h('h1', { text: `GPU ${route.gpu}` });
    this.subtitle = h('div', { class: 'page-sub', text: route.host });
    const ranges = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Time range' });
    for (const r of RANGES) {
      const b = h('button', { type: 'button', role: 'radio', 'data-range': r, text: r });
      b.addEventListener('click', () => {
        this.ctx.router.go({ ...this.route, range: r }, { replace: true });
      });
      this.rangeButtons.set(r, b);
      ranges.append(b);
    }
    this.stepInfo = h('span', { class: 'hint', 'data-testid': 'step-info' });
    this.chartTarget = h('span', { class: 'hint', 'data-testid': 'chart-target' });
    this.chartsState = h('div', { class: 'charts-state' });
    this.chartsGrid = h('div', { class: 'charts', 'data-testid': 'charts' });
    this.el = h(
      'div',
      { class: 'page page-gpu', 'data-testid': 'page-gpu' },
      h(
        'header',
        { class: 'page-head' },
        h('div', {}, this.title, this.subtitle),
        h('div', { class: 'toolbar' }, this.chartTarget, this.stepInfo, ranges),
      ),
      h(
        'div',
        { class: 'gpu-layout' },
        h(
          'section',
          { class: 'charts-area', 'aria-label': 'Metrics over time' },
          this.chartsState,
          this.chartsGrid,
        ),
        this.info.el,
      ),
    );
    this.resize = new ResizeObserver((entries) => {
      for (const e of entries) {
        const metric = (e.target as HTMLElement).dataset.metric;
        if (metric !== undefined) this.charts.get(metric)?.resize(e.contentRect.width);
      }
    });
    this.stopTheme = onThemeChange(() => {
      for (const c of this.charts.values()) c.retheme();
    });
    this.markRange();
    this.chartsState.append(notice('loading', 'Loading the charts…'));
    this.subscribe();
    void this.loadDetail();
    void this.loadSeries();
  }

  update(route: Route): boolean {
    if (
      route.view !== 'gpu' ||
      route.cluster !== this.route.cluster ||
      route.host !== this.route.host ||
      route.gpu !== this.route.gpu
    ) {
      return false;
    }
    const rangeChanged = route.range !== this.route.range;
    this.route = route;
    if (rangeChanged) {
      this.markRange();
      void this.loadSeries();
    }
    return true;
  }

  key(e: KeyboardEvent): boolean {
    if (e.key !== '[' && e.key !== ']') return false;
    const i = RANGES.indexOf(this.route.range) + (e.key === ']' ? 1 : -1);
    const r = RANGES[Math.max(0, Math.min(RANGES.length - 1, i))];
    if (r !== undefined) this.ctx.router.go({ ...this.route, range: r }, { replace: true });
    return true;
  }

  destroy(): void {
    clearInterval(this.instanceTimer);
    this.unsubscribe?.();
    this.detailCtl?.abort();
    this.seriesCtl?.abort();
    this.resize.disconnect();
    this.stopTheme();
    this.info.destroy();
    for (const c of this.charts.values()) c.destroy();
  }

  private makeCrumbs(model?: string | null): readonly Crumb[] {
    const r = this.route;
    return [
      {
        label: 'Fleet',
        href: Router.href({ view: 'overview', cluster: r.cluster, metric: DEFAULT_HEAT_METRIC }),
      },
      {
        label: r.host,
        href: Router.href({
          view: 'host',
          cluster: r.cluster,
          host: r.host,
          metric: DEFAULT_HEAT_METRIC,
        }),
      },
      { label: model === undefined || model === null ? `GPU ${r.gpu}` : `GPU ${r.gpu} (${model})` },
    ];
  }

  private markRange(): void {
    for (const [r, b] of this.rangeButtons) {
      b.setAttribute('aria-checked', String(r === this.route.range));
      b.classList.toggle('active', r === this.route.range);
    }
  }

  private subscribe(): void {
    const r = this.route;
    this.unsubscribe = this.ctx.live.subscribe(
      // The GPU's own readings (live push carries no MIG instance's unless asked for it).
      { cluster_id: r.cluster, host_id: [r.host], gpu_id: [r.gpu] },
      {
        onReadings: (readings) => {
          if (!this.seriesLoaded) this.pending.push(...readings);
          else this.applyLive(readings);
        },
        onResync: () => {
          void this.loadDetail();
          void this.loadSeries();
        },
      },
    );
  }

  private applyLive(readings: readonly LiveReading[]): void {
    for (const r of readings) {
      if (r.host_id !== this.route.host || r.gpu_id !== this.route.gpu) continue;
      if (r.gpu_instance_id !== undefined) continue;
      const t = parseTime(r.timestamp);
      this.info.setLatest(r.metric, r.value, t);
      // A MIG instance's charts are reloaded every step instead (instanceTimer).
      if (this.instance === undefined)
        this.chartFor(r.metric, this.info.unitOf(r.metric)).append(t, r.value);
    }
    this.alignCharts();
  }

  /** Draws the charts of a MIG instance (undefined: of the whole GPU). */
  private pick(instance: number | undefined): void {
    this.picked = true;
    if (instance === this.instance) return;
    this.instance = instance;
    for (const c of this.charts.values()) {
      this.resize.unobserve(c.el);
      c.destroy();
      c.el.remove();
    }
    this.charts.clear();
    clearInterval(this.instanceTimer);
    if (instance !== undefined) {
      // Its readings are not pushed live: its charts are read again every step (10 s at least).
      const every = Math.max(10_000, stepFor(RANGE_MS[this.route.range]).ms);
      this.instanceTimer = window.setInterval(() => {
        void this.loadSeries();
      }, every);
    }
    this.showTarget();
    this.chartsState.replaceChildren(notice('loading', 'Loading the charts…'));
    void this.loadSeries();
  }

  private showTarget(): void {
    this.info.picked(this.instance);
    const i = this.detail?.mig_instances.find((x) => x.gpu_instance_id === this.instance);
    this.el.dataset.instance = this.instance === undefined ? 'gpu' : String(this.instance);
    setText(
      this.chartTarget,
      this.instance === undefined
        ? (this.detail?.mig_instances.length ?? 0) > 0
          ? `Charts of GPU ${this.route.gpu}`
          : ''
        : `Charts of MIG instance ${this.instance}${i?.profile === null || i?.profile === undefined ? '' : ` (${i.profile})`}`,
    );
  }

  /** One time window for all charts: from the earliest data in the range to the latest. */
  private alignCharts(): void {
    let first = Number.POSITIVE_INFINITY;
    let last = Number.NEGATIVE_INFINITY;
    for (const c of this.charts.values()) {
      const e = c.extent;
      if (e.first < first) first = e.first;
      if (e.last > last) last = e.last;
    }
    if (!Number.isFinite(first) || !Number.isFinite(last)) return;
    const from = Math.max(first, last - RANGE_MS[this.route.range]);
    const to = last > from ? last : from + 60_000;
    for (const c of this.charts.values()) c.setWindow(from, to);
  }

  private chartFor(metric: string, unit: string): MetricChart {
    let c = this.charts.get(metric);
    if (c !== undefined) return c;
    c = new MetricChart(metric, unit);
    const range = RANGE_MS[this.route.range];
    c.setPoints([], stepFor(range).ms, range, unit);
    this.charts.set(metric, c);
    // Keep the charts in metric order.
    const names = [...this.charts.keys()].sort(byMetricOrder);
    const next = names[names.indexOf(metric) + 1];
    const before = next === undefined ? null : (this.charts.get(next)?.el ?? null);
    this.chartsGrid.insertBefore(c.el, before);
    this.resize.observe(c.el);
    this.chartsState.replaceChildren();
    return c;
  }

  private async loadDetail(): Promise<void> {
    this.detailCtl?.abort();
    const ctl = new AbortController();
    this.detailCtl = ctl;
    const r = this.route;
    let d: GpuDetail;
    try {
      d = await api.gpu(r.cluster, r.host, r.gpu, ctl.signal);
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      const text = message(err);
      if (err instanceof ApiError && err.status === 404) {
        this.el.replaceChildren(
          notice('error', text),
          h(
            'p',
            {},
            h('a', {
              href: Router.href({
                view: 'host',
                cluster: r.cluster,
                host: r.host,
                metric: DEFAULT_HEAT_METRIC,
              }),
              text: `GPUs of ${r.host}`,
            }),
            ' · ',
            h('a', { href: '#/', text: 'Fleet overview' }),
          ),
        );
        return;
      }
      this.info.failed(text, () => void this.loadDetail());
      return;
    }
    setText(this.title, `GPU ${d.gpu_id}${d.model === null ? '' : ` · ${d.model}`}`);
    setText(this.subtitle, `${d.host_id} · ${d.cluster_id}`);
    this.detail = d;
    this.info.show(d);
    const first = d.mig_instances[0];
    // A GPU reported only by its MIG instances: draw the first one's charts.
    if (!this.picked && first !== undefined && d.latest.length === 0)
      this.pick(first.gpu_instance_id);
    else this.showTarget();
    this.crumbs = this.makeCrumbs(d.model);
    this.ctx.crumbsChanged();
  }

  private async loadSeries(): Promise<void> {
    this.seriesCtl?.abort();
    const ctl = new AbortController();
    this.seriesCtl = ctl;
    const r = this.route;
    const rangeMs = RANGE_MS[r.range];
    const step = stepFor(rangeMs);
    setText(this.stepInfo, `one point per ${step.text}`);
    this.seriesLoaded = false;
    const instance = this.instance;
    let res: SeriesResult;
    try {
      const params = {
        cluster_id: r.cluster,
        host_id: r.host,
        gpu_id: String(r.gpu),
        from: `-${r.range}`,
        step: step.text,
        agg: 'avg' as const,
        ...(instance === undefined ? {} : { gpu_instance: String(instance) }),
      };
      res = await api.series(params, ctl.signal);
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      this.seriesLoaded = true;
      this.chartsState.replaceChildren(
        notice('error', `Cannot load the charts: ${message(err)}`, {
          label: 'Retry',
          run: () => void this.loadSeries(),
        }),
      );
      return;
    }
    setText(
      this.stepInfo,
      `one point per ${step.text}${res.source === 'rollup_1m' ? ' (1-minute rollup)' : ''}`,
    );
    const seen = new Set<string>();
    for (const s of res.series) {
      if (s.host_id !== r.host || s.gpu_id !== r.gpu || s.gpu_instance_id !== instance) continue;
      seen.add(s.metric);
      const chart = this.chartFor(s.metric, s.unit);
      chart.setPoints(
        s.points.map((p) => ({ t: parseTime(p.timestamp), v: p.value, count: p.count })),
        step.ms,
        rangeMs,
        s.unit,
      );
    }
    for (const [metric, chart] of this.charts)
      if (!seen.has(metric)) chart.setPoints([], step.ms, rangeMs);
    this.seriesLoaded = true;
    const pending = this.pending;
    this.pending = [];
    this.applyLive(pending);
    if (this.charts.size === 0) {
      this.chartsState.replaceChildren(
        notice('empty', `Waiting for data: this GPU has no readings in the last ${r.range}.`),
      );
    } else {
      this.chartsState.replaceChildren();
    }
    this.el.dataset.range = r.range;
    this.el.dataset.step = step.text;
  }
}

/**
 * The host page (`#/host/{cluster}/{host}?metric=..`): its GPUs side by side, each a panel with its
 * latest values and a sparkline of the chosen metric over the last 30 minutes, linking to the GPU
 * page. Live readings of the host keep the panels current.
 */
import {
  api,
  ApiError,
  isAbort,
  message,
  type HostDetail,
  type LatestResult,
  type SeriesResult,
} from './api.js';
import { frameScheduler, h, notice, setText } from './dom.js';
import { formatAgo, formatTime, parseTime, plural } from './format.js';
import type { LiveReading } from './live.js';
import {
  HEAT_METRICS,
  HEAT_SCALES,
  heatMetricOfKey,
  metricLabel,
  metricShort,
  type HeatMetric,
} from './metrics.js';
import { DEFAULT_RANGE, type Route } from './route.js';
import { Router } from './router.js';
import { stepFor } from './series.js';
import { GpuCard } from './gpu-card.js';
import { MultiGpuPanels } from './multi-gpu.js';
import { onThemeChange } from './theme.js';
import type { Context, Crumb, View } from './view.js';

type HostRoute = Extract<Route, { view: 'host' }>;

const WINDOW_MS = 30 * 60_000;
const SPARK_POINTS = 120;

export class HostView implements View {
  readonly el: HTMLElement;
  readonly crumbs: readonly Crumb[];
  private route: HostRoute;
  private readonly grid: HTMLElement;
  private readonly state: HTMLElement;
  private readonly sub: HTMLElement;
  private readonly updated: HTMLElement;
  private readonly metricButtons = new Map<HeatMetric, HTMLButtonElement>();
  private readonly panels = new Map<number, GpuCard>();
  private readonly multi: MultiGpuPanels;
  private readonly render = frameScheduler(() => {
    for (const p of this.panels.values()) p.render(this.route.metric);
  });
  private readonly stopTheme: () => void;
  private readonly ticker: number;
  private unsubscribe: (() => void) | undefined;
  private ctl: AbortController | undefined;
  private sparkCtl: AbortController | undefined;
  private newest = Number.NaN;

  constructor(
    route: HostRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.crumbs = [
      {
        label: 'Fleet',
        href: Router.href({ view: 'overview', cluster: route.cluster, metric: route.metric }),
      },
      { label: route.host },
    ];
    const metrics = h('div', {
      class: 'segmented',
      role: 'radiogroup',
      'aria-label': 'Sparkline metric',
    });
    HEAT_METRICS.forEach((m, i) => {
      const b = h(
        'button',
        { type: 'button', role: 'radio', title: `${metricShort(m)} (key ${i + 1})` },
        metricShort(m),
        h('kbd', { text: i + 1 }),
      );
      b.addEventListener('click', () => {
        this.setMetric(m);
      });
      this.metricButtons.set(m, b);
      metrics.append(b);
    });
    this.sub = h('div', { class: 'page-sub', text: route.cluster });
    this.updated = h('span', { class: 'hint', 'data-testid': 'host-updated' });
    this.state = h('div', {});
    this.grid = h('div', { class: 'gpu-grid', 'data-testid': 'gpu-panels' });
    this.multi = new MultiGpuPanels(route.range ?? DEFAULT_RANGE, (range) => {
      this.ctx.router.go({ ...this.route, range }, { replace: true });
    });
    this.el = h(
      'div',
      { class: 'page page-host', 'data-testid': 'page-host' },
      h(
        'header',
        { class: 'page-head' },
        h('div', {}, h('h1', { text: route.host }), this.sub),
        h('div', { class: 'toolbar' }, this.updated, metrics),
      ),
      this.state,
      this.grid,
      this.multi.el,
    );
    this.markMetric();
    this.stopTheme = onThemeChange(() => {
      for (const p of this.panels.values()) p.spark.redraw();
    });
    this.ticker = window.setInterval(() => {
      this.showUpdated();
    }, 1000);
    this.state.append(notice('loading', 'Loading the GPUs of this host…'));
    this.subscribe();
    void this.load();
  }

  update(route: Route): boolean {
    if (
      route.view !== 'host' ||
      route.cluster !== this.route.cluster ||
      route.host !== this.route.host
    )
      return false;
    const changed = route.metric !== this.route.metric;
    const rangeChanged = route.range !== this.route.range;
    this.route = route;
    if (rangeChanged) this.showMulti();
    if (changed) {
      this.markMetric();
      this.render.schedule();
      void this.loadSparklines();
    }
    return true;
  }

  key(e: KeyboardEvent): boolean {
    const m = heatMetricOfKey(e.key);
    if (m !== undefined) {
      this.setMetric(m);
      return true;
    }
    if (
      e.key === 'ArrowLeft' ||
      e.key === 'ArrowRight' ||
      e.key === 'ArrowUp' ||
      e.key === 'ArrowDown'
    ) {
      const cards = [...this.panels.values()].map((p) => p.el);
      if (cards.length === 0) return false;
      const i = cards.findIndex((c) => c === document.activeElement);
      const perRow = Math.max(1, Math.round(this.grid.clientWidth / (cards[0]?.offsetWidth ?? 1)));
      const step =
        e.key === 'ArrowLeft'
          ? -1
          : e.key === 'ArrowRight'
            ? 1
            : e.key === 'ArrowUp'
              ? -perRow
              : perRow;
      const next = i < 0 ? 0 : Math.max(0, Math.min(cards.length - 1, i + step));
      cards[next]?.focus();
      return true;
    }
    return false;
  }

  destroy(): void {
    this.unsubscribe?.();
    this.ctl?.abort();
    this.sparkCtl?.abort();
    this.render.cancel();
    this.multi.destroy();
    this.stopTheme();
    clearInterval(this.ticker);
    for (const p of this.panels.values()) p.destroy();
  }

  private setMetric(m: HeatMetric): void {
    if (m !== this.route.metric)
      this.ctx.router.go({ ...this.route, metric: m }, { replace: true });
  }

  private markMetric(): void {
    for (const [m, b] of this.metricButtons) {
      b.setAttribute('aria-checked', String(m === this.route.metric));
      b.classList.toggle('active', m === this.route.metric);
    }
  }

  private subscribe(): void {
    this.unsubscribe = this.ctx.live.subscribe(
      { cluster_id: this.route.cluster, host_id: [this.route.host] },
      {
        onReadings: (readings) => {
          this.applyLive(readings);
        },
        onResync: () => void this.load(),
      },
    );
  }

  private async load(): Promise<void> {
    this.ctl?.abort();
    const ctl = new AbortController();
    this.ctl = ctl;
    const { cluster, host } = this.route;
    let detail: HostDetail;
    let latest: LatestResult;
    try {
      [detail, latest] = await Promise.all([
        api.host(cluster, host, ctl.signal),
        api.latest({ cluster_id: cluster, host_id: host }, ctl.signal),
      ]);
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      const text = message(err);
      this.state.replaceChildren(
        err instanceof ApiError && err.status === 404
          ? notice('error', text)
          : notice('error', `Cannot load this host: ${text}`, {
              label: 'Retry',
              run: () => void this.load(),
            }),
      );
      return;
    }
    const models = [
      ...new Set(detail.gpus.map((g) => g.model).filter((m): m is string => m !== null)),
    ];
    setText(
      this.sub,
      [plural(detail.gpus.length, 'GPU'), ...models, `cluster ${cluster}`].join(' · '),
    );
    if (detail.gpus.length === 0) {
      this.state.replaceChildren(
        notice('empty', 'Waiting for data: this host has reported no GPU yet.'),
      );
      return;
    }
    this.state.replaceChildren();
    for (const g of [...detail.gpus].sort((a, b) => a.gpu_id - b.gpu_id))
      this.panelFor(g.gpu_id, g.model, g.uuid);
    for (const r of latest.readings)
      this.setValue(r.gpu_id, r.metric, r.value, parseTime(r.timestamp), r.unit);
    this.render.schedule();
    this.showUpdated();
    this.showMulti();
    await this.loadSparklines();
  }

  private showMulti(): void {
    if (this.panels.size === 0) return;
    this.multi.show(
      { cluster: this.route.cluster, host: this.route.host, gpus: this.panels.size },
      this.route.range ?? DEFAULT_RANGE,
    );
  }

  private async loadSparklines(): Promise<void> {
    this.sparkCtl?.abort();
    const ctl = new AbortController();
    this.sparkCtl = ctl;
    const metric = this.route.metric;
    const step = stepFor(WINDOW_MS, SPARK_POINTS);
    let res: SeriesResult;
    try {
      res = await api.series(
        {
          cluster_id: this.route.cluster,
          host_id: this.route.host,
          metric,
          from: '-30m',
          step: step.text,
          agg: 'avg',
        },
        ctl.signal,
      );
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      for (const p of this.panels.values()) p.spark.canvas.title = `No history: ${message(err)}`;
      return;
    }
    const s = HEAT_SCALES[metric];
    for (const p of this.panels.values()) {
      const series = res.series.find((x) => x.gpu_id === p.gpu && x.metric === metric);
      p.spark.set(
        (series?.points ?? []).map((x) => ({ t: parseTime(x.timestamp), v: x.value })),
        s.min,
        s.max,
        WINDOW_MS,
      );
      p.spark.canvas.setAttribute('aria-label', `${metricLabel(metric)}, last 30 minutes`);
    }
  }

  private applyLive(readings: readonly LiveReading[]): void {
    const step = stepFor(WINDOW_MS, SPARK_POINTS);
    for (const r of readings) {
      if (r.host_id !== this.route.host) continue;
      const t = parseTime(r.timestamp);
      this.setValue(r.gpu_id, r.metric, r.value, t);
      if (r.metric === this.route.metric)
        this.panels.get(r.gpu_id)?.spark.append(t, r.value, step.ms);
    }
    this.render.schedule();
  }

  private setValue(gpu: number, metric: string, value: number, time: number, unit?: string): void {
    if (this.panels.get(gpu)?.set(metric, value, time, unit) === true && !(time <= this.newest))
      this.newest = time;
  }

  private panelFor(gpu: number, model: string | null, uuid: string | null): GpuCard {
    const existing = this.panels.get(gpu);
    if (existing !== undefined) return existing;
    const { cluster, host } = this.route;
    const href = Router.href({ view: 'gpu', cluster, host, gpu, range: DEFAULT_RANGE });
    const p = new GpuCard(gpu, href, model, uuid, metricLabel(this.route.metric));
    this.panels.set(gpu, p);
    const after = [...this.panels.keys()].sort((a, b) => a - b).find((k) => k > gpu);
    this.grid.insertBefore(p.el, after === undefined ? null : (this.panels.get(after)?.el ?? null));
    return p;
  }

  private showUpdated(): void {
    setText(
      this.updated,
      Number.isNaN(this.newest)
        ? ''
        : `newest reading ${formatTime(this.newest)} (${formatAgo(this.newest)})`,
    );
  }
}

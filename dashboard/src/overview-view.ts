/**
 * The overview page (`#/?metric=..&cluster=..`): fleet cards polled from /api/v1/overview, and the
 * heatmap of every GPU of a cluster, loaded from /api/v1/telemetry/latest and kept live over the
 * WebSocket.
 */
import { api, isAbort, message, type ClusterList } from './api.js';
import { h, notice, setText } from './dom.js';
import { FleetStats } from './fleet-stats.js';
import { formatAgo, formatTime, plural } from './format.js';
import { Heatmap } from './heatmap.js';
import { Legend } from './legend.js';
import { HeatmapFeed } from './heatmap-feed.js';
import {
  defaultUnit,
  HEAT_METRICS,
  heatMetricOfKey,
  metricShort,
  type HeatMetric,
} from './metrics.js';
import { MultiGpuPanels } from './multi-gpu.js';
import { poll, type Poller } from './poll.js';
import { DEFAULT_RANGE, type Route } from './route.js';
import type { Context, Crumb, View } from './view.js';

const OVERVIEW_EVERY_MS = 5000;
const RETRY_EMPTY_MS = 3000;

type OverviewRoute = Extract<Route, { view: 'overview' }>;

export class OverviewView implements View {
  readonly el: HTMLElement;
  readonly crumbs: readonly Crumb[] = [{ label: 'Fleet' }];
  private route: OverviewRoute;
  private cluster: string | undefined;
  private readonly stats = new FleetStats();
  private readonly heatmap: Heatmap;
  private readonly legend = new Legend();
  private readonly state: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly clusterSelect: HTMLSelectElement;
  private readonly metricButtons = new Map<HeatMetric, HTMLButtonElement>();
  private readonly overviewPoll: Poller;
  private readonly feed: HeatmapFeed;
  private readonly multi: MultiGpuPanels;
  private clusterGpus = 0;
  private loadCtl: AbortController | undefined;
  private retryTimer: number | undefined;
  private readonly ticker: number;
  private destroyed = false;
  private currentUnit: string | undefined;

  constructor(
    route: OverviewRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.heatmap = new Heatmap(route.metric, defaultUnit(route.metric), {
      openGpu: (host, gpu) => {
        this.openGpu(host, gpu);
      },
      openHost: (host) => {
        this.openHost(host);
      },
      scaleChanged: (min, max) => {
        this.legend.set(this.route.metric, this.unit(), min, max);
      },
    });
    this.feed = new HeatmapFeed(ctx.live, {
      loaded: (cells, unit) => {
        if (unit !== undefined) {
          this.currentUnit = unit;
          this.heatmap.setUnit(unit);
        }
        this.heatmap.load(cells);
        this.afterData();
      },
      updated: (cells) => {
        this.heatmap.apply(cells);
        this.afterData();
      },
      failed: (err) => {
        this.setState(
          'error',
          `Cannot load the heatmap: ${message(err)}`,
          () => void this.loadHeatmap(),
        );
        this.retryLater(() => void this.loadHeatmap(), 10_000);
      },
    });
    this.state = h('div', { class: 'heatmap-state' });
    this.summary = h('div', { class: 'heatmap-summary', 'data-testid': 'heatmap-summary' });
    this.clusterSelect = h('select', { class: 'select', 'aria-label': 'Cluster' });
    this.clusterSelect.addEventListener('change', () => {
      this.ctx.router.go({ ...this.route, cluster: this.clusterSelect.value });
    });
    const metrics = h('div', {
      class: 'segmented',
      role: 'radiogroup',
      'aria-label': 'Heatmap metric',
    });
    HEAT_METRICS.forEach((m, i) => {
      const b = h(
        'button',
        {
          type: 'button',
          role: 'radio',
          'data-metric': m,
          title: `${metricShort(m)} (key ${i + 1})`,
        },
        metricShort(m),
        h('kbd', { text: i + 1 }),
      );
      b.addEventListener('click', () => {
        this.setMetric(m);
      });
      this.metricButtons.set(m, b);
      metrics.append(b);
    });
    this.multi = new MultiGpuPanels(route.range ?? DEFAULT_RANGE, (range) => {
      this.ctx.router.go({ ...this.route, range }, { replace: true });
    });
    this.el = h(
      'div',
      { class: 'page page-overview', 'data-testid': 'page-overview' },
      this.stats.cards,
      h(
        'section',
        { class: 'panel' },
        h(
          'div',
          { class: 'panel-head' },
          h('h2', { text: 'GPU heatmap' }),
          this.summary,
          h('div', { class: 'toolbar' }, metrics, this.clusterSelect),
        ),
        h(
          'div',
          { class: 'panel-sub' },
          this.legend.el,
          h('span', {
            class: 'hint',
            text: 'Click a GPU for its charts, a host name for its GPUs. Arrow keys and Enter work too.',
          }),
        ),
        this.state,
        this.heatmap.el,
      ),
      this.multi.el,
      h(
        'div',
        { class: 'columns' },
        h(
          'section',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', { text: 'Alerts' })),
          this.stats.alerts,
        ),
        h(
          'section',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', { text: 'Collectors' })),
          this.stats.collectors,
        ),
      ),
    );
    this.markMetric();
    this.legend.set(route.metric, this.unit(), 0, 1);
    this.overviewPoll = poll(async (signal) => {
      try {
        this.stats.show(await api.overview(signal));
        return true;
      } catch (err) {
        if (isAbort(err, signal)) return true;
        this.stats.failed(message(err));
        return false;
      }
    }, OVERVIEW_EVERY_MS);
    this.ticker = window.setInterval(() => {
      this.showSummary();
    }, 1000);
    this.setState('loading', 'Loading the fleet…');
    void this.start();
  }

  update(route: Route): boolean {
    if (route.view !== 'overview') return false;
    const old = this.route;
    this.route = route;
    const clusterChanged = route.cluster !== old.cluster && route.cluster !== this.cluster;
    const metricChanged = route.metric !== old.metric;
    if (clusterChanged || metricChanged) {
      this.markMetric();
      this.currentUnit = undefined;
      this.heatmap.setMetric(route.metric, defaultUnit(route.metric));
      this.legend.set(route.metric, this.unit(), 0, 1);
    }
    if (clusterChanged) void this.start();
    else if (metricChanged) void this.loadHeatmap();
    if (!clusterChanged && route.range !== old.range) this.showMulti();
    return true;
  }

  key(e: KeyboardEvent): boolean {
    const m = heatMetricOfKey(e.key);
    if (m !== undefined) {
      this.setMetric(m);
      return true;
    }
    if (
      ['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home', 'End', 'Enter'].includes(e.key)
    ) {
      if (e.key === 'Enter' && document.activeElement !== this.heatmap.canvas) return false;
      if (document.activeElement !== this.heatmap.canvas) this.heatmap.focus();
      else this.heatmap.key(e);
      return true;
    }
    return false;
  }

  destroy(): void {
    this.destroyed = true;
    this.overviewPoll.stop();
    this.feed.stop();
    this.multi.destroy();
    this.loadCtl?.abort();
    this.heatmap.destroy();
    clearInterval(this.ticker);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
  }

  private unit(): string {
    return this.currentUnit ?? defaultUnit(this.route.metric);
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

  private openGpu(host: string, gpu: number): void {
    if (this.cluster === undefined) return;
    this.ctx.router.go({ view: 'gpu', cluster: this.cluster, host, gpu, range: DEFAULT_RANGE });
  }

  private openHost(host: string): void {
    if (this.cluster === undefined) return;
    this.ctx.router.go({ view: 'host', cluster: this.cluster, host, metric: this.route.metric });
  }

  private setState(
    kind: 'loading' | 'empty' | 'error' | 'ok',
    text = '',
    retry?: () => void,
  ): void {
    if (kind === 'ok') {
      this.state.replaceChildren();
      this.state.hidden = true;
      this.heatmap.el.hidden = false;
      return;
    }
    this.state.hidden = false;
    this.state.replaceChildren(
      notice(kind, text, retry === undefined ? undefined : { label: 'Retry', run: retry }),
    );
    this.heatmap.el.hidden = this.heatmap.gpus === 0;
  }

  private retryLater(fn: () => void, ms: number): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.destroyed) fn();
    }, ms);
  }

  /** Picks the cluster (the URL's, or the first), then loads its heatmap. */
  private async start(): Promise<void> {
    this.loadCtl?.abort();
    const ctl = new AbortController();
    this.loadCtl = ctl;
    let list: ClusterList;
    try {
      list = await api.clusters(ctl.signal);
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      this.setState('error', `Cannot list the clusters: ${message(err)}`, () => void this.start());
      this.retryLater(() => void this.start(), 10_000);
      return;
    }
    const ids = list.clusters.map((c) => c.cluster_id).sort();
    this.clusterSelect.replaceChildren(...ids.map((id) => h('option', { value: id, text: id })));
    this.clusterSelect.disabled = ids.length < 2;
    this.clusterSelect.hidden = ids.length === 0;
    const wanted = this.route.cluster;
    if (wanted !== undefined && !ids.includes(wanted)) {
      this.setState(
        'error',
        `There is no cluster "${wanted}"${ids.length > 0 ? ` (clusters: ${ids.join(', ')})` : ''}.`,
      );
      return;
    }
    const cluster = wanted ?? ids[0];
    if (cluster === undefined) {
      this.setState('empty', 'Waiting for data: no GPU has reported yet.');
      this.retryLater(() => void this.start(), RETRY_EMPTY_MS);
      return;
    }
    this.cluster = cluster;
    this.clusterSelect.value = cluster;
    this.clusterGpus = list.clusters.find((c) => c.cluster_id === cluster)?.gpus ?? 0;
    this.showMulti();
    await this.loadHeatmap();
  }

  /** The multi-GPU panels of the selected cluster (bands beyond MAX_LINES GPUs). */
  private showMulti(): void {
    if (this.cluster === undefined) return;
    const gpus = Math.max(this.clusterGpus, this.heatmap.gpus);
    this.multi.show({ cluster: this.cluster, gpus }, this.route.range ?? DEFAULT_RANGE);
  }

  /** Loads the heatmap from REST and follows its live readings. */
  private async loadHeatmap(): Promise<void> {
    const cluster = this.cluster;
    if (cluster === undefined) return;
    const metric = this.route.metric;
    if (this.heatmap.gpus === 0)
      this.setState('loading', `Loading ${metricShort(metric).toLowerCase()} of every GPU…`);
    await this.feed.start(cluster, metric);
  }

  private afterData(): void {
    if (this.heatmap.gpus === 0) {
      this.setState(
        'empty',
        `Waiting for data: no GPU of ${this.cluster ?? 'this cluster'} has reported ${metricShort(this.route.metric).toLowerCase()} yet.`,
      );
    } else {
      this.setState('ok');
    }
    this.showSummary();
  }

  private showSummary(): void {
    if (this.heatmap.gpus === 0) {
      setText(this.summary, '');
      return;
    }
    const t = this.heatmap.newest();
    setText(
      this.summary,
      `${plural(this.heatmap.gpus, 'GPU')} on ${plural(this.heatmap.hosts, 'host')} · newest reading ${formatTime(t)} (${formatAgo(t)})`,
    );
    this.summary.dataset.gpus = String(this.heatmap.gpus);
    this.summary.dataset.hosts = String(this.heatmap.hosts);
    this.summary.dataset.newest = Number.isNaN(t) ? '' : new Date(t).toISOString();
  }
}

/**
 * The overview page (`#/?metric=..&cluster=..`): fleet cards polled from /api/v1/overview, and the
 * heatmap of every GPU of a cluster, loaded from /api/v1/telemetry/latest and kept live over the
 * WebSocket.
 *
 * Above AGGREGATE_ABOVE GPUs (or drilled down, `&in=prefix|from|to`), the heatmap is the
 * aggregated one of GET /api/v1/clusters/{c}/heatmap: a cell per group of hosts or per host,
 * polled every 5 s; click or Enter drills down (group -> its hosts -> a host's GPUs -> the host
 * page), each step a history entry, Escape or Back goes up.
 */
import { AggregateFeed } from './aggregate-feed.js';
import { AggregateMap } from './aggregate-map.js';
import {
  api,
  isAbort,
  message,
  type ClusterList,
  type HeatCell,
  type HeatmapAnswer,
} from './api.js';
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
import { DEFAULT_RANGE, drillLabel, formatRoute, type Drill, type Route } from './route.js';
import type { Context, Crumb, View } from './view.js';

const OVERVIEW_EVERY_MS = 5000;
/** Above this many GPUs in the cluster, the heatmap draws hosts or groups of hosts. */
export const AGGREGATE_ABOVE = 2000;
const RETRY_EMPTY_MS = 3000;

type OverviewRoute = Extract<Route, { view: 'overview' }>;

export class OverviewView implements View {
  readonly el: HTMLElement;
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
  private readonly aggMap: AggregateMap;
  private readonly aggFeed: AggregateFeed;
  private readonly hint: HTMLElement;
  /** What the heatmap shows: every GPU of a small cluster, or the aggregated heatmap's answer. */
  private mode: 'gpus' | 'aggregated' = 'gpus';
  private answer: HeatmapAnswer | undefined;
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
    this.aggMap = new AggregateMap(route.metric, defaultUnit(route.metric), {
      open: (cell, level) => {
        this.drillInto(cell, level);
      },
      scaleChanged: (min, max) => {
        this.legend.set(this.route.metric, this.unit(), min, max);
      },
    });
    this.aggMap.el.hidden = true;
    this.aggFeed = new AggregateFeed(ctx.live, {
      aggregated: (answer) => {
        this.answer = answer;
        if (answer.unit !== '') this.currentUnit = answer.unit;
        this.heatmap.el.hidden = true;
        this.aggMap.show(answer);
        this.afterData();
      },
      gpus: (answer, cells) => {
        this.answer = answer;
        if (answer.unit !== '') {
          this.currentUnit = answer.unit;
          this.heatmap.setUnit(answer.unit);
        }
        this.aggMap.clear();
        this.aggMap.el.hidden = true;
        this.heatmap.load(cells);
        this.afterData();
      },
      updated: (cells) => {
        this.heatmap.apply(cells);
        this.afterData();
      },
      failed: (err) => {
        this.setState('error', `Cannot load the heatmap: ${message(err)}`, () => {
          this.aggFeed.now();
        });
      },
    });
    this.hint = h('span', { class: 'hint' });
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
        h('div', { class: 'panel-sub' }, this.legend.el, this.hint),
        this.state,
        this.heatmap.el,
        this.aggMap.el,
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
    this.showHint();
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

  get crumbs(): readonly Crumb[] {
    const drill = this.route.drill ?? [];
    if (drill.length === 0) return [{ label: 'Fleet' }];
    const { drill: _all, ...top } = this.route;
    return [
      { label: 'Fleet', href: formatRoute(top) },
      ...drill.map((d, i) => ({
        label: drillLabel(d),
        href: formatRoute({ ...top, drill: drill.slice(0, i + 1) }),
      })),
    ];
  }

  update(route: Route): boolean {
    if (route.view !== 'overview') return false;
    const old = this.route;
    this.route = route;
    const clusterChanged = route.cluster !== old.cluster && route.cluster !== this.cluster;
    const metricChanged = route.metric !== old.metric;
    const drillChanged = formatRoute({ ...route, metric: old.metric }) !== formatRoute(old);
    if (clusterChanged || metricChanged) {
      this.markMetric();
      this.currentUnit = undefined;
      this.heatmap.setMetric(route.metric, defaultUnit(route.metric));
      this.aggMap.setMetric(route.metric, defaultUnit(route.metric));
      this.legend.set(route.metric, this.unit(), 0, 1);
    }
    if (clusterChanged) void this.start();
    else if (metricChanged || drillChanged) this.reload();
    if (!clusterChanged && route.range !== old.range) this.showMulti();
    return true;
  }

  key(e: KeyboardEvent): boolean {
    const m = heatMetricOfKey(e.key);
    if (m !== undefined) {
      this.setMetric(m);
      return true;
    }
    if (!this.aggMap.el.hidden) return this.aggMap.key(e);
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
    this.aggFeed.stop();
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
      if (this.aggMap.count > 0) this.aggMap.el.hidden = false;
      else this.heatmap.el.hidden = false;
      return;
    }
    this.state.hidden = false;
    this.state.replaceChildren(
      notice(kind, text, retry === undefined ? undefined : { label: 'Retry', run: retry }),
    );
    this.heatmap.el.hidden = this.heatmap.gpus === 0 || this.aggMap.count > 0;
    this.aggMap.el.hidden = this.aggMap.count === 0;
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
    this.reload();
  }

  /** The heatmap again (cluster, metric or drill-down changed), in the mode the cluster needs. */
  private reload(): void {
    const aggregated = this.clusterGpus > AGGREGATE_ABOVE || (this.route.drill ?? []).length > 0;
    this.mode = aggregated ? 'aggregated' : 'gpus';
    this.showHint();
    if (!aggregated) {
      this.aggFeed.stop();
      this.aggMap.clear();
      this.aggMap.el.hidden = true;
      this.answer = undefined;
      this.multi.el.hidden = false;
      this.showMulti();
      void this.loadHeatmap();
      return;
    }
    // A line per GPU of thousands is unreadable and costly: the panels are on the host pages.
    this.multi.el.hidden = true;
    this.feed.stop();
    const cluster = this.cluster;
    if (cluster === undefined) return;
    this.answer = undefined;
    this.aggMap.clear();
    this.heatmap.load([]);
    this.setState(
      'loading',
      `Loading ${metricShort(this.route.metric).toLowerCase()} of the fleet…`,
    );
    const drill = this.route.drill ?? [];
    this.aggFeed.start(cluster, this.route.metric, drill[drill.length - 1]);
  }

  /** One step down the aggregated heatmap: a group's hosts, or a host's GPUs. */
  private drillInto(cell: HeatCell, level: 'host' | 'group'): void {
    const step: Drill =
      level === 'host' && cell.host_id !== undefined
        ? { prefix: cell.host_id, from: cell.host_id, to: cell.host_id }
        : {
            prefix: cell.prefix ?? '',
            ...(cell.from === undefined ? {} : { from: cell.from }),
            ...(cell.to === undefined ? {} : { to: cell.to }),
          };
    this.ctx.router.go({ ...this.route, drill: [...(this.route.drill ?? []), step] });
  }

  private showHint(): void {
    setText(
      this.hint,
      this.mode === 'gpus'
        ? 'Click a GPU for its charts, a host name for its GPUs. Arrow keys and Enter work too.'
        : 'Colour: average of the latest values. Click a cell (or Enter) for what is in it; Esc goes back up.',
    );
  }

  /** The multi-GPU panels of the selected cluster (bands beyond MAX_LINES GPUs). */
  private showMulti(): void {
    if (this.cluster === undefined || this.mode === 'aggregated') return;
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
    // For the timing helper (test/helpers/dashboard-timing.ts): when the heatmap last showed data
    // (one mark, replaced: live readings come every second).
    performance.clearMarks('nexus:heatmap-shown');
    performance.mark('nexus:heatmap-shown');
    if (this.aggMap.count > 0) {
      this.setState('ok');
      this.showSummary();
      return;
    }
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
    const a = this.answer;
    if (a !== undefined && this.mode === 'aggregated' && a.level !== 'gpu') {
      const cells =
        a.level === 'host' ? plural(a.cells.length, 'host cell') : plural(a.cells.length, 'group');
      const t = Date.parse(a.as_of);
      setText(
        this.summary,
        `${plural(a.gpus, 'GPU')} on ${plural(a.hosts, 'host')} · ${cells}${a.prefix === '' ? '' : ` under ${a.prefix}`} · as of ${formatTime(t)} (${formatAgo(t)})`,
      );
      this.summary.dataset.gpus = String(a.gpus);
      this.summary.dataset.hosts = String(a.hosts);
      this.summary.dataset.level = a.level;
      this.summary.dataset.newest = a.as_of;
      return;
    }
    delete this.summary.dataset.level;
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

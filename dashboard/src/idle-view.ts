/**
 * The idle GPUs page (`#/idle?cluster=..`): GPUs that hold a workload but have stayed below the
 * utilisation threshold for the idle time (GET /api/v1/clusters/{c}/idle, docs/fleet.md), most
 * wasted GPU-hours first, each linking to its GPU page; the total wasted. Reloaded every RELOAD_MS.
 */
import { api, isAbort, message, type IdleGpu, type IdleResult } from './api.js';
import { h, notice, setText } from './dom.js';
import { clusterSelect, pickCluster, problem, table, type Column } from './fleet-page.js';
import {
  formatAgo,
  formatDateTime,
  formatNumber,
  formatSpan,
  parseTime,
  plural,
} from './format.js';
import { metricShort } from './metrics.js';
import { poll, type Poller } from './poll.js';
import { DEFAULT_RANGE, type Route } from './route.js';
import { Router } from './router.js';
import type { Context, Crumb, View } from './view.js';

type IdleRoute = Extract<Route, { view: 'idle' }>;

const RELOAD_MS = 30_000;

export class IdleView implements View {
  readonly el: HTMLElement;
  readonly crumbs: readonly Crumb[] = [{ label: 'Fleet', href: '#/' }, { label: 'Idle GPUs' }];
  private route: IdleRoute;
  private readonly body: HTMLElement;
  private readonly sub: HTMLElement;
  private readonly select: ReturnType<typeof clusterSelect>;
  private poller: Poller | undefined;

  constructor(
    route: IdleRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.select = clusterSelect((cluster) => {
      this.ctx.router.go({ view: 'idle', cluster });
    });
    this.sub = h('div', { class: 'page-sub', 'data-testid': 'idle-summary' });
    this.body = h('div', {}, notice('loading', 'Loading the idle GPUs…'));
    this.el = h(
      'div',
      { class: 'page page-idle', 'data-testid': 'page-idle' },
      h(
        'header',
        { class: 'page-head' },
        h('div', {}, h('h1', { text: 'Idle GPUs' }), this.sub),
        h('div', { class: 'toolbar' }, this.select.el),
      ),
      h('section', { class: 'panel' }, this.body),
    );
    this.start();
  }

  update(route: Route): boolean {
    if (route.view !== 'idle') return false;
    if (route.cluster !== this.route.cluster) {
      this.route = route;
      this.start();
    }
    return true;
  }

  key(): boolean {
    return false;
  }

  destroy(): void {
    this.poller?.stop();
  }

  private start(): void {
    this.poller?.stop();
    this.poller = poll((signal) => this.load(signal), RELOAD_MS);
  }

  private async load(signal: AbortSignal): Promise<boolean> {
    let res: IdleResult;
    try {
      const picked = await pickCluster(
        this.route.cluster,
        signal,
        '/api/v1/clusters/{cluster_id}/idle',
      );
      this.select.set(picked.ids, picked.cluster);
      if (picked.cluster === undefined) {
        if (picked.problem !== undefined) this.body.replaceChildren(problem(picked.problem));
        return picked.problem?.kind !== 'error';
      }
      res = await api.idle(picked.cluster, signal);
    } catch (err) {
      if (isAbort(err, signal)) return true;
      this.body.replaceChildren(notice('error', `Cannot load the idle GPUs: ${message(err)}`));
      return false;
    }
    this.show(res);
    return true;
  }

  private show(res: IdleResult): void {
    const rule = `below ${formatNumber(res.threshold_percent)} % for ${formatSpan(res.idle_for_seconds)} or more`;
    setText(
      this.sub,
      `${res.cluster_id} · ${plural(res.count, 'GPU')} allocated but idle (${rule}) · ${formatNumber(res.wasted_gpu_hours)} GPU-hours wasted`,
    );
    this.el.dataset.count = String(res.count);
    this.el.dataset.wasted = String(res.wasted_gpu_hours);
    if (res.gpus.length === 0) {
      this.body.replaceChildren(
        notice('empty', `No GPU is idle: every GPU with a workload is busier than ${rule}.`),
      );
      return;
    }
    const cluster = res.cluster_id;
    const columns: Column<IdleGpu>[] = [
      { title: 'Host', key: 'host', cell: (g) => g.host_id },
      {
        title: 'GPU',
        key: 'gpu',
        cell: (g) =>
          h('a', {
            href: Router.href({
              view: 'gpu',
              cluster,
              host: g.host_id,
              gpu: g.gpu_id,
              range: DEFAULT_RANGE,
            }),
            text: `GPU ${g.gpu_id}`,
            title: g.uuid ?? undefined,
          }),
      },
      { title: 'Namespace', key: 'namespace', cell: (g) => g.namespace ?? '–' },
      { title: 'Pod', key: 'pod', cell: (g) => g.pod ?? '–' },
      {
        title: 'Utilisation',
        key: 'util',
        num: true,
        cell: (g) =>
          h('span', {
            title: metricShort(g.utilization_metric),
            text: `${formatNumber(g.utilization_percent)} %`,
          }),
      },
      {
        title: 'Idle since',
        key: 'since',
        cell: (g) =>
          h('span', {
            title: formatDateTime(parseTime(g.idle_since)),
            'data-time': g.idle_since,
            text: `${formatSpan(g.idle_seconds)} (${formatAgo(parseTime(g.idle_since))})`,
          }),
      },
      {
        title: 'Wasted GPU-hours',
        key: 'wasted',
        num: true,
        cell: (g) =>
          h('span', { 'data-value': g.wasted_gpu_hours, text: formatNumber(g.wasted_gpu_hours) }),
      },
    ];
    this.body.replaceChildren(
      table(columns, res.gpus, 'idle-table', [
        'Total',
        plural(res.count, 'GPU'),
        '',
        '',
        '',
        '',
        h('strong', {
          'data-value': res.wasted_gpu_hours,
          text: formatNumber(res.wasted_gpu_hours),
        }),
      ]),
    );
  }
}

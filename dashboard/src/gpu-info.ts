/**
 * The GPU page's side panels: the latest value of each metric (kept live), the GPU's identity, the
 * pods it served and its Prometheus labels.
 */
import type { GpuDetail } from './api.js';
import { frameScheduler, h, notice, setText } from './dom.js';
import { formatAgo, formatDateTime, formatTime, formatValue, parseTime } from './format.js';
import { byMetricOrder, DEFAULT_HEAT_METRIC, defaultUnit, metricLabel } from './metrics.js';
import { Router } from './router.js';

interface Latest {
  value: number;
  time: number;
  unit: string;
}

function panel(title: string, ...body: Node[]): HTMLElement {
  return h(
    'section',
    { class: 'panel' },
    h('div', { class: 'panel-head' }, h('h2', { text: title })),
    ...body,
  );
}

export class GpuInfo {
  readonly el: HTMLElement;
  private readonly latest = new Map<string, Latest>();
  private readonly latestBox = h('div', { class: 'latest', 'data-testid': 'latest' });
  private readonly latestTime = h('div', { class: 'latest-time', 'data-testid': 'latest-time' });
  private readonly identity = h('dl', { class: 'facts' });
  private readonly labels = h('div', { class: 'chips' });
  private readonly pods = h('div', { class: 'list' });
  private lastSeen: HTMLElement | undefined;
  private readonly frame = frameScheduler(() => {
    this.renderLatest();
  });
  private readonly ticker: number;

  constructor() {
    this.el = h(
      'aside',
      { class: 'sidebar' },
      panel('Latest values', this.latestTime, this.latestBox),
      panel('GPU', this.identity),
      panel('Pods served', this.pods),
      panel('Labels', this.labels),
    );
    this.latestBox.append(notice('loading', 'Loading…'));
    // "3 s ago" keeps counting.
    this.ticker = window.setInterval(() => {
      this.renderLatestTime();
    }, 1000);
  }

  destroy(): void {
    this.frame.cancel();
    clearInterval(this.ticker);
  }

  /** A reading (REST or live); older than the one shown, it only teaches the unit. */
  setLatest(metric: string, value: number, time: number, unit?: string): void {
    const old = this.latest.get(metric);
    if (old === undefined || time >= old.time) {
      this.latest.set(metric, { value, time, unit: unit ?? old?.unit ?? defaultUnit(metric) });
    } else if (unit !== undefined) {
      old.unit = unit;
    }
    this.frame.schedule();
  }

  unitOf(metric: string): string {
    return this.latest.get(metric)?.unit ?? defaultUnit(metric);
  }

  failed(text: string, retry: () => void): void {
    this.latestBox.replaceChildren(
      notice('error', `Cannot load this GPU: ${text}`, { label: 'Retry', run: retry }),
    );
  }

  show(d: GpuDetail): void {
    for (const l of d.latest) this.setLatest(l.metric, l.value, parseTime(l.timestamp), l.unit);
    const row = (k: string, v: Node | string): HTMLElement[] => [
      h('dt', { text: k }),
      h('dd', {}, v),
    ];
    this.lastSeen = h('span', { text: formatDateTime(parseTime(d.last_seen)) });
    const hostHref = Router.href({
      view: 'host',
      cluster: d.cluster_id,
      host: d.host_id,
      metric: DEFAULT_HEAT_METRIC,
    });
    this.identity.replaceChildren(
      ...row('Model', d.model ?? '–'),
      ...row('UUID', h('span', { class: 'mono', text: d.uuid ?? '–' })),
      ...row('Host', h('a', { href: hostHref, text: d.host_id })),
      ...row('Device', h('span', { class: 'mono', text: d.device ?? '–' })),
      ...row('Index', String(d.gpu_id)),
      ...row('Cluster', d.cluster_id),
      ...row('First seen', formatDateTime(parseTime(d.first_seen))),
      ...row('Last seen', this.lastSeen),
    );
    const labels = Object.entries(d.labels).sort(([a], [b]) => (a < b ? -1 : 1));
    this.labels.replaceChildren(
      ...(labels.length === 0
        ? [notice('empty', 'No labels.')]
        : labels.map(([k, v]) =>
            h(
              'span',
              { class: 'chip', title: `${k}=${v}` },
              h('span', { class: 'chip-k', text: k }),
              h('span', { class: 'chip-v', text: v }),
            ),
          )),
    );
    this.showPods(d);
  }

  private showPods(d: GpuDetail): void {
    if (d.workloads.length === 0) {
      this.pods.replaceChildren(
        notice('empty', 'No pods recorded: the readings of this GPU named no Kubernetes pod.'),
      );
      return;
    }
    const th = (text: string): HTMLElement => h('th', { text });
    this.pods.replaceChildren(
      h(
        'table',
        { class: 'table' },
        h('thead', {}, h('tr', {}, th('Pod'), th('Namespace'), th('Container'), th('Last seen'))),
        h(
          'tbody',
          {},
          ...d.workloads.map((w) =>
            h(
              'tr',
              {},
              h('td', { class: 'mono', text: w.pod }),
              h('td', { text: w.namespace }),
              h('td', { text: w.container }),
              h('td', {
                title: `first seen ${formatDateTime(parseTime(w.first_seen))}`,
                text: formatAgo(parseTime(w.last_seen)),
              }),
            ),
          ),
        ),
      ),
    );
  }

  private renderLatest(): void {
    const names = [...this.latest.keys()].sort(byMetricOrder);
    if (names.length === 0) {
      this.latestBox.replaceChildren(notice('empty', 'Waiting for data: no reading yet.'));
      this.renderLatestTime();
      return;
    }
    const rows: HTMLElement[] = [];
    for (const m of names) {
      const l = this.latest.get(m);
      if (l === undefined) continue;
      rows.push(
        h(
          'tr',
          { 'data-metric': m },
          h('th', { scope: 'row', text: metricLabel(m) }),
          h('td', {
            class: 'num',
            'data-testid': 'latest-value',
            text: formatValue(l.value, l.unit),
          }),
          h('td', { class: 'muted', title: formatDateTime(l.time), text: formatTime(l.time) }),
        ),
      );
    }
    this.latestBox.replaceChildren(
      h('table', { class: 'table latest-table' }, h('tbody', {}, ...rows)),
    );
    this.renderLatestTime();
  }

  /** The newest reading's time: shown, and as an ISO attribute (data-time) for tools. */
  private renderLatestTime(): void {
    let t = Number.NEGATIVE_INFINITY;
    for (const l of this.latest.values()) if (l.time > t) t = l.time;
    if (t === Number.NEGATIVE_INFINITY) {
      setText(this.latestTime, '');
      return;
    }
    setText(this.latestTime, `Last reading ${formatTime(t)} (${formatAgo(t)})`);
    this.latestTime.dataset.time = new Date(t).toISOString();
    if (this.lastSeen !== undefined) setText(this.lastSeen, formatDateTime(t));
  }
}

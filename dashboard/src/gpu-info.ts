/**
 * The GPU page's side panels: the latest value of each metric (kept live), the GPU's identity, its
 * MIG instances (profile, utilisation, pod; a button draws an instance's charts), the pods it
 * served and its Prometheus labels.
 */
import type { GpuDetail } from './api.js';
import { frameScheduler, h, notice, setText } from './dom.js';
import {
  formatAgo,
  formatDateTime,
  formatNumber,
  formatTime,
  formatValue,
  parseTime,
} from './format.js';
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

type MigInstance = GpuDetail['mig_instances'][number];

/** Utilisation in percent as the panel shows it ('–' when the API has none). */
function utilText(v: number | null): string {
  return v === null ? '–' : `${formatNumber(Math.round(v * 10) / 10)}%`;
}

export class GpuInfo {
  readonly el: HTMLElement;
  private readonly migPanel: HTMLElement;
  private readonly mig = h('div', { class: 'list', 'data-testid': 'mig-instances' });
  private migButtons = new Map<number | undefined, HTMLButtonElement>();
  /** The GPU has no readings of its own, only its MIG instances'. */
  private migOnly = false;
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

  /** `onPick`: draw the charts of a MIG instance (undefined: of the whole GPU). */
  constructor(private readonly onPick: (instance: number | undefined) => void = () => undefined) {
    this.migPanel = panel('MIG instances', this.mig);
    this.migPanel.hidden = true;
    this.el = h(
      'aside',
      { class: 'sidebar' },
      panel('Latest values', this.latestTime, this.latestBox),
      this.migPanel,
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
    this.showMig(d);
    this.migOnly = d.latest.length === 0 && d.mig_instances.length > 0;
    // Drawn now even without a value (a GPU reported only by its MIG instances has none).
    this.frame.schedule();
  }

  /** Marks which charts are drawn: the GPU's (undefined) or a MIG instance's. */
  picked(instance: number | undefined): void {
    for (const [i, b] of this.migButtons) {
      b.setAttribute('aria-pressed', String(i === instance));
      b.classList.toggle('active', i === instance);
    }
  }

  private showMig(d: GpuDetail): void {
    const instances = d.mig_instances;
    this.migPanel.hidden = instances.length === 0;
    this.migButtons = new Map();
    if (instances.length === 0) {
      this.mig.replaceChildren();
      return;
    }
    const th = (text: string): HTMLElement => h('th', { text });
    const chartsButton = (instance: number | undefined, label: string): HTMLButtonElement => {
      const b = h('button', {
        type: 'button',
        class: 'btn',
        'data-testid': 'mig-charts',
        'data-instance': instance === undefined ? 'gpu' : String(instance),
        'aria-pressed': 'false',
        title:
          instance === undefined
            ? 'Draw the charts of the whole GPU'
            : `Draw the charts of MIG instance ${instance}`,
        text: label,
      });
      b.addEventListener('click', () => {
        this.onPick(instance);
      });
      this.migButtons.set(instance, b);
      return b;
    };
    const pod = (i: MigInstance): string => {
      const w = i.workloads[0];
      return w === undefined ? '–' : `${w.namespace === '' ? '' : `${w.namespace}/`}${w.pod}`;
    };
    this.mig.replaceChildren(
      h(
        'table',
        { class: 'table' },
        h('thead', {}, h('tr', {}, th('Charts of'), th('Profile'), th('Util.'), th('Pod'))),
        h(
          'tbody',
          {},
          h(
            'tr',
            { 'data-instance': 'gpu' },
            h('td', {}, chartsButton(undefined, 'GPU')),
            h('td', { class: 'muted', text: 'whole' }),
            h('td', { class: 'num', text: utilText(d.utilization_percent) }),
            h('td', { text: '' }),
          ),
          ...instances.map((i) =>
            h(
              'tr',
              { 'data-testid': 'mig-row', 'data-instance': String(i.gpu_instance_id) },
              h('td', {}, chartsButton(i.gpu_instance_id, `MIG ${i.gpu_instance_id}`)),
              h('td', { class: 'mono', 'data-testid': 'mig-profile', text: i.profile ?? '–' }),
              h('td', {
                class: 'num',
                'data-testid': 'mig-util',
                text: utilText(i.utilization_percent),
              }),
              h('td', { class: 'mono', 'data-testid': 'mig-pod', text: pod(i) }),
            ),
          ),
        ),
      ),
    );
  }

  private showPods(d: GpuDetail): void {
    if (d.workloads.length === 0) {
      this.pods.replaceChildren(
        notice(
          'empty',
          d.mig_instances.length > 0
            ? "No pods on the whole GPU: its MIG instances' pods are listed with them."
            : 'No pods recorded: the readings of this GPU named no Kubernetes pod.',
        ),
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
      this.latestBox.replaceChildren(
        notice(
          'empty',
          this.migOnly
            ? 'No readings of the whole GPU: its MIG instances report theirs (below).'
            : 'Waiting for data: no reading yet.',
        ),
      );
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

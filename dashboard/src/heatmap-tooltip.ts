/** The heatmap's tooltip: host, GPU, value with its unit, time of the reading, uuid. */
import { h } from './dom.js';
import { formatAgo, formatDateTime, formatTime, formatValue } from './format.js';
import { metricLabel } from './metrics.js';

export interface CellInfo {
  readonly host: string;
  readonly gpu: number;
  readonly present: boolean;
  readonly metric: string;
  readonly unit: string;
  /** NaN: no reading yet. */
  readonly value: number;
  readonly time: number;
  readonly uuid: string | null;
}

/** The cell in one sentence, for screen readers. */
export function describeCell(c: CellInfo): string {
  if (!c.present) return `${c.host}: no GPU ${c.gpu}`;
  const value = Number.isNaN(c.value) ? 'no data' : formatValue(c.value, c.unit);
  return `${c.host}, GPU ${c.gpu}: ${metricLabel(c.metric)} ${value}, at ${formatTime(c.time)}`;
}

export class HeatmapTooltip {
  readonly el: HTMLElement;

  constructor() {
    this.el = h('div', { class: 'tooltip', role: 'tooltip', 'data-testid': 'heatmap-tooltip' });
    this.el.hidden = true;
  }

  /** Fills the tooltip; placed next to (x, y), inside `box` (width, height) when it fits. */
  show(c: CellInfo, x: number, y: number, box: { width: number; height: number }): void {
    this.fill(c);
    const tw = this.el.offsetWidth;
    const th = this.el.offsetHeight;
    const left = x + 14 + tw > box.width ? Math.max(0, x - 14 - tw) : x + 14;
    const top = y + 14 + th > box.height ? Math.max(0, y - 14 - th) : y + 14;
    this.el.style.transform = `translate(${Math.round(left)}px, ${Math.round(top)}px)`;
  }

  /** New content in place (a live reading of the cell shown). */
  fill(c: CellInfo): void {
    this.el.replaceChildren(
      h('div', { class: 'tt-title' }, h('strong', { text: c.host }), ` · GPU ${c.gpu}`),
      h(
        'div',
        { class: 'tt-value' },
        `${metricLabel(c.metric)}: `,
        h('strong', { text: Number.isNaN(c.value) ? 'no data' : formatValue(c.value, c.unit) }),
      ),
      h('div', {
        class: 'tt-time',
        title: formatDateTime(c.time),
        text: Number.isNaN(c.time) ? '' : `${formatTime(c.time)} · ${formatAgo(c.time)}`,
      }),
      h('div', { class: 'tt-uuid', text: c.uuid ?? '' }),
      h('div', { class: 'tt-hint', text: 'click or Enter: GPU page' }),
    );
    this.el.hidden = false;
  }

  hide(): void {
    this.el.hidden = true;
  }
}

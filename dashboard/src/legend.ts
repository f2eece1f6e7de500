/** The heatmap's legend: the colour scale with its ends and middle, and the "no data" colour. */
import { gradient } from './colors.js';
import { h, setText } from './dom.js';
import { formatValue } from './format.js';
import { HEAT_SCALES, metricLabel, type HeatMetric } from './metrics.js';

export class Legend {
  readonly el: HTMLElement;
  private readonly bar: HTMLElement;
  private readonly title: HTMLElement;
  private readonly ticks: readonly HTMLElement[];

  constructor() {
    this.title = h('span', { class: 'legend-title' });
    this.bar = h('div', { class: 'legend-bar', 'aria-hidden': 'true' });
    this.ticks = [h('span'), h('span'), h('span')];
    this.el = h(
      'div',
      { class: 'legend', 'data-testid': 'legend' },
      this.title,
      h(
        'div',
        { class: 'legend-scale' },
        this.bar,
        h('div', { class: 'legend-ticks' }, ...this.ticks),
      ),
      h(
        'span',
        { class: 'legend-empty' },
        h('span', { class: 'swatch swatch-empty', 'aria-hidden': 'true' }),
        'no data',
      ),
    );
  }

  set(metric: HeatMetric, unit: string, min: number, max: number): void {
    setText(this.title, metricLabel(metric));
    this.bar.style.background = gradient(HEAT_SCALES[metric].palette);
    const values = [min, (min + max) / 2, max];
    this.ticks.forEach((t, i) => {
      setText(t, formatValue(values[i] ?? 0, unit));
    });
    this.el.setAttribute(
      'aria-label',
      `${metricLabel(metric)} from ${formatValue(min, unit)} to ${formatValue(max, unit)}`,
    );
  }
}

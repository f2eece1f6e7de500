/**
 * A GPU's panel on the host page: its latest values (the chosen metric large, the other heatmap
 * metrics small) and a sparkline of the chosen metric; the whole panel links to the GPU page.
 */
import { h } from './dom.js';
import { formatValue } from './format.js';
import { defaultUnit, HEAT_METRICS, metricShort, type HeatMetric } from './metrics.js';
import { Sparkline } from './sparkline.js';

interface Value {
  value: number;
  time: number;
  unit: string;
}

export class GpuCard {
  readonly el: HTMLAnchorElement;
  readonly spark: Sparkline;
  private readonly big = h('div', { class: 'gpu-card-big' });
  private readonly facts = h('dl', { class: 'gpu-card-facts' });
  private readonly values = new Map<string, Value>();

  constructor(
    readonly gpu: number,
    href: string,
    model: string | null,
    uuid: string | null,
    sparkLabel: string,
  ) {
    this.spark = new Sparkline(sparkLabel);
    this.el = h(
      'a',
      { class: 'gpu-card', href, 'data-gpu': gpu, title: uuid ?? undefined },
      h(
        'div',
        { class: 'gpu-card-head' },
        h('strong', { text: `GPU ${gpu}` }),
        h('span', { class: 'muted', text: model?.replace(/^NVIDIA /, '') ?? '' }),
      ),
      this.big,
      this.spark.canvas,
      this.facts,
    );
  }

  /** Keeps a reading unless a newer one of the metric is already shown; true when kept. */
  set(metric: string, value: number, time: number, unit?: string): boolean {
    const old = this.values.get(metric);
    if (old !== undefined && time < old.time) return false;
    this.values.set(metric, { value, time, unit: unit ?? old?.unit ?? defaultUnit(metric) });
    return true;
  }

  render(chosen: HeatMetric): void {
    const v = this.values.get(chosen);
    this.big.replaceChildren(
      h('span', { class: 'gpu-card-metric', text: metricShort(chosen) }),
      h('span', {
        class: 'gpu-card-value',
        text: v === undefined ? 'no data' : formatValue(v.value, v.unit),
      }),
    );
    this.facts.replaceChildren(
      ...HEAT_METRICS.filter((x) => x !== chosen).flatMap((x) => {
        const xv = this.values.get(x);
        return [
          h('dt', { text: metricShort(x) }),
          h('dd', { text: xv === undefined ? '–' : formatValue(xv.value, xv.unit) }),
        ];
      }),
    );
  }

  destroy(): void {
    this.spark.destroy();
  }
}

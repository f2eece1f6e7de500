/**
 * Colour scales for the heatmap: perceptually ordered palettes that stay readable on light and dark
 * backgrounds, turned into 256-entry lookup tables once (a cell's colour is an array index).
 */
export type PaletteName = 'viridis' | 'plasma' | 'turbo';

const STOPS: Readonly<Record<PaletteName, readonly string[]>> = {
  viridis: [
    '#440154',
    '#482878',
    '#3e4989',
    '#31688e',
    '#26828e',
    '#1f9e89',
    '#35b779',
    '#6ece58',
    '#b5de2b',
    '#fde725',
  ],
  plasma: [
    '#0d0887',
    '#46039f',
    '#7201a8',
    '#9c179e',
    '#bd3786',
    '#d8576b',
    '#ed7953',
    '#fb9f3a',
    '#fdca26',
    '#f0f921',
  ],
  // Turbo without its darkest ends: cold is blue, hot is dark red.
  turbo: [
    '#4145ab',
    '#4675ed',
    '#39a2fc',
    '#1bcfd4',
    '#24eca6',
    '#61fc6c',
    '#a4fc3b',
    '#d1e834',
    '#f3c63a',
    '#fe9b2d',
    '#f36315',
    '#d93806',
    '#b11901',
  ],
};

const SIZE = 256;
const luts = new Map<PaletteName, readonly string[]>();

function rgb(hex: string): [number, number, number] {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function build(name: PaletteName): readonly string[] {
  const stops = STOPS[name].map(rgb);
  const out: string[] = [];
  for (let i = 0; i < SIZE; i++) {
    const t = (i / (SIZE - 1)) * (stops.length - 1);
    const k = Math.min(stops.length - 2, Math.floor(t));
    const f = t - k;
    const a = stops[k] ?? [0, 0, 0];
    const b = stops[k + 1] ?? a;
    const c = [0, 1, 2].map((j) => Math.round((a[j] ?? 0) + ((b[j] ?? 0) - (a[j] ?? 0)) * f));
    out.push(`rgb(${c.join(',')})`);
  }
  return out;
}

/** The palette's 256 colours, from low to high. */
export function lut(name: PaletteName): readonly string[] {
  let l = luts.get(name);
  if (l === undefined) {
    l = build(name);
    luts.set(name, l);
  }
  return l;
}

/** The colour of v on [min, max] (clamped). */
export function colorOf(table: readonly string[], v: number, min: number, max: number): string {
  const t = max > min ? (v - min) / (max - min) : 0;
  const i = Math.round(Math.min(1, Math.max(0, t)) * (table.length - 1));
  return table[i] ?? 'transparent';
}

/** A CSS gradient of the palette, for the legend. */
export function gradient(name: PaletteName): string {
  const stops = STOPS[name];
  return `linear-gradient(to right, ${stops.join(', ')})`;
}

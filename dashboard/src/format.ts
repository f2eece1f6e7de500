/** How values and times read on the page. */

const UNIT_SHOWN: Readonly<Record<string, string>> = { C: '°C' };

export function unitShown(unit: string): string {
  return UNIT_SHOWN[unit] ?? unit;
}

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  return (a >= 100 ? nf0 : a >= 10 ? nf1 : nf2).format(v);
}

/** `98 %`, `156.6 W`, `63 °C`, `73,420 MiB`. */
export function formatValue(v: number, unit: string): string {
  const u = unitShown(unit);
  return u === '' ? formatNumber(v) : `${formatNumber(v)} ${u}`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

export function formatTime(ms: number): string {
  return Number.isFinite(ms) ? timeFmt.format(ms) : '–';
}

export function formatDateTime(ms: number): string {
  return Number.isFinite(ms) ? dateTimeFmt.format(ms) : '–';
}

/**
 * A span of seconds as people say it: `40 s`, `14 min`, `2 h 5 min`, `1 d 7 h` (the second unit
 * left out when nought; seconds only under a minute). The store says the events' spans the same
 * way (src/store/retire.ts).
 */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  const two = (big: number, bigUnit: string, small: number, smallUnit: string): string =>
    `${big} ${bigUnit}${small === 0 ? '' : ` ${small} ${smallUnit}`}`;
  if (s < 86_400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
  return two(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}

/** `4 s ago`, `3 min ago`, `1 h 55 min ago`, `2 h ago`, `5 d 3 h ago`. */
export function formatAgo(ms: number, now = Date.now()): string {
  if (!Number.isFinite(ms)) return '';
  return `${formatSpan(Math.round((now - ms) / 1000))} ago`;
}

export function parseTime(iso: string | null | undefined): number {
  return iso === null || iso === undefined ? Number.NaN : Date.parse(iso);
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

const compactFmt = new Intl.NumberFormat(undefined, {
  notation: 'compact',
  maximumFractionDigits: 1,
});

/** Axis numbers: `80K` rather than `80,000`. */
export function formatCompact(v: number): string {
  return Math.abs(v) >= 10_000 ? compactFmt.format(v) : formatNumber(v);
}

const tickSeconds = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});
const tickMinutes = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  hour12: false,
});
const tickDays = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const tickDayHours = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  hour12: false,
});

/** A time axis label, as fine as the spacing of the ticks (seconds) needs. */
export function formatTick(ms: number, incrSeconds: number): string {
  if (incrSeconds < 60) return tickSeconds.format(ms);
  if (incrSeconds < 86_400) {
    const d = new Date(ms);
    // Midnight ticks say which day it is.
    return d.getHours() === 0 && d.getMinutes() === 0
      ? tickDayHours.format(ms)
      : tickMinutes.format(ms);
  }
  return tickDays.format(ms);
}

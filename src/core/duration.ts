import { NexusError } from './errors.js';

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parses a duration such as `3s`, `250ms`, `1.5m`, `7d`, or a compound `1h30m`.
 * A bare number is read as milliseconds. Returns milliseconds.
 */
export function parseDuration(text: string, name = 'duration'): number {
  const s = text.trim();
  if (/^\d+$/.test(s) && Number(s) <= Number.MAX_SAFE_INTEGER) return Number(s);
  let rest = s;
  let total = 0;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/.exec(rest);
    if (m === null) break;
    total += Number(m[1]) * (UNITS[m[2] ?? ''] ?? Number.NaN);
    rest = rest.slice(m[0].length);
  }
  // Past 2^53 ms (285,000 years) milliseconds stop being exact integers: no setting or query needs it.
  if (s.length === 0 || rest.length > 0 || !(total <= Number.MAX_SAFE_INTEGER)) {
    throw new NexusError(
      'CONFIG_INVALID',
      `${name}: "${text}" is not a duration (use e.g. 250ms, 3s, 5m, 1h30m, 7d)`,
    );
  }
  return Math.round(total);
}

/** Formats milliseconds compactly for humans: 950ms, 12.3s, 4m05s, 2h10m. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const totalS = Math.round(ms / 1000);
  if (totalS < 3600) return `${Math.floor(totalS / 60)}m${String(totalS % 60).padStart(2, '0')}s`;
  const totalM = Math.round(totalS / 60);
  return `${Math.floor(totalM / 60)}h${String(totalM % 60).padStart(2, '0')}m`;
}

/**
 * Light and dark themes. The page follows prefers-color-scheme until the user picks one with the
 * toggle (`t`); the pick is kept in localStorage. Canvas drawing reads its colours from the same CSS
 * custom properties as the styles, through `themeColors()`.
 */
export type Theme = 'light' | 'dark';

const KEY = 'nexus.theme';
const listeners = new Set<() => void>();
const media = window.matchMedia('(prefers-color-scheme: dark)');

function stored(): Theme | undefined {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : undefined;
  } catch {
    return undefined;
  }
}

export function currentTheme(): Theme {
  return stored() ?? (media.matches ? 'dark' : 'light');
}

function apply(): void {
  const theme = currentTheme();
  document.documentElement.dataset.theme = theme;
  document.documentElement.style.colorScheme = theme;
  cached = undefined;
  for (const fn of listeners) fn();
}

export function initTheme(): void {
  apply();
  media.addEventListener('change', apply);
}

export function toggleTheme(): Theme {
  const next: Theme = currentTheme() === 'dark' ? 'light' : 'dark';
  try {
    localStorage.setItem(KEY, next);
  } catch {
    // Private mode without storage: the toggle still works for this page.
    document.documentElement.dataset.theme = next;
  }
  apply();
  return next;
}

/** Calls `fn` whenever the theme changes; returns the function that stops it. */
export function onThemeChange(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export interface ThemeColors {
  readonly bg: string;
  readonly panel: string;
  readonly text: string;
  readonly muted: string;
  readonly grid: string;
  readonly accent: string;
  readonly accentFill: string;
  readonly empty: string;
  readonly focus: string;
  readonly hover: string;
}

let cached: ThemeColors | undefined;

export function themeColors(): ThemeColors {
  if (cached !== undefined) return cached;
  const s = getComputedStyle(document.documentElement);
  const v = (name: string, fallback: string): string => {
    const x = s.getPropertyValue(name).trim();
    return x === '' ? fallback : x;
  };
  cached = {
    bg: v('--bg', '#fff'),
    panel: v('--panel', '#fff'),
    text: v('--text', '#111'),
    muted: v('--muted', '#666'),
    grid: v('--grid', '#ddd'),
    accent: v('--accent', '#2563eb'),
    accentFill: v('--accent-fill', 'rgba(37,99,235,0.15)'),
    empty: v('--cell-empty', '#ccc'),
    focus: v('--focus', '#f97316'),
    hover: v('--text', '#111'),
  };
  return cached;
}

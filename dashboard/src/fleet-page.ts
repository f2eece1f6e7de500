/**
 * What the fleet pages (idle GPUs, events, usage) share: the page frame with its title and toolbar,
 * the cluster they show (the URL's, or the first), a cluster selector, segmented buttons, tables.
 */
import { api, isAbort, message, serves } from './api.js';
import { h, notice, type Child } from './dom.js';

export interface Picked {
  readonly ids: readonly string[];
  /** The cluster to show; undefined when there is none (yet) or the wanted one does not exist. */
  readonly cluster: string | undefined;
  /** Why there is no cluster, in words. */
  readonly problem?: { kind: 'empty' | 'error'; text: string };
}

/**
 * Lists the clusters and picks the wanted one (or the first), for a page that reads `path` (as the
 * OpenAPI document names it): a gateway without it gets a message, not a request that 404s.
 */
export async function pickCluster(
  wanted: string | undefined,
  signal: AbortSignal,
  path: string,
): Promise<Picked> {
  try {
    if (!(await serves(path)))
      return {
        ids: [],
        cluster: undefined,
        problem: {
          kind: 'error',
          text: `This gateway does not serve ${path.replace('{cluster_id}', '…')}: it is older than this page.`,
        },
      };
    const list = await api.clusters(signal);
    const ids = list.clusters.map((c) => c.cluster_id).sort();
    if (wanted !== undefined && !ids.includes(wanted))
      return {
        ids,
        cluster: undefined,
        problem: {
          kind: 'error',
          text: `There is no cluster "${wanted}"${ids.length > 0 ? ` (clusters: ${ids.join(', ')})` : ''}.`,
        },
      };
    const cluster = wanted ?? ids[0];
    if (cluster === undefined)
      return {
        ids,
        cluster,
        problem: { kind: 'empty', text: 'Waiting for data: no GPU has reported yet.' },
      };
    return { ids, cluster };
  } catch (err) {
    if (isAbort(err, signal)) throw err;
    return {
      ids: [],
      cluster: undefined,
      problem: { kind: 'error', text: `Cannot list the clusters: ${message(err)}` },
    };
  }
}

/** A `<select>` of the clusters that calls `onChange` with the one chosen. */
export function clusterSelect(onChange: (cluster: string) => void): {
  el: HTMLSelectElement;
  set: (ids: readonly string[], current: string | undefined) => void;
} {
  const el = h('select', { class: 'select', 'aria-label': 'Cluster', 'data-testid': 'cluster' });
  el.addEventListener('change', () => {
    onChange(el.value);
  });
  return {
    el,
    set: (ids, current) => {
      el.replaceChildren(...ids.map((id) => h('option', { value: id, text: id })));
      if (current !== undefined) el.value = current;
      el.disabled = ids.length < 2;
      el.hidden = ids.length === 0;
    },
  };
}

/** Segmented buttons (one active) that call `onPick` with the value picked. */
export function segmented<T extends string>(
  label: string,
  values: readonly T[],
  text: (v: T) => string,
  onPick: (v: T) => void,
): { el: HTMLElement; mark: (v: T) => void } {
  const el = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': label });
  const buttons = new Map<T, HTMLButtonElement>();
  for (const v of values) {
    const b = h('button', { type: 'button', role: 'radio', 'data-value': v, text: text(v) });
    b.addEventListener('click', () => {
      onPick(v);
    });
    buttons.set(v, b);
    el.append(b);
  }
  return {
    el,
    mark: (cur) => {
      for (const [v, b] of buttons) {
        b.setAttribute('aria-checked', String(v === cur));
        b.classList.toggle('active', v === cur);
      }
    },
  };
}

export interface Column<R> {
  readonly title: string;
  readonly key: string;
  readonly num?: boolean;
  readonly cell: (row: R) => Child;
}

/** A table of rows, each cell marked with its column's key (data-col) for tests and styles. */
export function table<R>(
  columns: readonly Column<R>[],
  rows: readonly R[],
  testid: string,
  foot?: readonly Child[],
): HTMLTableElement {
  return h(
    'table',
    { class: 'table fleet-table', 'data-testid': testid, 'data-rows': rows.length },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...columns.map((c) =>
          h('th', { class: c.num === true ? 'num' : undefined, text: c.title }),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      ...rows.map((r) =>
        h(
          'tr',
          {},
          ...columns.map((c) =>
            h('td', { class: c.num === true ? 'num' : undefined, 'data-col': c.key }, c.cell(r)),
          ),
        ),
      ),
    ),
    foot === undefined
      ? undefined
      : h(
          'tfoot',
          {},
          h(
            'tr',
            {},
            ...foot.map((f, i) =>
              h(
                'td',
                {
                  class: columns[i]?.num === true ? 'num' : undefined,
                  'data-col': columns[i]?.key,
                },
                f,
              ),
            ),
          ),
        ),
  );
}

/** The message a page shows where its content would be. */
export function problem(p: NonNullable<Picked['problem']>): HTMLElement {
  return notice(p.kind, p.text);
}

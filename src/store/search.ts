import { WHOLE_GPU } from '../core/mig.js';
import type { FleetDirectory, Token, TokenIndex } from './fleet-directory.js';
import type { SearchHit, SearchKind, SearchQuery, SearchResult } from './reader.js';

/**
 * Index entries one kind's lookup looks at, at most: a prefix matching more than this (`gpu` on a
 * fleet of `gpu-node-*`) answers the first ones, truncated, instead of walking the fleet.
 */
export const SEARCH_SCAN = 2000;

const KIND_ORDER: Readonly<Record<SearchKind, number>> = { host: 0, gpu: 1, namespace: 2, pod: 3 };

interface Candidate {
  readonly hit: SearchHit;
  readonly exact: boolean;
}

/** Matches of one index: distinct entities (an entity is under several tokens), bounded. */
function collect<T>(
  index: TokenIndex<T>,
  q: string,
  keep: (t: Token<T>) => SearchHit | undefined,
  exactName: (hit: SearchHit) => boolean,
  limit: number,
): { found: Candidate[]; more: boolean } {
  const seen = new Set<string>();
  const found: Candidate[] = [];
  let scanned = 0;
  for (const t of index.prefixed(q)) {
    if (++scanned > SEARCH_SCAN || found.length > limit) return { found, more: true };
    if (seen.has(t.key)) continue;
    const hit = keep(t);
    if (hit === undefined) continue;
    seen.add(t.key);
    found.push({ hit, exact: t.token === q || exactName(hit) });
  }
  return { found, more: false };
}

/** Hosts, GPUs, namespaces and pods whose name (or a part of it) starts with the query. */
export function searchDirectory(dir: FleetDirectory, q: SearchQuery): SearchResult {
  const needle = q.q.toLowerCase();
  const kinds = new Set<SearchKind>(q.kinds ?? ['host', 'gpu', 'namespace', 'pod']);
  const inCluster = (c: string): boolean => q.cluster === undefined || q.cluster === c;
  const exactLabel = (h: SearchHit): boolean => h.label.toLowerCase() === needle;
  const out: Candidate[] = [];
  const state = { truncated: false };
  const add = (r: { found: Candidate[]; more: boolean }): void => {
    out.push(...r.found);
    state.truncated ||= r.more;
  };
  if (kinds.has('host'))
    add(
      collect(
        dir.hostNames,
        needle,
        ({ ref: h }) =>
          inCluster(h.cluster.name)
            ? {
                kind: 'host',
                cluster_id: h.cluster.name,
                host_id: h.hostname,
                label: h.hostname,
                gpus: h.liveWhole,
              }
            : undefined,
        exactLabel,
        q.limit,
      ),
    );
  if (kinds.has('gpu'))
    add(
      collect(
        dir.gpuNames,
        needle,
        ({ ref: g }) =>
          inCluster(g.cluster_id) && g.uuid !== null && g.gpu_instance_id === WHOLE_GPU
            ? {
                kind: 'gpu',
                cluster_id: g.cluster_id,
                host_id: g.hostname,
                gpu_id: g.gpu_id,
                uuid: g.uuid,
                label: g.uuid,
              }
            : undefined,
        exactLabel,
        q.limit,
      ),
    );
  if (kinds.has('namespace'))
    add(
      collect(
        dir.namespaceNames,
        needle,
        ({ ref, key }) =>
          inCluster(ref.cluster)
            ? {
                kind: 'namespace',
                cluster_id: ref.cluster,
                namespace: ref.namespace,
                label: ref.namespace,
                gpus: dir.namespaceGpus.get(key) ?? 0,
              }
            : undefined,
        exactLabel,
        q.limit,
      ),
    );
  if (kinds.has('pod'))
    add(
      collect(
        dir.podNames,
        needle,
        ({ ref: w }) => {
          const g = dir.gpusById.get(w.gpu);
          if (g === undefined || !inCluster(g.cluster_id)) return undefined;
          return {
            kind: 'pod',
            cluster_id: g.cluster_id,
            namespace: w.namespace,
            pod: w.pod,
            host_id: g.hostname,
            gpu_id: g.gpu_id,
            label: w.namespace === '' ? w.pod : `${w.namespace}/${w.pod}`,
          };
        },
        (h) => h.kind === 'pod' && h.pod.toLowerCase() === needle,
        q.limit,
      ),
    );
  out.sort(
    (a, b) =>
      Number(b.exact) - Number(a.exact) ||
      KIND_ORDER[a.hit.kind] - KIND_ORDER[b.hit.kind] ||
      (a.hit.label < b.hit.label ? -1 : a.hit.label > b.hit.label ? 1 : 0),
  );
  return {
    hits: out.slice(0, q.limit).map((c) => c.hit),
    truncated: state.truncated || out.length > q.limit,
  };
}

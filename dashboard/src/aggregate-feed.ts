/**
 * The overview heatmap's data above a few thousand GPUs (or drilled down): polled from
 * GET /api/v1/clusters/{c}/heatmap every POLL_EVERY_MS while it answers hosts or groups. When it
 * answers GPUs (a drill-down reached a few hosts), it stops polling and follows those hosts' live
 * readings on the WebSocket, as the small-fleet heatmap does, reloading on a resync.
 */
import { api, isAbort, type HeatmapAnswer } from './api.js';
import { parseTime } from './format.js';
import type { CellReading } from './heatmap-model.js';
import type { LiveClient } from './live.js';
import { cellOf } from './heatmap-feed.js';
import { poll, type Poller } from './poll.js';
import type { Drill } from './route.js';

/** How often the aggregated heatmap is reloaded. */
export const POLL_EVERY_MS = 5000;
/**
 * Cells asked for once drilled down: GPU level only for a few hosts (up to 64 GPUs), so that a
 * group first shows its hosts, and a host its GPUs (docs/api.md: the API's levels follow max_cells).
 */
export const DRILL_CELLS = 64;
/** Most hosts named in one live subscription (the gateway's filter limit). */
const MAX_FILTER_HOSTS = 1000;

export interface AggregateFeedHandlers {
  /** An answer of level host or group. */
  readonly aggregated: (answer: HeatmapAnswer) => void;
  /** An answer of level gpu: its cells replace the map. */
  readonly gpus: (answer: HeatmapAnswer, cells: readonly CellReading[]) => void;
  /** Live readings of the GPUs shown (level gpu only). */
  readonly updated: (cells: readonly CellReading[]) => void;
  readonly failed: (err: unknown) => void;
}

export function gpuCells(answer: HeatmapAnswer): CellReading[] {
  const out: CellReading[] = [];
  for (const c of answer.cells) {
    if (
      c.host_id === undefined ||
      c.gpu_id === undefined ||
      c.value === null ||
      c.value === undefined
    )
      continue;
    out.push({
      host_id: c.host_id,
      gpu_id: c.gpu_id,
      value: c.value,
      time: parseTime(c.time ?? null),
      uuid: c.uuid ?? null,
    });
  }
  return out;
}

export class AggregateFeed {
  private poller: Poller | undefined;
  private unsubscribe: (() => void) | undefined;
  private ctl: AbortController | undefined;
  /** Requests made (tests and the bench read it from the page). */
  requests = 0;

  constructor(
    private readonly live: LiveClient,
    private readonly handlers: AggregateFeedHandlers,
  ) {}

  start(cluster: string, metric: string, drill: Drill | undefined): void {
    this.stop();
    const params = {
      metric,
      ...(drill === undefined || drill.prefix === '' ? {} : { prefix: drill.prefix }),
      ...(drill?.from === undefined ? {} : { from: drill.from }),
      ...(drill?.to === undefined ? {} : { to: drill.to }),
      ...(drill === undefined ? {} : { max_cells: DRILL_CELLS }),
    };
    const poller = poll(async (signal) => {
      try {
        this.requests++;
        const res = await api.heatmap(cluster, params, signal);
        if (signal.aborted || this.poller !== poller) return true;
        if (res.level === 'gpu') {
          poller.stop();
          this.follow(cluster, metric, res, () => api.heatmap(cluster, params));
        } else {
          this.handlers.aggregated(res);
        }
        return true;
      } catch (err) {
        if (isAbort(err, signal)) return true;
        this.handlers.failed(err);
        return false;
      }
    }, POLL_EVERY_MS);
    this.poller = poller;
  }

  /** Reloads now (a user asked). */
  now(): void {
    this.poller?.now();
  }

  stop(): void {
    this.poller?.stop();
    this.poller = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.ctl?.abort();
    this.ctl = undefined;
  }

  /** GPU level: the cells from the answer, then live readings of its hosts. */
  private follow(
    cluster: string,
    metric: string,
    first: HeatmapAnswer,
    reload: () => Promise<HeatmapAnswer>,
  ): void {
    const hosts = new Set(first.cells.flatMap((c) => (c.host_id === undefined ? [] : [c.host_id])));
    const ctl = new AbortController();
    this.ctl = ctl;
    this.handlers.gpus(first, gpuCells(first));
    this.unsubscribe = this.live.subscribe(
      {
        cluster_id: cluster,
        metric: [metric],
        ...(hosts.size > 0 && hosts.size <= MAX_FILTER_HOSTS ? { host_id: [...hosts] } : {}),
      },
      {
        onReadings: (readings) => {
          const mine = readings.filter((r) => hosts.has(r.host_id));
          if (mine.length > 0 && !ctl.signal.aborted) this.handlers.updated(mine.map(cellOf));
        },
        onResync: () => {
          this.requests++;
          reload().then(
            (res) => {
              if (!ctl.signal.aborted) this.handlers.updated(gpuCells(res));
            },
            () => undefined, // the next resync, or live batch, brings it up to date
          );
        },
      },
    );
  }
}

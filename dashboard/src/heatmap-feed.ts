/**
 * The heatmap's data for one cluster and metric: the latest reading of every GPU from
 * GET /api/v1/telemetry/latest, then live readings from the WebSocket. It subscribes before it
 * loads, holding live readings until the load is in, so that nothing committed in between is lost;
 * after a reconnect or dropped readings it loads again.
 */
import { api, isAbort, type Reading } from './api.js';
import { parseTime } from './format.js';
import type { CellReading } from './heatmap-model.js';
import type { LiveClient, LiveReading } from './live.js';

export interface FeedHandlers {
  /** The full set (replaces what the map shows); the unit when the API said it. */
  readonly loaded: (cells: readonly CellReading[], unit: string | undefined) => void;
  /** Newer readings of some cells. */
  readonly updated: (cells: readonly CellReading[]) => void;
  readonly failed: (err: unknown) => void;
}

export function cellOf(r: Reading | LiveReading): CellReading {
  return {
    host_id: r.host_id,
    gpu_id: r.gpu_id,
    value: r.value,
    time: parseTime(r.timestamp),
    uuid: r.uuid,
  };
}

export class HeatmapFeed {
  private unsubscribe: (() => void) | undefined;
  private ctl: AbortController | undefined;

  constructor(
    private readonly live: LiveClient,
    private readonly handlers: FeedHandlers,
  ) {}

  /** Loads and follows a cluster's metric, instead of whatever it followed before. */
  async start(cluster: string, metric: string): Promise<void> {
    this.stop();
    const ctl = new AbortController();
    this.ctl = ctl;
    const pending: LiveReading[] = [];
    let loaded = false;
    this.unsubscribe = this.live.subscribe(
      { cluster_id: cluster, metric: [metric] },
      {
        onReadings: (readings) => {
          if (!loaded) pending.push(...readings);
          else if (readings.length > 0) this.handlers.updated(readings.map(cellOf));
        },
        onResync: () => void this.resync(cluster, metric, ctl.signal),
      },
    );
    try {
      const res = await api.latest({ cluster_id: cluster, metric }, ctl.signal);
      if (ctl.signal.aborted) return;
      this.handlers.loaded(res.readings.map(cellOf), res.readings[0]?.unit);
      loaded = true;
      // Live readings that arrived during the load; one older than a loaded cell changes nothing.
      if (pending.length > 0) this.handlers.updated(pending.map(cellOf));
    } catch (err) {
      loaded = true;
      if (!isAbort(err, ctl.signal)) this.handlers.failed(err);
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.ctl?.abort();
  }

  private async resync(cluster: string, metric: string, signal: AbortSignal): Promise<void> {
    try {
      const res = await api.latest({ cluster_id: cluster, metric }, signal);
      if (!signal.aborted) this.handlers.updated(res.readings.map(cellOf));
    } catch {
      // The next live batch, or the next resync, brings the map up to date.
    }
  }
}

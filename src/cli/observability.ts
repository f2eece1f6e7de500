import type { NexusMetrics } from '../core/metrics.js';
import { describeError } from '../core/errors.js';
import { probeWithTimeout } from '../core/probe.js';
import { TUNING } from './tuning.js';
import type { Queue } from '../queue/types.js';
import type { TelemetryStore } from '../store/types.js';

/** Queue depth by state, the head message's age and the TTL count, refreshed on scrape. */
export function exportQueueGauges(metrics: NexusMetrics, queue: Queue): void {
  metrics.onScrape(async () => {
    const s = await queue.stats();
    metrics.queueMessages.set({ state: 'ready' }, s.ready);
    metrics.queueMessages.set({ state: 'in_flight' }, s.inFlight);
    metrics.queueMessages.set({ state: 'delayed' }, s.delayed);
    metrics.queueMessages.set({ state: 'dead' }, s.dead);
    metrics.queueExpired.set(s.expired);
    metrics.queueLostLeases.set(s.lostLeases);
    metrics.queueOldestAge.set(
      s.oldestCreatedAt === undefined ? 0 : Math.max(0, (Date.now() - s.oldestCreatedAt) / 1000),
    );
  });
}

/**
 * The store's own figures, refreshed on scrape: PostgreSQL pool use, and the embedded engine's
 * statements and busy time (PGlite).
 */
export function exportStoreMetrics(metrics: NexusMetrics, store: TelemetryStore): void {
  // Counters only go up: each scrape adds what the engine did since the last one.
  const counted = { statements: 0, busySeconds: 0, database: 0, server: 0 };
  metrics.onScrape(async () => {
    const changes = store.identityChanges();
    for (const change of ['database', 'server'] as const) {
      metrics.identityChanges.inc({ change }, changes[change] - counted[change]);
      counted[change] = changes[change];
    }
    const e = store.engineStats();
    if (e !== undefined) {
      metrics.engineStatements.inc(e.statements - counted.statements);
      metrics.engineBusy.inc(e.busySeconds - counted.busySeconds);
      counted.statements = e.statements;
      counted.busySeconds = e.busySeconds;
    }
    const p = store.poolStats();
    if (p === undefined) return;
    metrics.poolConnections.set({ state: 'total' }, p.total);
    metrics.poolConnections.set({ state: 'idle' }, p.idle);
    metrics.poolConnections.set({ state: 'waiting' }, p.waiting);
  });
}

export interface Probe {
  readonly name: string;
  check(): Promise<void>;
}

/**
 * Readiness from live probes (each with a deadline, answers cached for a second) plus the
 * component's own view: so /readyz turns false within seconds of a dependency going away, even
 * while the component is idle.
 */
export function readiness(
  probes: readonly Probe[],
  own: () => { ready: boolean; reasons: string[] },
  metrics: NexusMetrics | undefined,
  component: string,
  timeoutMs = TUNING.probeTimeoutMs,
): () => Promise<{ ready: boolean; reasons: string[] }> {
  let cached: { at: number; value: { ready: boolean; reasons: string[] } } | undefined;
  let running: Promise<{ ready: boolean; reasons: string[] }> | undefined;
  const evaluate = async (): Promise<{ ready: boolean; reasons: string[] }> => {
    const reasons = [...own().reasons];
    await Promise.all(
      probes.map(async (p) => {
        try {
          await probeWithTimeout(() => p.check(), timeoutMs);
        } catch (err) {
          reasons.push(`${p.name}: ${describeError(err)}`);
        }
      }),
    );
    const value = { ready: reasons.length === 0 && own().ready, reasons: [...new Set(reasons)] };
    metrics?.ready.set({ component }, value.ready ? 1 : 0);
    return value;
  };
  const get = (): Promise<{ ready: boolean; reasons: string[] }> => {
    const now = Date.now();
    if (cached !== undefined && now - cached.at < 1000) return Promise.resolve(cached.value);
    running ??= evaluate()
      .then((value) => {
        cached = { at: Date.now(), value };
        return value;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  // nexus_ready is current on every scrape, whether or not anything polls /readyz.
  metrics?.onScrape(async () => {
    await get();
  });
  return get;
}

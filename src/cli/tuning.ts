/**
 * The tunables of the processes the CLI composes that are not settings: named here, once. Each is
 * a choice an operator has not needed to change; one that they do becomes a setting
 * (src/core/config.ts). The backoff while a dependency is down is core's OUTAGE_BACKOFF
 * (src/core/outage.ts), shared by the streamer and the collector.
 */
export const TUNING = {
  /** How often a collector creates partitions ahead and applies retention. */
  maintenanceIntervalMs: 600_000,
  /** How often a collector runs the retirement job (stopped/reappeared GPUs, STALE_AFTER). */
  retireIntervalMs: 30_000,
  /** Randomised fraction of a message's retry delay (RETRY_BASE .. RETRY_CAP). */
  retryJitter: 0.5,
  /** How long a gateway's live-listener announcement lives without a refresh (the commit feed). */
  feedListenerTtlMs: 60_000,
  /** A readiness probe of the operations port that has not answered by then fails. */
  probeTimeoutMs: 2000,
  /**
   * A stopping gateway reports not ready this long (at most POLL_TIMEOUT) before closing
   * connections, so that load balancers stop sending first.
   */
  gatewayDrainMs: 2000,
  /** How often the gateway reads its read replica's lag (nexus_gateway_read_replica_lag_seconds). */
  replicaLagPollMs: 5000,
  /** After the first signal, a graceful stop that has not finished by then is cut short. */
  forceExitAfterMs: 30_000,
  /** After a graceful stop has finished, a process still held open by a handle exits anyway. */
  exitAfterStopMs: 2000,
  /** How often `nexus up` looks for its first stored readings before saying it is up. */
  upPollMs: 100,
} as const;

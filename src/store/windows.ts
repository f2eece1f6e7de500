/**
 * The time windows of storage engine v3 (migration 004): the hot tier is partitioned by them, and
 * the sealing job turns each closed one into a chunk per series.
 */

/** Length of a window: 2 hours (720 readings a series at 10 s, 120 at one a minute). */
export const WINDOW_MS = 7_200_000;

/** Start of the window holding `t` (epoch ms; windows are aligned on the epoch, UTC). */
export const windowOf = (t: number): number => Math.floor(t / WINDOW_MS) * WINDOW_MS;

/**
 * The advisory lock of a window: `pg_advisory_xact_lock(WINDOW_LOCK_CLASS, <window number>)`.
 * Writers hold it shared while they write readings of the window; the sealing job holds it
 * exclusively while it seals or merges the window. Window numbers (start / 2 h) fit an int4 for
 * every instant PostgreSQL and JavaScript share.
 */
export const WINDOW_LOCK_CLASS = 0x4e585701;
export const windowNumber = (windowStart: number): number => Math.floor(windowStart / WINDOW_MS);

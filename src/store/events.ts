import type { TelemetryRecord } from '../core/record.js';
import { describeXid, xidMessage } from '../core/xid.js';
import type { ResolvedIds } from './dimensions.js';
import { readRaw } from './series-reads.js';
import type { SqlClient } from './types.js';

/**
 * Event detection in the write path (docs/fleet.md, "Events"): XID errors, throttling and health
 * changes, found in the readings as they are stored, whatever path they came by.
 *
 * Exactly once with many collectors, redeliveries and crashes: a GPU's detection state (the last
 * reading seen per key, `gpu_event_state`) is read and moved forward in one transaction holding
 * the GPU's advisory lock (GPUs locked in id order, so two writers cannot deadlock); a batch with
 * readings not newer than its key's state (a redelivery, a late reading, a later batch committed
 * first) has the GPU's events over the span it touches recomputed from the stored readings
 * (`recompute`); events are unique on (GPU, type, time) and inserted ON CONFLICT DO NOTHING. The detection runs after the readings are
 * stored: a crash between the two leaves the state behind, and the batch's redelivery (the queue
 * redelivers an unacknowledged batch) detects its events then.
 */

/** Advisory lock class of a GPU's detection state: (EVENT_LOCK_CLASS, gpu id). */
export const EVENT_LOCK_CLASS = 0x4e585702;

/** The clock event (throttle) reasons of DCGM_CLOCKS_EVENT_REASON_* (dcgm_fields.h). */
export const CLOCK_EVENT_REASONS: readonly {
  readonly bit: number;
  readonly name: string;
  readonly throttling: boolean;
  readonly hardware: boolean;
}[] = [
  { bit: 0x1, name: 'gpu_idle', throttling: false, hardware: false },
  { bit: 0x2, name: 'applications_clocks_setting', throttling: false, hardware: false },
  { bit: 0x4, name: 'sw_power_cap', throttling: true, hardware: false },
  { bit: 0x8, name: 'hw_slowdown', throttling: true, hardware: true },
  { bit: 0x10, name: 'sync_boost', throttling: false, hardware: false },
  { bit: 0x20, name: 'sw_thermal_slowdown', throttling: true, hardware: false },
  { bit: 0x40, name: 'hw_thermal_slowdown', throttling: true, hardware: true },
  { bit: 0x80, name: 'hw_power_brake_slowdown', throttling: true, hardware: true },
  { bit: 0x100, name: 'display_clocks_setting', throttling: false, hardware: false },
];

const THROTTLING_MASK = CLOCK_EVENT_REASONS.filter((r) => r.throttling).reduce(
  (m, r) => m | r.bit,
  0,
);
const HARDWARE_MASK = CLOCK_EVENT_REASONS.filter((r) => r.hardware).reduce((m, r) => m | r.bit, 0);

/** The throttling reasons set in a clock event reasons bitmask (not idle, app clocks, ...). */
export function throttlingReasons(mask: number): string[] {
  const m = Number.isFinite(mask) && mask >= 0 ? Math.trunc(mask) : 0;
  return CLOCK_EVENT_REASONS.filter((r) => r.throttling && (m & r.bit) !== 0).map((r) => r.name);
}

/** Detection keys of the event metrics. */
const KEY_OF: ReadonlyMap<string, string> = new Map([
  ['DCGM_FI_DEV_XID_ERRORS', 'xid'],
  ['DCGM_FI_DEV_CLOCK_THROTTLE_REASONS', 'throttle'],
  ['DCGM_FI_DEV_CLOCKS_EVENT_REASONS', 'throttle'],
  ['DCGM_FI_DEV_ECC_DBE_VOL_TOTAL', 'ecc_dbe_vol'],
  ['DCGM_FI_DEV_ROW_REMAP_FAILURE', 'row_remap_failure'],
  ['DCGM_FI_DEV_RETIRED_PENDING', 'retired_pending'],
  ['DCGM_FI_DEV_POWER_VIOLATION', 'power_violation'],
  ['DCGM_FI_DEV_THERMAL_VIOLATION', 'thermal_violation'],
]);

/** Keys that only feed details of other events (no detection of their own). */
const DETAIL_KEYS = new Set(['power_violation', 'thermal_violation']);
const HEALTH_INPUTS = new Set(['xid', 'ecc_dbe_vol', 'row_remap_failure', 'retired_pending']);

/** Whether a batch holds readings detection looks at (the others pay nothing for it). */
export function hasEventMetrics(records: readonly TelemetryRecord[]): boolean {
  for (const r of records) {
    const k = KEY_OF.get(r.metric);
    if (k !== undefined && !DETAIL_KEYS.has(k)) return true;
  }
  return false;
}

export type HealthLevel = 0 | 1 | 2;
export const HEALTH_NAMES = ['ok', 'warning', 'critical'] as const;

/** The health of a GPU from the latest value of each input (docs/fleet.md, "Health"), and why. */
export function healthOf(values: ReadonlyMap<string, number>): {
  level: HealthLevel;
  reasons: string[];
} {
  const critical: string[] = [];
  const warning: string[] = [];
  const xid = values.get('xid') ?? 0;
  if (xid !== 0) {
    const info = describeXid(xid);
    (info.severity === 'critical' ? critical : warning).push(`last XID ${xid}: ${info.meaning}`);
  }
  if ((values.get('row_remap_failure') ?? 0) >= 1) critical.push('row remapping failed');
  const dbe = values.get('ecc_dbe_vol') ?? 0;
  if (dbe > 0) critical.push(`${dbe} volatile double-bit ECC errors since the driver loaded`);
  const pending = values.get('retired_pending') ?? 0;
  if (pending > 0) warning.push(`${pending} pages pending retirement (a GPU reset retires them)`);
  if (critical.length > 0) return { level: 2, reasons: critical };
  if (warning.length > 0) return { level: 1, reasons: warning };
  return { level: 0, reasons: [] };
}

interface Reading {
  readonly time: number;
  readonly value: number;
  readonly labels: Readonly<Record<string, string>>;
}

interface State {
  time: number;
  value: number;
}

export interface NewEvent {
  readonly gpu: number;
  readonly type: 'xid' | 'throttle' | 'health';
  readonly time: number;
  readonly severity: 'info' | 'warning' | 'critical';
  readonly code: number | null;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

export interface DetectResult {
  /** Events inserted (new). */
  readonly recorded: number;
  /** Event readings not newer than the GPU's detection state: redelivered or late. */
  readonly ignored: number;
}

/** The detection state of one GPU, moved forward by its readings in time order. */
export function detectGpu(
  gpu: number,
  state: Map<string, State>,
  readings: ReadonlyMap<string, readonly Reading[]>,
): { events: NewEvent[]; ends: number[]; ignored: number } {
  const events: NewEvent[] = [];
  const ends: number[] = [];
  let ignored = 0;
  // Every reading of the GPU in time order (keys in a fixed order within an instant).
  const all: { key: string; r: Reading }[] = [];
  for (const [key, rs] of [...readings].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const s = state.get(key);
    for (const r of rs) {
      if (s !== undefined && r.time <= s.time) ignored++;
      else all.push({ key, r });
    }
  }
  all.sort((a, b) => a.r.time - b.r.time);
  const value = (k: string): number | undefined => state.get(k)?.value;
  for (const { key, r } of all) {
    const s = state.get(key);
    if (s !== undefined && r.time <= s.time) {
      ignored++; // same instant twice in the batch (two names of the throttle field)
      continue;
    }
    const previous = s?.value;
    state.set(key, { time: r.time, value: r.value });
    if (key === 'xid') {
      if (r.value !== 0 && r.value !== previous) {
        const code = Math.trunc(r.value);
        const info = describeXid(code);
        const details: Record<string, unknown> = { previous: previous ?? null };
        if (r.labels.err_code !== undefined) details.err_code = r.labels.err_code;
        if (r.labels.err_msg !== undefined) details.err_msg = r.labels.err_msg;
        events.push({
          gpu,
          type: 'xid',
          time: r.time,
          severity: info.severity,
          code,
          message: xidMessage(code),
          details,
        });
      }
    } else if (key === 'throttle') {
      const before = Math.trunc(previous ?? 0) & THROTTLING_MASK;
      const now = Math.trunc(r.value) & THROTTLING_MASK;
      if (now !== 0 && (now & ~before) !== 0) {
        // A new or a wider throttle: the open one (if any) ends here, this one starts.
        if (before !== 0) ends.push(r.time);
        const reasons = throttlingReasons(now);
        const details: Record<string, unknown> = {
          reasons,
          added: throttlingReasons(now & ~before),
          bitmask: Math.trunc(r.value),
        };
        const pv = value('power_violation');
        const tv = value('thermal_violation');
        if (pv !== undefined) details.power_violation_ns = pv;
        if (tv !== undefined) details.thermal_violation_ns = tv;
        events.push({
          gpu,
          type: 'throttle',
          time: r.time,
          severity: (now & HARDWARE_MASK) !== 0 ? 'warning' : 'info',
          code: now,
          message: `Clocks throttled: ${reasons.join(', ')}`,
          details,
        });
      } else if (now === 0 && before !== 0) {
        ends.push(r.time);
      }
    }
    if (!HEALTH_INPUTS.has(key)) continue;
    const values = new Map<string, number>();
    for (const [k, v] of state) values.set(k, v.value);
    const h = healthOf(values);
    const was = (value('health') ?? 0) as HealthLevel;
    if (h.level !== was) {
      state.set('health', { time: r.time, value: h.level });
      const name = HEALTH_NAMES[h.level];
      events.push({
        gpu,
        type: 'health',
        time: r.time,
        severity: h.level === 2 ? 'critical' : h.level === 1 ? 'warning' : 'info',
        code: null,
        message:
          h.level === 0
            ? `Health ok again (was ${HEALTH_NAMES[was]})`
            : `Health ${name}: ${h.reasons.join('; ')}`,
        details: { health: name, previous: HEALTH_NAMES[was], reasons: h.reasons },
      });
    }
  }
  return { events, ends, ignored };
}

/**
 * Detects and stores the events of a batch just written (`ids`: its resolved GPU ids), in one
 * transaction of `tx`.
 */
export async function detectEvents(
  tx: SqlClient,
  records: readonly TelemetryRecord[],
  ids: ResolvedIds,
): Promise<DetectResult> {
  const byGpu = new Map<number, Map<string, Reading[]>>();
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r === undefined || !Number.isFinite(r.value)) continue;
    const key = KEY_OF.get(r.metric);
    if (key === undefined) continue;
    const gpu = ids.gpu[i] ?? 0;
    let keys = byGpu.get(gpu);
    if (keys === undefined) byGpu.set(gpu, (keys = new Map<string, Reading[]>()));
    let list = keys.get(key);
    if (list === undefined) keys.set(key, (list = []));
    list.push({ time: r.timestamp, value: r.value, labels: r.labels });
  }
  const gpus = [...byGpu.keys()].sort((a, b) => a - b);
  if (gpus.length === 0) return { recorded: 0, ignored: 0 };
  await tx.query(
    `SELECT count(pg_advisory_xact_lock(${EVENT_LOCK_CLASS}, g)) FROM unnest($1::int[]) AS g`,
    [gpus],
  );
  const rows = await tx.query<{ gpu_id: number; key: string; t: string; value: number }>(
    'SELECT gpu_id, key, nexus_ms(time)::text AS t, value FROM gpu_event_state WHERE gpu_id = ANY($1::int[])',
    [gpus],
  );
  const states = new Map<number, Map<string, State>>();
  for (const row of rows.rows) {
    let s = states.get(row.gpu_id);
    if (s === undefined) states.set(row.gpu_id, (s = new Map<string, State>()));
    s.set(row.key, { time: Number(row.t), value: row.value });
  }
  const events: NewEvent[] = [];
  const ends: { gpu: number; time: number }[] = [];
  const moved: { gpu: number; key: string; time: number; value: number }[] = [];
  let ignored = 0;
  let recorded = 0;
  for (const gpu of gpus) {
    const state = states.get(gpu) ?? new Map<string, State>();
    const before = new Map([...state].map(([k, v]) => [k, { ...v }]));
    const batch = byGpu.get(gpu) ?? new Map<string, Reading[]>();
    const late = lateFrom(state, batch);
    if (late !== undefined) {
      // Readings older than what detection has seen (a batch processed after a later one, a
      // late scrape): the GPU's events over the span they touch are recomputed from what is
      // stored, whatever order it came in.
      const r = await recompute(tx, gpu, late, state, batch);
      recorded += r.recorded;
      ignored += r.ignored;
      for (const [key, s] of state) {
        const b = before.get(key);
        if (b === undefined || b.time !== s.time || b.value !== s.value) {
          moved.push({ gpu, key, time: s.time, value: s.value });
        }
      }
      continue;
    }
    const d = detectGpu(gpu, state, batch);
    events.push(...d.events);
    for (const t of d.ends) ends.push({ gpu, time: t });
    ignored += d.ignored;
    for (const [key, s] of state) {
      const b = before.get(key);
      if (b === undefined || b.time !== s.time || b.value !== s.value) {
        moved.push({ gpu, key, time: s.time, value: s.value });
      }
    }
  }
  if (moved.length > 0) {
    await tx.query(
      `INSERT INTO gpu_event_state AS s (gpu_id, key, time, value)
       SELECT g, k, nexus_ts(t), v FROM unnest($1::int[], $2::text[], $3::bigint[], $4::float8[]) AS u(g, k, t, v)
       ORDER BY g, k
       ON CONFLICT (gpu_id, key) DO UPDATE SET time = excluded.time, value = excluded.value`,
      [
        moved.map((m) => m.gpu),
        moved.map((m) => m.key),
        moved.map((m) => m.time),
        moved.map((m) => m.value),
      ],
    );
  }
  if (events.length > 0) {
    const res = await tx.query<{ n: number }>(
      `WITH ins AS (
         INSERT INTO gpu_events (gpu_id, type, time, severity, code, message, details)
         SELECT g, ty, nexus_ts(t), sev, c, msg, d::jsonb
         FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[])
           AS u(g, ty, t, sev, c, msg, d)
         ON CONFLICT (gpu_id, type, time) DO NOTHING
         RETURNING 1)
       SELECT count(*)::int AS n FROM ins`,
      [
        events.map((e) => e.gpu),
        events.map((e) => e.type),
        events.map((e) => e.time),
        events.map((e) => e.severity),
        events.map((e) => e.code),
        events.map((e) => e.message),
        events.map((e) => JSON.stringify(e.details)),
      ],
    );
    recorded += res.rows[0]?.n ?? 0;
  }
  // Ends in time order: each closes the GPU's open throttle events that started before it.
  ends.sort((a, b) => a.time - b.time);
  for (const e of ends) {
    await tx.query(
      `UPDATE gpu_events SET ended_at = nexus_ts($2)
       WHERE gpu_id = $1 AND type = 'throttle' AND ended_at IS NULL AND time < nexus_ts($2)`,
      [e.gpu, e.time],
    );
  }
  return { recorded, ignored };
}

/** How far before a late reading the recomputation looks for the state it starts from. */
const LOOKBACK_MS = 3_600_000;
const RECOMPUTED_TYPES = ['xid', 'throttle', 'health'];

/**
 * The earliest reading of the batch that is not newer than the state of its key (a late or a
 * redelivered reading), or undefined when the batch is wholly newer (the usual case: detection
 * moves forward from the state).
 */
function lateFrom(
  state: ReadonlyMap<string, State>,
  batch: ReadonlyMap<string, readonly Reading[]>,
): number | undefined {
  let late: number | undefined;
  for (const [key, rs] of batch) {
    const s = state.get(key);
    if (s === undefined) continue;
    for (const r of rs)
      if (r.time <= s.time && (late === undefined || r.time < late)) late = r.time;
  }
  return late;
}

/**
 * A GPU's events over [from, newest reading] recomputed from its stored readings (hot tier and
 * chunks; the batch's are stored already), starting from the state its readings of the hour
 * before `from` give: events no longer found are deleted, new ones inserted (those unchanged keep
 * their ids), the throttle events' ends set again, and `state` moved to the newest readings.
 * Idempotent: a redelivered batch recomputes the same events.
 */
async function recompute(
  tx: SqlClient,
  gpu: number,
  from: number,
  state: Map<string, State>,
  batch: ReadonlyMap<string, readonly Reading[]>,
): Promise<{ recorded: number; ignored: number }> {
  let to = from;
  for (const s of state.values()) to = Math.max(to, s.time);
  for (const rs of batch.values()) for (const r of rs) to = Math.max(to, r.time);
  const names = [...KEY_OF.keys()];
  const metrics = await tx.query<{ id: number; name: string }>(
    'SELECT id, name FROM metrics WHERE name = ANY($1::text[])',
    [names],
  );
  const keyOfId = new Map(metrics.rows.map((m) => [m.id, KEY_OF.get(m.name) ?? '']));
  // The batch's labels (err_code, err_msg of an XID) by key and time; stored readings have none.
  const labels = new Map<string, Readonly<Record<string, string>>>();
  // Readings not newer than the state: counted as before (redelivered or late), now placed.
  let older = 0;
  for (const [key, rs] of batch) {
    const s = state.get(key);
    for (const r of rs) {
      labels.set(`${key}@${r.time}`, r.labels);
      if (s !== undefined && r.time <= s.time) older++;
    }
  }
  const series = await readRaw(tx, {
    gpus: [gpu],
    metrics: [...keyOfId.keys()],
    from: from - LOOKBACK_MS,
    to: to + 1,
    identity: null,
  });
  const earlier = new Map<string, Reading[]>();
  const span = new Map<string, Reading[]>();
  for (const s of series) {
    const key = keyOfId.get(s.metric);
    if (key === undefined || key === '') continue;
    for (let i = 0; i < s.times.length; i++) {
      const time = s.times[i] ?? 0;
      const reading = { time, value: s.values[i] ?? 0, labels: labels.get(`${key}@${time}`) ?? {} };
      const into = time < from ? earlier : span;
      let list = into.get(key);
      if (list === undefined) into.set(key, (list = []));
      list.push(reading);
    }
  }
  const fresh = new Map<string, State>();
  detectGpu(gpu, fresh, earlier);
  const d = detectGpu(gpu, fresh, span);
  const existing = await tx.query<{ id: string; type: string; t: string }>(
    `SELECT id::text, type, nexus_ms(time)::text AS t FROM gpu_events
     WHERE gpu_id = $1 AND type = ANY($2::text[]) AND time >= nexus_ts($3) AND time <= nexus_ts($4)`,
    [gpu, RECOMPUTED_TYPES, from, to],
  );
  const found = new Set(d.events.map((e) => `${e.type}@${e.time}`));
  const stale = existing.rows
    .filter((e) => !found.has(`${e.type}@${Number(e.t)}`))
    .map((e) => e.id);
  if (stale.length > 0) {
    await tx.query('DELETE FROM gpu_events WHERE id = ANY($1::bigint[])', [stale]);
  }
  let recorded = 0;
  if (d.events.length > 0) {
    const res = await tx.query<{ n: number }>(
      `WITH ins AS (
         INSERT INTO gpu_events (gpu_id, type, time, severity, code, message, details)
         SELECT $1, ty, nexus_ts(t), sev, c, msg, dd::jsonb
         FROM unnest($2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[])
           AS u(ty, t, sev, c, msg, dd)
         ON CONFLICT (gpu_id, type, time) DO NOTHING
         RETURNING 1)
       SELECT count(*)::int AS n FROM ins`,
      [
        gpu,
        d.events.map((e) => e.type),
        d.events.map((e) => e.time),
        d.events.map((e) => e.severity),
        d.events.map((e) => e.code),
        d.events.map((e) => e.message),
        d.events.map((e) => JSON.stringify(e.details)),
      ],
    );
    recorded = res.rows[0]?.n ?? 0;
  }
  // The throttle events' ends in the span, set again in time order: reopened first, then each
  // end closes what is open before it (an event before the span too).
  await tx.query(
    `UPDATE gpu_events SET ended_at = NULL
     WHERE gpu_id = $1 AND type = 'throttle' AND ended_at >= nexus_ts($2) AND ended_at <= nexus_ts($3)`,
    [gpu, from, to],
  );
  for (const t of [...d.ends].sort((a, b) => a - b)) {
    await tx.query(
      `UPDATE gpu_events SET ended_at = nexus_ts($2)
       WHERE gpu_id = $1 AND type = 'throttle' AND ended_at IS NULL AND time < nexus_ts($2)`,
      [gpu, t],
    );
  }
  for (const [key, s] of fresh) {
    const old = state.get(key);
    if (old === undefined || s.time >= old.time) state.set(key, s);
  }
  return { recorded, ignored: older };
}

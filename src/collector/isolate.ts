import { isNexusError } from '../core/errors.js';
import type { TelemetryRecord } from '../core/record.js';
import { freshRecords, type WriteResult } from '../store/types.js';

export interface Rejection {
  /** Position in the records given to writeIsolating. */
  readonly index: number;
  readonly reason: string;
}

export interface IsolatedWrite {
  readonly inserted: number;
  readonly duplicates: number;
  /** The records stored for the first time (not the duplicates), for the live feed. */
  readonly fresh: readonly TelemetryRecord[];
  readonly rejected: readonly Rejection[];
  /** Transactions it took (1 when nothing was refused). */
  readonly transactions: number;
  /** Events detected in the write path (WriteResult.events), summed. */
  readonly events: { readonly recorded: number; readonly ignored: number };
}

/**
 * Writes records; when the database refuses the batch because of the data (STORE_REJECTED), splits
 * it in halves, and the halves again, until every refused record stands alone: its neighbours are
 * stored, it is returned with the database's reason. Any other error (the database is down)
 * propagates, with nothing half-done: each write is its own idempotent transaction.
 */
export async function writeIsolating(
  write: (records: readonly TelemetryRecord[]) => Promise<WriteResult>,
  records: readonly TelemetryRecord[],
): Promise<IsolatedWrite> {
  let inserted = 0;
  let duplicates = 0;
  let transactions = 0;
  const rejected: Rejection[] = [];
  const fresh: TelemetryRecord[] = [];
  const events = { recorded: 0, ignored: 0 };
  const attempt = async (from: number, to: number): Promise<void> => {
    transactions++;
    try {
      const part = records.slice(from, to);
      const res = await write(part);
      inserted += res.inserted;
      duplicates += res.duplicates;
      events.recorded += res.events?.recorded ?? 0;
      events.ignored += res.events?.ignored ?? 0;
      for (const r of freshRecords(part, res)) fresh.push(r);
    } catch (err) {
      if (!isNexusError(err, 'STORE_REJECTED')) throw err;
      if (to - from === 1) {
        rejected.push({ index: from, reason: err.message });
        return;
      }
      const mid = from + Math.ceil((to - from) / 2);
      await attempt(from, mid);
      await attempt(mid, to);
    }
  };
  await attempt(0, records.length);
  return { inserted, duplicates, fresh, rejected, transactions, events };
}

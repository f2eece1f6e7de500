import type { Envelope } from './envelope.js';
import type { RejectedRecord } from './types.js';

/** At most this many dead letters per settled message (the rest share the last one). */
const MAX_GROUPS = 100;

export interface RejectedGroup {
  /** Suffix of the dead letter's id and name: `.r0`, `.r1`, ... */
  readonly suffix: string;
  readonly reason: string;
  readonly envelope: Envelope;
}

/**
 * Groups a message's rejected records by reason, each group an envelope of its own holding only
 * those records (id `{id}.r{k}`), ready to be dead-lettered and, once the cause is fixed, replayed.
 */
export function groupRejected(
  envelope: Envelope,
  rejected: readonly RejectedRecord[],
): RejectedGroup[] {
  const byReason = new Map<string, number[]>();
  for (const r of rejected) {
    const list = byReason.get(r.reason);
    if (list === undefined) byReason.set(r.reason, [r.index]);
    else list.push(r.index);
  }
  const entries = [...byReason.entries()];
  if (entries.length > MAX_GROUPS) {
    const rest = entries.splice(MAX_GROUPS - 1);
    entries.push([
      `${rest.length} different reasons, first: ${rest[0]?.[0] ?? ''}`,
      rest.flatMap(([, idx]) => idx),
    ]);
  }
  return entries.map(([reason, indexes], k) => {
    const suffix = `.r${k}`;
    const records = indexes
      .sort((a, b) => a - b)
      .map((i) => envelope.records[i])
      .filter((r): r is Envelope['records'][number] => r !== undefined);
    return { suffix, reason, envelope: groupEnvelope(envelope, suffix, records) };
  });
}

/** A group's envelope: the message's, named `{id}{suffix}`, without its last error. */
function groupEnvelope(envelope: Envelope, suffix: string, records: Envelope['records']): Envelope {
  const { lastError: _drop, ...rest } = envelope;
  return { ...rest, id: `${envelope.id}${suffix}`.slice(0, 64), records };
}

/**
 * One group of a whole message, for refused records whose groups would not fit one etcd request
 * together (each group a message of its own repeats the identities of the series it shares with
 * the others): the whole envelope, once, its reason saying what was refused. Replayed, the records
 * stored already are skipped as duplicates.
 */
export function wholeMessageGroup(
  envelope: Envelope,
  rejected: readonly RejectedRecord[],
  groups: readonly RejectedGroup[],
): RejectedGroup {
  const suffix = '.r0';
  const reasons = new Set(rejected.map((r) => r.reason)).size;
  const first = groups[0]?.reason ?? '';
  return {
    suffix,
    reason: `whole message dead-lettered: ${rejected.length} of its ${envelope.records.length} records refused, for ${reasons} reasons (its other records are stored, and skipped as duplicates when it is replayed); the first reason: ${first.length > 300 ? `${first.slice(0, 300)}...` : first}`,
    envelope: groupEnvelope(envelope, suffix, envelope.records),
  };
}

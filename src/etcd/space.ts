import type { Etcd3 } from 'etcd3';
import { NexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { toQueueError } from './client.js';

/** An etcd client, for the modules outside src/etcd and src/queue/etcd that pass one along. */
export type EtcdClient = Etcd3;

/** Where the NOSPACE runbook is, for every message about an etcd alarm. */
export const NOSPACE_RUNBOOK = 'docs/operations.md "The NOSPACE alarm"';

/** The alarm types etcd raises, as etcdctl names them. */
export const ETCD_ALARM_TYPES = ['NOSPACE', 'CORRUPT'] as const;

/** etcd's space, as the member this client talks to sees it, and the cluster's alarms. */
export interface EtcdSpace {
  /** Size of the database file (etcd's dbSize). */
  readonly dbSize: number;
  /** Bytes of it in use (dbSizeInUse): what compaction frees and the next writes reuse. */
  readonly dbSizeInUse: number;
  /** Alarms raised on any member ("NOSPACE", "CORRUPT"), once each. */
  readonly alarms: readonly string[];
}

/** The alarms raised on any member of the cluster, once each, as etcdctl names them. */
export async function readEtcdAlarms(client: Etcd3): Promise<string[]> {
  try {
    const res = await client.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' });
    return [...new Set(res.alarms.map((a) => a.alarm.toUpperCase()))].filter((a) => a !== 'NONE');
  } catch (err) {
    throw toQueueError(err, 'alarm list', { client });
  }
}

/** etcd's database size and in-use size (maintenance status) and its alarms. */
export async function readEtcdSpace(client: Etcd3): Promise<EtcdSpace> {
  let status;
  try {
    status = await client.maintenance.status();
  } catch (err) {
    throw toQueueError(err, 'status', { client });
  }
  const dbSize = Number(status.dbSize);
  const inUse = Number(status.dbSizeInUse);
  return {
    dbSize,
    // etcd before 3.4 does not say: the file's size is then the upper bound.
    dbSizeInUse: Number.isFinite(inUse) && inUse > 0 ? inUse : dbSize,
    alarms: await readEtcdAlarms(client),
  };
}

/** The error a component reports (readiness) while etcd has an alarm raised. */
export function alarmError(alarms: readonly string[]): NexusError {
  const nospace = alarms.includes('NOSPACE');
  return new NexusError(
    nospace ? 'QUEUE_QUOTA_EXCEEDED' : 'QUEUE_UNAVAILABLE',
    nospace
      ? `etcd alarm NOSPACE: etcd is over its space quota and refuses writes; compact, defragment and disarm it (${NOSPACE_RUNBOOK})`
      : `etcd alarm ${alarms.join(', ')}: etcd refuses writes until it is resolved and disarmed (docs/operations.md, etcd)`,
    { retryable: true },
  );
}

export interface AlarmWatchOptions {
  readonly client: Etcd3;
  readonly logger: Logger;
  /** Sets nexus_etcd_alarms{alarm}. */
  readonly setGauge?: (alarm: string, raised: number) => void;
}

/**
 * etcd's alarms as one component sees them: `check` reads them (for /readyz and the streamer's
 * backpressure) and throws while one is raised. Each change is logged once: an error naming the
 * alarm and the runbook when one is raised, an info line when they are all disarmed.
 */
export class AlarmWatch {
  private raised: readonly string[] = [];

  constructor(private readonly o: AlarmWatchOptions) {
    for (const type of ETCD_ALARM_TYPES) o.setGauge?.(type, 0);
  }

  /** The alarms last read. */
  get current(): readonly string[] {
    return this.raised;
  }

  /** Notes the alarms read now (from `readEtcdSpace` or `readEtcdAlarms`). */
  note(alarms: readonly string[]): void {
    const before = this.raised;
    this.raised = alarms;
    for (const type of new Set([...ETCD_ALARM_TYPES, ...alarms]))
      this.o.setGauge?.(type, alarms.includes(type) ? 1 : 0);
    if (before.join(',') === alarms.join(',')) return;
    if (alarms.length > 0) {
      this.o.logger.error({ alarms, runbook: NOSPACE_RUNBOOK }, alarmError(alarms).message);
    } else {
      this.o.logger.info({ was: before }, `etcd alarm ${before.join(', ')} disarmed; carrying on`);
    }
  }

  /** Reads the alarms; throws `alarmError` while one is raised (a readiness probe). */
  async check(): Promise<void> {
    this.note(await readEtcdAlarms(this.o.client));
    if (this.raised.length > 0) throw alarmError(this.raised);
  }
}

import { Command } from 'commander';
import { createLogger } from '../../core/logger.js';
import { formatTimestamp } from '../../core/record.js';
import type { HeadMessage, Queue, QueuedMessage } from '../../queue/types.js';
import { buildQueue, configuredBackends } from '../backends.js';
import { ResourceStack } from '../stack.js';
import { addSettings, configFrom } from '../settings.js';

async function withQueue(cmd: Command, fn: (queue: Queue) => Promise<void>): Promise<void> {
  const config = configFrom(cmd);
  const logger = createLogger({ level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const root = { config, logger, stack: new ResourceStack(logger) };
  try {
    await fn(buildQueue(root, configuredBackends(root)));
  } finally {
    await root.stack.close();
  }
}

/** Dead letters named but not acted on (no such id, or one that cannot be replayed): exit 1. */
function notAll(
  done: number,
  ids: readonly string[],
  all: boolean | undefined,
  what: string,
): void {
  if (all === true || done >= ids.length) return;
  process.stderr.write(
    `nexus dlq: ${what} ${done} of the ${ids.length} named; the others are not dead letters of this cluster, or hold no message (nexus dlq list)\n`,
  );
  process.exitCode = 1;
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

/** The head message as `nexus queue stats` says it (its JSON has every field). */
function headText(head: HeadMessage | undefined): string {
  if (head === undefined) return '';
  if (head.problem !== undefined)
    return ` (${head.name}, which cannot be decoded: ${head.problem})`;
  const from =
    head.source === undefined
      ? ''
      : `, ${head.source.file}:${head.source.firstLine}-${head.source.lastLine}`;
  const failed = head.lastError === undefined ? '' : `, last error: ${head.lastError}`;
  return ` (${head.name}: ${head.records ?? 0} records from ${head.producer ?? '?'}${from}, attempt ${head.attempt ?? 0}${failed})`;
}

/** The --limit of a list: a whole number from 1 to 1,000 (the command errors otherwise). */
function limitOf(cmd: Command, text: string): number {
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > 1000)
    cmd.error(`--limit must be a whole number from 1 to 1000 (got "${text}")`);
  return limit;
}

/** A queued message as `nexus queue list` prints it, a line each. */
function messageLine(m: QueuedMessage, now: number): string {
  if (m.problem !== undefined) return `${m.name}  ${m.state}  cannot be decoded: ${m.problem}`;
  const from =
    m.source === undefined
      ? ''
      : `  source=${m.source.file}:${m.source.firstLine}-${m.source.lastLine}`;
  const age = m.createdAt === undefined ? '' : `  age=${Math.round((now - m.createdAt) / 1000)}s`;
  const due =
    m.due === undefined ? '' : `  due in ${Math.max(0, Math.round((m.due - now) / 1000))}s`;
  const failed = m.lastError === undefined ? '' : `  last error: ${m.lastError}`;
  return `${m.name}  ${m.state}  records=${m.records ?? 0}  producer=${m.producer ?? '?'}${from}  attempt=${m.attempt ?? 0}${age}${due}${failed}`;
}

export function queueCommand(): Command {
  const queue = new Command('queue').description('Inspect the message queue');
  const stats = new Command('stats')
    .description('Queue depth, in-flight, delayed and dead messages')
    .option('--json', 'print JSON');
  addSettings(stats, ['common', 'queue']);
  stats.action(async (o: { json?: boolean }) => {
    await withQueue(stats, async (q) => {
      const s = await q.stats();
      const age =
        s.oldestCreatedAt === undefined
          ? '-'
          : `${Math.round((Date.now() - s.oldestCreatedAt) / 1000)}s`;
      print(
        o.json === true,
        { cluster: q.clusterId, backend: q.backend, ...s },
        `cluster ${q.clusterId} (${q.backend}): ${s.ready} ready, ${s.inFlight} in flight, ${s.delayed} waiting to retry, ${s.dead} dead, ${s.expired} expired${s.lostLeases === 0 ? '' : `, ${s.lostLeases} message leases LOST (expired unswept: docs/operations.md#nexusqueuemessageslost)`}; head message age ${age}${headText(s.head)}`,
      );
    });
  });
  queue.addCommand(stats);
  const list = new Command('list')
    .description(
      'The messages in the queue, decoded (bodies are compressed), in name order (the time of their first reading), ready or claimed; --delayed: those waiting to be retried',
    )
    .option('--limit <n>', 'at most this many', '100')
    .option('--after <cursor>', 'page after this one (the "more" line of the last page)')
    .option('--delayed', 'the messages waiting to be retried, soonest due first')
    .option('--json', 'print JSON');
  addSettings(list, ['common', 'queue']);
  list.action(async (o: { limit: string; after?: string; delayed?: boolean; json?: boolean }) => {
    const limit = limitOf(list, o.limit);
    await withQueue(list, async (q) => {
      const page = await q.listMessages({
        limit,
        delayed: o.delayed === true,
        ...(o.after === undefined ? {} : { after: o.after }),
      });
      const now = Date.now();
      const text =
        page.items.length === 0
          ? `no ${o.delayed === true ? 'delayed ' : ''}messages`
          : page.items.map((m) => messageLine(m, now)).join('\n') +
            (page.next === undefined
              ? ''
              : `\n... more: --after ${page.next}${o.delayed === true ? ' --delayed' : ''}`);
      print(o.json === true, page, text);
    });
  });
  queue.addCommand(list);
  return queue;
}

export function dlqCommand(): Command {
  const dlq = new Command('dlq').description('List, replay and purge dead-lettered messages');
  const list = new Command('list')
    .description('List dead letters with their reasons')
    .option('--limit <n>', 'at most this many', '100')
    .option('--after <id>', 'page after this id')
    .option('--json', 'print JSON');
  addSettings(list, ['common', 'queue']);
  list.action(async (o: { limit: string; after?: string; json?: boolean }) => {
    const limit = limitOf(list, o.limit);
    await withQueue(list, async (q) => {
      const page = await q.listDeadLetters({
        limit,
        ...(o.after === undefined ? {} : { after: o.after }),
      });
      const rows = page.items.map((d) => ({
        id: d.id,
        reason: d.reason,
        attempts: d.attempts,
        deadAt: formatTimestamp(d.deadAt),
        records: d.records,
        // A body too large to keep (docs/queue.md, "Dead letters"): its size and SHA-256.
        ...(d.omitted === undefined ? {} : { omitted: d.omitted }),
        // Where the readings came from (a CSV file and lines), who published them and when.
        ...(d.envelope === undefined
          ? {}
          : {
              producer: d.envelope.producer,
              createdAt: formatTimestamp(d.envelope.createdAt),
              ...(d.envelope.source === undefined ? {} : { source: d.envelope.source }),
            }),
      }));
      const text =
        rows.length === 0
          ? 'no dead letters'
          : rows
              .map(
                (r) =>
                  `${r.id}  ${r.deadAt}  attempts=${r.attempts}  records=${r.records}${r.source === undefined ? '' : `  source=${r.source.file}:${r.source.firstLine}-${r.source.lastLine}`}  ${r.reason}`,
              )
              .join('\n') + (page.next === undefined ? '' : `\n... more: --after ${page.next}`);
      print(o.json === true, { items: rows, next: page.next }, text);
    });
  });
  const replay = new Command('replay')
    .description('Put dead letters back into the queue (attempts reset)')
    .argument('[ids...]', 'dead letter ids')
    .option('--all', 'every dead letter');
  addSettings(replay, ['common', 'queue']);
  replay.action(async (ids: string[], o: { all?: boolean }) => {
    if (o.all !== true && ids.length === 0) {
      replay.error('give dead letter ids or --all');
    }
    await withQueue(replay, async (q) => {
      const n = await q.replayDeadLetters(o.all === true ? 'all' : ids);
      process.stdout.write(`replayed ${n} message(s)\n`);
      notAll(n, ids, o.all, 'replayed');
    });
  });
  const purge = new Command('purge')
    .description('Delete dead letters for good')
    .argument('[ids...]', 'dead letter ids')
    .option('--all', 'every dead letter');
  addSettings(purge, ['common', 'queue']);
  purge.action(async (ids: string[], o: { all?: boolean }) => {
    if (o.all !== true && ids.length === 0) {
      purge.error('give dead letter ids or --all');
    }
    await withQueue(purge, async (q) => {
      const n = await q.purgeDeadLetters(o.all === true ? 'all' : ids);
      process.stdout.write(`purged ${n} dead letter(s)\n`);
      notAll(n, ids, o.all, 'purged');
    });
  });
  dlq.addCommand(list);
  dlq.addCommand(replay);
  dlq.addCommand(purge);
  return dlq;
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { NexusError } from '../core/errors.js';
import type { NexusMetrics } from '../core/metrics.js';
import { isUpgrade } from './upgrade.js';

export interface AdmissionLimits {
  /** Requests served at once. */
  readonly maxConcurrent: number;
  /** Requests waiting for a turn; beyond, 503. */
  readonly maxQueued: number;
  /** Longest wait for a turn; then 503. */
  readonly queueTimeoutMs: number;
  /** Requests served or waiting from one client address; beyond, 429. */
  readonly maxPerAddress: number;
}

interface Waiter {
  readonly start: () => void;
  readonly timer: NodeJS.Timeout;
}

/** The client went away while its request waited for a turn: nothing to answer. */
class ClientGone extends Error {
  constructor() {
    super('the client closed the connection while its request waited for a turn');
  }
}

/**
 * Admission control for the API: at most `maxConcurrent` requests run at once (each can hold an
 * answer of megabytes, so this bounds the gateway's memory), the rest wait in a bounded FIFO
 * queue for at most `queueTimeoutMs`. What is over a limit is refused at once with Retry-After:
 * 429 when one address holds too many, 503 when the queue is full or the wait too long.
 */
export class Admission {
  private running = 0;
  private readonly queue: Waiter[] = [];
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly metrics?: NexusMetrics,
  ) {}

  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Waits for a turn; resolves with the function that ends it (call it exactly once). `gone`
   * aborted while the request waits (its client closed the connection): it leaves the queue and
   * `enter` rejects with ClientGone, holding nothing.
   */
  async enter(address: string, gone?: AbortSignal): Promise<() => void> {
    const mine = this.byAddress.get(address) ?? 0;
    if (mine >= this.limits.maxPerAddress) {
      throw this.refuse(
        'RATE_LIMITED',
        'per_address',
        `too many requests at once from ${address} (at most ${this.limits.maxPerAddress}); retry when some have finished`,
      );
    }
    if (this.running >= this.limits.maxConcurrent) {
      if (this.queue.length >= this.limits.maxQueued) {
        throw this.refuse(
          'OVERLOADED',
          'queue_full',
          `the gateway is busy: ${this.limits.maxQueued} requests already wait; retry shortly`,
        );
      }
      this.byAddress.set(address, mine + 1);
      try {
        await this.wait(gone); // the turn is handed over by the request that ends
      } catch (err) {
        this.leave(address);
        throw err;
      }
    } else {
      this.byAddress.set(address, mine + 1);
      this.running++;
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.leave(address);
      const next = this.queue.shift();
      if (next === undefined) {
        this.running--;
        return;
      }
      this.metrics?.httpQueued.set(this.queue.length);
      next.start();
    };
  }

  private wait(gone?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const dequeue = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        this.metrics?.httpQueued.set(this.queue.length);
      };
      const onGone = (): void => {
        clearTimeout(waiter.timer);
        dequeue();
        reject(new ClientGone());
      };
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          gone?.removeEventListener('abort', onGone);
          resolve();
        },
        timer: setTimeout(() => {
          gone?.removeEventListener('abort', onGone);
          dequeue();
          reject(
            this.refuse(
              'OVERLOADED',
              'queue_timeout',
              `the gateway is busy: no turn within ${this.limits.queueTimeoutMs} ms; retry shortly`,
            ),
          );
        }, this.limits.queueTimeoutMs),
      };
      if (gone?.aborted === true) {
        clearTimeout(waiter.timer);
        reject(new ClientGone());
        return;
      }
      gone?.addEventListener('abort', onGone, { once: true });
      this.queue.push(waiter);
      this.metrics?.httpQueued.set(this.queue.length);
    });
  }

  private leave(address: string): void {
    const left = (this.byAddress.get(address) ?? 1) - 1;
    if (left <= 0) this.byAddress.delete(address);
    else this.byAddress.set(address, left);
  }

  private refuse(code: 'RATE_LIMITED' | 'OVERLOADED', reason: string, message: string): NexusError {
    this.metrics?.httpRefused.inc({ reason });
    return new NexusError(code, message);
  }
}

/** Whether a request is an API call that takes a turn (not health, metrics, pages or assets). */
function admitted(req: FastifyRequest): boolean {
  if (isUpgrade(req)) return false;
  const url = req.routeOptions.url ?? '';
  return url.startsWith('/api/') || url === '/graphql';
}

/**
 * Puts the API routes behind admission control; the turn ends when the answer is sent or dropped.
 * A client that goes away while its request waits leaves the queue (its turn is never taken, so
 * never lost); one that goes away just as its turn comes gives the turn back at once.
 */
export function installAdmission(app: FastifyInstance, admission: Admission): void {
  app.addHook('onRequest', async (req, reply) => {
    if (!admitted(req)) return;
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    reply.raw.once('close', onClose);
    let leave: () => void;
    try {
      leave = await admission.enter(req.ip, gone.signal);
    } catch (err) {
      if (!(err instanceof ClientGone)) throw err;
      // Nobody to answer: the request ends here, without running or sending anything.
      reply.hijack();
      return;
    } finally {
      reply.raw.removeListener('close', onClose);
    }
    if (gone.signal.aborted) {
      leave();
      reply.hijack();
      return;
    }
    reply.raw.once('close', leave);
  });
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { NexusError } from '../core/errors.js';
import type { NexusMetrics } from '../core/metrics.js';

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

  /** Waits for a turn; resolves with the function that ends it (call it exactly once). */
  async enter(address: string): Promise<() => void> {
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
        await this.wait(); // the turn is handed over by the request that ends
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

  private wait(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          this.metrics?.httpQueued.set(this.queue.length);
          reject(
            this.refuse(
              'OVERLOADED',
              'queue_timeout',
              `the gateway is busy: no turn within ${this.limits.queueTimeoutMs} ms; retry shortly`,
            ),
          );
        }, this.limits.queueTimeoutMs),
      };
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
  if (req.ws) return false;
  const url = req.routeOptions.url ?? '';
  return url.startsWith('/api/') || url === '/graphql';
}

/** Puts the API routes behind admission control; the turn ends when the answer is sent or dropped. */
export function installAdmission(app: FastifyInstance, admission: Admission): void {
  app.addHook('onRequest', async (req, reply) => {
    if (!admitted(req)) return;
    const leave = await admission.enter(req.ip);
    reply.raw.once('close', leave);
  });
}

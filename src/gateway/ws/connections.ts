import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { WebSocket, WebSocketServer } from 'ws';
import type { NexusMetrics } from '../../core/metrics.js';
import type { ClientMistakes } from '../client-log.js';
import { isUpgrade } from '../upgrade.js';

export interface ConnectionLimits {
  /** WebSocket connections open at once, /ws and GraphQL subscriptions together. */
  readonly maxConnections: number;
  /** Of those, from one client address. */
  readonly maxPerAddress: number;
}

/** Close codes of a refused connection (docs/api.md). */
export const CLOSE_SERVER_FULL = 1013; // "Try Again Later" (RFC 6455 registry)
export const CLOSE_ADDRESS_FULL = 4029; // like HTTP 429: this address has too many

/**
 * Counts every WebSocket connection of the gateway (/ws and GraphQL over graphql-ws alike) and
 * closes the ones over the limits right after the handshake, with a close code and a reason that
 * say which limit and when to try again: 1013 when the gateway is full, 4029 when the client's
 * address holds too many. A browser sees the code and reason (an HTTP refusal of the handshake
 * would reach it only as 1006). Counting happens on the WebSocket server's `connection` event,
 * before any route handler sees the socket.
 */
export class ConnectionLimiter {
  private total = 0;
  private readonly byAddress = new Map<string, number>();
  /** The client's address as Fastify resolved it (TRUST_PROXY), by raw request. */
  private readonly addresses = new WeakMap<IncomingMessage, string>();
  refused = 0;

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly mistakes: ClientMistakes,
    private readonly metrics?: NexusMetrics,
  ) {}

  get open(): number {
    return this.total;
  }

  /** Wires the limiter to the gateway: addresses from Fastify, connections from `ws`. */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', (req, _reply, done) => {
      if (isUpgrade(req)) this.addresses.set(req.raw, req.ip);
      done();
    });
    app.addHook('onReady', (done) => {
      this.watch(app.websocketServer);
      done();
    });
  }

  private watch(server: Pick<WebSocketServer, 'on'>): void {
    server.on('connection', (socket: WebSocket, req: IncomingMessage) => {
      const address = this.addresses.get(req) ?? req.socket.remoteAddress ?? 'unknown';
      const mine = this.byAddress.get(address) ?? 0;
      let refusal: [number, string] | undefined;
      if (this.total >= this.limits.maxConnections) {
        refusal = [
          CLOSE_SERVER_FULL,
          `server full: ${this.limits.maxConnections} WebSocket connections open; try again in a few seconds`,
        ];
      } else if (mine >= this.limits.maxPerAddress) {
        refusal = [
          CLOSE_ADDRESS_FULL,
          `too many connections: ${this.limits.maxPerAddress} open from ${address}; close one first`,
        ];
      }
      if (refusal !== undefined) {
        this.refused++;
        this.metrics?.wsRefused.inc({ code: String(refusal[0]) });
        this.mistakes.note({ address, code: refusal[0] }, 'WebSocket connection refused');
        socket.close(refusal[0], refusal[1]);
        return;
      }
      this.total++;
      this.byAddress.set(address, mine + 1);
      this.metrics?.wsClients.inc();
      socket.once('close', () => {
        this.total--;
        const left = (this.byAddress.get(address) ?? 1) - 1;
        if (left <= 0) this.byAddress.delete(address);
        else this.byAddress.set(address, left);
        this.metrics?.wsClients.dec();
      });
    });
  }
}

import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import { describeError } from '../../core/errors.js';
import type { Authenticator } from './authenticator.js';

/** Close code of a WebSocket whose token was revoked or expired (like HTTP 401; graphql-ws's). */
export const CLOSE_UNAUTHORIZED = 4401;

/**
 * Open WebSocket connections (/ws, GraphQL subscriptions) and the credential each was opened
 * with. Every `everyMs` each credential is checked again (through the authenticator's cache, so
 * one lookup per token), and the connections of one revoked or expired since are closed with
 * 4401: a revocation reaches live connections within `everyMs` plus the lookup cache's period.
 */
export class LiveSessions {
  private readonly byCredential = new Map<string, Set<WebSocket>>();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly authenticator: Authenticator,
    private readonly log: FastifyBaseLogger,
    private readonly everyMs: number,
  ) {}

  watch(socket: WebSocket, credential: string): void {
    let set = this.byCredential.get(credential);
    if (set === undefined) {
      set = new Set();
      this.byCredential.set(credential, set);
    }
    set.add(socket);
    socket.once('close', () => {
      const s = this.byCredential.get(credential);
      s?.delete(socket);
      if (s?.size === 0) this.byCredential.delete(credential);
    });
    if (this.timer === undefined && this.everyMs > 0) {
      this.timer = setInterval(() => void this.check(), this.everyMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Checks every credential of an open connection once; closes those no longer valid. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      for (const [credential, sockets] of [...this.byCredential]) {
        const verdict = await this.authenticator.verify(credential).catch((err: unknown) => {
          // Unknown for now (the token store is down): keep the connections, check next time.
          this.log.debug({ err: describeError(err) }, 'could not check a live connection');
          return undefined;
        });
        if (verdict === undefined || verdict.ok) continue;
        for (const socket of sockets)
          socket.close(CLOSE_UNAUTHORIZED, verdict.message.slice(0, 120));
        this.byCredential.delete(credential);
      }
    } finally {
      this.checking = false;
    }
  }
}

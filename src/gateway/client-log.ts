import type { FastifyBaseLogger } from 'fastify';

/**
 * Log lines about clients' mistakes (a malformed frame, a refused connection), which any client
 * can cause at will: at info (or `level`), at most `perMinute` a minute, the rest at debug and
 * counted; the next such line says how many were held back. A client cannot flood the log or fill
 * a disk with them.
 */
export class ClientMistakes {
  private windowStart = 0;
  private logged = 0;
  private held = 0;

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly perMinute = 10,
    private readonly level: 'info' | 'warn' = 'info',
  ) {}

  note(fields: Record<string, unknown>, message: string, now = Date.now()): void {
    if (now - this.windowStart >= 60_000) {
      this.windowStart = now;
      this.logged = 0;
    }
    if (this.logged < this.perMinute) {
      this.logged++;
      const held = this.held;
      this.held = 0;
      this.log[this.level](held > 0 ? { ...fields, held_back: held } : fields, message);
    } else {
      this.held++;
      this.log.debug(fields, message);
    }
  }
}

/** Errors a WebSocket peer causes (protocol violations, resets), as opposed to our own bugs. */
export function isPeerError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as Error & { code?: unknown }).code;
  return (
    typeof code === 'string' &&
    (code.startsWith('WS_ERR_') || ['ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code))
  );
}

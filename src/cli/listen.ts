import { createServer } from 'node:net';
import { NexusError, describeError } from '../core/errors.js';

/**
 * The one-line reason a gateway could not listen on host:port, saying what to do about it (the
 * causes a person meets: the port is taken, privileged, or the address is not this machine's), as
 * LISTEN_FAILED.
 */
export function listenFailure(
  err: unknown,
  port: number,
  host: string,
  setting: 'PORT' | 'METRICS_PORT' = 'PORT',
): NexusError {
  const flag = setting === 'PORT' ? '--port' : '--metrics-port';
  const code = (err as { code?: unknown } | undefined)?.code;
  const failed = (message: string): NexusError =>
    new NexusError('LISTEN_FAILED', message, { cause: err, details: { port, host, setting } });
  switch (code) {
    case 'EADDRINUSE':
      return failed(
        `port ${port} on ${host} is in use (another nexus?): stop that one, or choose another port with ${setting} or ${flag}`,
      );
    case 'EACCES':
      return failed(
        `port ${port} on ${host} needs privileges this process does not have: choose a port above 1023 with ${setting} or ${flag}`,
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return failed(
        `cannot listen on ${host}: it is not an address of this machine; set HOST (or --host) to one of its addresses, 127.0.0.1 or 0.0.0.0`,
      );
    default:
      return failed(`cannot listen on ${host}:${port}: ${describeError(err)}`);
  }
}

/** Who can reach a server listening on `host`: every address, this machine only, or one address. */
export function reach(host: string): 'all' | 'loopback' | 'one' {
  if (['0.0.0.0', '::', ''].includes(host)) return 'all';
  return host === 'localhost' || host === '::1' || host.startsWith('127.') ? 'loopback' : 'one';
}

/**
 * Where a server listens, from its HOST and the address listen() gave (which names 127.0.0.1 for
 * 0.0.0.0): "0.0.0.0:8080 (every address)", "127.0.0.1:8080 (this machine only)".
 */
export function listening(host: string, address: string): string {
  const { port } = new URL(address);
  const to = reach(host);
  const where = to === 'all' ? ' (every address)' : to === 'loopback' ? ' (this machine only)' : '';
  return `${host.includes(':') ? `[${host}]` : host}:${port}${where}`;
}

/** A port held for a server that starts listening on it later (claimPort). */
export interface PortClaim {
  /** The port held: the one asked for, or the one the system chose for 0. */
  readonly port: number;
  /** Frees the port for the server to listen on it next (called again: nothing more). */
  release(): Promise<void>;
}

/**
 * Holds host:port now for a server built later (`nexus up`'s gateway, which needs the store
 * first), so that a port in use stops a command before it reads or stores anything. Throws
 * LISTEN_FAILED as listenFailure says. Connections made while it holds the port are closed at
 * once (nothing serves yet); it never keeps the process alive. Between release() and the server's
 * own listen the port is free: only another process binding it in that moment can still take it.
 */
export async function claimPort(
  port: number,
  host: string,
  setting: 'PORT' | 'METRICS_PORT' = 'PORT',
): Promise<PortClaim> {
  const server = createServer((socket) => socket.destroy());
  server.unref();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    throw listenFailure(err, port, host, setting);
  }
  // Held: a failed accept (out of file descriptors) closes that connection only.
  server.on('error', () => undefined);
  const address = server.address();
  let released: Promise<void> | undefined;
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    release: () =>
      (released ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
      })),
  };
}

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports this process has handed out: never handed out twice (an old child may still hold one). */
const handedOut = new Set<number>();

/**
 * Where the kernel picks the local ports of outgoing connections (ip_local_port_range). A port
 * chosen there can be taken by any connection between the choice and the server's bind ("address
 * already in use"); one below it cannot.
 */
function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    return low !== undefined && Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Whether `port` can be bound on loopback now (0: the OS picks one); the port bound, or 0. */
function tryBind(port: number): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(0));
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const bound = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}

const FIRST = 10_000;

/**
 * A free TCP port on loopback, closed again before returning, for a server a test starts. Chosen
 * at random below the ephemeral range, so that no outgoing connection takes it before the server
 * binds it, and never the same twice in one process. Falls back to a port the OS picks.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  for (let attempt = 0; low - FIRST > 1000 && attempt < 50; attempt++) {
    const port = FIRST + Math.floor(Math.random() * (low - FIRST));
    if (handedOut.has(port)) continue;
    if ((await tryBind(port)) === port) {
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await tryBind(0);
    if (port !== 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

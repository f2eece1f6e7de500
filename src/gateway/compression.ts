import compress from '@fastify/compress';
import negotiate from '@fastify/accept-negotiator';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';

/** The encodings the gateway answers in, most preferred first (when a client's q values tie). */
export type Encoding = 'br' | 'gzip' | 'identity';
const ENCODINGS: Encoding[] = ['br', 'gzip', 'identity'];

/**
 * Answer compression (docs/api.md, "Compression"), measured on the API's own JSON (a reading is
 * ~215 bytes): below 1 KB an answer fits one TCP segment whatever its encoding, and gzip saves
 * under 600 bytes for ~10 µs, so smaller answers go as they are. Brotli at quality 4 is both
 * smaller and faster than gzip at level 6 on answers of 10 KB and more (the fleet's 2,470 latest
 * values, 535 KB: brotli 4 34 KB in 1.3 ms, gzip 6 77 KB in 2.8 ms; brotli 5 26 KB in 2.3 ms;
 * brotli 11 is 100 times slower), hence brotli first.
 */
export const COMPRESSION = {
  /** Smallest answer compressed (bytes). */
  threshold: 1024,
  brotliQuality: 4,
  gzipLevel: 6,
} as const;

const brotliOptions = { params: { [constants.BROTLI_PARAM_QUALITY]: COMPRESSION.brotliQuality } };
const gzipOptions = { level: COMPRESSION.gzipLevel };

/**
 * Compresses every answer of `app` (registered before the routes: the plugin adds its hook to each
 * route as it is declared) by Accept-Encoding, with `Vary: Accept-Encoding`. Its onSend runs after
 * the routes' own work and after admission control and load shedding have let the request in;
 * answers that arrive already encoded (the latest-values cache) pass through. Never
 * text/event-stream (the plugin's default types leave it out) and never WebSocket traffic (an
 * upgraded socket has no answer to compress). Request bodies are not decompressed.
 */
export async function registerCompression(app: FastifyInstance): Promise<void> {
  await app.register(compress, {
    globalCompression: true,
    globalDecompression: false,
    encodings: ENCODINGS,
    threshold: COMPRESSION.threshold,
    brotliOptions,
    zlibOptions: gzipOptions,
  });
}

/** The plugin's reading of Accept-Encoding: `*` and `x-gzip` mean gzip. */
const GZIP_ALIAS = /\*|x-gzip/gu;

/**
 * The encoding the plugin would choose for `req` (same negotiation, same preferences), for answers
 * the gateway encodes itself; identity when the client accepts none or sends `x-no-compression`.
 */
export function acceptedEncoding(req: FastifyRequest): Encoding {
  if (req.headers['x-no-compression'] !== undefined) return 'identity';
  const header = req.headers['accept-encoding'];
  if (header === undefined) return 'identity';
  return negotiate(header.toLowerCase().replace(GZIP_ALIAS, 'gzip'), ENCODINGS) ?? 'identity';
}

const brotliAsync = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** `body` in `encoding`, with the plugin's settings, compressed off the event loop. */
export function encodeBody(body: Buffer, encoding: Exclude<Encoding, 'identity'>): Promise<Buffer> {
  return encoding === 'br' ? brotliAsync(body, brotliOptions) : gzipAsync(body, gzipOptions);
}

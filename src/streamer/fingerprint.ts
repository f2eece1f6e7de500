import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { NexusError, describeError } from '../core/errors.js';

export interface FileFingerprint {
  readonly size: number;
  readonly mtimeMs: number;
  /** SHA-1 of the first 64 KiB. */
  readonly head: string;
}

/** Identifies a file's content cheaply, to tell whether a checkpoint still applies to it. */
export async function fingerprint(path: string): Promise<FileFingerprint> {
  try {
    const st = await stat(path);
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(Math.min(65_536, st.size));
      await fh.read(buf, 0, buf.length, 0);
      return {
        size: st.size,
        mtimeMs: Math.trunc(st.mtimeMs),
        head: createHash('sha1').update(buf).digest('hex'),
      };
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new NexusError('CSV_FILE_UNREADABLE', `cannot read ${path}: ${describeError(err)}`, {
      cause: err,
    });
  }
}

export function sameFile(a: FileFingerprint, b: FileFingerprint): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.head === b.head;
}

/** A short stable tag (8 hex digits) for ids derived from a string. */
export function shortHash(text: string): string {
  return createHash('sha1').update(text).digest('hex').slice(0, 8);
}

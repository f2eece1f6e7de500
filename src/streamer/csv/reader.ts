import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { NexusError, describeError } from '../../core/errors.js';
import type { TelemetryRecord } from '../../core/record.js';
import { parseHeader, rowToRecord, type DcgmHeader } from './dcgm-row.js';
import { splitCsvLine } from './line-parser.js';

export interface ParsedRecord {
  readonly record: TelemetryRecord;
  /** 1-based physical line number in the file. */
  readonly line: number;
  /** Byte offset just past this row's line ending: where reading resumes after it. */
  readonly end: number;
}

export interface RejectedRow {
  readonly line: number;
  readonly reason: string;
  /** The row as it stood in the file (clipped to 4 KiB). */
  readonly raw: string;
}

/** What one read of the file yields: the rows found in one buffer of input, in file order. */
export interface CsvChunk {
  readonly records: ParsedRecord[];
  readonly rejects: RejectedRow[];
  /** Rows holding a DCGM "not supported" sentinel instead of a reading. */
  readonly sentinels: number;
  /** Byte offset and line number reached at the end of this chunk. */
  readonly end: number;
  readonly line: number;
}

export interface CsvReadOptions {
  readonly path: string;
  /** Resume at this byte offset (the start of a line); 0 reads from the top. */
  readonly startOffset?: number;
  /** The line number of the line at `startOffset` minus one. */
  readonly startLine?: number;
  /** A longer line is rejected without being held in memory. Default 1 MiB. */
  readonly maxLineBytes?: number;
  readonly highWaterMark?: number;
  readonly signal?: AbortSignal;
}

const NL = 10;
const CR = 13;
const RAW_CLIP = 4096;

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/**
 * Where the first invalid UTF-8 sequence of `bytes` starts (0-based), given `text`, their decoding
 * with replacement characters; -1 if there is none. Only called for bytes already known to be
 * invalid: the decoder marks each bad sequence with U+FFFD, and a U+FFFD that stands for the
 * valid bytes EF BF BD is skipped.
 */
function firstInvalidByte(bytes: Buffer, text: string): number {
  let from = 0;
  for (;;) {
    const i = text.indexOf('\ufffd', from);
    if (i === -1) return -1;
    const at = Buffer.byteLength(text.slice(0, i), 'utf8');
    if (!(bytes[at] === 0xef && bytes[at + 1] === 0xbf && bytes[at + 2] === 0xbd)) return at;
    from = i + 1;
  }
}

/** A one-line description of why a path cannot be read as a CSV file. */
function unreadable(path: string, err: unknown): NexusError {
  const code = (err as { code?: unknown } | null)?.code;
  const why =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EISDIR'
        ? 'it is a directory, not a file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : describeError(err);
  return new NexusError('CSV_FILE_UNREADABLE', `cannot read CSV file ${path}: ${why}`, {
    cause: err,
  });
}

/**
 * Reads the header line of a DCGM CSV and returns it with the byte offset of the first data line.
 * Blank lines before the header are skipped.
 */
export async function readHeader(
  path: string,
): Promise<{ header: DcgmHeader; end: number; line: number }> {
  let fh;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    if (!st.isFile() && !st.isFIFO() && !st.isCharacterDevice()) {
      throw new Error('not a regular file');
    }
    fh = await open(path, 'r');
  } catch (err) {
    throw unreadable(path, err);
  }
  try {
    const buf = Buffer.alloc(1 << 16);
    let acc = Buffer.alloc(0);
    let pos = 0;
    let line = 0;
    for (;;) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buf, 0, buf.length, pos));
      } catch (err) {
        throw unreadable(path, err);
      }
      if (bytesRead === 0 && acc.length === 0) {
        throw new NexusError('CSV_HEADER_INVALID', `${path} is empty: no CSV header`);
      }
      acc = Buffer.concat([acc, buf.subarray(0, bytesRead)]);
      pos += bytesRead;
      let start = 0;
      for (;;) {
        const nl = acc.indexOf(NL, start);
        const eof = bytesRead === 0;
        if (nl === -1 && !eof) break;
        const stop = nl === -1 ? acc.length : nl;
        line++;
        const bytes = acc.subarray(start, stop > start && acc[stop - 1] === CR ? stop - 1 : stop);
        let text = bytes.toString('utf8');
        if (!isUtf8(bytes)) {
          throw new NexusError(
            'CSV_HEADER_INVALID',
            `${path}: line ${line} (the CSV header) is not valid UTF-8 (at byte ${firstInvalidByte(bytes, text) + 1})`,
          );
        }
        if (start === 0 && line === 1) text = stripBom(text);
        const lineEnd = pos - acc.length + (nl === -1 ? acc.length : nl + 1);
        if (text.trim() !== '') {
          const split = splitCsvLine(text);
          if (!split.ok) {
            throw new NexusError('CSV_HEADER_INVALID', `CSV header: ${split.error}`);
          }
          return { header: parseHeader(split.fields), end: lineEnd, line };
        }
        if (nl === -1) {
          throw new NexusError('CSV_HEADER_INVALID', `${path} has no CSV header`);
        }
        start = nl + 1;
      }
      if (acc.length > 1 << 20) {
        throw new NexusError('CSV_HEADER_INVALID', `${path}: header line longer than 1 MiB`);
      }
      acc = acc.subarray(start);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Streams the data rows of a DCGM CSV export in constant memory. Every row becomes a record, a
 * counted sentinel, or a reject with its line number and reason; nothing stops the valid rows.
 * Handles a UTF-8 BOM, CRLF and LF line endings, and blank lines.
 */
export async function* readDcgmCsv(
  header: DcgmHeader,
  options: CsvReadOptions,
): AsyncGenerator<CsvChunk, void, undefined> {
  const maxLine = options.maxLineBytes ?? 1 << 20;
  /** Absolute offset of data[0] of the current buffer. */
  let base = options.startOffset ?? 0;
  let line = options.startLine ?? 0;
  let pending: Buffer[] = [];
  let pendingLength = 0;
  let discarding = false;
  let discardLine = 0;

  /** `valid`: the bytes are known to be valid UTF-8 (checked with the rest of their buffer). */
  const handle = (
    buf: Buffer,
    start: number,
    stop: number,
    end: number,
    out: Chunk,
    valid: boolean,
  ): void => {
    line++;
    out.line = line;
    out.end = end;
    let textEnd = stop;
    if (textEnd > start && buf[textEnd - 1] === CR) textEnd--;
    let text = buf.toString('utf8', start, textEnd);
    // A BOM at the start of the file, or of a file joined on with `cat`.
    text = stripBom(text);
    if (text.trim().length === 0) return;
    if (!valid) {
      const bytes = buf.subarray(start, textEnd);
      if (!isUtf8(bytes)) {
        out.rejects.push({
          line,
          reason: `invalid UTF-8 at byte ${firstInvalidByte(bytes, text) + 1}`,
          raw: text.slice(0, RAW_CLIP),
        });
        return;
      }
    }
    const split = splitCsvLine(text);
    if (!split.ok) {
      out.rejects.push({ line, reason: split.error, raw: text.slice(0, RAW_CLIP) });
      return;
    }
    // A repeated header (files joined with `cat`) is not data.
    if (
      split.fields.length === header.width &&
      split.fields.every((f, i) => f === header.names[i])
    ) {
      return;
    }
    const result = rowToRecord(header, split.fields, out.now);
    switch (result.kind) {
      case 'record':
        out.records.push({ record: result.record, line, end });
        return;
      case 'sentinel':
        out.sentinels++;
        return;
      case 'reject':
        out.rejects.push({ line, reason: result.reason, raw: text.slice(0, RAW_CLIP) });
        return;
    }
  };

  const tooLong = (out: Chunk, end: number): void => {
    line++;
    out.line = line;
    out.end = end;
    out.rejects.push({ line: discardLine, reason: `line longer than ${maxLine} bytes`, raw: '' });
    discarding = false;
  };

  let stream;
  try {
    stream = createReadStream(options.path, {
      start: base,
      highWaterMark: options.highWaterMark ?? 1 << 18,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    for await (const data of stream as AsyncIterable<Buffer>) {
      const out: Chunk = { records: [], rejects: [], sentinels: 0, end: -1, line, now: Date.now() };
      let pos = 0;
      // One UTF-8 check for every whole line of this buffer (not the one joined with the
      // previous buffer's tail, nor the tail carried to the next): each line is checked alone
      // only when this fails. isUtf8 is SIMD code: about 1% of the reading time.
      const firstNl = data.indexOf(NL);
      const lastNl = data.lastIndexOf(NL);
      const wholeFrom = pendingLength > 0 || discarding ? firstNl + 1 : 0;
      const wholeValid = firstNl !== -1 && isUtf8(data.subarray(wholeFrom, lastNl));
      for (;;) {
        const nl = data.indexOf(NL, pos);
        if (nl === -1) {
          const rest = data.length - pos;
          if (!discarding && pendingLength + rest > maxLine) {
            discarding = true;
            discardLine = line + 1;
            pending = [];
            pendingLength = 0;
          } else if (!discarding && rest > 0) {
            pending.push(Buffer.from(data.subarray(pos)));
            pendingLength += rest;
          }
          break;
        }
        const end = base + nl + 1;
        if (discarding) {
          tooLong(out, end);
        } else if (pendingLength + (nl - pos) > maxLine) {
          // Over-long but already in this buffer: rejected all the same, whatever the chunking.
          discardLine = line + 1;
          pending = [];
          pendingLength = 0;
          tooLong(out, end);
        } else if (pendingLength > 0) {
          const joined = Buffer.concat([...pending, data.subarray(pos, nl)]);
          pending = [];
          pendingLength = 0;
          handle(joined, 0, joined.length, end, out, false);
        } else {
          handle(data, pos, nl, end, out, wholeValid && pos >= wholeFrom);
        }
        pos = nl + 1;
      }
      base += data.length;
      if (out.end >= 0) yield out;
    }
    // The last line may lack a newline.
    const out: Chunk = { records: [], rejects: [], sentinels: 0, end: -1, line, now: Date.now() };
    if (discarding) {
      tooLong(out, base);
    } else if (pendingLength > 0) {
      const joined = Buffer.concat(pending);
      pending = [];
      pendingLength = 0;
      handle(joined, 0, joined.length, base, out, false);
    }
    if (out.end >= 0) yield out;
  } catch (err) {
    if (options.signal?.aborted === true) return;
    if (err instanceof NexusError) throw err;
    throw unreadable(options.path, err);
  }
}

interface Chunk {
  records: ParsedRecord[];
  rejects: RejectedRow[];
  sentinels: number;
  end: number;
  line: number;
  /** The clock timestamps are checked against (once per buffer). */
  now: number;
}

import type {
  Etcd3,
  ICompare,
  IKeyValue,
  IRangeRequest,
  IRangeResponse,
  IRequestOp,
  ITxnResponse,
} from 'etcd3';
import { toQueueError } from './client.js';

/** Thin, typed helpers over etcd's KV RPCs. Every error leaves as a NexusError. */
export class Kv {
  constructor(readonly client: Etcd3) {}

  async txn(
    compare: readonly ICompare[],
    success: readonly IRequestOp[],
    failure: readonly IRequestOp[] = [],
    operation = 'txn',
  ): Promise<ITxnResponse> {
    try {
      return await this.client.kv.txn({
        compare: [...compare],
        success: [...success],
        failure: [...failure],
      });
    } catch (err) {
      throw toQueueError(err, operation, {
        client: this.client,
        keys: [
          ...compare.flatMap((c) => (c.key === undefined ? [] : [c.key.toString()])),
          ...[...success, ...failure].flatMap(opKeys),
        ],
      });
    }
  }

  async range(request: IRangeRequest, operation = 'range'): Promise<IRangeResponse> {
    try {
      return await this.client.kv.range(request);
    } catch (err) {
      throw toQueueError(err, operation, {
        client: this.client,
        keys: request.key === undefined ? [] : [request.key.toString()],
      });
    }
  }

  /** Every key-value under a prefix, page by page (bounded memory per page). */
  async *scan(
    prefix: string,
    options: { keysOnly?: boolean; pageSize?: number; after?: string; until?: string } = {},
  ): AsyncGenerator<IKeyValue[]> {
    const pageSize = options.pageSize ?? 500;
    let start =
      options.after === undefined ? key(prefix) : Buffer.concat([key(options.after), ZERO]);
    const end = options.until === undefined ? prefixEnd(prefix) : key(options.until);
    for (;;) {
      const res = await this.range(
        { key: start, range_end: end, limit: pageSize, keys_only: options.keysOnly === true },
        'scan',
      );
      if (res.kvs.length === 0) return;
      yield res.kvs;
      if (!res.more) return;
      const last = res.kvs[res.kvs.length - 1];
      if (last === undefined) return;
      start = Buffer.concat([last.key, ZERO]);
    }
  }

  async count(prefix: string): Promise<number> {
    const res = await this.range(
      { key: key(prefix), range_end: prefixEnd(prefix), count_only: true },
      'count',
    );
    return Number(res.count);
  }
}

const ZERO = Buffer.from([0]);

/** The keys an operation of a Txn touches (for the errors that name them). */
function opKeys(op: IRequestOp): string[] {
  const k = op.request_range?.key ?? op.request_put?.key ?? op.request_delete_range?.key;
  return k === undefined ? [] : [k.toString()];
}

export function key(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/** The first key after every key with this prefix. */
export function prefixEnd(prefix: string): Buffer {
  const buf = Buffer.from(prefix, 'utf8');
  for (let i = buf.length - 1; i >= 0; i--) {
    const byte = buf[i] ?? 0;
    if (byte < 0xff) {
      const out = Buffer.from(buf.subarray(0, i + 1));
      out[i] = byte + 1;
      return out;
    }
  }
  return ZERO;
}

export function rangeOf(
  prefix: string,
  extra: Omit<IRangeRequest, 'key' | 'range_end'> = {},
): IRequestOp {
  return { request_range: { key: key(prefix), range_end: prefixEnd(prefix), ...extra } };
}

export function getOp(k: string): IRequestOp {
  return { request_range: { key: key(k) } };
}

export function putOp(k: string, value: Buffer | string, lease?: string): IRequestOp {
  return {
    request_put: {
      key: key(k),
      value: typeof value === 'string' ? Buffer.from(value) : value,
      ...(lease === undefined || lease === '0' ? {} : { lease }),
    },
  };
}

export function deleteOp(k: string): IRequestOp {
  return { request_delete_range: { key: key(k) } };
}

export function modIs(k: string, revision: string | number): ICompare {
  return { key: key(k), target: 'Mod', result: 'Equal', mod_revision: revision };
}

export function absent(k: string): ICompare {
  return { key: key(k), target: 'Create', result: 'Equal', create_revision: 0 };
}

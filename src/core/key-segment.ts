/**
 * Percent-encodes `%`, `_` and `/` in a value used as one segment of an etcd key (a hostname, say),
 * so that it never adds a path level and never contains the `_` separator of message names.
 */
export function encodeKeySegment(value: string): string {
  return value.replace(
    /[%_/]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
  );
}

export function decodeKeySegment(encoded: string): string {
  return encoded.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}

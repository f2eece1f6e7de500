/**
 * RFC 4180 fields of one physical line. DCGM exports put one row per line, so a broken quote
 * damages its own row only: unlike a general CSV parser, an unterminated quote never swallows the
 * rest of the file, and memory stays bounded by the longest line.
 */
export type SplitResult =
  { readonly ok: true; readonly fields: string[] } | { readonly ok: false; readonly error: string };

export function splitCsvLine(line: string): SplitResult {
  const fields: string[] = [];
  const n = line.length;
  let i = 0;
  for (;;) {
    if (i < n && line.charCodeAt(i) === 34 /* " */) {
      // Quoted field: doubled quotes stand for one quote.
      let value = '';
      let from = i + 1;
      for (;;) {
        const q = line.indexOf('"', from);
        if (q === -1) {
          return { ok: false, error: `unterminated quoted field starting at column ${i + 1}` };
        }
        if (line.charCodeAt(q + 1) === 34) {
          value += line.slice(from, q + 1);
          from = q + 2;
          continue;
        }
        value += line.slice(from, q);
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === n) return { ok: true, fields };
      if (line.charCodeAt(i) !== 44 /* , */) {
        return { ok: false, error: `unexpected character after closing quote at column ${i + 1}` };
      }
      i++;
    } else {
      const c = line.indexOf(',', i);
      if (c === -1) {
        fields.push(line.slice(i));
        return { ok: true, fields };
      }
      fields.push(line.slice(i, c));
      i = c + 1;
    }
  }
}

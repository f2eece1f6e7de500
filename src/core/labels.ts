/**
 * Prometheus label sets as DCGM writes them in `labels_raw`: `key="value",key2="value2"`, with
 * `\\`, `\"` and `\n` escapes inside values. (The CSV layer has already undone the CSV quoting.)
 */
export type LabelParseResult =
  | { readonly ok: true; readonly labels: Record<string, string> }
  | { readonly ok: false; readonly error: string };

function isNameStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95; // A-Z a-z _
}

function isNameChar(c: number): boolean {
  // A-Z a-z 0-9 _ . : -
  return isNameStart(c) || (c >= 48 && c <= 58) || c === 46 || c === 45;
}

/**
 * Parses `labels_raw`. It stops at the first error, and after `maxLabels` labels (so a row of
 * thousands of labels costs little before it is refused).
 */
export function parseLabels(raw: string, maxLabels = Number.POSITIVE_INFINITY): LabelParseResult {
  // A plain object (V8 keeps the label sets of a fleet in a few shared shapes: fast to read,
  // small, cheap to freeze; a null-prototype object is a hash table, several times larger and
  // slower). A label named __proto__ is defined, not assigned, so it is just a label.
  const labels: Record<string, string> = {};
  const n = raw.length;
  let i = 0;
  let count = 0;
  // Tolerate surrounding braces, as in `{a="b"}`.
  let end = n;
  if (raw.startsWith('{') && raw.endsWith('}')) {
    i = 1;
    end = n - 1;
  }
  // Where the next backslash is (none: -1), looked for again only once passed: a label set
  // without one (nearly all) is scanned for it once, not once per value.
  let backslash = raw.indexOf('\\');
  while (i < end) {
    while (i < end && (raw[i] === ' ' || raw[i] === ',')) i++;
    if (i >= end) break;
    const nameStart = i;
    if (!isNameStart(raw.charCodeAt(i))) {
      return { ok: false, error: `labels_raw: label name expected at character ${i + 1}` };
    }
    i++;
    while (i < end && isNameChar(raw.charCodeAt(i))) i++;
    const name = raw.slice(nameStart, i);
    if (raw[i] !== '=') return { ok: false, error: `labels_raw: "=" expected after ${name}` };
    i++;
    if (raw[i] !== '"')
      return { ok: false, error: `labels_raw: quoted value expected for ${name}` };
    i++;
    let value = '';
    let closed = false;
    while (i < end) {
      const q = raw.indexOf('"', i);
      if (backslash !== -1 && backslash < i) backslash = raw.indexOf('\\', i);
      const b = backslash;
      if (q === -1 || q >= end) break;
      if (b !== -1 && b < q) {
        value += raw.slice(i, b);
        const esc = raw[b + 1];
        value += esc === 'n' ? '\n' : (esc ?? '');
        i = b + 2;
        continue;
      }
      value += raw.slice(i, q);
      i = q + 1;
      closed = true;
      break;
    }
    if (!closed) return { ok: false, error: `labels_raw: value of ${name} is not closed` };
    if (Object.hasOwn(labels, name)) {
      return { ok: false, error: `labels_raw: label ${name} appears twice` };
    }
    if (++count > maxLabels)
      return { ok: false, error: `labels_raw: more than ${maxLabels} labels` };
    setLabel(labels, name, value);
    if (i < end && raw[i] !== ',' && raw[i] !== ' ') {
      return { ok: false, error: `labels_raw: "," expected after the value of ${name}` };
    }
  }
  return { ok: true, labels };
}

/** Sets a label; one named __proto__ is defined, not assigned, so it is just a label. */
export function setLabel(labels: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') {
    Object.defineProperty(labels, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    labels[key] = value;
  }
}

/** Renders labels back to the `labels_raw` form, keys sorted, values escaped. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => {
      const v = (labels[k] ?? '').replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
      return `${k}="${v}"`;
    })
    .join(',');
}

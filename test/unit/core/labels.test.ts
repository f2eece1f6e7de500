import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLabels, parseLabels } from '../../../src/core/labels.js';

/** The labels of a successful parse, as a copy. */
function labelsOf(raw: string): Record<string, string> {
  const result = parseLabels(raw);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(raw)} to parse, got: ${result.error}`);
  return { ...result.labels };
}

function errorOf(raw: string): string {
  const result = parseLabels(raw);
  if (result.ok) assert.fail(`expected ${JSON.stringify(raw)} to be rejected`);
  return result.error;
}

// Row 1 of dcgm_metrics_20250718_134233.csv, labels_raw after CSV unquoting.
const REAL =
  'DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="mtv5-dgx1-hgpu-031",' +
  'UUID="GPU-5fd4f087-86f3-7a43-b711-4771313afc50",__name__="DCGM_FI_DEV_GPU_UTIL",' +
  'device="nvidia0",gpu="0",instance="mtv5-dgx1-hgpu-031:9400",job="dgx_dcgm_exporter",' +
  'modelName="NVIDIA H100 80GB HBM3"';

describe('parseLabels', () => {
  it('parses the labels of the real export', () => {
    assert.deepEqual(labelsOf(REAL), {
      DCGM_FI_DRIVER_VERSION: '535.129.03',
      Hostname: 'mtv5-dgx1-hgpu-031',
      UUID: 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
      __name__: 'DCGM_FI_DEV_GPU_UTIL',
      device: 'nvidia0',
      gpu: '0',
      instance: 'mtv5-dgx1-hgpu-031:9400',
      job: 'dgx_dcgm_exporter',
      modelName: 'NVIDIA H100 80GB HBM3',
    });
  });

  it('returns no labels for an empty string and for empty braces', () => {
    assert.deepEqual(labelsOf(''), {});
    assert.deepEqual(labelsOf('{}'), {});
  });

  it('accepts the braces form', () => {
    assert.deepEqual(labelsOf('{a="b"}'), { a: 'b' });
    assert.deepEqual(labelsOf('{a="b",c="d"}'), { a: 'b', c: 'd' });
  });

  it('unescapes \\", \\\\ and \\n inside values', () => {
    assert.deepEqual(labelsOf(String.raw`a="say \"hi\""`), { a: 'say "hi"' });
    assert.deepEqual(labelsOf(String.raw`path="C:\\dir\\file"`), { path: 'C:\\dir\\file' });
    assert.deepEqual(labelsOf(String.raw`msg="line1\nline2"`), { msg: 'line1\nline2' });
    assert.deepEqual(labelsOf(String.raw`a="\\",b="\"\""`), { a: '\\', b: '""' });
    assert.deepEqual(labelsOf(String.raw`a="ends with backslash\\"`), {
      a: 'ends with backslash\\',
    });
    // Escapes in a later value than the first, and in values after it (the parser looks for the
    // next backslash once, then again only once it is passed).
    assert.deepEqual(labelsOf(String.raw`a="plain",b="x\\y",c="z",d="\"q\"",e="w"`), {
      a: 'plain',
      b: 'x\\y',
      c: 'z',
      d: '"q"',
      e: 'w',
    });
  });

  it('keeps commas, equals signs, spaces and braces inside quoted values', () => {
    assert.deepEqual(labelsOf('a="x,y=z",b=" { } "'), { a: 'x,y=z', b: ' { } ' });
  });

  it('keeps empty values and unicode', () => {
    assert.deepEqual(labelsOf('a="",b="ünï€😀"'), { a: '', b: 'ünï€😀' });
  });

  it('tolerates spaces between pairs and a trailing comma', () => {
    assert.deepEqual(labelsOf('a="1", b="2",'), { a: '1', b: '2' });
  });

  it('accepts label names with digits, dots, colons and dashes after the first character', () => {
    assert.deepEqual(labelsOf('_x="1",a1.b:c-d="2"'), { _x: '1', 'a1.b:c-d': '2' });
  });

  it('makes a label named __proto__ an own key without touching any prototype', () => {
    const result = parseLabels('__proto__="evil",constructor="c",a="b"');
    assert.ok(result.ok);
    const labels = result.labels;
    assert.ok(Object.hasOwn(labels, '__proto__'));
    assert.equal(labels.__proto__, 'evil');
    assert.equal(labels.constructor, 'c');
    assert.deepEqual(Object.keys(labels).sort(), ['__proto__', 'a', 'constructor']);
    // A plain object (V8 keeps those compact and fast), whose prototype the label did not replace.
    assert.equal(Object.getPrototypeOf(labels), Object.prototype);
    // Object.prototype is untouched: a fresh object has no such property and its usual prototype.
    const plain: Record<string, unknown> = {};
    assert.equal(Object.getPrototypeOf(plain), Object.prototype);
    assert.equal(Object.hasOwn(Object.prototype, 'evil'), false);
    assert.equal(JSON.stringify(labels), '{"__proto__":"evil","constructor":"c","a":"b"}');
  });

  it('rejects a missing "=" naming the label', () => {
    assert.match(errorOf('a"b"'), /"=" expected after a/);
    assert.match(errorOf('abc'), /"=" expected after abc/);
    assert.match(errorOf('a ="b"'), /"=" expected after a/);
  });

  it('rejects an unquoted value', () => {
    assert.match(errorOf('a=b'), /quoted value expected for a/);
    assert.match(errorOf('x="1",a='), /quoted value expected for a/);
  });

  it('rejects an unclosed value', () => {
    assert.match(errorOf('a="b'), /value of a is not closed/);
    assert.match(errorOf(String.raw`a="b\"`), /value of a is not closed/);
    assert.match(errorOf('{a="b}'), /value of a is not closed/);
  });

  it('rejects a duplicate label', () => {
    assert.match(errorOf('a="1",b="2",a="3"'), /label a appears twice/);
  });

  it('rejects a bad name start, giving the position', () => {
    assert.match(errorOf('1a="b"'), /label name expected at character 1/);
    assert.match(errorOf('a="b",-c="d"'), /label name expected at character 7/);
    assert.match(errorOf('="b"'), /label name expected/);
  });

  it('rejects garbage after a closing quote', () => {
    assert.match(errorOf('a="b"c="d"'), /"," expected after the value of a/);
  });

  it('starts every error with labels_raw', () => {
    for (const raw of ['a', 'a=b', 'a="b', 'a="1",a="2"', '1="x"', 'a="b"x']) {
      assert.match(errorOf(raw), /^labels_raw: /, raw);
    }
  });
});

describe('formatLabels', () => {
  it('sorts keys and escapes values', () => {
    assert.equal(
      formatLabels({ b: 'x"y', a: 'back\\slash', c: 'two\nlines' }),
      String.raw`a="back\\slash",b="x\"y",c="two\nlines"`,
    );
    assert.equal(formatLabels({}), '');
  });

  it('round-trips through parseLabels', () => {
    const sets: Record<string, string>[] = [
      {},
      labelsOf(REAL),
      { a: '', b: '"', c: '\\', d: '\n', e: '\\n', f: '\\"', g: 'x,y="z"' },
      { 'weird.name:x-y': 'ünï€😀', _: ' spaced ' },
    ];
    for (const labels of sets) {
      const text = formatLabels(labels);
      assert.deepEqual(labelsOf(text), labels, text);
      assert.equal(formatLabels(labelsOf(text)), text);
    }
  });

  it('round-trips a label named __proto__', () => {
    const parsed = parseLabels('__proto__="p",z="1"');
    assert.ok(parsed.ok);
    const text = formatLabels(parsed.labels);
    assert.equal(text, '__proto__="p",z="1"');
    const again = parseLabels(text);
    assert.ok(again.ok);
    assert.equal(again.labels.__proto__, 'p');
  });
});

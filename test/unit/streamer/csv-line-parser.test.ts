import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitCsvLine } from '../../../src/streamer/csv/line-parser.js';

function fieldsOf(line: string): string[] {
  const result = splitCsvLine(line);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(line)} to split, got: ${result.error}`);
  return result.fields;
}

function errorOf(line: string): string {
  const result = splitCsvLine(line);
  if (result.ok) assert.fail(`expected ${JSON.stringify(line)} to be rejected`);
  return result.error;
}

describe('splitCsvLine', () => {
  it('splits unquoted fields', () => {
    assert.deepEqual(fieldsOf('a,b,c'), ['a', 'b', 'c']);
    assert.deepEqual(fieldsOf('single'), ['single']);
  });

  it('splits quoted fields', () => {
    assert.deepEqual(fieldsOf('"a","b c","d"'), ['a', 'b c', 'd']);
  });

  it('mixes quoted and unquoted fields', () => {
    assert.deepEqual(fieldsOf('1,"two",3,"four"'), ['1', 'two', '3', 'four']);
  });

  it('keeps commas inside quotes', () => {
    assert.deepEqual(fieldsOf('"a,b",c'), ['a,b', 'c']);
  });

  it('turns doubled quotes into one quote', () => {
    assert.deepEqual(fieldsOf('"say ""hi""",x'), ['say "hi"', 'x']);
    assert.deepEqual(fieldsOf('""""'), ['"']);
    assert.deepEqual(fieldsOf('"a="""'), ['a="']);
    assert.deepEqual(fieldsOf('"k=""v"",k2=""v2"""'), ['k="v",k2="v2"']);
  });

  it('keeps empty fields, quoted or not', () => {
    assert.deepEqual(fieldsOf(''), ['']);
    assert.deepEqual(fieldsOf(','), ['', '']);
    assert.deepEqual(fieldsOf('a,,b'), ['a', '', 'b']);
    assert.deepEqual(fieldsOf('"","",""'), ['', '', '']);
    assert.deepEqual(fieldsOf('"",x,""'), ['', 'x', '']);
  });

  it('gives a trailing comma an empty last field', () => {
    assert.deepEqual(fieldsOf('a,b,'), ['a', 'b', '']);
    assert.deepEqual(fieldsOf('"a","b",'), ['a', 'b', '']);
  });

  it('keeps spaces and multi-byte characters as they are', () => {
    assert.deepEqual(fieldsOf(' a ,"b ",ü€😀,"日本"'), [' a ', 'b ', 'ü€😀', '日本']);
  });

  it('splits a row of the real export', () => {
    const line =
      '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0","nvidia0",' +
      '"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031",' +
      '"","","","0","DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""mtv5-dgx1-hgpu-031"""';
    assert.deepEqual(fieldsOf(line), [
      '2025-07-18T20:42:34Z',
      'DCGM_FI_DEV_GPU_UTIL',
      '0',
      'nvidia0',
      'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
      'NVIDIA H100 80GB HBM3',
      'mtv5-dgx1-hgpu-031',
      '',
      '',
      '',
      '0',
      'DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="mtv5-dgx1-hgpu-031"',
    ]);
  });

  it('rejects an unterminated quote, naming its column', () => {
    assert.match(errorOf('"abc'), /unterminated quoted field starting at column 1/);
    assert.match(errorOf('a,"b,c'), /unterminated quoted field starting at column 3/);
    assert.match(errorOf('"a""'), /unterminated quoted field/);
    assert.match(errorOf('"'), /unterminated quoted field/);
  });

  it('rejects garbage after a closing quote, naming its column', () => {
    assert.match(errorOf('"a"b,c'), /unexpected character after closing quote at column 4/);
    assert.match(errorOf('x,"a" ,c'), /unexpected character after closing quote at column 6/);
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  DCGM_FIELDS,
  SAMPLE_METRICS,
  baseUnitOf,
  conversionFactor,
  dcgmField,
} from '../../../src/core/dcgm-fields.js';
import { isNexusError } from '../../../src/core/errors.js';

/**
 * Every field line of dcgm-exporter's etc/default-counters.csv, active and commented out, with its
 * Prometheus type, at NVIDIA/dcgm-exporter@d5e5f510a1b6b393f39a43293ccd9dc985defc79 ("Rename
 * Hostname label to hostname (#655)"). etc/dcp-metrics-included.csv at that commit lists the same
 * fields with the same types, less the four DCGM_EXP_* ones. `active`: not commented out, so served
 * by a default install; where a field is listed twice, its active line is the one that counts.
 */
const DEFAULT_COUNTERS: readonly (readonly [string, 'gauge' | 'counter' | 'label', boolean])[] = [
  ['DCGM_FI_DEV_SM_CLOCK', 'gauge', true],
  ['DCGM_FI_DEV_MEM_CLOCK', 'gauge', true],
  ['DCGM_FI_DEV_MEMORY_TEMP', 'gauge', true],
  ['DCGM_FI_DEV_GPU_TEMP', 'gauge', true],
  ['DCGM_FI_DEV_POWER_USAGE', 'gauge', true],
  ['DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', 'counter', true],
  // Commented out as counters here, active as gauges (bytes per second) under DCP below.
  ['DCGM_FI_PROF_PCIE_TX_BYTES', 'counter', false],
  ['DCGM_FI_PROF_PCIE_RX_BYTES', 'counter', false],
  ['DCGM_FI_DEV_PCIE_REPLAY_COUNTER', 'counter', true],
  ['DCGM_FI_DEV_GPU_UTIL', 'gauge', true],
  ['DCGM_FI_DEV_MEM_COPY_UTIL', 'gauge', true],
  ['DCGM_FI_DEV_ENC_UTIL', 'gauge', true],
  ['DCGM_FI_DEV_DEC_UTIL', 'gauge', true],
  ['DCGM_FI_DEV_XID_ERRORS', 'gauge', true],
  ['DCGM_FI_DEV_POWER_VIOLATION', 'counter', false],
  ['DCGM_FI_DEV_THERMAL_VIOLATION', 'counter', false],
  ['DCGM_FI_DEV_SYNC_BOOST_VIOLATION', 'counter', false],
  ['DCGM_FI_DEV_BOARD_LIMIT_VIOLATION', 'counter', false],
  ['DCGM_FI_DEV_LOW_UTIL_VIOLATION', 'counter', false],
  ['DCGM_FI_DEV_RELIABILITY_VIOLATION', 'counter', false],
  ['DCGM_EXP_CLOCK_EVENTS_COUNT', 'counter', false],
  ['DCGM_EXP_XID_ERRORS_COUNT', 'counter', false],
  ['DCGM_EXP_GPU_HEALTH_STATUS', 'counter', false],
  ['DCGM_EXP_P2P_STATUS', 'counter', false],
  ['DCGM_FI_DEV_FB_FREE', 'gauge', true],
  ['DCGM_FI_DEV_FB_USED', 'gauge', true],
  ['DCGM_FI_DEV_FB_RESERVED', 'gauge', true],
  ['DCGM_FI_DEV_ECC_SBE_VOL_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_ECC_DBE_VOL_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_ECC_SBE_AGG_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_ECC_DBE_AGG_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_RETIRED_SBE', 'counter', false],
  ['DCGM_FI_DEV_RETIRED_DBE', 'counter', false],
  ['DCGM_FI_DEV_RETIRED_PENDING', 'counter', false],
  ['DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL', 'counter', false],
  ['DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL', 'counter', true],
  ['DCGM_FI_DEV_NVLINK_BANDWIDTH_L0', 'counter', false],
  ['DCGM_FI_DEV_VGPU_LICENSE_STATUS', 'gauge', true],
  ['DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS', 'counter', true],
  ['DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS', 'counter', true],
  ['DCGM_FI_DEV_ROW_REMAP_FAILURE', 'gauge', true],
  // Static information: labels on the other series, never readings of their own.
  ['DCGM_FI_DRIVER_VERSION', 'label', true],
  ['DCGM_FI_NVML_VERSION', 'label', false],
  ['DCGM_FI_DEV_BRAND', 'label', false],
  ['DCGM_FI_DEV_SERIAL', 'label', false],
  ['DCGM_FI_DEV_OEM_INFOROM_VER', 'label', false],
  ['DCGM_FI_DEV_ECC_INFOROM_VER', 'label', false],
  ['DCGM_FI_DEV_POWER_INFOROM_VER', 'label', false],
  ['DCGM_FI_DEV_INFOROM_IMAGE_VER', 'label', false],
  ['DCGM_FI_DEV_VBIOS_VERSION', 'label', false],
  ['DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'gauge', true],
  ['DCGM_FI_PROF_SM_ACTIVE', 'gauge', false],
  ['DCGM_FI_PROF_SM_OCCUPANCY', 'gauge', false],
  ['DCGM_FI_PROF_PIPE_TENSOR_ACTIVE', 'gauge', true],
  ['DCGM_FI_PROF_DRAM_ACTIVE', 'gauge', true],
  ['DCGM_FI_PROF_PIPE_FP64_ACTIVE', 'gauge', false],
  ['DCGM_FI_PROF_PIPE_FP32_ACTIVE', 'gauge', false],
  ['DCGM_FI_PROF_PIPE_FP16_ACTIVE', 'gauge', false],
  ['DCGM_FI_PROF_PCIE_TX_BYTES', 'gauge', true],
  ['DCGM_FI_PROF_PCIE_RX_BYTES', 'gauge', true],
];

describe('DCGM field catalogue', () => {
  it("holds every reading field of dcgm-exporter's default counters, with the same type", () => {
    const activeNames = new Set(DEFAULT_COUNTERS.filter(([, , active]) => active).map(([n]) => n));
    const readings = DEFAULT_COUNTERS.filter(
      ([name, type, active]) => type !== 'label' && (active || !activeNames.has(name)),
    );
    assert.equal(DEFAULT_COUNTERS.length, 63);
    assert.equal(readings.length, 52);
    const missing = readings.filter(([name]) => dcgmField(name) === undefined).map(([n]) => n);
    assert.deepEqual(missing, []);
    const wrongType = readings
      .filter(([name, type]) => dcgmField(name)?.type !== type)
      .map(([name, type]) => `${name}: ${dcgmField(name)?.type} instead of ${type}`);
    assert.deepEqual(wrongType, []);
  });

  it('leaves the label fields out: they are labels of the readings, not readings', () => {
    const labels = DEFAULT_COUNTERS.filter(([, type]) => type === 'label').map(([n]) => n);
    assert.equal(labels.length, 9);
    assert.deepEqual(
      labels.filter((n) => dcgmField(n) !== undefined),
      [],
    );
  });

  it('names each field once, with a help text', () => {
    const names = DCGM_FIELDS.map((f) => f.name);
    assert.equal(new Set(names).size, names.length);
    assert.deepEqual(
      DCGM_FIELDS.filter((f) => f.help === '').map((f) => f.name),
      [],
    );
    for (const m of SAMPLE_METRICS) assert.ok(dcgmField(m) !== undefined, m);
  });

  it('is the table of docs/api.md, "Fields and units", row for row', () => {
    const md = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
    const rows = md
      .split('\n')
      .filter((l) => l.startsWith('| `DCGM_'))
      .map((l) => l.split('|').map((c) => c.trim().replace(/^`|`$/g, '')))
      .map((c) => [c[1], c[2], c[3], c[4]]);
    assert.deepEqual(
      rows,
      DCGM_FIELDS.map((f) => [f.name, f.unit, f.type, f.help]),
    );
  });

  it('gives the units of NVIDIA dcgm_fields.h: violation counters in ns, energy in mJ, memory in MiB', () => {
    const units = Object.fromEntries(DCGM_FIELDS.map((f) => [f.name, f.unit]));
    for (const v of ['POWER', 'THERMAL', 'SYNC_BOOST', 'BOARD_LIMIT', 'LOW_UTIL', 'RELIABILITY'])
      assert.equal(units[`DCGM_FI_DEV_${v}_VIOLATION`], 'ns', v);
    assert.equal(units.DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 'mJ');
    assert.equal(units.DCGM_FI_DEV_FB_USED, 'MiB');
    assert.equal(units.DCGM_FI_DEV_FB_RESERVED, 'MiB');
    assert.equal(units.DCGM_FI_DEV_POWER_USAGE, 'W');
    assert.equal(units.DCGM_FI_DEV_GPU_UTIL, '%');
    assert.equal(units.DCGM_FI_PROF_SM_ACTIVE, 'ratio');
    assert.equal(units.DCGM_FI_PROF_PCIE_TX_BYTES, 'B/s');
  });
});

describe('conversionFactor', () => {
  it('turns a violation counter in ns into seconds: 1,234,567,000 ns is 1.234567 s', () => {
    const f = conversionFactor('DCGM_FI_DEV_POWER_VIOLATION', 'seconds');
    assert.equal(f, 1e-9);
    assert.ok(Math.abs(1_234_567_000 * f - 1.234567) < 1e-12);
    assert.equal(conversionFactor('DCGM_FI_DEV_THERMAL_VIOLATION', 'seconds'), 1e-9);
  });

  it('turns mJ into joules and MiB into bytes, and leaves W, °C and % as they are', () => {
    assert.equal(
      1_500_000 * conversionFactor('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', 'joules'),
      1500,
    );
    assert.equal(1024 * conversionFactor('DCGM_FI_DEV_FB_USED', 'bytes'), 1024 ** 3);
    assert.equal(conversionFactor('DCGM_FI_DEV_POWER_USAGE', 'watts'), 1);
    assert.equal(conversionFactor('DCGM_FI_DEV_GPU_TEMP', 'celsius'), 1);
    assert.equal(conversionFactor('DCGM_FI_DEV_GPU_UTIL', 'percent'), 1);
    assert.equal(conversionFactor('DCGM_FI_DEV_SM_CLOCK', 'hertz'), 1e6);
  });

  it('refuses a unit the field is not in, and a field the catalogue does not know', () => {
    assert.throws(
      () => conversionFactor('DCGM_FI_DEV_FB_USED', 'seconds'),
      (err: unknown) =>
        isNexusError(err, 'INTERNAL') &&
        err.message === 'DCGM_FI_DEV_FB_USED is in MiB (bytes), not seconds',
    );
    assert.throws(
      () => conversionFactor('DCGM_FI_DEV_NOT_A_FIELD', 'bytes'),
      (err: unknown) =>
        isNexusError(err, 'INTERNAL') &&
        err.message === 'DCGM_FI_DEV_NOT_A_FIELD is not in the DCGM field catalogue',
    );
    assert.equal(baseUnitOf('ns'), 'seconds');
  });
});

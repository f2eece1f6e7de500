/**
 * NVIDIA XID error codes: what a code means and how bad it is. From NVIDIA's "Xid Errors" guide
 * and its Xid catalogue for Ampere and newer GPUs
 * (https://docs.nvidia.com/deploy/xid-errors/, "Analyzing Xid Errors with the Xid Catalog"):
 * the description is the catalogue's, shortened; the severity is Nexus's reading of its
 * resolution buckets: `critical` where the GPU needs a reset, a node reboot or service
 * (RESET_GPU, RESTART_BM, CONTACT_SUPPORT for a hardware fault), `warning` where the application
 * failed or must be restarted and the GPU itself carries on (RESTART_APP, CHECK_USER_CODE).
 */

export type XidSeverity = 'warning' | 'critical';

export interface XidInfo {
  readonly code: number;
  readonly meaning: string;
  readonly severity: XidSeverity;
}

const CATALOGUE: readonly (readonly [number, XidSeverity, string])[] = [
  [8, 'warning', 'GPU stopped processing (channel idle timeout)'],
  [13, 'warning', 'Graphics engine exception (usually an application error)'],
  [31, 'warning', 'GPU memory page fault (usually an application error)'],
  [32, 'warning', 'Invalid or corrupted push buffer stream'],
  [38, 'warning', 'Driver firmware error'],
  [43, 'warning', 'GPU stopped processing (a user application faulted)'],
  [44, 'critical', 'Graphics engine fault during context switch'],
  [45, 'warning', 'Preemptive cleanup, due to a previous error (the application was stopped)'],
  [48, 'critical', 'Double-bit ECC error'],
  [61, 'critical', 'Internal micro-controller breakpoint/warning'],
  [62, 'critical', 'Internal micro-controller halt'],
  [63, 'warning', 'ECC page retirement or row remapping recording event'],
  [64, 'critical', 'ECC page retirement or row remapper recording failure'],
  [68, 'warning', 'NVDEC0 exception (video decoder)'],
  [69, 'warning', 'Graphics engine class error'],
  [74, 'critical', 'NVLink error'],
  [79, 'critical', 'GPU has fallen off the bus'],
  [92, 'warning', 'High single-bit ECC error rate'],
  [94, 'warning', 'Contained ECC error (the affected application was stopped)'],
  [95, 'critical', 'Uncontained ECC error (every application on the GPU was affected)'],
  [109, 'warning', 'Context switch timeout error'],
  [119, 'critical', 'GSP RPC timeout'],
  [120, 'critical', 'GSP error'],
  [121, 'warning', 'C2C link corrected error'],
  [123, 'critical', 'SPDM failure'],
  [140, 'critical', 'Unrecovered ECC error'],
  [143, 'critical', 'GPU initialisation failure'],
  [145, 'warning', 'NVLink RLW error'],
  [154, 'critical', 'GPU recovery action changed (a reset or reboot is required)'],
];

const BY_CODE: ReadonlyMap<number, XidInfo> = new Map(
  CATALOGUE.map(([code, severity, meaning]) => [code, { code, meaning, severity }]),
);

/** Every XID the catalogue here knows, by code. */
export function knownXids(): readonly XidInfo[] {
  return [...BY_CODE.values()];
}

/**
 * What an XID code means. An unknown code says so and counts as a warning (something the
 * driver reported, not known to need a reset).
 */
export function describeXid(code: number): XidInfo {
  return (
    BY_CODE.get(code) ?? {
      code,
      meaning: "not in the XID catalogue Nexus knows (see NVIDIA's Xid catalogue)",
      severity: 'warning',
    }
  );
}

/** The event message of an XID: `XID 79: GPU has fallen off the bus`. */
export function xidMessage(code: number): string {
  return `XID ${code}: ${describeXid(code).meaning}`;
}

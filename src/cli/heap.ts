import { setFlagsFromString } from 'node:v8';

/**
 * Bounds how far V8 lets garbage grow before a full collection. By default the heap may grow to
 * three or four times its live data when a process allocates fast (a gateway answering bursts of
 * costly requests and fanning readings out to a thousand sockets): its resident set then follows
 * the garbage, not what it holds. Growing the heap by at most `percent` of its live size keeps the
 * peak near the live data (docs/operations.md "Memory of each component"). Not for a process whose
 * live data is a few MB and which allocates at full speed (the streamer on a file of a few
 * thousand series): full collections then come every few MB and cost it 20-50 % more CPU a record,
 * measured (the streamer bounds it only while its label cache is full). A
 * `--heap-growing-percent` on node's command line wins (NODE_OPTIONS does not allow the flag):
 * then it returns false.
 */
export function boundHeapGrowth(percent = 50): boolean {
  if (process.execArgv.some((a) => a.includes('heap-growing-percent'))) return false;
  setFlagsFromString(`--heap-growing-percent=${percent}`);
  return true;
}

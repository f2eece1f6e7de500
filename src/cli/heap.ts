import { setFlagsFromString } from 'node:v8';

/**
 * Bounds how far V8 lets garbage grow before a full collection. By default the heap may grow to
 * three or four times its live data when a process allocates fast (a streamer parsing a file, a
 * gateway answering bursts of costly requests and fanning readings out to a thousand sockets):
 * its resident set then follows the garbage, not what it holds. Growing the heap by at most
 * `percent` of its live size keeps the peak near the live data for a few percent of CPU
 * (docs/benchmarks.md, docs/operations.md "Memory of each component"). An operator's own
 * `--heap-growing-percent` (NODE_OPTIONS or the command line) wins.
 */
export function boundHeapGrowth(percent = 50): void {
  const given = `${process.env.NODE_OPTIONS ?? ''} ${process.execArgv.join(' ')}`;
  if (!given.includes('heap-growing-percent'))
    setFlagsFromString(`--heap-growing-percent=${percent}`);
}

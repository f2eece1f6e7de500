import { NexusError } from './errors.js';

/**
 * Runs a probe (a health or readiness check) with a deadline: it fails with PROBE_TIMEOUT, "no
 * answer within N ms", when it has not settled by then. The probe itself is not cancelled; its
 * late answer is ignored. The timer never outlives the probe.
 */
export async function probeWithTimeout<T>(probe: () => Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new NexusError('PROBE_TIMEOUT', `no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([probe(), late]);
  } finally {
    clearTimeout(timer);
  }
}

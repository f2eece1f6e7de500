/**
 * Runs a task now and then again and again: every `everyMs` while it succeeds, backing off (doubling,
 * up to a minute) while it fails, and not at all while the page is hidden.
 */
export interface Poller {
  /** Runs the task again now (after a user action). */
  now(): void;
  stop(): void;
}

export function poll(task: (signal: AbortSignal) => Promise<boolean>, everyMs: number): Poller {
  let stopped = false;
  const isStopped = (): boolean => stopped;
  let timer: number | undefined;
  let delay = everyMs;
  let ctl: AbortController | undefined;
  const run = async (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (isStopped()) return;
    if (document.hidden) {
      timer = window.setTimeout(() => void run(), everyMs);
      return;
    }
    ctl?.abort();
    const mine = new AbortController();
    ctl = mine;
    let ok = false;
    try {
      ok = await task(mine.signal);
    } catch {
      ok = false;
    }
    if (isStopped() || ctl !== mine) return;
    delay = ok ? everyMs : Math.min(60_000, delay * 2);
    timer = window.setTimeout(() => void run(), delay);
  };
  void run();
  return {
    now: () => {
      delay = everyMs;
      void run();
    },
    stop: () => {
      stopped = true;
      ctl?.abort();
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

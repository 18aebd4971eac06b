/** Time as the core sees it, so tests can run minutes of rate limiting in milliseconds. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.max(0, ms));
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/**
 * A clock that only moves when told to. Sleepers wake in order of their deadlines as `advance`
 * passes them, each given a turn of the event loop so the code after its `await` runs.
 */
export class ManualClock implements Clock {
  private current: number;
  private sleepers: Array<{ at: number; wake: () => void }> = [];

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sleepers.push({ at: this.current + Math.max(0, ms), wake: resolve });
      this.sleepers.sort((a, b) => a.at - b.at);
    });
  }

  /** Moves time forward by `ms`, waking every sleeper whose deadline passes. */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await settle();
      const next = this.sleepers[0];
      if (!next || next.at > target) break;
      this.sleepers.shift();
      this.current = Math.max(this.current, next.at);
      next.wake();
    }
    this.current = target;
    await settle();
  }

  get pending(): number {
    return this.sleepers.length;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

import { Clock, systemClock } from "../clock";

export interface RateLimit {
  /** At most this many requests may start within any window. */
  requests: number;
  /** The length of the sliding window, in milliseconds. */
  windowMs: number;
  /** At most this many requests in flight at once (unbounded when absent). */
  maxInFlight?: number;
}

/**
 * A client-side limiter, so a long job stays under a provider's documented limit instead of
 * bouncing off 429s: N requests per sliding window and M in flight. A request counts against the
 * window from its start until a full window after it finished: the server sees it arrive some
 * time in between, so however the network delays requests, no window of the server's ever holds
 * more than N. A server's own word (a 429, or a quota that reached zero) pauses every request
 * until the time it gave.
 */
export class RateLimiter {
  private readonly finished: number[] = [];
  private inFlight = 0;
  private pausedUntil = 0;
  private readonly waiters: Array<() => void> = [];
  private pumping = false;

  constructor(
    readonly limit: RateLimit,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(limit.requests > 0) || !(limit.windowMs > 0)) throw new RangeError("a rate limit needs requests > 0 and windowMs > 0");
  }

  /** Runs `task` once the limit allows it. */
  async schedule<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  /** Waits for a slot; the caller must `release()` once the request has finished. */
  acquire(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      void this.pump();
    });
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.finished.push(this.clock.now());
    void this.pump();
  }

  /** The server said to hold off until `until` (epoch ms). */
  pauseUntil(until: number): void {
    if (until > this.pausedUntil) this.pausedUntil = until;
  }

  /** Feeds a provider's quota headers back: when none remain, wait for the reset. */
  observeQuota(remaining: number | undefined, resetAt: number | undefined): void {
    if (remaining !== undefined && remaining <= 0 && resetAt !== undefined) this.pauseUntil(resetAt);
  }

  get queued(): number {
    return this.waiters.length;
  }

  get active(): number {
    return this.inFlight;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiters.length > 0) {
        if (this.limit.maxInFlight !== undefined && this.inFlight >= this.limit.maxInFlight) return; // release() pumps again
        if (this.inFlight >= this.limit.requests) return; // the whole window is in flight: release() pumps again
        const wait = this.waitTime();
        if (wait > 0) {
          await this.clock.sleep(wait);
          continue;
        }
        this.inFlight++;
        this.waiters.shift()!();
      }
    } finally {
      this.pumping = false;
    }
  }

  private waitTime(): number {
    const now = this.clock.now();
    while (this.finished.length > 0 && this.finished[0]! <= now - this.limit.windowMs) this.finished.shift();
    const pause = this.pausedUntil - now;
    const window = this.inFlight + this.finished.length >= this.limit.requests ? this.finished[0]! + this.limit.windowMs - now : 0;
    return Math.max(pause, window, 0);
  }
}

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
 * What a request is to the limiter. A `call` (one answer someone waits for, such as `users.me`)
 * goes first. `bulk` requests (the pages of a sync) are spread evenly over the window and leave
 * a few places of every window to calls, so a call never waits behind a whole sync.
 */
export type RequestKind = "call" | "bulk";

/** The limiter the HTTP client asks before every request: in this process, or shared through a database. */
export interface RequestLimiter {
  readonly limit: RateLimit;
  /** Waits for a slot; the answer is handed back to `release` once the request has finished. */
  acquire(kind?: RequestKind, signal?: AbortSignal): Promise<unknown>;
  release(ticket?: unknown): void;
  /** The server said to hold off until `until` (epoch ms). */
  pauseUntil(until: number): void;
  /** Feeds a provider's quota headers back: when none remain, wait for the reset. */
  observeQuota(remaining: number | undefined, resetAt: number | undefined): void;
}

/** Places of every window that bulk requests leave to calls. */
export function callReserve(limit: RateLimit): number {
  return Math.min(limit.requests - 1, Math.max(1, Math.floor(limit.requests / 20)));
}

/**
 * The gap between two bulk starts: what the window has left after the reserve and the calls of
 * the last window, spread evenly over it. Calls never find the window spent before places free,
 * and together with the calls the window stays about full.
 */
export function bulkSpacing(limit: RateLimit, callsInWindow = 0): number {
  return limit.windowMs / Math.max(1, limit.requests - callReserve(limit) - callsInWindow);
}

interface Waiter {
  kind: RequestKind;
  resolve: () => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A client-side limiter, so a long job stays under a provider's documented limit instead of
 * bouncing off 429s: N requests per sliding window and M in flight. A request counts against the
 * window from its start until a full window after it finished: the server sees it arrive some
 * time in between, so however the network delays requests, no window of the server's ever holds
 * more than N. A server's own word (a 429, or a quota that reached zero) pauses every request
 * until the time it gave. Calls are served before bulk requests (see `RequestKind`).
 */
export class RateLimiter implements RequestLimiter {
  private readonly finished: number[] = [];
  /** Starts of calls within the last window, for the pace of bulk requests. */
  private readonly callStarts: number[] = [];
  private inFlight = 0;
  private pausedUntil = 0;
  private nextBulkAt = 0;
  private readonly waiters: Waiter[] = [];
  private pumping = false;
  private wake?: AbortController;

  constructor(
    readonly limit: RateLimit,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(limit.requests > 0) || !(limit.windowMs > 0)) throw new RangeError("a rate limit needs requests > 0 and windowMs > 0");
  }

  /** Runs `task` once the limit allows it. */
  async schedule<T>(task: () => Promise<T>, kind: RequestKind = "call"): Promise<T> {
    await this.acquire(kind);
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  /** Waits for a slot; the caller must `release()` once the request has finished. */
  acquire(kind: RequestKind = "call", signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const waiter: Waiter = { kind, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const at = this.waiters.indexOf(waiter);
          if (at >= 0) this.waiters.splice(at, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
      // A call does not sit out a wait that only bulk requests have to keep.
      if (kind === "call") this.wake?.abort();
      void this.pump();
    });
  }

  release(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.finished.push(this.clock.now());
    void this.pump();
  }

  pauseUntil(until: number): void {
    if (until > this.pausedUntil) this.pausedUntil = until;
  }

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
        const callAt = this.waiters.findIndex((w) => w.kind === "call");
        const index = callAt >= 0 ? callAt : 0;
        const kind = this.waiters[index]!.kind;
        const wait = this.waitTime(kind);
        if (wait === Infinity) return; // only requests in flight can free a place: release() pumps again
        if (wait > 0) {
          // A call arriving meanwhile cuts the sleep short (the abort also clears a real timer).
          const wake = new AbortController();
          const woken = new Promise<void>((resolve) => wake.signal.addEventListener("abort", () => resolve(), { once: true }));
          this.wake = wake;
          await Promise.race([this.clock.sleep(wait, wake.signal).catch(() => undefined), woken]);
          this.wake = undefined;
          continue;
        }
        const [waiter] = this.waiters.splice(index, 1);
        if (waiter!.onAbort) waiter!.signal?.removeEventListener("abort", waiter!.onAbort);
        this.inFlight++;
        const now = this.clock.now();
        if (kind === "bulk") {
          while (this.callStarts.length > 0 && this.callStarts[0]! <= now - this.limit.windowMs) this.callStarts.shift();
          this.nextBulkAt = now + bulkSpacing(this.limit, this.callStarts.length);
        } else {
          this.callStarts.push(now);
        }
        waiter!.resolve();
      }
    } finally {
      this.pumping = false;
    }
  }

  private counted(): number {
    const now = this.clock.now();
    while (this.finished.length > 0 && this.finished[0]! <= now - this.limit.windowMs) this.finished.shift();
    return this.finished.length;
  }

  private waitTime(kind: RequestKind): number {
    const now = this.clock.now();
    const used = this.inFlight + this.counted();
    const cap = kind === "bulk" ? this.limit.requests - callReserve(this.limit) : this.limit.requests;
    const pause = this.pausedUntil - now;
    // The window frees one place at a time as finished requests leave it.
    const excess = used - cap; // >= 0: this many must leave first
    const window = excess >= 0 ? (excess < this.finished.length ? this.finished[excess]! + this.limit.windowMs - now : Infinity) : 0;
    const spacing = kind === "bulk" ? this.nextBulkAt - now : 0;
    return Math.max(pause, window, spacing, 0);
  }
}

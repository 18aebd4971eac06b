import { Clock, systemClock } from "../core/clock";

export interface LoginThrottleOptions {
  /** Failures a key may have before it must wait. */
  freeFailures?: number;
  /** The first wait; each further failure doubles it. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A key with no failure for this long starts afresh. */
  forgetAfterMs?: number;
  /** Keys remembered at most (the oldest go first), so a flood of addresses cannot fill memory. */
  maxKeys?: number;
}

interface Record {
  failures: number;
  lastFailure: number;
  allowedAt: number;
}

/**
 * Slows password guessing: after a few failures for one key (a user name, an address), that key
 * must wait before its next try, twice as long after each further failure. A caller asks with
 * `retryAfterMs(keys)` before checking a password, and reports the outcome.
 */
export class LoginThrottle {
  private readonly records = new Map<string, Record>();
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly forgetAfterMs: number;
  private readonly maxKeys: number;

  constructor(
    options: LoginThrottleOptions = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.freeFailures = options.freeFailures ?? 3;
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
    this.maxKeys = options.maxKeys ?? 10_000;
  }

  /** How long the longest-waiting of `keys` must still wait; 0 when a try is allowed now. */
  retryAfterMs(keys: readonly string[]): number {
    const now = this.clock.now();
    let wait = 0;
    for (const key of keys) {
      const record = this.current(key, now);
      if (record) wait = Math.max(wait, record.allowedAt - now);
    }
    return wait;
  }

  failed(keys: readonly string[]): void {
    const now = this.clock.now();
    for (const key of keys) {
      const record = this.current(key, now) ?? { failures: 0, lastFailure: now, allowedAt: now };
      record.failures += 1;
      record.lastFailure = now;
      const over = record.failures - this.freeFailures;
      record.allowedAt = over > 0 ? now + Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (over - 1)) : now;
      this.records.delete(key); // re-insert: Map order is the age order used for eviction
      this.records.set(key, record);
    }
    while (this.records.size > this.maxKeys) this.records.delete(this.records.keys().next().value!);
  }

  succeeded(keys: readonly string[]): void {
    for (const key of keys) this.records.delete(key);
  }

  private current(key: string, now: number): Record | undefined {
    const record = this.records.get(key);
    if (record && now - record.lastFailure > this.forgetAfterMs && now >= record.allowedAt) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }
}

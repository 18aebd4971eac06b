import assert from "node:assert/strict";
import { ManualClock } from "../../src/core/clock";
import { RateLimiter } from "../../src/core/http/limiter";

/** The most starts in any window of `windowMs` among sorted start times. */
function busiestWindow(starts: number[], windowMs: number): number {
  let best = 0;
  let left = 0;
  for (let right = 0; right < starts.length; right++) {
    while (starts[right]! - starts[left]! >= windowMs) left++;
    best = Math.max(best, right - left + 1);
  }
  return best;
}

describe("rate limiter", () => {
  it("holds 200 requests per minute under a load of 1,000 queued requests", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 200, windowMs: 60_000 }, clock);
    const starts: number[] = [];
    const all = Array.from({ length: 1000 }, () =>
      limiter.schedule(async () => {
        starts.push(clock.now());
        await clock.sleep(250); // each request takes a quarter second
      }),
    );
    let finished = false;
    const done = Promise.all(all).then(() => (finished = true));
    for (let i = 0; i < 400 && !finished; i++) await clock.advance(1000);
    await done;
    assert.equal(starts.length, 1000);
    assert.equal(busiestWindow(starts, 60_000), 200);
    // and it does not hold back more than it must: 1,000 requests in just over four minutes
    assert.ok(starts.at(-1)! <= 4 * 60_000 + 1000, `last start at ${starts.at(-1)} ms`);
  });

  it("keeps at most M requests in flight", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 1000, windowMs: 1000, maxInFlight: 4 }, clock);
    let inFlight = 0;
    let most = 0;
    const all = Array.from({ length: 40 }, () =>
      limiter.schedule(async () => {
        most = Math.max(most, ++inFlight);
        await clock.sleep(100);
        inFlight--;
      }),
    );
    for (let i = 0; i < 20; i++) await clock.advance(100);
    await Promise.all(all);
    assert.equal(most, 4);
  });

  it("pauses every request until the time a server gave", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 100, windowMs: 1000 }, clock);
    limiter.pauseUntil(5000);
    let started = false;
    const run = limiter.schedule(async () => {
      started = true;
    });
    await clock.advance(4999);
    assert.equal(started, false);
    await clock.advance(1);
    await run;
    assert.equal(started, true);
  });

  it("waits for the reset when the provider's quota reaches zero", async () => {
    const clock = new ManualClock(1000);
    const limiter = new RateLimiter({ requests: 100, windowMs: 1000 }, clock);
    limiter.observeQuota(0, 3000);
    let started = false;
    const run = limiter.schedule(async () => {
      started = true;
    });
    await clock.advance(1500);
    assert.equal(started, false);
    await clock.advance(600);
    await run;
    assert.equal(started, true);
  });
});

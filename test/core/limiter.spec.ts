import assert from "node:assert/strict";
import { ManualClock } from "../../src/core/clock";
import { Database } from "../../src/core/db/database";
import { RateLimiter } from "../../src/core/http/limiter";
import { SharedRateLimiter } from "../../src/core/http/shared-limiter";
import { DATABASE_KINDS, kindLabel, openDatabase } from "../support/databases";
import { busiestWindow } from "../support/workers";

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

  it("serves a call before the sync pages waiting with it, and keeps a few places of every window for calls", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 40, windowMs: 10_000 }, clock);
    const order: string[] = [];
    const bulk = Array.from({ length: 60 }, (_, i) => limiter.schedule(async () => void order.push(`page ${i}`), "bulk"));
    for (let i = 0; i < 20; i++) await clock.advance(100);
    const call = limiter.schedule(async () => void order.push("call"), "call");
    await clock.advance(1);
    await call;
    assert.ok(order.indexOf("call") <= order.filter((o) => o.startsWith("page")).length, "the call did not wait for the pages queued before it");
    const pagesBefore = order.indexOf("call");
    assert.ok(pagesBefore < 10, `${pagesBefore} pages went before the call`);
    let finished = false;
    const done = Promise.all(bulk).then(() => (finished = true));
    for (let i = 0; i < 400 && !finished; i++) await clock.advance(100);
    await done;
  });

  it("spreads a sync's pages evenly over the window instead of sending them in one burst", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 200, windowMs: 60_000 }, clock);
    const starts: number[] = [];
    const all = Array.from({ length: 400 }, () => limiter.schedule(async () => void starts.push(clock.now()), "bulk"));
    let finished = false;
    const done = Promise.all(all).then(() => (finished = true));
    for (let i = 0; i < 2000 && !finished; i++) await clock.advance(100);
    await done;
    for (let i = 1; i < starts.length; i++) assert.ok(starts[i]! - starts[i - 1]! >= 300, `two pages ${starts[i]! - starts[i - 1]!} ms apart`);
    const busiest = busiestWindow(starts, 60_000);
    assert.ok(busiest <= 200 - 10 && busiest >= 185, `${busiest} pages in the busiest minute: a few places stay free for calls`);
  });

  it("lets bulk requests through a limit of one request per window", async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ requests: 1, windowMs: 1000 }, clock);
    const starts: number[] = [];
    const all = Promise.all(Array.from({ length: 3 }, () => limiter.schedule(async () => void starts.push(clock.now()), "bulk")));
    for (let i = 0; i < 50 && starts.length < 3; i++) await clock.advance(100);
    await all;
    assert.deepEqual(starts, [0, 1000, 2000]);
  });
});

for (const kind of DATABASE_KINDS) describe(`rate limiter shared through PostgreSQL (${kindLabel(kind)})`, function () {
  this.timeout(60_000);
  let opened: Awaited<ReturnType<typeof openDatabase>>;
  const dbs: Database[] = [];

  before(async () => {
    opened = await openDatabase(kind, "gw_limit");
    dbs.push(opened.db);
    // A second pool on the same database, as a second node or instance has.
    dbs.push(await Database.open(kind === "server" ? { kind, connection: opened.testDb!.connection } : { kind, dataDir: opened.dataDir!, keepAliveMs: 0 }, { warn: () => undefined }));
  });
  after(async () => {
    await dbs.pop()?.close();
    await opened.drop();
  });

  it("two limiters on one database, as two instances have, keep one window between them", async () => {
    const limit = { requests: 10, windowMs: 1000 };
    // One bucket for both: the same client id.
    const bucket = `test:shared:${Math.random()}`;
    const limiters = dbs.map((db) => new SharedRateLimiter({ bucket, limit, database: async () => db }));
    const starts: number[] = [];
    const ends: number[] = [];
    const request = async (limiter: SharedRateLimiter, kind: "call" | "bulk") => {
      const ticket = await limiter.acquire(kind);
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 20));
      ends.push(Date.now());
      limiter.release(ticket);
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: 30 }, (_, i) => request(limiters[i % 2]!, i % 5 === 0 ? "call" : "bulk")));
    starts.sort((x, y) => x - y);
    assert.ok(busiestWindow(starts, 1000) <= 10, `${busiestWindow(starts, 1000)} requests started within one second`);
    assert.ok(Date.now() - started >= 2000, "30 requests at 10 a second took two windows at least");
    const { rows } = await dbs[0]!.query("SELECT count(*)::int AS n FROM gluework_rate_slots WHERE bucket = $1 AND finished_at IS NULL", [bucket]);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(rows[0].n <= 2, "every finished request was recorded as finished");
  });

  it("a limiter whose database cannot be opened paces in its own process", async () => {
    const limiter = new SharedRateLimiter({ bucket: `test:none:${Math.random()}`, limit: { requests: 5, windowMs: 500 }, database: () => Promise.reject(new Error("no database")) });
    const starts: number[] = [];
    await Promise.all(Array.from({ length: 10 }, async () => {
      const ticket = await limiter.acquire();
      starts.push(Date.now());
      limiter.release(ticket);
    }));
    starts.sort((x, y) => x - y);
    assert.ok(busiestWindow(starts, 500) <= 5);
  });
});

import assert from "node:assert/strict";
import { inspect } from "node:util";
import { HttpClient, HttpError, NetworkError } from "../../src/core/http/client";
import { RateLimiter } from "../../src/core/http/limiter";
import { registerSecret } from "../../src/core/redact";
import { SandboxServer } from "../../src/sandbox/server";

describe("HTTP client", () => {
  const server = new SandboxServer();
  let hits: Array<{ at: number; auth?: string }> = [];

  before(async () => {
    server.route("GET", "/thing", (req) => {
      hits.push({ at: Date.now(), auth: req.headers.authorization });
      return { json: { ok: true } };
    });
    server.route("POST", "/thing", () => {
      hits.push({ at: Date.now() });
      return { json: { ok: true } };
    });
    // A provider enforcing 20 requests per sliding second with 429s, as Teamleader does per minute.
    const window: number[] = [];
    server.route("GET", "/limited", () => {
      const now = Date.now();
      while (window.length && window[0]! <= now - 1000) window.shift();
      if (window.length >= 20) {
        server.count("limited 429");
        return { status: 429, json: { errors: [{ title: "Too many requests" }] } };
      }
      window.push(now);
      server.count("limited ok");
      return { json: { ok: true } };
    });
    await server.listen();
  });
  after(() => server.close());
  beforeEach(() => {
    hits = [];
    server.clearFaults();
    server.resetStats();
  });

  const client = (extra: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}) =>
    new HttpClient({ name: "Test API", baseUrl: server.url, backoff: { baseDelayMs: 10, maxDelayMs: 50 }, ...extra });

  it("waits at least the 1.5 s a 429's Retry-After asks for, then succeeds", async () => {
    server.inject({ path: "/thing", status: 429, headers: { "retry-after": "1.5" }, json: { message: "slow down" } });
    const started = Date.now();
    const body = await client().json<{ ok: boolean }>({ path: "/thing" });
    assert.deepEqual(body, { ok: true });
    assert.equal(hits.length, 1);
    assert.ok(hits[0]!.at - started >= 1500, `retried after ${hits[0]!.at - started} ms`);
  });

  it("retries a GET after a 503 and after a dropped connection", async () => {
    server.inject({ path: "/thing", status: 503 });
    server.inject({ path: "/thing", drop: true });
    assert.deepEqual(await client().json({ path: "/thing" }), { ok: true });
    assert.equal(server.counter("fault 503"), 1);
  });

  it("does not retry a POST after a 503, and says what the provider said", async () => {
    server.inject({ method: "POST", path: "/thing", status: 503, json: { errors: [{ title: "Maintenance", meta: { hint: "back at noon" } }] } });
    await assert.rejects(client().request({ method: "POST", path: "/thing", json: {} }), (err: HttpError) => {
      assert.ok(err instanceof HttpError);
      assert.equal(err.statusCode, 503);
      assert.match(err.message, /^Test API answered 503 Service Unavailable to POST \/thing: Maintenance \(back at noon\)$/);
      return true;
    });
    assert.equal(hits.length, 0);
  });

  it("retries a POST the caller marks idempotent", async () => {
    server.inject({ method: "POST", path: "/thing", status: 502 });
    await client().request({ method: "POST", path: "/thing", json: {}, idempotent: true });
    assert.equal(hits.length, 1);
  });

  it("refreshes the token once after a 401 and retries with the new one", async () => {
    let invalidated = 0;
    const auth = {
      getAccessToken: async () => "old-token-value",
      invalidate: async (rejected: string) => {
        assert.equal(rejected, "old-token-value");
        invalidated++;
        return "new-token-value";
      },
    };
    server.inject({ path: "/thing", status: 401 });
    await client({ auth }).json({ path: "/thing" });
    assert.equal(invalidated, 1);
    assert.equal(hits[0]!.auth, "Bearer new-token-value");
  });

  it("gives up after a second 401 instead of looping", async () => {
    const auth = { getAccessToken: async () => "a-token-123", invalidate: async () => "b-token-456" };
    server.inject({ path: "/thing", status: 401, times: 5 });
    await assert.rejects(client({ auth }).json({ path: "/thing" }), (err: HttpError) => err.statusCode === 401);
    assert.equal(server.counter("fault 401"), 2);
  });

  it("times out a request that gets no answer and reports it as a timeout", async () => {
    server.route("GET", "/slow", () => new Promise((r) => setTimeout(() => r({ json: {} }), 2000)));
    await assert.rejects(client({ maxRetries: 0 }).json({ path: "/slow", timeoutMs: 100 }), (err: NetworkError) => {
      assert.ok(err instanceof NetworkError);
      assert.equal(err.code, "GW_HTTP_TIMEOUT");
      assert.match(err.message, /no answer within 100 ms/);
      return true;
    });
  });

  it("keeps secrets out of its error messages and out of inspected errors", async () => {
    registerSecret("sup3r-s3cret-client-value");
    server.inject({ path: "/thing", status: 400, json: { error: "invalid_request", error_description: "bad secret sup3r-s3cret-client-value" } });
    const err = await client()
      .json({ path: "/thing", query: { access_token: "abc123456789" } })
      .catch((e: Error) => e);
    assert.ok(err instanceof HttpError);
    assert.doesNotMatch(err.message, /sup3r-s3cret|abc123456789/);
    assert.doesNotMatch(inspect(err), /sup3r-s3cret|abc123456789/);
    assert.doesNotMatch(JSON.stringify(err), /sup3r-s3cret/);
  });

  it("stays under a provider's sliding-window limit under load: 100 requests, no 429", async () => {
    const limiter = new RateLimiter({ requests: 20, windowMs: 1000, maxInFlight: 4 });
    const c = client({ limiter, maxRateLimitWaits: 0 });
    await Promise.all(Array.from({ length: 100 }, () => c.json({ path: "/limited" })));
    assert.equal(server.counter("limited ok"), 100);
    assert.equal(server.counter("limited 429"), 0);
  });

  it("waits out nine 429s whose reset is 0.1 s ahead instead of failing after a few hundred ms", async () => {
    server.inject({ path: "/thing", status: 429, headers: { "retry-after": "0.1" }, json: { errors: [{ title: "Too many requests" }] }, times: 9 });
    assert.deepEqual(await client({ backoff: { baseDelayMs: 100, maxDelayMs: 1000 } }).json({ path: "/thing" }), { ok: true });
    assert.equal(server.counter("fault 429"), 9);
  });

  it("gives up on 429s after the time it may wait, with an error that names the limit", async () => {
    server.inject({ path: "/thing", status: 429, headers: { "retry-after": "0.2", "x-ratelimit-limit": "200" }, json: { errors: [{ title: "Too many requests" }] }, times: 1000 });
    const limiter = new RateLimiter({ requests: 200, windowMs: 60_000 });
    const started = Date.now();
    const err = await client({ limiter, maxRateLimitWaitMs: 1000 })
      .json({ path: "/thing" })
      .catch((e: Error) => e);
    assert.ok(err instanceof HttpError && err.statusCode === 429, String(err));
    assert.match(err.message, /limit of 200 requests per minute/);
    assert.equal(err.status, "rate limited");
    const waited = Date.now() - started;
    assert.ok(waited >= 800 && waited < 5000, `gave up after ${waited} ms`);
  });

  it("takes the access token once the limiter lets the request go, not before it waits", async () => {
    const limiter = new RateLimiter({ requests: 1, windowMs: 600 });
    const takenAt: number[] = [];
    const auth = { getAccessToken: async () => (takenAt.push(Date.now()), `token-${takenAt.length}`), invalidate: async () => "fresh" };
    const c = client({ limiter, auth });
    await c.json({ path: "/thing" });
    const started = Date.now();
    await c.json({ path: "/thing" });
    assert.ok(takenAt[1]! - started >= 500, `the token was taken ${takenAt[1]! - started} ms after the call, before its wait in the limiter ended`);
    assert.equal(hits[1]!.auth, "Bearer token-2");
  });
});

import assert from "node:assert/strict";
import { backoffDelay, isRetryableNetworkError, isRetryableStatus, parseResetTimestamp, serverRetryDelay } from "../../src/core/http/retry";

describe("retry decisions", () => {
  const now = Date.parse("2026-11-23T10:00:00Z");

  it("reads Retry-After in seconds, decimals included", () => {
    assert.equal(serverRetryDelay({ "retry-after": "1.5" }, now), 1500);
    assert.equal(serverRetryDelay({ "retry-after": "2.128" }, now), 2128);
    assert.equal(serverRetryDelay({ "retry-after": "10" }, now), 10_000);
  });

  it("reads Retry-After as an HTTP date", () => {
    assert.equal(serverRetryDelay({ "retry-after": "Mon, 23 Nov 2026 10:00:07 GMT" }, now), 7000);
  });

  it("reads Teamleader's X-RateLimit-Reset as an ISO timestamp, with or without a colon in the offset", () => {
    assert.equal(serverRetryDelay({ "x-ratelimit-reset": "2026-11-23T11:00:03.500+0100" }, now), 3500);
    assert.equal(serverRetryDelay({ "x-ratelimit-reset": "2026-11-23T10:00:02+00:00" }, now), 2000);
    assert.equal(parseResetTimestamp("2026-11-23T10:00:02Z"), now + 2000);
  });

  it("prefers Retry-After over X-RateLimit-Reset and says nothing when neither is there", () => {
    assert.equal(serverRetryDelay({ "retry-after": "1", "x-ratelimit-reset": "2026-11-23T10:01:00Z" }, now), 1000);
    assert.equal(serverRetryDelay({}, now), undefined);
    assert.equal(serverRetryDelay({ "retry-after": "soon" }, now), undefined);
  });

  it("backs off exponentially with jitter, within half and all of the ceiling, capped", () => {
    const opts = { baseDelayMs: 100, maxDelayMs: 1000 };
    assert.equal(backoffDelay(0, 0, opts), 50);
    assert.equal(backoffDelay(0, 0.999999, opts), 100);
    assert.equal(backoffDelay(3, 0, opts), 400);
    assert.equal(backoffDelay(10, 0.5, opts), 750);
  });

  it("retries 5xx except 501 and 505, and network failures found anywhere in the cause chain", () => {
    assert.equal(isRetryableStatus(503), true);
    assert.equal(isRetryableStatus(501), false);
    assert.equal(isRetryableStatus(404), false);
    assert.equal(isRetryableNetworkError(Object.assign(new Error("x"), { cause: Object.assign(new Error("y"), { code: "ECONNRESET" }) })), true);
    assert.equal(isRetryableNetworkError(new Error("plain")), false);
  });
});

// Pure decisions of the retry loop: whether to try again and how long to wait. No clocks read here
// except the `now` a caller passes, so every rule is tested without waiting.

export interface BackoffOptions {
  /** First delay, in milliseconds. */
  baseDelayMs: number;
  /** No delay is ever longer than this. */
  maxDelayMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseDelayMs: 500, maxDelayMs: 30_000 };

/**
 * Exponential backoff with full jitter: a delay drawn from [base·2^attempt / 2, base·2^attempt],
 * capped. `random` is a value in [0, 1) so the function stays pure.
 */
export function backoffDelay(attempt: number, random: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name.toLowerCase()] ?? headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * How long a server asked us to wait, in milliseconds, or undefined when it did not say.
 * Reads `Retry-After` (seconds, decimals allowed, or an HTTP date) first, then Teamleader's
 * `X-RateLimit-Reset` (an ISO 8601 timestamp, not epoch seconds).
 */
export function serverRetryDelay(headers: HeaderBag, now: number): number | undefined {
  const retryAfter = header(headers, "retry-after")?.trim();
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) return Math.ceil(Number(retryAfter) * 1000);
    const at = Date.parse(retryAfter);
    if (!Number.isNaN(at)) return Math.max(0, at - now);
  }
  const reset = header(headers, "x-ratelimit-reset")?.trim();
  if (reset) {
    const at = parseResetTimestamp(reset);
    if (at !== undefined) return Math.max(0, at - now);
  }
  return undefined;
}

/** `X-RateLimit-Reset` as epoch milliseconds: an ISO timestamp (Teamleader) or epoch seconds (others). */
export function parseResetTimestamp(value: string): number | undefined {
  if (/^\d{9,11}(\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  // ISO offsets without a colon (+0100) are valid ISO 8601 but not accepted by every Date.parse.
  const normalised = value.replace(/([+-]\d{2})(\d{2})$/, "$1:$2");
  const at = Date.parse(normalised);
  return Number.isNaN(at) ? undefined : at;
}

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/** Server errors worth another try: 5xx except "not implemented" and "version not supported". */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 && status !== 501 && status !== 505;
}

const RETRYABLE_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "GW_HTTP_TIMEOUT",
]);

/** Network failures worth another try for an idempotent request. */
export function isRetryableNetworkError(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; current && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && RETRYABLE_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

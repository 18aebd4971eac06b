import { Agent, Dispatcher, request as undiciRequest } from "undici";
import { Clock, systemClock } from "../clock";
import { PipelineError } from "../errors";
import { describeUrl, redact } from "../redact";
import type { RunCounts } from "../run-counts";
import { RequestKind, RequestLimiter } from "./limiter";
import {
  BackoffOptions,
  DEFAULT_BACKOFF,
  backoffDelay,
  isIdempotent,
  isRetryableNetworkError,
  isRetryableStatus,
  parseResetTimestamp,
  serverRetryDelay,
} from "./retry";

/** Where a client gets its bearer token, and how it asks for a new one after a 401. */
export interface TokenSource {
  /** A valid token; a refresh it had to make is added to `counts` (the run that asked). */
  getAccessToken(counts?: RunCounts): Promise<string>;
  /** The API refused `rejected`: return a fresh token (one forced refresh at most). */
  invalidate(rejected: string, counts?: RunCounts): Promise<string>;
}

export type QueryValue = string | number | boolean | undefined | null | ReadonlyArray<string | number>;

export interface HttpRequest {
  method?: string;
  /** A path relative to the client's base URL, or an absolute URL. */
  path: string;
  query?: Record<string, QueryValue>;
  headers?: Record<string, string>;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as application/x-www-form-urlencoded. */
  form?: Record<string, string>;
  body?: string | Buffer;
  /** Overrides the method's own idempotency (Teamleader's list calls are POSTs that read). */
  idempotent?: boolean;
  /** Set to false to send no Authorization header even though the client has a token source. */
  auth?: boolean;
  timeoutMs?: number;
  /** The most an answer's body may hold, in bytes (the client's `maxResponseBytes` by default). */
  maxResponseBytes?: number;
  signal?: AbortSignal;
  /** To the limiter: one call someone waits for (the default), or one of many (a sync's pages). */
  kind?: RequestKind;
  /** The run this request is part of: its requests, 429s, retries and token refreshes are added here. */
  counts?: RunCounts;
}

export interface HttpResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  text: string;
}

export interface HttpClientOptions {
  /** The provider's name as a user knows it ("GoTo", "Teamleader"): it starts every error message. */
  name: string;
  baseUrl: string;
  /** The deadline of one request, body included: it aborts the request. */
  timeoutMs?: number;
  /** An answer whose body holds more than this many bytes aborts its request (16 MiB by default). */
  maxResponseBytes?: number;
  /** Aborts every request of this client (a connection test's deadline). */
  signal?: AbortSignal;
  /** Retries after a network error or a 5xx, for idempotent requests. */
  maxRetries?: number;
  /** How long one request may keep waiting out 429s, from the first one, before it fails naming the limit. */
  maxRateLimitWaitMs?: number;
  /** And at most this many 429s (no bound by default: the time bounds it). */
  maxRateLimitWaits?: number;
  /** A server asking for a longer pause than this fails the request instead. */
  maxServerDelayMs?: number;
  backoff?: BackoffOptions;
  limiter?: RequestLimiter;
  auth?: TokenSource;
  /**
   * Besides a 401, an answer that says the token was refused (a provider that answers 403 for an
   * expired token): it gets the same one forced refresh and retry.
   */
  isTokenRejected?: (status: number, body: unknown) => boolean;
  /** Reads the provider's error body into one line; the generic reader knows the common shapes. */
  describeError?: (status: number, body: unknown) => string | undefined;
  /** Feed `X-RateLimit-Remaining`/`-Reset` into the limiter. */
  readQuotaHeaders?: boolean;
  headers?: Record<string, string>;
  log?: (line: string) => void;
  clock?: Clock;
  random?: () => number;
  dispatcher?: Dispatcher;
}

/** The provider answered with an error status. */
export class HttpError extends PipelineError {
  readonly statusCode: number;
  readonly body: unknown;
  readonly providerCode?: string;

  constructor(message: string, init: { statusCode: number; body: unknown; providerCode?: string; status?: string; code?: string }) {
    super(message, {
      status: init.status ?? `HTTP ${init.statusCode}`,
      code: init.code ?? `GW_HTTP_${init.statusCode}`,
      httpStatus: init.statusCode,
    });
    this.statusCode = init.statusCode;
    this.body = init.body;
    this.providerCode = init.providerCode;
  }
}

/** The provider could not be reached or did not answer in time. */
export class NetworkError extends PipelineError {}

/** An answer larger than the cap: the request was aborted before it could fill the memory. */
export class ResponseTooLargeError extends PipelineError {
  constructor(
    message: string,
    readonly maxBytes: number,
  ) {
    super(message, { status: "answer too large", code: "GW_HTTP_TOO_LARGE", httpStatus: 502 });
  }
}

/** What one answer may hold unless a client or request says otherwise. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

const DEFAULTS = {
  timeoutMs: 30_000,
  maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
  maxRetries: 4,
  maxRateLimitWaitMs: 60_000,
  maxRateLimitWaits: Infinity,
  maxServerDelayMs: 120_000,
};

/**
 * A small HTTP client on undici with a fixed pipeline: limiter → bearer token → timeout → retry
 * loop (server's `Retry-After` first, then backoff with jitter) → redacted debug log. The token is
 * taken once the limiter lets the request go, so a long wait never sends an expired one.
 */
export class HttpClient {
  private readonly opts: HttpClientOptions & typeof DEFAULTS;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly clock: Clock;
  private readonly random: () => number;

  constructor(options: HttpClientOptions) {
    this.opts = { ...DEFAULTS, ...stripUndefined(options) };
    this.ownsDispatcher = !options.dispatcher;
    this.dispatcher = options.dispatcher ?? new Agent({ keepAliveTimeout: 10_000, connections: 16 });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
  }

  get name(): string {
    return this.opts.name;
  }

  /**
   * This client for one run: the same connections, limiter and token, with every request's
   * requests, 429s, retries and token refreshes added to `counts`. Nothing to close.
   */
  withCounts(counts: RunCounts | undefined): HttpClient {
    if (!counts) return this;
    const shared = this;
    return Object.assign(Object.create(shared) as HttpClient, {
      request: <T>(req: HttpRequest) => shared.request<T>({ ...req, counts: req.counts ?? counts }),
      withCounts: (other: RunCounts | undefined) => shared.withCounts(other),
      close: async () => undefined,
    });
  }

  async json<T = unknown>(req: HttpRequest): Promise<T> {
    return (await this.request<T>(req)).body;
  }

  async request<T = unknown>(request: HttpRequest): Promise<HttpResponse<T>> {
    const signals = [request.signal, this.opts.signal].filter((x): x is AbortSignal => !!x);
    const req = signals.length > 1 ? { ...request, signal: AbortSignal.any(signals) } : { ...request, signal: signals[0] };
    const method = (req.method ?? "GET").toUpperCase();
    const url = this.buildUrl(req);
    const idempotent = req.idempotent ?? isIdempotent(method);
    const useAuth = this.opts.auth !== undefined && req.auth !== false;
    let token: string | undefined;
    let retries = 0;
    let rateLimitWaits = 0;
    /** When the first 429 came: waits are bounded by the time since, not by their count. */
    let rateLimitedSince: number | undefined;
    let refreshedAfter401 = false;
    let freshToken = false;
    const counts = req.counts;

    for (;;) {
      req.signal?.throwIfAborted();
      let res: HttpResponse<T>;
      const ticket = await this.opts.limiter?.acquire(req.kind ?? "call", req.signal);
      // After the wait: a token taken before it may have expired meanwhile.
      if (useAuth && !freshToken) {
        try {
          token = await this.opts.auth!.getAccessToken(counts);
        } catch (err) {
          this.opts.limiter?.release(ticket);
          throw err;
        }
      }
      freshToken = false;
      if (counts) counts.requests++;
      try {
        res = await this.send<T>(method, url, req, token);
      } catch (err) {
        this.opts.limiter?.release(ticket);
        if (idempotent && retries < this.opts.maxRetries && isRetryableNetworkError(err)) {
          if (counts) counts.retries++;
          await this.clock.sleep(backoffDelay(retries++, this.random(), this.opts.backoff ?? DEFAULT_BACKOFF), req.signal);
          continue;
        }
        if (err instanceof ResponseTooLargeError) throw err;
        throw this.networkError(method, url, err);
      }
      this.opts.limiter?.release(ticket);

      if (this.opts.readQuotaHeaders) this.observeQuota(res.headers);

      if ((res.status === 401 || this.opts.isTokenRejected?.(res.status, res.body) === true) && useAuth && !refreshedAfter401) {
        refreshedAfter401 = true;
        token = await this.opts.auth!.invalidate(token!, counts);
        freshToken = true;
        continue;
      }
      if (res.status === 429) {
        if (counts) counts.http429++;
        // The server's Retry-After or reset is followed as given; our backoff only when it gives none.
        const now = this.clock.now();
        rateLimitedSince ??= now;
        const wait = serverRetryDelay(res.headers, now) ?? backoffDelay(rateLimitWaits, this.random(), this.opts.backoff ?? DEFAULT_BACKOFF);
        if (rateLimitWaits < this.opts.maxRateLimitWaits && wait <= this.opts.maxServerDelayMs && now + wait - rateLimitedSince <= this.opts.maxRateLimitWaitMs) {
          rateLimitWaits++;
          this.opts.limiter?.pauseUntil(this.clock.now() + wait);
          this.opts.log?.(`${method} ${describeUrl(url)} rate limited: waiting ${wait} ms`);
          await this.clock.sleep(wait, req.signal);
          continue;
        }
        throw this.rateLimitError(method, url, res, rateLimitWaits, now - rateLimitedSince);
      }
      if (isRetryableStatus(res.status) && idempotent && retries < this.opts.maxRetries) {
        const wait = serverRetryDelay(res.headers, this.clock.now()) ?? backoffDelay(retries, this.random(), this.opts.backoff);
        retries++;
        if (counts) counts.retries++;
        await this.clock.sleep(Math.min(wait, this.opts.maxServerDelayMs), req.signal);
        continue;
      }
      if (res.status >= 400) throw this.httpError(method, url, res);
      return res;
    }
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private buildUrl(req: HttpRequest): URL {
    const url = /^https?:\/\//i.test(req.path) ? new URL(req.path) : new URL(req.path.replace(/^\//, ""), withSlash(this.opts.baseUrl));
    for (const [key, value] of Object.entries(req.query ?? {})) {
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) for (const v of value) url.searchParams.append(key, String(v));
      else url.searchParams.set(key, String(value));
    }
    return url;
  }

  private async send<T>(method: string, url: URL, req: HttpRequest, token: string | undefined): Promise<HttpResponse<T>> {
    const headers: Record<string, string> = { accept: "application/json", ...this.opts.headers, ...req.headers };
    let body: string | Buffer | undefined = req.body;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["content-type"] ??= "application/json";
    } else if (req.form) {
      body = new URLSearchParams(req.form).toString();
      headers["content-type"] ??= "application/x-www-form-urlencoded";
    }
    if (token) headers.authorization = `Bearer ${token}`;

    const started = Date.now();
    const res = await readCapped(url, {
      method,
      headers,
      body,
      dispatcher: this.dispatcher,
      timeoutMs: req.timeoutMs ?? this.opts.timeoutMs,
      maxBytes: req.maxResponseBytes ?? this.opts.maxResponseBytes,
      signal: req.signal,
      name: this.opts.name,
    });
    this.opts.log?.(`${method} ${describeUrl(url)} → ${res.status} in ${Date.now() - started} ms`);
    return { status: res.status, headers: res.headers, text: res.text, body: parseBody(res.text, res.headers["content-type"]) as T };
  }

  private observeQuota(headers: HttpResponse["headers"]): void {
    const remaining = Number(first(headers["x-ratelimit-remaining"]));
    const reset = first(headers["x-ratelimit-reset"]);
    const resetAt = reset ? parseResetTimestamp(reset) : undefined;
    this.opts.limiter?.observeQuota(Number.isFinite(remaining) ? remaining : undefined, resetAt);
  }

  private httpError(method: string, url: URL, res: HttpResponse<unknown>, status?: string): HttpError {
    const detail = (this.opts.describeError ?? describeProviderError)(res.status, res.body) ?? describeProviderError(res.status, res.body);
    const where = `${method} ${url.pathname}`;
    const message = `${this.opts.name} answered ${res.status}${statusText(res.status)} to ${where}${detail ? `: ${detail}` : ""}`;
    return new HttpError(message, { statusCode: res.status, body: res.body, providerCode: providerCode(res.body), status });
  }

  /** A 429 that outlasted the waits: which limit, as the server and our limiter know it, and for how long. */
  private rateLimitError(method: string, url: URL, res: HttpResponse<unknown>, waits: number, waitedMs: number): HttpError {
    const serverLimit = Number(first(res.headers["x-ratelimit-limit"]));
    const ours = this.opts.limiter?.limit;
    const limit = Number.isFinite(serverLimit) && serverLimit > 0 ? `${serverLimit} requests` : ours ? `${ours.requests} requests per ${describeWindow(ours.windowMs)}` : "its rate limit";
    const window = ours && Number.isFinite(serverLimit) && serverLimit > 0 ? ` per ${describeWindow(ours.windowMs)}` : "";
    const detail = (this.opts.describeError ?? describeProviderError)(res.status, res.body);
    const message =
      `${this.opts.name} kept refusing ${method} ${url.pathname} with 429 Too Many Requests: its limit of ${limit}${window} was reached` +
      (waits ? ` and still was after ${waits} waits over ${Math.round(waitedMs / 100) / 10} s` : "") +
      `. Other clients of the same integration may be using the budget${detail ? ` (${detail})` : ""}`;
    return new HttpError(message, { statusCode: 429, body: res.body, providerCode: providerCode(res.body), status: "rate limited" });
  }

  private networkError(method: string, url: URL, err: unknown): NetworkError {
    const reason = err instanceof TimeoutError ? `no answer within ${err.timeoutMs} ms` : (err as Error)?.message ?? String(err);
    const code = err instanceof TimeoutError ? "GW_HTTP_TIMEOUT" : ((err as { code?: string })?.code ?? "GW_NETWORK");
    return new NetworkError(`${this.opts.name} could not be reached (${method} ${describeUrl(url)}): ${reason}`, {
      status: err instanceof TimeoutError ? "timeout" : "unreachable",
      code,
      cause: err,
      httpStatus: 502,
    });
  }
}

export interface CappedRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** The deadline of the whole exchange, body included. */
  timeoutMs: number;
  maxBytes: number;
  /** The caller's own abort (a test's deadline, a closing node). */
  signal?: AbortSignal;
  /** The service as a user knows it, for the too-large message. */
  name: string;
  dispatcher?: Dispatcher;
}

/**
 * One request whose answer is read to at most `maxBytes` within `timeoutMs`: a larger body, the
 * deadline or `signal` aborts the request itself (the socket closes), so nothing keeps reading.
 */
export async function readCapped(url: URL, req: CappedRequest): Promise<{ status: number; headers: HttpResponse["headers"]; text: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutError(req.timeoutMs)), req.timeoutMs);
  const onAbort = () => controller.abort(req.signal?.reason);
  if (req.signal?.aborted) onAbort();
  req.signal?.addEventListener("abort", onAbort, { once: true });
  const tooLarge = () =>
    new ResponseTooLargeError(`${req.name} answered with more than ${describeBytes(req.maxBytes)} to ${req.method} ${url.pathname}; is the host right?`, req.maxBytes);
  try {
    const res = await undiciRequest(url, { method: req.method as Dispatcher.HttpMethod, headers: req.headers, body: req.body, dispatcher: req.dispatcher, signal: controller.signal });
    if (Number(first(res.headers["content-length"])) > req.maxBytes) {
      const err = tooLarge();
      controller.abort(err);
      res.body.destroy(err);
      throw err;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > req.maxBytes) {
        const err = tooLarge();
        controller.abort(err);
        res.body.destroy(err);
        throw err;
      }
      chunks.push(chunk);
    }
    return { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") };
  } catch (err) {
    if (err instanceof ResponseTooLargeError) throw err;
    if (controller.signal.aborted && controller.signal.reason instanceof TimeoutError) throw controller.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    req.signal?.removeEventListener("abort", onAbort);
  }
}

function describeBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round((bytes / 1024 / 1024) * 10) / 10} MB` : bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : `${bytes} bytes`;
}

export class TimeoutError extends Error {
  readonly code = "GW_HTTP_TIMEOUT";
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
  }
}

/** One line from the error bodies of the providers we know: OAuth, Graph, Teamleader, GoTo and generic. */
export function describeProviderError(_status: number, body: unknown): string | undefined {
  if (!body || typeof body !== "object") {
    return typeof body === "string" && body.trim() ? redact(body.trim().slice(0, 300)) : undefined;
  }
  const b = body as Record<string, any>;
  if (typeof b.error === "string") return [b.error, b.error_description].filter(Boolean).join(": ");
  if (b.error && typeof b.error === "object") return [b.error.code, b.error.message].filter(Boolean).join(": ");
  if (Array.isArray(b.errors) && b.errors.length) {
    return b.errors
      .map((e: any) => [e?.title ?? e?.message, e?.meta?.hint ?? e?.detail].filter(Boolean).join(" (") + (e?.meta?.hint ?? e?.detail ? ")" : ""))
      .join("; ");
  }
  const message = b.message ?? b.errorMessage ?? b.description;
  const code = b.errorCode ?? b.code ?? b.int_err_code;
  if (message || code) return [code, message].filter(Boolean).join(": ");
  return undefined;
}

function providerCode(body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const b = body as Record<string, any>;
  const code = typeof b.error === "string" ? b.error : (b.error?.code ?? b.errors?.[0]?.code ?? b.errorCode ?? b.code);
  return code === undefined ? undefined : String(code);
}

function parseBody(text: string, contentType: string | string[] | undefined): unknown {
  const type = String(first(contentType) ?? "");
  if (text && (type.includes("json") || /^\s*[[{]/.test(text))) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

function statusText(status: number): string {
  const texts: Record<number, string> = {
    400: " Bad Request",
    401: " Unauthorized",
    403: " Forbidden",
    404: " Not Found",
    409: " Conflict",
    429: " Too Many Requests",
    500: " Internal Server Error",
    502: " Bad Gateway",
    503: " Service Unavailable",
    504: " Gateway Timeout",
  };
  return texts[status] ?? "";
}

function describeWindow(ms: number): string {
  if (ms % 60_000 === 0) return ms === 60_000 ? "minute" : `${ms / 60_000} minutes`;
  if (ms % 1000 === 0) return ms === 1000 ? "second" : `${ms / 1000} s`;
  return `${ms} ms`;
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function withSlash(base: string): string {
  return base.endsWith("/") ? base : `${base}/`;
}

function stripUndefined<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

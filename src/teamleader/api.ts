import { InputError, PipelineError } from "../core/errors";
import { HttpClient, TokenSource } from "../core/http/client";
import { RequestLimiter } from "../core/http/limiter";
import { budgetLimiter } from "../core/http/shared-limiter";
import type { Database } from "../core/db/database";
import type { RunCounts } from "../core/run-counts";
import { ListRequest, ListResponse, TeamleaderErrorBody, TeamleaderRecord } from "./types";

export const TEAMLEADER_API_HOST = "https://api.focus.teamleader.eu";

/** Teamleader's largest page (teamleader.md §1.3). */
export const MAX_PAGE_SIZE = 100;

/** 200 requests per minute per integration, in a sliding window (teamleader.md §1.5). */
export const TEAMLEADER_RATE_LIMIT = { requests: 200, windowMs: 60_000 };

/**
 * How long one request keeps waiting out 429s from the first: three of Teamleader's sliding
 * windows. Each wait is the reset the server states; refused for longer, another client of the
 * integration is taking the budget, and the error says so.
 */
export const RATE_LIMIT_PATIENCE_MS = 3 * TEAMLEADER_RATE_LIMIT.windowMs;

/** One page of a list call: its number (1-based), its records, and the server's clock when it answered. */
export interface Page<T = TeamleaderRecord> {
  number: number;
  records: T[];
  /** The response's `Date` header as epoch ms, when there was one. */
  serverTime?: number;
}

/** A list call failed on one page: the message says which. */
export class PageError extends PipelineError {
  constructor(
    message: string,
    readonly endpoint: string,
    readonly page: number,
    options: { cause?: unknown; status?: string; code?: string; httpStatus?: number } = {},
  ) {
    super(message, { code: "GW_TEAMLEADER_PAGE", ...options });
  }
}

// `<resource>.<action>`, with a module before it (`projects-v2/projects.list`) and dashes in the
// action (`accounts.projects-v2-status`).
const ENDPOINT = /^[A-Za-z][A-Za-z0-9-]*(\/[A-Za-z][A-Za-z0-9-]*)?\.[A-Za-z][A-Za-z0-9-]*$/;

/** Reads and other calls that change nothing, which may be sent again after a network failure. */
function isRead(endpoint: string): boolean {
  return /\.(list|info|me|download|projects-v2-status)$/.test(endpoint);
}

export interface TeamleaderApiOptions {
  /** Empty for production (api.focus.teamleader.eu). */
  apiHost?: string;
  auth: TokenSource;
  /** The integration's shared limiter; none to leave pacing to the server's answers alone. */
  limiter?: RequestLimiter;
  log?: (line: string) => void;
  /** Milliseconds a request may take. */
  timeoutMs?: number;
  /** Aborts every request (a connection test's deadline). */
  signal?: AbortSignal;
  /** The most one answer may hold, in bytes. */
  maxResponseBytes?: number;
}

/**
 * Teamleader Focus's RPC API: `POST <host>/<resource>.<action>` with a JSON body, through the
 * core HTTP client (bearer token with one refresh on a 401, limiter, each 429 waited out until the
 * `Retry-After` or `X-RateLimit-Reset` it states, retries for reads) and with Teamleader's errors read into one line.
 */
export class TeamleaderApi {
  readonly http: HttpClient;

  constructor(options: TeamleaderApiOptions) {
    this.http = new HttpClient({
      name: "Teamleader",
      baseUrl: (options.apiHost || TEAMLEADER_API_HOST).replace(/\/+$/, ""),
      auth: options.auth,
      limiter: options.limiter,
      readQuotaHeaders: true,
      maxRateLimitWaitMs: RATE_LIMIT_PATIENCE_MS,
      describeError: describeTeamleaderError,
      log: options.log,
      timeoutMs: options.timeoutMs ?? 60_000,
      signal: options.signal,
      maxResponseBytes: options.maxResponseBytes,
    });
  }

  /** This API for one run: the same client and limiter, every request counted in `counts`. */
  withCounts(counts: RunCounts | undefined): TeamleaderApi {
    if (!counts) return this;
    return Object.assign(Object.create(this) as TeamleaderApi, { http: this.http.withCounts(counts) });
  }

  /** Calls `endpoint` (`companies.info`, `invoices.download`, …) with `body`; the parsed answer. */
  async call<T = unknown>(endpoint: string, body: unknown = {}, signal?: AbortSignal): Promise<{ body: T; status: number; serverTime?: number }> {
    checkEndpoint(endpoint);
    const res = await this.http.request<T>({ method: "POST", path: endpoint, json: body ?? {}, idempotent: isRead(endpoint), signal });
    return { body: res.body, status: res.status, serverTime: serverTime(res.headers.date) };
  }

  /**
   * One record by id through `<resource>.info`, or undefined when Teamleader answers 404 (it is
   * gone). Any other failure throws: a record that could not be looked up is not known to be gone.
   */
  async info<T = TeamleaderRecord>(endpoint: string, id: string, signal?: AbortSignal): Promise<T | undefined> {
    checkEndpoint(endpoint);
    try {
      const res = await this.http.request<{ data?: T }>({ method: "POST", path: endpoint, json: { id }, idempotent: true, kind: "bulk", signal });
      return res.body?.data;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }

  /**
   * Every page of a list call, in order, as an async iterator over Teamleader's offset paging. It
   * stops at a page shorter than the page size (or an empty one), and refuses to go on when a page
   * repeats the previous one or holds more than the page size: signs that the endpoint ignores
   * paging (departments.list does), which would otherwise loop forever. `paged: false` makes one
   * call without a page, for endpoints that have none.
   */
  async *pages<T extends { id?: unknown } = TeamleaderRecord>(endpoint: string, request: ListRequest = {}, options: { paged?: boolean | "unsure"; signal?: AbortSignal } = {}): AsyncGenerator<Page<T>> {
    checkEndpoint(endpoint);
    if (options.paged === false) {
      const { page: _ignored, ...unpaged } = request;
      const res = await this.listPage<T>(endpoint, unpaged, 1, options.signal);
      yield { number: 1, records: res.records, serverTime: res.serverTime };
      return;
    }
    const size = Math.min(MAX_PAGE_SIZE, Math.max(1, Number(request.page?.size) || MAX_PAGE_SIZE));
    let previous: string | undefined;
    const first = Math.max(1, Number(request.page?.number) || 1);
    for (let number = first; ; number++) {
      options.signal?.throwIfAborted();
      const { records, serverTime } = await this.listPage<T>(endpoint, { ...request, page: { size, number } }, number, options.signal);
      if (options.paged === "unsure") {
        // An endpoint documented without paging: a first answer longer than the page is all of
        // it, and a page repeating the last one means it answers everything every time.
        const fingerprint = records.length ? records.map((r) => String(r.id)).join(",") : undefined;
        if (fingerprint !== undefined && fingerprint === previous) return;
        previous = fingerprint;
        if (records.length || number === first) yield { number, records, serverTime };
        if (records.length !== size) return;
        continue;
      }
      if (records.length > size) {
        throw new PageError(`${endpoint} page ${number}: Teamleader sent ${records.length} records for a page of ${size}, so the endpoint does not page; stopping`, endpoint, number, { status: "paging error" });
      }
      const fingerprint = records.length ? records.map((r) => String(r.id)).join(",") : undefined;
      if (fingerprint !== undefined && fingerprint === previous) {
        throw new PageError(`${endpoint} page ${number}: Teamleader sent the same records as on page ${number - 1}, so the endpoint ignores paging; stopping instead of looping`, endpoint, number, { status: "paging error" });
      }
      previous = fingerprint;
      // An empty first page is still news: it tells when the server answered.
      if (records.length || number === first) yield { number, records, serverTime };
      if (records.length < size) return;
    }
  }

  /**
   * Which Projects module the account uses, from `accounts.projects-v2-status` (documented since
   * August 2024): `projects-v2` or `legacy`.
   */
  async projectsVersion(signal?: AbortSignal): Promise<"projects-v2" | "legacy"> {
    const { body } = await this.call<{ data?: { status?: unknown } }>("accounts.projects-v2-status", {}, signal);
    const status = body?.data?.status;
    if (status === "projects-v2" || status === "legacy") return status;
    throw new PipelineError(`Teamleader's accounts.projects-v2-status answered "${String(status).slice(0, 40)}", not projects-v2 or legacy: choose the Projects module in the teamleader-query node`, {
      status: "projects module unknown",
      code: "GW_TEAMLEADER_PROJECTS_MODULE",
    });
  }

  /** Every record of a list call, all pages read (departments.list in one call, as it has no paging). */
  async listAll(endpoint: string, request: ListRequest = {}, signal?: AbortSignal): Promise<{ records: unknown[]; pages: number }> {
    const records: unknown[] = [];
    let pages = 0;
    for await (const page of this.pages<{ id?: unknown }>(endpoint, request, { paged: endpoint !== "departments.list", signal })) {
      records.push(...page.records);
      pages++;
    }
    return { records, pages };
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private async listPage<T>(endpoint: string, body: ListRequest, number: number, signal?: AbortSignal): Promise<{ records: T[]; serverTime?: number }> {
    let res;
    try {
      res = await this.http.request<ListResponse<T>>({ method: "POST", path: endpoint, json: body, idempotent: true, kind: "bulk", signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new PageError(`${endpoint} page ${number}: ${(err as Error).message}`, endpoint, number, {
        cause: err,
        status: (err as PipelineError).status,
        code: (err as PipelineError).code,
        httpStatus: (err as PipelineError).httpStatus,
      });
    }
    const data = (res.body as ListResponse<T> | undefined)?.data;
    if (!Array.isArray(data)) {
      throw new PageError(`${endpoint} page ${number}: Teamleader answered without a data list`, endpoint, number, { status: "unexpected answer" });
    }
    return { records: data, serverTime: serverTime(res.headers.date) };
  }
}

function checkEndpoint(endpoint: string): void {
  if (typeof endpoint !== "string" || !ENDPOINT.test(endpoint)) {
    throw new InputError(`"${String(endpoint).slice(0, 60)}" is not a Teamleader endpoint: use <resource>.<action>, e.g. companies.list`);
  }
}

function serverTime(date: string | string[] | undefined): number | undefined {
  const value = Array.isArray(date) ? date[0] : date;
  const at = value ? Date.parse(value) : NaN;
  return Number.isNaN(at) ? undefined : at;
}

/** Teamleader's error body in one line: title, the field it is about, and the hint. */
export function describeTeamleaderError(_status: number, body: unknown): string | undefined {
  const errors = (body as TeamleaderErrorBody | undefined)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return undefined;
  return errors
    .map((e) => {
      const extra = [e.meta?.field ? `field ${e.meta.field}` : undefined, e.meta?.hint].filter(Boolean).join("; ");
      return `${e.title ?? "error"}${extra ? ` (${extra})` : ""}`;
    })
    .join("; ");
}

/**
 * The limiter of one integration: Teamleader counts requests per client id, however many nodes
 * and Node-RED instances make them. Instances on one database share the budget through it;
 * without a database it is the limiter every node of this process shares.
 */
export function integrationLimiter(integration: string, requestsPerMinute = TEAMLEADER_RATE_LIMIT.requests, database?: () => Promise<Database>, log?: (line: string) => void): RequestLimiter {
  const limit = { requests: requestsPerMinute, windowMs: TEAMLEADER_RATE_LIMIT.windowMs };
  return budgetLimiter(integration, limit, database, log);
}

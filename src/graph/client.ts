import { ConfigError, PipelineError } from "../core/errors";
import { HttpClient, HttpClientOptions, HttpError, TokenSource } from "../core/http/client";
import type { RunCounts } from "../core/run-counts";
import { AutomaticRepliesSetting, BatchRequest, BatchResponse, GraphErrorBody, GraphUser } from "./types";

export const PUBLIC_GRAPH_URL = "https://graph.microsoft.com";
/** Graph's documented maximum of requests in one JSON batch. */
export const MAX_BATCH = 20;

/**
 * The request budget of one app in one tenant: the identity service's smallest app-and-tenant
 * quota, 3,500 units per 10 s (a user read costs 1 to 2 units), so a poll never runs into it.
 */
export const GRAPH_RATE_LIMIT = { requests: 3500, windowMs: 10_000 };

const USER_FIELDS = "id,mail,userPrincipalName,displayName";

/** Why a user cannot be watched, in words a flow can route on (and an HTTP status to answer with). */
export type UserProblem = "not-found" | "no-mailbox" | "forbidden" | "ambiguous";

export class UserLookupError extends PipelineError {
  constructor(
    readonly problem: UserProblem,
    message: string,
    httpStatus: number,
    cause?: unknown,
  ) {
    super(message, { code: `GW_GRAPH_${problem.toUpperCase().replace("-", "_")}`, status: problem.replace("-", " "), httpStatus, cause });
  }
}

/** Microsoft Graph v1.0 for the calls the out-of-office monitor makes. */
export class GraphClient {
  readonly http: HttpClient;

  constructor(options: { baseUrl?: string; auth: TokenSource } & Partial<HttpClientOptions>) {
    const root = (options.baseUrl || PUBLIC_GRAPH_URL).replace(/\/+$/, "");
    this.http = new HttpClient({ name: "Microsoft Graph", ...options, baseUrl: `${root}/v1.0/` });
  }

  /** This client for one run: the same connections and token, every request counted in `counts`. */
  withCounts(counts: RunCounts | undefined): GraphClient {
    if (!counts) return this;
    return Object.assign(Object.create(this) as GraphClient, { http: this.http.withCounts(counts) });
  }

  /**
   * The Entra ID user an address names: by user principal name first, then by primary SMTP address
   * (they can differ). Exactly one match, compared in code, or a UserLookupError.
   */
  async findUser(address: string): Promise<GraphUser> {
    try {
      return await this.http.json<GraphUser>({ path: userPath(address), query: { $select: USER_FIELDS } });
    } catch (err) {
      if (!(err instanceof HttpError) || err.statusCode !== 404) throw this.explainLookup(err, address);
    }
    const escaped = address.replace(/'/g, "''");
    let found: { value: GraphUser[] };
    try {
      found = await this.http.json<{ value: GraphUser[] }>({ path: "users", query: { $filter: `mail eq '${escaped}'`, $select: USER_FIELDS } });
    } catch (err) {
      throw this.explainLookup(err, address);
    }
    const exact = found.value.filter((u) => (u.mail ?? "").toLowerCase() === address.toLowerCase());
    if (exact.length === 1) return exact[0]!;
    if (exact.length > 1) throw new UserLookupError("ambiguous", `${exact.length} Entra ID users have the address ${address}`, 409);
    throw new UserLookupError("not-found", `no Entra ID user has the address ${address}`, 404);
  }

  /** One user's setting; the first look at a new user, which also proves the mailbox exists. */
  async automaticReplies(user: GraphUser, address: string): Promise<AutomaticRepliesSetting> {
    try {
      return await this.http.json<AutomaticRepliesSetting>({ path: `${userPath(user.id)}/mailboxSettings/automaticRepliesSetting` });
    } catch (err) {
      throw this.explain(err, address);
    }
  }

  /** One JSON batch of at most 20 requests; the answers come back in any order. */
  async batch(requests: BatchRequest[], signal?: AbortSignal): Promise<BatchResponse[]> {
    if (requests.length > MAX_BATCH) throw new RangeError(`a Graph batch holds at most ${MAX_BATCH} requests`);
    // The envelope is a POST that only reads: retrying it after a lost answer is safe.
    const body = await this.http.json<{ responses: BatchResponse[] }>({ method: "POST", path: "$batch", json: { requests }, idempotent: true, signal });
    return body.responses ?? [];
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  /** A directory lookup refused (403) means the app lacks User.Read.All, for every user alike. */
  private explainLookup(err: unknown, address: string): unknown {
    if (err instanceof HttpError && err.statusCode === 403) {
      const code = (err.body as GraphErrorBody | undefined)?.error?.code ?? "403";
      return new ConfigError(`Graph refused to look up ${address} in Entra ID (${code}): grant the app the User.Read.All application permission with admin consent`, {
        cause: err,
        code: "GW_GRAPH_PERMISSION",
        status: "missing permission",
        httpStatus: 403,
      });
    }
    return this.explain(err, address);
  }

  /** Graph's answer for a user, classified: only 404s mean the user or mailbox is not there. */
  explain(err: unknown, address: string): unknown {
    if (!(err instanceof HttpError)) return err;
    const code = (err.body as GraphErrorBody | undefined)?.error?.code ?? "";
    return userProblem(err.statusCode, code, address, err) ?? err;
  }
}

/**
 * The path of a user by id or user principal name. Graph reads a segment that starts with `$` as
 * one of its own (`$count`), so such a name is addressed as `users('$…')`, quotes doubled
 * (graph-ooo.md §1.2); every other is one encoded segment (a guest's `#` as `%23`).
 */
export function userPath(key: string): string {
  if (key.startsWith("$")) return `users('${encodeURIComponent(key.replace(/'/g, "''")).replace(/^%24/, "$")}')`;
  return `users/${encodeURIComponent(key)}`;
}

/** The problem a Graph status and error code mean for a watched address, if they mean one. */
export function userProblem(status: number, code: string, address: string, cause?: unknown): UserLookupError | undefined {
  if (status === 404 && code === "MailboxNotEnabledForRESTAPI") {
    return new UserLookupError("no-mailbox", `${address} has no Exchange Online mailbox (MailboxNotEnabledForRESTAPI): on-premises, unlicensed or a guest`, 404, cause);
  }
  if (status === 404) return new UserLookupError("not-found", `no Entra ID user or mailbox ${address} (${code || "404"})`, 404, cause);
  if (status === 403) {
    return new UserLookupError(
      "forbidden",
      `Graph refused to read ${address} (${code || "403"}): grant the app the MailboxSettings.Read and User.Read.All application permissions with admin consent, and check any Exchange application access policy`,
      403,
      cause,
    );
  }
  return undefined;
}

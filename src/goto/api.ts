import { HttpClient, TokenSource } from "../core/http/client";
import { RateLimiter } from "../core/http/limiter";
import { budgetLimiter } from "../core/http/shared-limiter";
import type { Database } from "../core/db/database";
import { ConfigError, PipelineError } from "../core/errors";
import { readMe } from "./admin";

/**
 * GoTo's APIs live on two production hosts: the GoTo Connect APIs on api.goto.com and the Admin
 * and SCIM APIs on api.getgo.com (goto-apis.md §2.1, §4). A single API host override (the
 * sandbox) serves both.
 */
export const GOTO_API_HOST = "https://api.goto.com";
export const GETGO_API_HOST = "https://api.getgo.com";

const FAMILIES = {
  "call-reports": { host: GOTO_API_HOST, path: "/call-reports/v1" },
  "call-events-report": { host: GOTO_API_HOST, path: "/call-events-report/v1" },
  "call-history": { host: GOTO_API_HOST, path: "/call-history/v1" },
  users: { host: GOTO_API_HOST, path: "/users/v1" },
  "voice-admin": { host: GOTO_API_HOST, path: "/voice-admin/v1" },
  admin: { host: GETGO_API_HOST, path: "/admin/rest/v1" },
  identity: { host: GETGO_API_HOST, path: "/identity/v1" },
} as const;

/** One GoTo API, as GoTo counts them for its rate limit ("rate limits are applied per API"). */
export type GoToApiFamily = keyof typeof FAMILIES;

/** GoTo's documented default: 10 requests per second per API (goto-apis.md §2.2). */
export const GOTO_REQUESTS_PER_SECOND = 10;

/** The base URL of one API: its production host, or the override followed by the API's path. */
export function gotoApiBase(family: GoToApiFamily, apiHost?: string): string {
  const api = FAMILIES[family];
  if (!api) throw new ConfigError(`GoTo has no API called "${String(family)}" here`);
  const host = (apiHost || api.host).replace(/\/+$/, "");
  return `${host}${api.path}`;
}

export interface GoToApisOptions {
  auth: TokenSource;
  /** Empty for production; the sandbox's `<url>/goto/api` in the demo and the tests. */
  apiHost?: string;
  /** Requests per second per API; GoTo grants higher limits on request. */
  requestsPerSecond?: number;
  /** The account key as configured, if any (a string: it has about 19 digits). */
  accountKey?: string;
  /** Where a discovered account key is kept between runs (the token store's extras). */
  keep?: { get(): Promise<string | undefined>; set(value: string): Promise<void> };
  log?: (line: string) => void;
  /** GoTo limits per client id: instances sharing a database share each API's budget through it. */
  budget?: { clientId: string; database?: () => Promise<Database> };
  /** Aborts every request (a connection test's deadline). */
  signal?: AbortSignal;
  /** The most one answer may hold, in bytes. */
  maxResponseBytes?: number;
}

/**
 * One HTTP client per GoTo API, each with its own limiter (GoTo limits per API), all authorised
 * by one connection. A config node owns one of these and closes it on redeploy.
 */
export class GoToApis {
  private readonly clients = new Map<GoToApiFamily, HttpClient>();
  private discovering?: Promise<string>;

  constructor(private readonly options: GoToApisOptions) {
    const rps = options.requestsPerSecond ?? GOTO_REQUESTS_PER_SECOND;
    if (!(rps > 0)) throw new ConfigError("the GoTo request rate must be a number above 0 (GoTo documents 10 per second)");
  }

  api(family: GoToApiFamily): HttpClient {
    let client = this.clients.get(family);
    if (!client) {
      client = new HttpClient({
        name: "GoTo",
        baseUrl: gotoApiBase(family, this.options.apiHost),
        auth: this.options.auth,
        limiter: this.options.budget
          ? budgetLimiter(`goto:${this.options.budget.clientId}:${family}`, { requests: this.options.requestsPerSecond ?? GOTO_REQUESTS_PER_SECOND, windowMs: 1000, maxInFlight: 4 }, this.options.budget.database, this.options.log)
          : new RateLimiter({ requests: this.options.requestsPerSecond ?? GOTO_REQUESTS_PER_SECOND, windowMs: 1000, maxInFlight: 4 }),
        describeError: describeGoToError,
        log: this.options.log,
        isTokenRejected: isGoToTokenRejected,
        signal: this.options.signal,
        maxResponseBytes: this.options.maxResponseBytes,
      });
      this.clients.set(family, client);
    }
    return client;
  }

  /**
   * The account key: as configured, else as found earlier, else from the Admin API's `me` (which
   * needs an admin's token), kept for next time. Its top-level field, read losslessly: a JSON
   * number of 19 digits would lose its last ones.
   */
  async accountKey(): Promise<string> {
    if (this.options.accountKey) return this.options.accountKey;
    const kept = await this.options.keep?.get();
    if (kept) return kept;
    this.discovering ??= this.discoverAccountKey().finally(() => {
      this.discovering = undefined;
    });
    return this.discovering;
  }

  async close(): Promise<void> {
    const clients = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(clients.map((c) => c.close()));
  }

  private async discoverAccountKey(): Promise<string> {
    const res = await this.api("admin").request({ path: "me" });
    const key = readMe(res.text).accountKey;
    if (!key) {
      throw new PipelineError("GoTo's Admin API did not tell the account key: fill in the account key in the goto-credentials node", {
        status: "no account key",
        code: "GW_GOTO_NO_ACCOUNT_KEY",
      });
    }
    await this.options.keep?.set(key);
    return key;
  }
}

/** GoTo's error bodies: `{ errorCode, message }` on the Connect APIs, OAuth's shape on the token server. */
export function describeGoToError(_status: number, body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const b = body as Record<string, unknown>;
  const code = b.errorCode ?? b.int_err_code ?? b.code;
  const message = b.message ?? b.msg ?? b.description;
  if (code === "AUTHZ_INSUFFICIENT_SCOPE") return `${String(code)}: the OAuth client lacks a scope this call needs (${String(message ?? "")})`;
  const parts = [code, message].filter((p) => typeof p === "string" && p) as string[];
  return parts.length ? parts.join(": ") : undefined;
}

/**
 * A 403 that is about the token, not the rights: GoTo's api.getgo.com answers an expired or invalid
 * token so (`AUTHN_INVALID_TOKEN`; GoToWebinar's `InvalidToken`, goto-apis.md §1.5). Such a token is
 * refreshed once, like after a 401, before a 403 is taken for missing rights.
 */
export function isGoToTokenRejected(status: number, body: unknown): boolean {
  if (status !== 403 || !body || typeof body !== "object") return false;
  const b = body as Record<string, unknown>;
  const code = String(b.errorCode ?? b.int_err_code ?? b.code ?? b.error ?? "");
  if (/token/i.test(code) && /invalid|expired/i.test(code)) return true;
  const message = String(b.message ?? b.msg ?? b.error_description ?? b.description ?? "");
  return /\b(invalid|expired)\b[^.]*\btoken\b|\btoken\b[^.]*\b(invalid|expired)\b/i.test(message);
}

/** What a `goto-credentials` config node offers the nodes that use it. */
export interface GoToConnection {
  readonly type: "goto-credentials";
  /** The OAuth side: tokens, their store, and the connection's state for a node's status. */
  readonly connection: import("../core/node/oauth-connection").OAuthConnection;
  /** The client of one GoTo API, authorised and held under GoTo's rate limit for that API. */
  api(family: GoToApiFamily): HttpClient;
  /** The account key: as configured, or found through the Admin API and kept. */
  accountKey(): Promise<string>;
  /** The account key only if someone typed it in (no request made). */
  readonly configuredAccountKey?: string;
  /** The database the instances share when the tokens are kept in it; none with the file store (one instance). */
  sharedDatabase(): Promise<import("../core/db/database").Database> | undefined;
}

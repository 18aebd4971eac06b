import { OAuthServer } from "./oauth-server";
import { SandboxReply, SandboxRequest, SandboxServer } from "./server";
import { BEHAVIOUR, ListQuery, TEAMLEADER_RESOURCES, TeamleaderData, TeamleaderResourceName, Volumes } from "./teamleader-data";

export const TEAMLEADER_DEMO_CLIENT = { clientId: "teamleader-demo-client", clientSecret: "teamleader-demo-secret-0123456789" };

/** Teamleader's error body shape: `{ errors: [{ code, title, status, meta }] }` (teamleader.md §1.6). */
export function teamleaderError(status: number, title: string, meta?: Record<string, string>, code = status): SandboxReply {
  return { status, json: { errors: [{ code, title, status, ...(meta ? { meta } : {}) }] } };
}

export interface TeamleaderSandboxOptions {
  /** Records per resource (defaults in teamleader-data.ts). */
  volumes?: Volumes;
  seed?: string;
  /** Requests per sliding minute per integration; Teamleader allows 200 (teamleader.md §1.5). */
  rateLimit?: { enabled?: boolean; requests?: number; windowMs?: number };
  /** Milliseconds each API answer is held back, to make a sync take a while. */
  latencyMs?: number;
}

/** The largest page Teamleader serves; stated on calls.list, assumed by every client for all lists (teamleader.md §1.3). */
const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 20;

/**
 * Teamleader Focus's authorization server (focus.teamleader.eu) under /teamleader/auth and its API
 * (api.focus.teamleader.eu) under /teamleader/api. Every refresh token is single use: the used one
 * is revoked, and presenting it again gets the error teamleader2db's README records.
 *
 * The API serves the list and info calls of companies, contacts, departments, events, invoices,
 * legacy projects, users, the current Projects module (projects-v2/projects), deals, quotations,
 * time tracking (timeTracking), tasks and products from generated records (`data`), and
 * accounts.projects-v2-status, with `updated_since`, sort, paging (none for
 * departments), `includes=custom_fields`, a sliding-window rate limit with the X-RateLimit-*
 * headers, a 401 for an expired access token and Teamleader's error bodies.
 */
export class TeamleaderSandbox {
  readonly oauth: OAuthServer;
  readonly data: TeamleaderData;
  readonly rateLimit: { enabled: boolean; requests: number; windowMs: number };
  latencyMs: number;
  /**
   * Records disappear mid-sweep: right after page `afterPage` of a list without an ids filter is
   * served, `count` of the records on it are deleted, so every later record moves up that many
   * places and offset paging skips as many. The ids deleted so are kept in `vanished`.
   */
  vanish?: { afterPage: number; count: number };
  readonly vanished = new Map<TeamleaderResourceName, string[]>();
  /**
   * The next `times` API requests are refused with 429 whatever the quota, each stating a reset
   * `resetInMs` ahead of its answer (no `X-RateLimit-Reset` when null), and a `Retry-After` of
   * `retryAfterS` seconds when set: a server whose window frees a place moments later, or one
   * that states no wait at all.
   */
  throttle?: { times: number; resetInMs: number | null; retryAfterS?: number };
  /** The refusals of `throttle`: when each was answered, and the reset it stated (epoch ms). */
  readonly throttled: Array<{ at: number; resetAt?: number }> = [];
  /** What `accounts.projects-v2-status` says the account uses; both modules keep serving their own records. */
  projectsVersion: "legacy" | "projects-v2" = "legacy";
  /**
   * How `.info` answers an id that is gone: 404 with Teamleader's error body, or (unverified, seen
   * for the legacy projects module) 400, which says nothing about whether the record exists.
   */
  goneInfoStatus: 404 | 400 = 404;
  /** Arrival times (epoch ms) of API requests, for measuring a client's request rate. */
  readonly requestTimes: number[] = [];
  private readonly windows = new Map<string, number[]>();
  /** Resources a client's integration has no scope for: their calls answer 403 (a missing-scope test). */
  readonly deniedResources = new Map<string, Set<string>>();
  private drift?: NodeJS.Timeout;

  constructor(
    readonly server: SandboxServer,
    options: TeamleaderSandboxOptions = {},
  ) {
    this.oauth = new OAuthServer(server, {
      name: "teamleader",
      prefix: "/teamleader/auth",
      authorizePath: "/oauth2/authorize",
      tokenPath: "/oauth2/access_token",
      clientAuth: "body",
      singleUseRefreshTokens: true,
      errors: {
        // Inferred from league/oauth2-server, which Teamleader's answers match (teamleader.md §2).
        invalidClient: () => teamleaderError(401, "Client authentication failed", { type: "invalid_client" }, 4),
        // Reported verbatim (teamleader2db README).
        invalidRefreshToken: () => teamleaderError(400, "The refresh token is invalid.", { type: "invalid_request", hint: "Token has been revoked" }, 8),
        invalidCode: () =>
          teamleaderError(400, "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.", {
            type: "invalid_request",
            hint: "Authorization code has been revoked",
          }, 3),
      },
    });
    this.oauth.registerClient(TEAMLEADER_DEMO_CLIENT.clientId, TEAMLEADER_DEMO_CLIENT.clientSecret);
    this.data = new TeamleaderData(options.seed, options.volumes);
    this.rateLimit = { enabled: options.rateLimit?.enabled ?? true, requests: options.rateLimit?.requests ?? 200, windowMs: options.rateLimit?.windowMs ?? 60_000 };
    this.latencyMs = options.latencyMs ?? 0;

    server.route("POST", "/teamleader/api/users.me", (req) =>
      this.api(req, () => ({
        json: { data: { id: "b3e5a4a2-0000-4000-8000-000000000001", first_name: "Demo", last_name: "Admin", email: "admin@example.com", account: { type: "account", id: "acc-1" } } },
      })),
    );
    for (const resource of TEAMLEADER_RESOURCES) {
      const path = BEHAVIOUR[resource].endpoint ?? resource;
      server.route("POST", `/teamleader/api/${path}.list`, (req) =>
        this.api(req, (clientId) => (this.deniedResources.get(clientId)?.has(resource) ? teamleaderError(403, "Forbidden", { type: "insufficient_scope" }) : this.list(resource, req))),
      );
      server.route("POST", `/teamleader/api/${path}.info`, (req) => this.api(req, () => this.info(resource, req)));
    }
    // src/99-other/accounts.apib: which Projects module the account uses.
    server.route("POST", "/teamleader/api/accounts.projects-v2-status", (req) => this.api(req, () => ({ json: { data: { status: this.projectsVersion } } })));

    server.persistent("teamleader-data", { snapshot: () => this.data.snapshot(), restore: (d) => this.data.restore(d) });
    // Control routes for tests and benchmarks in other processes.
    server.route("POST", "/_sandbox/teamleader/data", (req) => {
      const body = (req.body ?? {}) as { volumes?: Volumes; seed?: string };
      this.data.reset(body.volumes ?? {}, body.seed);
      return { status: 204 };
    });
    server.route("POST", "/_sandbox/teamleader/changes", (req) => {
      const body = (req.body ?? {}) as { resource?: TeamleaderResourceName; change?: number; add?: number; remove?: number };
      const resource = body.resource ?? "companies";
      return { json: { changed: this.data.change(resource, body.change ?? 0), added: this.data.add(resource, body.add ?? 0), removed: this.data.remove(resource, body.remove ?? 0) } };
    });
    server.route("POST", "/_sandbox/teamleader/settings", (req) => {
      const body = (req.body ?? {}) as {
        rateLimit?: boolean;
        requests?: number;
        windowMs?: number;
        latencyMs?: number;
        resetQuota?: boolean;
        throttle?: TeamleaderSandbox["throttle"] | null;
        projectsVersion?: TeamleaderSandbox["projectsVersion"];
        goneInfoStatus?: TeamleaderSandbox["goneInfoStatus"];
      };
      if (body.projectsVersion !== undefined) {
        if (body.projectsVersion !== "legacy" && body.projectsVersion !== "projects-v2") return { status: 400, json: { message: "projectsVersion is legacy or projects-v2" } };
        this.projectsVersion = body.projectsVersion;
      }
      if (body.goneInfoStatus !== undefined) {
        if (body.goneInfoStatus !== 404 && body.goneInfoStatus !== 400) return { status: 400, json: { message: "goneInfoStatus is 404 or 400" } };
        this.goneInfoStatus = body.goneInfoStatus;
      }
      if (body.throttle !== undefined) {
        this.throttle = body.throttle ?? undefined;
        this.throttled.length = 0;
      }
      if (body.rateLimit !== undefined) this.rateLimit.enabled = body.rateLimit;
      if (body.requests !== undefined) this.rateLimit.requests = body.requests;
      if (body.windowMs !== undefined) this.rateLimit.windowMs = body.windowMs;
      if (body.latencyMs !== undefined) this.latencyMs = body.latencyMs;
      if (body.resetQuota) {
        this.resetQuota();
        this.requestTimes.length = 0;
      }
      return { status: 204 };
    });
    server.route("GET", "/_sandbox/teamleader/request-times", () => ({ json: this.requestTimes }));
    server.route("GET", "/_sandbox/teamleader/throttled", () => ({ json: this.throttled }));
    server.route("GET", "/_sandbox/teamleader/ids/:resource", (req) => ({ json: this.data.liveIds(req.params.resource as TeamleaderResourceName) }));
  }

  /** Answers `ok()` for a valid bearer token, Teamleader's 401 otherwise. */
  authorized(req: SandboxRequest, ok: (clientId: string) => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    const clientId = this.oauth.authenticate(req);
    if (!clientId) {
      this.server.count("teamleader api 401");
      // Unverified body: the title is what a league/oauth2-server resource server says.
      return teamleaderError(401, "Access token is invalid or has expired", { type: "invalid_token" });
    }
    return ok(clientId);
  }

  /** Forgets every request counted against the rate limit. */
  resetQuota(): void {
    this.windows.clear();
  }

  /** Changes, adds and deletes a few records every `everyMs` (the demo's "life" in the account). */
  startDrift(everyMs = 60_000): void {
    this.stopDrift();
    this.drift = setInterval(() => {
      this.data.change("companies", 3);
      this.data.change("contacts", 5);
      this.data.change("invoices", 2);
      this.data.add("companies", 1);
      this.data.remove("contacts", 1);
      this.server.changed();
    }, everyMs);
    this.drift.unref();
  }

  stopDrift(): void {
    if (this.drift) clearInterval(this.drift);
    this.drift = undefined;
  }

  /** Authentication, then the rate limit, then the answer, each with the quota headers. */
  private async api(req: SandboxRequest, answer: (clientId: string) => SandboxReply): Promise<SandboxReply> {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    return this.authorized(req, (clientId) => {
      this.server.count("teamleader api requests");
      if (this.throttle && this.throttle.times > 0) return this.throttleOnce(this.throttle);
      const quota = this.takeQuota(clientId);
      if (!quota.allowed) {
        this.server.count("teamleader api 429");
        // Unverified body: the docs name only the status (teamleader.md §1.5).
        const reply = teamleaderError(429, "Too many requests, please slow down.", { type: "rate_limited" });
        return { ...reply, headers: quota.headers };
      }
      if (this.requestTimes.length < 200_000) this.requestTimes.push(Date.now());
      const reply = answer(clientId);
      return { ...reply, headers: { ...reply.headers, ...quota.headers } };
    });
  }

  /** One refusal of `throttle`, with the reset (and Retry-After) it was set to state. */
  private throttleOnce(throttle: NonNullable<TeamleaderSandbox["throttle"]>): SandboxReply {
    throttle.times--;
    const now = Date.now();
    const resetAt = throttle.resetInMs === null ? undefined : now + throttle.resetInMs;
    this.throttled.push({ at: now, resetAt });
    this.server.count("teamleader api 429");
    const headers: Record<string, string> = { "X-RateLimit-Limit": String(this.rateLimit.requests), "X-RateLimit-Remaining": "0" };
    if (resetAt !== undefined) headers["X-RateLimit-Reset"] = new Date(resetAt).toISOString().replace("Z", "+0000");
    if (throttle.retryAfterS !== undefined) headers["Retry-After"] = String(throttle.retryAfterS);
    return { ...teamleaderError(429, "Too many requests, please slow down.", { type: "rate_limited" }), headers };
  }

  /**
   * 200 requests per integration in any 60 s (sliding window). A refused request does not count
   * (unverified). The reset is the moment the oldest counted request leaves the window, as an ISO
   * timestamp with a colon-less offset like the documented example.
   */
  private takeQuota(clientId: string): { allowed: boolean; headers: Record<string, string> } {
    const { requests, windowMs, enabled } = this.rateLimit;
    const now = Date.now();
    const window = this.windows.get(clientId) ?? [];
    while (window.length > 0 && window[0]! <= now - windowMs) window.shift();
    const allowed = !enabled || window.length < requests;
    if (allowed) window.push(now);
    this.windows.set(clientId, window);
    const reset = window.length > 0 ? window[0]! + windowMs : now;
    return {
      allowed,
      headers: {
        "X-RateLimit-Limit": String(requests),
        "X-RateLimit-Remaining": String(Math.max(0, requests - window.length)),
        "X-RateLimit-Reset": new Date(reset).toISOString().replace("Z", "+0000"),
      },
    };
  }

  private list(resource: TeamleaderResourceName, req: SandboxRequest): SandboxReply {
    const behaviour = BEHAVIOUR[resource];
    const body = (typeof req.body === "object" && req.body ? req.body : {}) as Record<string, any>;
    const filter = (body.filter ?? {}) as Record<string, unknown>;
    const query: ListQuery = {};
    if (filter.ids !== undefined) {
      if (!Array.isArray(filter.ids)) return validation("filter.ids must be an array of ids");
      query.ids = filter.ids.map(String);
    }
    if (filter.updated_since !== undefined) {
      // Unverified: whether Teamleader ignores or refuses the filter where it is undocumented; refusing
      // catches a client that sends it there. Reported (n8n node CHANGELOG 0.2.0): "Z" is refused, "+00:00" works.
      if (!behaviour.updatedSince) return validation(`filter.updated_since is not a filter of ${resource}.list`);
      const text = String(filter.updated_since);
      if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$/.test(text)) return validation("filter.updated_since must be an ISO 8601 date with an offset, e.g. 2016-02-04T16:44:33+00:00");
      // Unverified: inclusive (records updated at exactly that second are listed).
      query.updatedSince = Date.parse(text);
    }
    if (body.sort !== undefined) {
      const first = Array.isArray(body.sort) ? body.sort[0] : undefined;
      if (behaviour.sortFields.length === 0) return validation(`${resource}.list has no sort`);
      if (!first || !behaviour.sortFields.includes(first.field)) return validation(`sort.field must be one of ${behaviour.sortFields.join(", ")}`);
      query.sort = { field: first.field, order: first.order === "desc" ? "desc" : "asc" };
    }
    if (behaviour.paged) {
      const size = body.page?.size === undefined ? DEFAULT_PAGE_SIZE : Number(body.page.size);
      const number = body.page?.number === undefined ? 1 : Number(body.page.number);
      if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) return validation(`page.size must be between 1 and ${MAX_PAGE_SIZE}`);
      if (!Number.isInteger(number) || number < 1) return validation("page.number must be 1 or more");
      query.page = { size, number };
    }
    // departments.list has no page parameter: whatever page is asked for, everything comes back.
    const includes = String(body.includes ?? "").split(",").map((s) => s.trim());
    query.customFields = behaviour.customFieldsOnList && includes.includes("custom_fields");
    this.server.count(`teamleader ${resource}.list`);
    const data = this.data.list(resource, query);
    const pageNumber = query.page?.number ?? 1;
    if (this.vanish && !query.ids && pageNumber === this.vanish.afterPage && data.length > 0) {
      const ids = data.slice(0, this.vanish.count).map((r) => String((r as { id: unknown }).id));
      this.data.removeIds(resource, ids);
      this.vanished.set(resource, [...(this.vanished.get(resource) ?? []), ...ids]);
    }
    return { json: { data } };
  }

  private info(resource: TeamleaderResourceName, req: SandboxRequest): SandboxReply {
    const id = typeof req.body === "object" && req.body ? String(req.body.id ?? "") : "";
    if (!id) return validation("id is required");
    const record = this.data.info(resource, id);
    this.server.count(`teamleader ${resource}.info`);
    // Unverified body for an unknown id: the documented shape with a plain title.
    if (!record) {
      if (this.goneInfoStatus === 400) return validation(`The ${BEHAVIOUR[resource].noun.toLowerCase()} could not be found or is not accessible`);
      return teamleaderError(404, `${BEHAVIOUR[resource].noun} not found`);
    }
    return { json: { data: record } };
  }
}

/** A request Teamleader's validation refuses (the documented shape; the titles are ours). */
function validation(title: string): SandboxReply {
  return teamleaderError(400, title, { type: "validation_error" });
}

import { createHash } from "node:crypto";
import type { AutomaticRepliesSetting } from "../graph/types";
import { MicrosoftSandbox, graphError } from "./microsoft";
import { SandboxReply, SandboxRequest, SandboxServer } from "./server";

export interface SandboxUser {
  id: string;
  userPrincipalName: string;
  mail: string | null;
  displayName: string;
  /** false: the user exists but has no Exchange Online mailbox (hybrid, unlicensed, guest). */
  mailbox: boolean;
  /** true: an Exchange application access policy keeps this app out of the mailbox. */
  restricted: boolean;
  replies: AutomaticRepliesSetting;
}

interface MailboxLoad {
  inFlight: number;
  recent: number[];
}

/** One `$batch` request as the sandbox saw it: when it came and went, and what its items answered. */
export interface BatchRecord {
  receivedAt: number;
  answeredAt: number;
  items: number;
  /** Items answered 429. */
  throttled: number;
  /** The largest Retry-After of its 429s, in milliseconds (null: none stated, or no 429). */
  retryAfterMs: number | null;
  /** Whether every mailbox read was being refused (`throttleEverything`) when it came. */
  storm: boolean;
}

/** The batches kept in the log (a 30 s storm without any slowing down is about 10,000). */
const BATCH_LOG_SIZE = 100_000;

const PREFIX = "/microsoft/graph/v1.0";
/** Outlook's documented limits per app and mailbox (graph-ooo.md §3). */
const MAILBOX_CONCURRENCY = 4;
const MAILBOX_REQUESTS = 10_000;
const MAILBOX_WINDOW_MS = 10 * 60_000;

/**
 * Microsoft Graph v1.0 for the out-of-office monitor (graph.microsoft.com under /microsoft/graph):
 * users by id or UPN, `$filter=mail eq '…'`, automatic-replies settings and JSON batching (at most
 * 20 requests, answers out of order, per-item status codes), with Outlook's limits per mailbox
 * answered by 429 and Retry-After. Tests change users' settings over time, take permissions away,
 * throttle chosen mailboxes or every one for a while, and read the `$batch` requests' rate.
 */
export class GraphSandbox {
  private readonly users = new Map<string, SandboxUser>();
  private readonly load = new Map<string, MailboxLoad>();
  private readonly throttles = new Map<string, { times: number; retryAfter: string }>();
  /** Every mailbox read answers 429 until `until` (epoch ms), with this Retry-After (none when undefined). */
  private storm?: { until: number; retryAfter?: string };
  /** The application permissions the app was granted (both by default). */
  readonly permissions = { mailboxSettingsRead: true, userReadAll: true };
  /** How long Outlook takes per mailbox request, so concurrency shows. */
  itemLatencyMs = 2;
  /**
   * Outlook's concurrency limit per app ID, when set: a mailbox read beyond this many in flight for
   * one app answers 429 with `appRetryAfter` (graph-ooo.md §3: the docs name both scopes).
   */
  appReadsInFlight: number | undefined;
  appRetryAfter = "0.1";
  /** The most mailbox reads that were in flight at once for any app, since the last reset. */
  peakReadsInFlight = 0;
  /** Time spent in mailbox reads, as timers really kept it (a busy machine makes 20 ms longer). */
  readTime = { reads: 0, ms: 0 };
  /** The users whose mailbox was read (200), in order, latest 10,000: tests check who went first. */
  readonly readLog: string[] = [];
  /** Every `$batch` request, in the order they came, latest 100,000: tests and the bench measure the rate. */
  readonly batchLog: BatchRecord[] = [];
  /** `$batch` requests being answered now, and the most at once since the last reset. */
  batchesInFlight = 0;
  peakBatchesInFlight = 0;
  private readonly appLoad = new Map<string, number>();

  constructor(
    private readonly server: SandboxServer,
    private readonly identity: MicrosoftSandbox,
  ) {
    server.route("GET", `${PREFIX}/users`, (req) => this.authorized(req, () => this.filterUsers(req.query.get("$filter") ?? "")));
    server.route("GET", `${PREFIX}/users/:user`, (req) => this.authorized(req, () => this.getUser(req.params.user!, true)));
    server.route("GET", `${PREFIX}/users/:user/mailboxSettings/automaticRepliesSetting`, (req) =>
      this.authorizedApp(req, (app) => this.getReplies(req.params.user!, app, true)),
    );
    // A user principal name that starts with `$` is addressed as users('$…') (graph-ooo.md §1.2).
    server.route("GET", `${PREFIX}/:segment`, (req) => this.authorized(req, () => this.keyed(req.params.segment!, (key) => this.getUser(key))));
    server.route("GET", `${PREFIX}/:segment/mailboxSettings/automaticRepliesSetting`, (req) =>
      this.keyed(req.params.segment!, (key) => this.authorizedApp(req, (app) => this.getReplies(key, app))),
    );
    server.route("POST", `${PREFIX}/$batch`, (req) => this.authorizedApp(req, (app) => this.batch(req, app)));
    // For people trying the demo: change a user's automatic replies as Outlook would.
    server.route("POST", "/_sandbox/graph/users/:user/replies", (req) => {
      const user = this.user(decodeURIComponent(req.params.user!));
      if (!user) return { status: 404, json: { message: `no sandbox user ${req.params.user}` } };
      this.setReplies(user.id, { ...disabled(), ...(req.body as AutomaticRepliesSetting) });
      return { status: 204 };
    });
    // For other processes (a Node-RED under test): refuse every mailbox read for a while, and see the batches.
    server.route("POST", "/_sandbox/graph/throttle-everything", (req) => {
      const { seconds, retryAfter } = (req.body ?? {}) as { seconds?: number; retryAfter?: string | number | null };
      if (typeof seconds !== "number" || !(seconds >= 0)) return { status: 400, json: { message: "seconds must be a number of at least 0" } };
      this.throttleEverything(seconds, retryAfter === undefined || retryAfter === null ? undefined : String(retryAfter));
      return { status: 204 };
    });
    server.route("GET", "/_sandbox/graph/batches", () => ({ json: { perSecond: this.batchesPerSecond(), peakInFlight: this.peakBatchesInFlight, log: this.batchLog.slice(-1000) } }));
    server.persistent("graph-users", {
      snapshot: () => [...this.users.values()],
      restore: (data: SandboxUser[]) => data.forEach((u) => this.users.set(u.id, u)),
    });
  }

  addUser(user: Partial<SandboxUser> & { mail: string }): SandboxUser {
    const id = user.id ?? guid(user.mail);
    const full: SandboxUser = {
      id,
      userPrincipalName: user.userPrincipalName ?? user.mail,
      mail: user.mail,
      displayName: user.displayName ?? user.mail.split("@")[0]!,
      mailbox: user.mailbox ?? true,
      restricted: user.restricted ?? false,
      replies: user.replies ?? disabled(),
    };
    this.users.set(id, full);
    this.server.changed();
    return full;
  }

  /** `count` users `user0001@contoso.test` …, every seventh one out of office with a scheduled reply. */
  generateUsers(count: number, domain = "contoso.test"): SandboxUser[] {
    return Array.from({ length: count }, (_, i) => {
      const n = String(i + 1).padStart(4, "0");
      return this.addUser({
        mail: `user${n}@${domain}`,
        displayName: `User ${n}`,
        replies: i % 7 === 0 ? alwaysOn(`Away until Monday (${n})`) : disabled(),
      });
    });
  }

  user(address: string): SandboxUser | undefined {
    const wanted = address.toLowerCase();
    return [...this.users.values()].find((u) => u.id === address || u.userPrincipalName.toLowerCase() === wanted || u.mail?.toLowerCase() === wanted);
  }

  setReplies(address: string, replies: AutomaticRepliesSetting): void {
    const user = this.user(address);
    if (!user) throw new Error(`no sandbox user ${address}`);
    user.replies = replies;
    this.server.changed();
  }

  /** The next `times` mailbox requests for this user answer 429 with this Retry-After. */
  throttle(address: string, times: number, retryAfter = "1"): void {
    const user = this.user(address);
    if (!user) throw new Error(`no sandbox user ${address}`);
    this.throttles.set(user.id, { times, retryAfter });
  }

  /**
   * For `seconds` from now, every mailbox read, each item of a batch alike, answers 429 with this
   * Retry-After (none when undefined): Outlook throttling the whole app, as in a storm of requests.
   */
  throttleEverything(seconds: number, retryAfter?: string): void {
    this.storm = { until: Date.now() + seconds * 1000, retryAfter };
  }

  /** Whether every mailbox read is being refused now. */
  get throttlingEverything(): boolean {
    return !!this.storm && Date.now() < this.storm.until;
  }

  /**
   * `$batch` requests per whole second of arrival, from the first logged batch (or `from`) to
   * `to` (the last logged batch when not given): what a test or the bench reads as the request rate.
   */
  batchesPerSecond(from?: number, to?: number): number[] {
    const log = this.batchLog.filter((b) => (from === undefined || b.receivedAt >= from) && (to === undefined || b.receivedAt < to));
    const start = from ?? log[0]?.receivedAt;
    if (start === undefined) return [];
    const end = to ?? log.at(-1)!.receivedAt + 1;
    const counts: number[] = Array.from({ length: Math.max(1, Math.ceil((end - start) / 1000)) }, () => 0);
    for (const b of log) counts[Math.min(counts.length - 1, Math.floor((b.receivedAt - start) / 1000))]!++;
    return counts;
  }

  /** The most `$batch` requests that were being answered at once among those that came in [from, to). */
  maxBatchesInFlight(from: number, to: number): number {
    const edges = this.batchLog
      .filter((b) => b.receivedAt >= from && b.receivedAt < to)
      .flatMap((b) => [
        { at: b.receivedAt, by: 1 },
        { at: b.answeredAt, by: -1 },
      ])
      // An answer and a request in the same millisecond: the answer went first.
      .sort((a, b) => a.at - b.at || a.by - b.by);
    let now = 0;
    let peak = 0;
    for (const e of edges) peak = Math.max(peak, (now += e.by));
    return peak;
  }

  resetLoad(): void {
    this.peakReadsInFlight = 0;
    this.readTime = { reads: 0, ms: 0 };
    this.readLog.length = 0;
    this.batchLog.length = 0;
    this.peakBatchesInFlight = this.batchesInFlight;
  }

  private authorized(req: SandboxRequest, ok: () => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    return this.authorizedApp(req, () => ok());
  }

  private authorizedApp(req: SandboxRequest, ok: (app: string) => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    const app = this.identity.authenticate(req);
    if (!app) {
      this.server.count("graph 401");
      return graphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.");
    }
    return ok(app);
  }

  /** `users('key')`, quotes doubled inside; any other single segment is not a resource here. */
  private keyed(segment: string, ok: (key: string) => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    const match = /^users\('((?:[^']|'')*)'\)$/.exec(segment);
    if (!match) return graphError(400, "BadRequest", `Resource not found for the segment '${segment}'.`);
    return ok(match[1]!.replace(/''/g, "'"));
  }

  private getUser(key: string, asSegment = false): SandboxReply {
    this.server.count("graph request");
    const dollar = asSegment ? dollarSegment(key) : undefined;
    if (dollar) return dollar;
    if (!this.permissions.userReadAll) return graphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.");
    const user = this.user(decodeURIComponent(key));
    if (!user) return graphError(404, "Request_ResourceNotFound", `Resource '${key}' does not exist or one of its queried reference-property objects are not present.`);
    return { json: publicUser(user) };
  }

  private filterUsers(filter: string): SandboxReply {
    this.server.count("graph request");
    if (!this.permissions.userReadAll) return graphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.");
    const match = /^mail eq '((?:[^']|'')*)'$/i.exec(filter.trim());
    if (!match) return graphError(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified.");
    const mail = match[1]!.replace(/''/g, "'").toLowerCase();
    return { json: { value: [...this.users.values()].filter((u) => u.mail?.toLowerCase() === mail).map(publicUser) } };
  }

  private async getReplies(key: string, app: string, asSegment = false): Promise<SandboxReply> {
    this.server.count("graph mailbox request");
    const dollar = asSegment ? dollarSegment(key) : undefined;
    if (dollar) return dollar;
    const user = this.user(decodeURIComponent(key));
    if (!user) return graphError(404, "ErrorInvalidUser", `The requested user '${key}' is invalid.`);
    if (!user.mailbox) return graphError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.");
    if (!this.permissions.mailboxSettingsRead || user.restricted) return graphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.");
    if (this.throttlingEverything) return this.throttled(this.storm!.retryAfter);
    const throttle = this.throttles.get(user.id);
    if (throttle && throttle.times > 0) {
      throttle.times--;
      return this.throttled(throttle.retryAfter);
    }
    const load = this.load.get(user.id) ?? { inFlight: 0, recent: [] };
    this.load.set(user.id, load);
    const now = Date.now();
    while (load.recent.length && load.recent[0]! <= now - MAILBOX_WINDOW_MS) load.recent.shift();
    if (load.inFlight >= MAILBOX_CONCURRENCY || load.recent.length >= MAILBOX_REQUESTS) return this.throttled("1");
    const appInFlight = this.appLoad.get(app) ?? 0;
    if (this.appReadsInFlight !== undefined && appInFlight >= this.appReadsInFlight) return this.throttled(this.appRetryAfter);
    load.inFlight++;
    load.recent.push(now);
    this.appLoad.set(app, appInFlight + 1);
    this.peakReadsInFlight = Math.max(this.peakReadsInFlight, appInFlight + 1);
    try {
      const started = performance.now();
      if (this.itemLatencyMs > 0) await new Promise((r) => setTimeout(r, this.itemLatencyMs));
      this.readTime.reads++;
      this.readTime.ms += performance.now() - started;
      this.readLog.push(user.mail ?? user.userPrincipalName);
      if (this.readLog.length > 10_000) this.readLog.splice(0, this.readLog.length - 10_000);
      return {
        json: {
          "@odata.context": `https://graph.microsoft.com/v1.0/$metadata#users('${user.id}')/mailboxSettings/automaticRepliesSetting`,
          ...user.replies,
        },
      };
    } finally {
      load.inFlight--;
      this.appLoad.set(app, (this.appLoad.get(app) ?? 1) - 1);
    }
  }

  private throttled(retryAfter: string | undefined): SandboxReply {
    this.server.count("graph 429");
    return graphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", retryAfter === undefined ? {} : { "Retry-After": retryAfter });
  }

  private async batch(req: SandboxRequest, app: string): Promise<SandboxReply> {
    this.server.count("graph batch");
    const receivedAt = Date.now();
    const storm = this.throttlingEverything;
    this.batchesInFlight++;
    this.peakBatchesInFlight = Math.max(this.peakBatchesInFlight, this.batchesInFlight);
    try {
      const reply = await this.answerBatch(req, app);
      const responses = ((reply.json as { responses?: Array<{ status: number; headers: Record<string, string> }> } | undefined)?.responses ?? []).filter((r) => r.status === 429);
      const stated = responses.map((r) => Number(r.headers["Retry-After"])).filter((n) => Number.isFinite(n));
      this.batchLog.push({ receivedAt, answeredAt: Date.now(), items: Array.isArray(req.body?.requests) ? req.body.requests.length : 0, throttled: responses.length, retryAfterMs: stated.length ? Math.ceil(Math.max(...stated) * 1000) : null, storm });
      if (this.batchLog.length > BATCH_LOG_SIZE) this.batchLog.splice(0, this.batchLog.length - BATCH_LOG_SIZE);
      return reply;
    } finally {
      this.batchesInFlight--;
    }
  }

  private async answerBatch(req: SandboxRequest, app: string): Promise<SandboxReply> {
    const requests = (req.body?.requests ?? []) as Array<{ id?: string; method?: string; url?: string }>;
    if (!Array.isArray(requests) || requests.length === 0) return graphError(400, "BadRequest", "Invalid batch payload format.");
    if (requests.length > 20) return graphError(400, "BadRequest", "The number of batch requests cannot exceed 20.");
    const ids = requests.map((r) => String(r.id ?? "").toLowerCase());
    if (ids.some((id) => !id) || new Set(ids).size !== ids.length) return graphError(400, "BadRequest", "Batch request ids must be present and unique.");
    // Graph hands Outlook at most 4 requests of an unordered batch at a time.
    const responses: Array<{ id: string; status: number; headers: Record<string, string>; body: unknown }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < requests.length) {
          const item = requests[next++]!;
          const reply = await this.inner(item.method ?? "GET", item.url ?? "", app);
          responses.push({ id: String(item.id), status: reply.status ?? 200, headers: { "Content-Type": "application/json", ...reply.headers }, body: reply.json });
        }
      }),
    );
    // Answers come back in any order: correlate by id.
    responses.sort((a, b) => hashOrder(a.id) - hashOrder(b.id));
    return { json: { responses } };
  }

  private inner(method: string, url: string, app: string): Promise<SandboxReply> | SandboxReply {
    const path = url.replace(/^\/?(v1\.0\/)?/, "/").split("?")[0]!;
    const get = method.toUpperCase() === "GET";
    const replies = /^\/users\/([^/]+)\/mailboxSettings\/automaticRepliesSetting$/.exec(path);
    if (get && replies) return this.getReplies(replies[1]!, app, true);
    const keyedReplies = /^\/([^/]+)\/mailboxSettings\/automaticRepliesSetting$/.exec(path);
    if (get && keyedReplies) return this.keyed(decodeURIComponent(keyedReplies[1]!), (key) => this.getReplies(key, app));
    const user = /^\/users\/([^/]+)$/.exec(path);
    if (get && user) return this.getUser(user[1]!, true);
    const keyedUser = /^\/([^/]+)$/.exec(path);
    if (get && keyedUser) return this.keyed(decodeURIComponent(keyedUser[1]!), (key) => this.getUser(key));
    return graphError(400, "BadRequest", `The sandbox batch does not serve ${method} ${url}`);
  }
}

export function disabled(): AutomaticRepliesSetting {
  return { status: "disabled", externalAudience: "all", internalReplyMessage: "", externalReplyMessage: "" };
}

export function alwaysOn(text: string): AutomaticRepliesSetting {
  const html = `<html>\n<body>\n<div>${text}</div>\n</body>\n</html>\n`;
  return { status: "alwaysEnabled", externalAudience: "all", internalReplyMessage: html, externalReplyMessage: html };
}

export function scheduled(text: string, start: Date, end: Date, timeZone = "UTC"): AutomaticRepliesSetting {
  const html = `<html>\n<body>\n<div>${text}</div>\n</body>\n</html>\n`;
  // Graph's own shape: seven fractional digits and no offset ("2019-04-17T16:00:00.0000000").
  const local = (d: Date) => `${d.toISOString().slice(0, 19)}.${String(d.getUTCMilliseconds()).padStart(3, "0")}0000`;
  return {
    status: "scheduled",
    externalAudience: "all",
    scheduledStartDateTime: { dateTime: local(start), timeZone },
    scheduledEndDateTime: { dateTime: local(end), timeZone },
    internalReplyMessage: html,
    externalReplyMessage: html,
  };
}

/** Graph reads a path segment that starts with `$` as a system segment, not a user (graph-ooo.md §1.2). */
function dollarSegment(key: string): SandboxReply | undefined {
  const decoded = decodeURIComponent(key);
  if (!decoded.startsWith("$")) return undefined;
  return graphError(400, "BadRequest", `A user principal name that starts with '$' must be addressed as users('${decoded}'), not users/${key}.`);
}

function publicUser(u: SandboxUser) {
  return { id: u.id, userPrincipalName: u.userPrincipalName, mail: u.mail, displayName: u.displayName };
}

function guid(seed: string): string {
  const h = createHash("sha256").update(seed.toLowerCase()).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function hashOrder(id: string): number {
  return createHash("md5").update(id).digest().readUInt32BE(0);
}

import { createHash } from "node:crypto";
import type { SandboxReply, SandboxRequest, SandboxServer } from "./server";

/**
 * GoTo's call data for the sandbox: the Call Reports API (api.goto.com/call-reports/v1, what the
 * original export read) and the account-wide Call Events Report summaries, over generated calls
 * that are the same on every run: each UTC day's calls come from a PRNG seeded with its date.
 *
 * Documented (goto-apis.md §2.2–2.5): startTime inclusive, endTime exclusive, ISO 8601; Call
 * Reports pages with `page` (from 0) and `pageSize` (1–10,000) and answers `{ items }` only (modes
 * for markers and for a server that ignores `page`: see CallReportsPaging); the
 * Call Events Report pages with `pageMarker`/`nextPageMarker` and caps a window at 31 days; 10
 * requests per second per API, then 429. Unverified, and marked where used: the 429 body, the
 * absence of Retry-After (GoTo documents none, so none is sent), error bodies for bad parameters,
 * `duration` in milliseconds, `disposition` as a SIP cause code.
 */

export interface SandboxUser {
  userId: string;
  userName: string;
  extension: string;
}

export interface SandboxCall {
  id: string;
  userId: string;
  startTime: string;
  answerTime: string | null;
  endTime: string;
  direction: "INBOUND" | "OUTBOUND";
  disposition: number;
  duration: number;
  queue: { name: string } | null;
  caller: { name: string; number: string };
  callee: { name: string; number: string };
}

// Names a CSV must survive: commas, quotes, non-ASCII, and one a spreadsheet would run.
const USER_NAMES = [
  "Dupont, Émile",
  'Jan "JJ" Janssens',
  "Zoë Ørsted",
  "Łukasz Wójcik",
  "Ana María Núñez",
  "Søren Kierkegård",
  "=HYPERLINK(\"http://example.com\",\"click\")",
  "Chloé O'Brien",
  "Björn Ångström",
  "Nguyễn Thị Minh",
  "Müller, Jürgen",
  "Support Desk",
];
const CONTACT_NAMES = [
  "ACME, Inc.",
  'Café "Le Progrès"',
  "Straße & Söhne GmbH",
  "Åsa Lindqvist",
  "+32 2 555 01 99",
  "-Unknown-",
  "@home Services",
  "Dvořák Antonín",
  "北京客户",
  "O'Neil Plumbing",
  "",
  "Brasserie de l'Été",
];
const QUEUES = ["Sales", "Support, Tier 1", "Billing"];
const DISPOSITIONS = [16, 16, 16, 16, 16, 16, 17, 19, 19, 21]; // mostly answered (SIP cause codes)

const DAY_MS = 86_400_000;

/**
 * How the Call Reports lists page: by `page` (what third-party code shows), by markers as GoTo's
 * newer report APIs do (`nextPageMarker` in the answer, `pageMarker` asked back; `page` ignored),
 * by markers whose last page carries an empty (`marker-empty`) or null (`marker-null`)
 * `nextPageMarker` rather than none, or not at all: `page` ignored and no marker, every request
 * gets the first page (`ignore-page`), or the whole list whatever was asked, as the original
 * export, which sent no paging parameters, was answered (`unpaged`).
 */
export type CallReportsPaging = "page" | "marker" | "marker-empty" | "marker-null" | "ignore-page" | "unpaged";
const PAGINGS: CallReportsPaging[] = ["page", "marker", "marker-empty", "marker-null", "ignore-page", "unpaged"];

export interface CallReportsSandboxOptions {
  users?: number;
}

export class CallReportsSandbox {
  readonly users: SandboxUser[];
  /** Calls per UTC day, by date; other days get a weekday/weekend volume of their own. */
  readonly volumes = new Map<string, number>();
  /** The usual calls on a weekday (weekends get a sixth of it). */
  defaultVolume = 240;
  private limit: number | null = 10;
  /** The largest page the server gives, whatever was asked (tests of servers that cap pages). */
  maxPageSize = 10_000;
  /** How the Call Reports lists page (see CallReportsPaging). */
  paging: CallReportsPaging = "page";
  private readonly days = new Map<string, Map<string, SandboxCall[]>>();
  private readonly recent = new Map<string, number[]>();
  // Every page of one export asks for the same window: answer them from one lookup.
  private lastWindow?: { key: string; byUser: Map<string, SandboxCall[]> };

  constructor(
    private readonly server: SandboxServer,
    private readonly authorized: (req: SandboxRequest, ok: (clientId: string) => SandboxReply | Promise<SandboxReply>) => SandboxReply | Promise<SandboxReply>,
    options: CallReportsSandboxOptions = {},
  ) {
    const count = options.users ?? USER_NAMES.length;
    this.users = Array.from({ length: count }, (_, i) => ({
      userId: uuidFrom(`user-${i}`),
      userName: USER_NAMES[i % USER_NAMES.length]! + (i >= USER_NAMES.length ? ` ${Math.floor(i / USER_NAMES.length) + 1}` : ""),
      extension: String(1001 + i),
    }));

    const base = "/goto/api/call-reports/v1/reports/user-activity";
    server.route("GET", base, (req) => this.limited(req, "call-reports", () => this.userActivity(req)));
    server.route("GET", `${base}/:userId`, (req) => this.limited(req, "call-reports", () => this.userCalls(req)));
    server.route("GET", "/goto/api/call-events-report/v1/report-summaries", (req) => this.limited(req, "call-events-report", () => this.reportSummaries(req)));
    server.route("POST", "/_sandbox/goto/call-reports", (req) => {
      const body = (req.body ?? {}) as { rateLimit?: number | null; defaultVolume?: number; volumes?: Record<string, number>; paging?: CallReportsPaging };
      if (body.rateLimit !== undefined) this.rateLimit = body.rateLimit;
      if (body.paging !== undefined) {
        if (!PAGINGS.includes(body.paging)) return { status: 400, json: { message: `paging is one of ${PAGINGS.join(", ")}` } };
        this.paging = body.paging;
      }
      if (body.defaultVolume !== undefined && body.defaultVolume !== this.defaultVolume) {
        // The days made with the old volume are made again with the new one.
        this.defaultVolume = body.defaultVolume;
        this.days.clear();
        this.lastWindow = undefined;
      }
      for (const [date, n] of Object.entries(body.volumes ?? {})) this.setVolume(date, n);
      return { status: 204 };
    });
  }

  /** Requests per second per API and client before a 429; null turns the limit off (benchmarks). */
  get rateLimit(): number | null {
    return this.limit;
  }

  /** A new limit starts with empty windows, as after a quiet second. */
  set rateLimit(requests: number | null) {
    this.limit = requests;
    this.recent.clear();
  }

  /** Sets how many calls a UTC day has. */
  setVolume(date: string, calls: number): void {
    this.volumes.set(date, calls);
    this.days.delete(date);
    this.lastWindow = undefined;
  }

  /** Every call that started in [start, end), by start time: what a complete export holds. */
  callsBetween(start: Date, end: Date): SandboxCall[] {
    const all: SandboxCall[] = [];
    for (const calls of this.callsByUser(start.getTime(), end.getTime()).values()) all.push(...calls);
    return all.sort((a, b) => a.startTime.localeCompare(b.startTime) || a.id.localeCompare(b.id));
  }

  private limited(req: SandboxRequest, api: string, handle: () => SandboxReply): SandboxReply | Promise<SandboxReply> {
    return this.authorized(req, (clientId) => {
      this.server.count(`goto ${api} requests`);
      if (this.limit !== null) {
        const key = `${api}:${clientId}`;
        const now = Date.now();
        const times = (this.recent.get(key) ?? []).filter((t) => t > now - 1000);
        if (times.length >= this.limit) {
          this.recent.set(key, times);
          this.server.count(`goto ${api} 429`);
          // Unverified body; GoTo documents the status only, and no Retry-After header.
          return { status: 429, json: { errorCode: "TOO_MANY_REQUESTS", message: "Rate limit exceeded" } };
        }
        times.push(now);
        this.recent.set(key, times);
      }
      try {
        return handle();
      } catch (err) {
        if (err instanceof Refusal) return { status: err.status, json: { errorCode: "INVALID_ARGUMENT", message: err.message } };
        throw err;
      }
    });
  }

  private userActivity(req: SandboxRequest): SandboxReply {
    const window = this.window(req);
    const paging = this.pagingOf(req);
    const byUser = this.callsByUser(window.start, window.end);
    const items = this.users
      .filter((u) => (byUser.get(u.userId)?.length ?? 0) > 0)
      .map((u) => {
        const calls = byUser.get(u.userId)!;
        const inbound = calls.filter((c) => c.direction === "INBOUND");
        const outbound = calls.filter((c) => c.direction === "OUTBOUND");
        const sum = (cs: SandboxCall[]) => cs.reduce((n, c) => n + c.duration, 0);
        return {
          userId: u.userId,
          userName: u.userName,
          dataValues: {
            inboundVolume: inbound.length,
            inboundDuration: sum(inbound),
            outboundVolume: outbound.length,
            outboundDuration: sum(outbound),
            volume: calls.length,
            totalDuration: sum(calls),
            averageDuration: calls.length ? Math.round(sum(calls) / calls.length) : 0,
          },
        };
      });
    this.server.count("goto call-reports user pages");
    return { json: this.pageOf(items, paging) };
  }

  private userCalls(req: SandboxRequest): SandboxReply {
    const window = this.window(req);
    const paging = this.pagingOf(req);
    const user = this.users.find((u) => u.userId === req.params.userId);
    if (!user) return { status: 404, json: { errorCode: "NOT_FOUND", message: "User not found" } };
    const calls = this.callsByUser(window.start, window.end).get(user.userId) ?? [];
    this.server.count("goto call-reports call pages");
    // The page first, then its calls as the API writes them: a user of 200,000 calls is not copied for each page.
    const page = this.pageOf(calls, paging);
    return { json: { ...page, items: page.items.map(({ id: _id, userId: _u, ...call }) => call) } };
  }

  private reportSummaries(req: SandboxRequest): SandboxReply {
    const window = this.window(req);
    if (window.end - window.start > 31 * DAY_MS) return { status: 400, json: { errorCode: "INVALID_ARGUMENT", message: "The date range may not exceed 31 days" } };
    if (!req.query.get("accountKey")) return { status: 400, json: { errorCode: "INVALID_ARGUMENT", message: "accountKey is required" } };
    const size = Math.min(Number(req.query.get("pageSize") ?? 100) || 100, this.maxPageSize);
    const marker = req.query.get("pageMarker");
    const offset = marker ? Number(Buffer.from(marker, "base64url").toString("utf8").replace(/^offset:/, "")) : 0;
    if (!Number.isInteger(offset) || offset < 0) return { status: 400, json: { errorCode: "INVALID_ARGUMENT", message: "Invalid pageMarker" } };
    const calls = this.callsBetween(new Date(window.start), new Date(window.end));
    const page = calls.slice(offset, offset + size);
    const users = new Map(this.users.map((u) => [u.userId, u]));
    const items = page.map((c) => {
      const user = users.get(c.userId)!;
      const external = c.direction === "INBOUND" ? c.caller : c.callee;
      return {
        conversationSpaceId: c.id,
        callCreated: c.startTime,
        callAnswered: c.answerTime,
        callEnded: c.endTime,
        direction: c.direction,
        callerOutcome: c.disposition === 16 ? "NORMAL" : "MISSED",
        callInitiator: c.direction === "INBOUND" ? "EXTERNAL" : "INTERNAL",
        caller: c.direction === "INBOUND" ? { ...external, type: { callProvider: "PSTN" } } : { name: user.userName, number: user.extension, type: { extensionNumber: user.extension } },
        participants: [c.direction === "INBOUND" ? { name: user.userName, number: user.extension, type: { extensionNumber: user.extension } } : { ...external, type: {} }],
      };
    });
    const next = offset + size < calls.length ? Buffer.from(`offset:${offset + size}`).toString("base64url") : undefined;
    this.server.count("goto call-events-report pages");
    return { json: { items, ...(next ? { nextPageMarker: next } : {}) } };
  }

  private window(req: SandboxRequest): { start: number; end: number } {
    const start = Date.parse(req.query.get("startTime") ?? "");
    const end = Date.parse(req.query.get("endTime") ?? "");
    // Unverified error body for missing or bad times.
    if (Number.isNaN(start) || Number.isNaN(end)) throw new Refusal(400, "startTime and endTime are required ISO 8601 date-times");
    if (end <= start) throw new Refusal(400, "endTime must be after startTime");
    return { start, end };
  }

  /** One page of a list, as the paging mode has it. */
  private pageOf<T>(all: T[], paging: { page: number; size: number; offset?: number }): { items: T[]; nextPageMarker?: string | null } {
    if (this.paging === "unpaged") return { items: all };
    const byMarker = this.paging.startsWith("marker");
    const offset = byMarker ? (paging.offset ?? 0) : this.paging === "ignore-page" ? 0 : paging.page * paging.size;
    const items = all.slice(offset, offset + paging.size);
    if (!byMarker) return { items };
    if (offset + paging.size >= all.length) {
      if (this.paging === "marker-empty") return { items, nextPageMarker: "" };
      if (this.paging === "marker-null") return { items, nextPageMarker: null };
      return { items };
    }
    return { items, nextPageMarker: Buffer.from(`offset:${offset + paging.size}`).toString("base64url") };
  }

  private pagingOf(req: SandboxRequest): { page: number; size: number; offset?: number } {
    const marker = req.query.get("pageMarker");
    if (marker !== null && this.paging.startsWith("marker")) {
      const offset = Number(Buffer.from(marker, "base64url").toString("utf8").replace(/^offset:/, ""));
      if (!Number.isInteger(offset) || offset < 0) throw new Refusal(400, "Invalid pageMarker");
      const asked = Number(req.query.get("pageSize") ?? 100);
      return { page: 0, size: Math.min(Number.isInteger(asked) && asked > 0 ? asked : 100, this.maxPageSize), offset };
    }
    const page = Number(req.query.get("page") ?? 0);
    const asked = Number(req.query.get("pageSize") ?? 100);
    if (!Number.isInteger(page) || page < 0 || !Number.isInteger(asked) || asked < 1 || asked > 10_000) {
      throw new Refusal(400, "page must be 0 or more and pageSize between 1 and 10000");
    }
    return { page, size: Math.min(asked, this.maxPageSize) };
  }

  /** The calls of [start, end) per user, each user's by start time. */
  private callsByUser(start: number, end: number): Map<string, SandboxCall[]> {
    const key = `${start}/${end}`;
    if (this.lastWindow?.key === key) return this.lastWindow.byUser;
    const result = new Map<string, SandboxCall[]>();
    for (let day = Math.floor(start / DAY_MS) * DAY_MS; day < end; day += DAY_MS) {
      for (const [userId, calls] of this.day(new Date(day).toISOString().slice(0, 10))) {
        const inWindow = calls.filter((c) => {
          const t = Date.parse(c.startTime);
          return t >= start && t < end;
        });
        if (inWindow.length) result.set(userId, [...(result.get(userId) ?? []), ...inWindow]);
      }
    }
    this.lastWindow = { key, byUser: result };
    return result;
  }

  private day(date: string): Map<string, SandboxCall[]> {
    let byUser = this.days.get(date);
    if (byUser) return byUser;
    byUser = this.generate(date);
    if (this.days.size >= 64) this.days.delete(this.days.keys().next().value!);
    this.days.set(date, byUser);
    return byUser;
  }

  private generate(date: string): Map<string, SandboxCall[]> {
    const random = prng(`calls ${date}`);
    const dayStart = Date.parse(`${date}T00:00:00Z`);
    const weekday = new Date(dayStart).getUTCDay();
    const volume = this.volumes.get(date) ?? Math.round((weekday === 0 || weekday === 6 ? this.defaultVolume / 6 : this.defaultVolume) * (0.8 + 0.4 * random()));
    const byUser = new Map<string, SandboxCall[]>();
    // A few busy users take most calls, as on a real switchboard.
    const weights = this.users.map((_, i) => 1 / (1 + i * 0.35));
    const totalWeight = weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < volume; i++) {
      let pick = random() * totalWeight;
      let u = 0;
      while (u < this.users.length - 1 && (pick -= weights[u]!) > 0) u++;
      const user = this.users[u]!;
      // Calls cluster in office hours (07:00–19:00 UTC), with a tail through the night.
      const inHours = random() < 0.85;
      const start = dayStart + Math.floor(inHours ? (7 + random() * 12) * 3_600_000 : random() * DAY_MS);
      const direction = random() < 0.55 ? "INBOUND" : "OUTBOUND";
      const disposition = DISPOSITIONS[Math.floor(random() * DISPOSITIONS.length)]!;
      const answered = disposition === 16;
      const ring = Math.floor(2_000 + random() * 25_000);
      const talk = answered ? Math.floor(10_000 + random() * random() * 1_800_000) : 0;
      const contact = CONTACT_NAMES[Math.floor(random() * CONTACT_NAMES.length)]!;
      const external = { name: contact, number: `+32${Math.floor(20_000_000 + random() * 479_999_999)}` };
      const internal = { name: user.userName, number: user.extension };
      const call: SandboxCall = {
        id: uuidFrom(`${date}-${i}`),
        userId: user.userId,
        startTime: iso(start),
        answerTime: answered ? iso(start + ring) : null,
        endTime: iso(start + ring + talk),
        direction,
        disposition,
        duration: ring + talk,
        queue: direction === "INBOUND" && random() < 0.4 ? { name: QUEUES[Math.floor(random() * QUEUES.length)]! } : null,
        caller: direction === "INBOUND" ? external : internal,
        callee: direction === "INBOUND" ? internal : external,
      };
      const list = byUser.get(user.userId) ?? [];
      list.push(call);
      byUser.set(user.userId, list);
    }
    for (const list of byUser.values()) list.sort((a, b) => a.startTime.localeCompare(b.startTime) || a.id.localeCompare(b.id));
    return byUser;
  }
}

/** A request the API refuses (unverified body: `{ errorCode, message }` as GoTo's other errors). */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** mulberry32 seeded from a string: the same calls for the same day on every run. */
function prng(seed: string): () => number {
  let a = createHash("sha256").update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uuidFrom(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

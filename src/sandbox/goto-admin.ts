import { LosslessNumber, isSafeNumber, parse as parseLossless, stringify as stringifyLossless } from "lossless-json";
import type { SandboxReply, SandboxRequest, SandboxServer } from "./server";

/**
 * GoTo's Admin API for the sandbox (api.getgo.com/admin/rest/v1, goto-apis.md §4): the account's
 * users and licenses, and `me`.
 *
 * Documented or seen in use: `GET /me`; `GET /accounts/{accountKey}/users?filter=…` whose values
 * are regular expressions (`(?i)` case-insensitive, `|` or, `&` and), `offset`/`pageSize` paging
 * and `{ results, fromIndex, toIndex, total }`; `POST …/users` with `{ users, suppressEmail }`
 * answering an array of `{ key, email }`, 409 for an address in use unless `allOrNothing=false`;
 * `DELETE …/users/{userKey}`; `GET …/licenses` with seats and `userKeys`; keys as JSON integers of
 * 19 digits or more; 10 requests per second per API, then 429 (no Retry-After).
 *
 * Unverified, and chosen here (say so where it matters): the license assignment path
 * `POST|DELETE …/licenses/{licenseKeys}/users/{userKeys}` (the original script's, comma lists);
 * `licenseKeys` next to `users` in the create body; every error body (`{ errorCode, message }` as
 * GoTo's other APIs); 403 for a token whose user is no admin of the account; 204 on assignment,
 * removal and delete; `toIndex` exclusive (the original script read `toIndex: 1` for one result,
 * a third-party client reads it inclusive); the largest page (100 here); a license without a free
 * seat refused with 409 `SEATS_EXCEEDED`, seats held by pending
 * invitations counted by GoTo but not in `userCount`.
 */

export interface SandboxAdminUser {
  key: string;
  email: string;
  firstName: string;
  lastName: string;
  locale: string;
  adminRoles: string[];
  createTime: string;
}

export interface SandboxLicense {
  key: string;
  description: string;
  type: string;
  channel: string;
  products: string[];
  seats: number;
  enabled: boolean;
  userKeys: string[];
  /** Seats held by invitations not yet accepted: GoTo counts them, its `userCount` does not. [unverified] */
  invitedUserKeys?: string[];
}

/** The licenses every sandbox account starts with. Keys are beyond what a JS number holds. */
export const SANDBOX_LICENSES = {
  connectStandard: "7288486601101397001",
  meetingPro: "7288486601101397002",
  /** Every seat taken. */
  meetingBusiness: "7288486601101397003",
  /** Switched off. */
  webinarLite: "7288486601101397004",
  /** 26 digits, as in GoTo's own example of a key. */
  connectPremium: "78888886011013972886849029",
} as const;

const ADMIN_KEY = "1000000000000000001";
const MAX_PAGE = 100;

// Existing users: names a provisioning run must carry (non-ASCII, apostrophes, a plus in an address).
const SEED_USERS: Array<[string, string, string, string[]]> = [
  ["admin@example.com", "Ada", "Admin", [SANDBOX_LICENSES.connectStandard, SANDBOX_LICENSES.meetingPro]],
  ["emile.dupont@example.com", "Émile", "Dupont", [SANDBOX_LICENSES.connectStandard]],
  ["zoe.orsted@example.com", "Zoë", "Ørsted", [SANDBOX_LICENSES.connectStandard, SANDBOX_LICENSES.meetingBusiness]],
  ["lukasz.wojcik@example.com", "Łukasz", "Wójcik", [SANDBOX_LICENSES.meetingBusiness]],
  ["chloe.obrien@example.com", "Chloé", "O'Brien", [SANDBOX_LICENSES.meetingBusiness]],
  ["support+desk@example.com", "Support", "Desk", [SANDBOX_LICENSES.connectStandard]],
  ["nguyen.minh@example.com", "Minh", "Nguyễn Thị", []],
];

export class AdminSandbox {
  readonly users = new Map<string, SandboxAdminUser>();
  licenses: SandboxLicense[] = [];
  /** Client ids whose tokens belong to a user who is not an admin of the account: 403. */
  readonly nonAdmins = new Set<string>();
  /** Addresses GoTo sent its welcome mail to. */
  readonly welcomeMails: string[] = [];
  /** Addresses held by users of other GoTo accounts: creating one here is a 409 too. */
  readonly elsewhere = new Set<string>();
  /**
   * How a creation answers an address in use: 409 unless `allOrNothing=false` (the older
   * reference), or 200 listing the conflicting users beside the created ones, this account's with
   * their key and untouched (no license given), another account's without a key (GoTo's guide:
   * "Existing (conflicting) users are returned in the response payload as well").
   */
  createConflicts: "409" | "listed" = "409";
  /**
   * How `GET /me` is written: its documented fields alone, or (`nested`) after an object of the
   * user's former account holding an `accountKey`, `email` and `adminRoles` of its own, with the
   * top-level key a JSON number: only a reader that takes the top-level fields gets them right.
   */
  meShape: "plain" | "nested" = "plain";
  /** Every creation is refused with this (an error GoTo may give that nothing here expects), until unset. */
  refuseCreate?: { status: number; errorCode: string; message: string };
  private limit: number | null = 10;
  private readonly recent = new Map<string, number[]>();
  private nextKey = 1;

  constructor(
    private readonly server: SandboxServer,
    readonly accountKey: string,
    private readonly authorized: (req: SandboxRequest, ok: (clientId: string) => SandboxReply | Promise<SandboxReply>) => SandboxReply | Promise<SandboxReply>,
  ) {
    this.reset();
    const base = "/goto/api/admin/rest/v1";
    server.route("GET", `${base}/me`, (req) => this.api(req, (clientId) => this.me(clientId), false));
    server.route("GET", `${base}/accounts/:accountKey/users`, (req) => this.api(req, () => this.listUsers(req)));
    server.route("POST", `${base}/accounts/:accountKey/users`, (req) => this.api(req, () => this.createUsers(req)));
    server.route("DELETE", `${base}/accounts/:accountKey/users/:userKey`, (req) => this.api(req, () => this.deleteUser(req.params.userKey!)));
    server.route("GET", `${base}/accounts/:accountKey/licenses`, (req) => this.api(req, () => this.listLicenses(req)));
    server.route("POST", `${base}/accounts/:accountKey/licenses/:licenseKeys/users/:userKeys`, (req) => this.api(req, () => this.assign(req, true)));
    server.route("DELETE", `${base}/accounts/:accountKey/licenses/:licenseKeys/users/:userKeys`, (req) => this.api(req, () => this.assign(req, false)));

    // For people trying the demo: what the account holds now, and a way back to the start.
    server.route("GET", "/_sandbox/goto/admin", () => ({ json: this.summary() }));
    server.route("POST", "/_sandbox/goto/admin", (req) => {
      const body = (req.body ?? {}) as {
        rateLimit?: number | null;
        reset?: boolean;
        refuseCreate?: AdminSandbox["refuseCreate"] | null;
        createConflicts?: AdminSandbox["createConflicts"];
        meShape?: AdminSandbox["meShape"];
      };
      if (body.createConflicts !== undefined && !["409", "listed"].includes(body.createConflicts)) return { status: 400, json: { message: "createConflicts is 409 or listed" } };
      if (body.meShape !== undefined && !["plain", "nested"].includes(body.meShape)) return { status: 400, json: { message: "meShape is plain or nested" } };
      if (body.reset) this.reset();
      if (body.createConflicts !== undefined) this.createConflicts = body.createConflicts;
      if (body.meShape !== undefined) this.meShape = body.meShape;
      if (body.refuseCreate !== undefined) this.refuseCreate = body.refuseCreate ?? undefined;
      if (body.rateLimit !== undefined) this.rateLimit = body.rateLimit;
      return { status: 204 };
    });
    server.persistent("goto-admin", {
      snapshot: () => ({ users: [...this.users.values()], licenses: this.licenses, nextKey: this.nextKey }),
      restore: (data: { users?: SandboxAdminUser[]; licenses?: SandboxLicense[]; nextKey?: number }) => {
        if (!data.users || !data.licenses) return;
        this.users.clear();
        for (const u of data.users) this.users.set(u.key, u);
        this.licenses = data.licenses;
        this.nextKey = data.nextKey ?? this.nextKey;
      },
    });
  }

  /** Requests per second per client before a 429; null turns the limit off. */
  get rateLimit(): number | null {
    return this.limit;
  }

  set rateLimit(requests: number | null) {
    this.limit = requests;
    this.recent.clear();
  }

  /** Back to the seeded account: its licenses and a few users. */
  reset(): void {
    this.users.clear();
    this.nextKey = 1;
    this.welcomeMails.length = 0;
    this.refuseCreate = undefined;
    this.createConflicts = "409";
    this.meShape = "plain";
    this.elsewhere.clear();
    this.licenses = [
      license(SANDBOX_LICENSES.connectStandard, "GoTo Connect Phone System Standard", ["JIVE"], 250),
      license(SANDBOX_LICENSES.meetingPro, "GoTo Meeting Pro", ["G2M"], 100),
      license(SANDBOX_LICENSES.meetingBusiness, "GoTo Meeting Business", ["G2M"], 3),
      { ...license(SANDBOX_LICENSES.webinarLite, "GoTo Webinar Lite", ["G2W"], 25), enabled: false },
      license(SANDBOX_LICENSES.connectPremium, "GoTo Connect Phone System Premium", ["JIVE"], 50),
    ];
    for (const [email, firstName, lastName, keys] of SEED_USERS) {
      const user = this.addUser({ email, firstName, lastName, key: email.startsWith("admin@") ? ADMIN_KEY : undefined, adminRoles: email.startsWith("admin@") ? ["SUPER_USER"] : [] });
      for (const k of keys) this.license(k)!.userKeys.push(user.key);
    }
  }

  /** Adds a user as it is, without GoTo's checks (tests use it for two users of one address). */
  addUser(user: { email: string; firstName?: string; lastName?: string; key?: string; adminRoles?: string[] }): SandboxAdminUser {
    const added: SandboxAdminUser = {
      key: user.key ?? this.newKey(),
      email: user.email,
      firstName: user.firstName ?? "Test",
      lastName: user.lastName ?? "User",
      locale: "en_US",
      adminRoles: user.adminRoles ?? [],
      createTime: new Date().toISOString(),
    };
    this.users.set(added.key, added);
    this.server.changed();
    return added;
  }

  /** Adds a license (the benchmark needs more seats than the seeded ones have). */
  addLicense(description: string, seats: number, products: string[] = ["G2M"]): SandboxLicense {
    const added = license(`73000000000000${String(this.licenses.length + 1).padStart(5, "0")}`, description, products, seats);
    this.licenses.push(added);
    return added;
  }

  license(key: string): SandboxLicense | undefined {
    return this.licenses.find((l) => l.key === key);
  }

  usersWithEmail(email: string): SandboxAdminUser[] {
    return [...this.users.values()].filter((u) => u.email.toLowerCase() === email.toLowerCase());
  }

  /** The keys of the licenses a user holds. */
  licensesOf(userKey: string): string[] {
    return this.licenses.filter((l) => l.userKeys.includes(userKey)).map((l) => l.key);
  }

  private newKey(): string {
    // 19 digits, like GoTo's: a JS number would lose the last ones.
    return `8214000${String(this.nextKey++).padStart(12, "0")}`;
  }

  private summary() {
    return {
      accountKey: this.accountKey,
      users: [...this.users.values()].map((u) => ({ key: u.key, email: u.email, licenseKeys: this.licensesOf(u.key) })),
      licenses: this.licenses.map((l) => ({ key: l.key, description: l.description, enabled: l.enabled, seats: l.seats, used: l.userKeys.length })),
    };
  }

  private api(req: SandboxRequest, handle: (clientId: string) => SandboxReply, accountRoute = true): SandboxReply | Promise<SandboxReply> {
    return this.authorized(req, (clientId) => {
      this.server.count("goto admin requests");
      if (this.limit !== null) {
        const now = Date.now();
        const times = (this.recent.get(clientId) ?? []).filter((t) => t > now - 1000);
        this.recent.set(clientId, times);
        if (times.length >= this.limit) {
          this.server.count("goto admin 429");
          return refuse(429, "TOO_MANY_REQUESTS", "Rate limit exceeded");
        }
        times.push(now);
      }
      if (accountRoute) {
        if (req.params.accountKey !== this.accountKey) return refuse(404, "NOT_FOUND", "Account not found");
        if (this.nonAdmins.has(clientId)) {
          this.server.count("goto admin 403");
          return refuse(403, "FORBIDDEN", "The user is not an admin of this account");
        }
      }
      return handle(clientId);
    });
  }

  private me(clientId: string): SandboxReply {
    const admin = !this.nonAdmins.has(clientId);
    const me = {
      key: admin ? ADMIN_KEY : "1000000000000000002",
      accountKey: this.accountKey,
      email: admin ? "admin@example.com" : "member@example.com",
      orgAdmin: false,
      adminRoles: admin ? ["SUPER_USER"] : [],
      products: ["JIVE", "G2M"],
    };
    if (this.meShape === "plain") return { json: me };
    // A former account first, its fields named as the user's own; the user's key a JSON number.
    return bigJson({
      previousAccount: { accountKey: big("7288486601101390000"), email: "former.admin@example.org", adminRoles: ["MANAGE_USERS"] },
      ...me,
      key: big(me.key),
      accountKey: big(this.accountKey),
    });
  }

  private listUsers(req: SandboxRequest): SandboxReply {
    let match: (u: SandboxAdminUser) => boolean;
    try {
      match = parseFilter(req.query.get("filter"));
    } catch (err) {
      return refuse(400, "INVALID_FILTER", (err as Error).message);
    }
    const all = [...this.users.values()].filter(match).map((u) => ({ key: big(u.key), email: u.email, firstName: u.firstName, lastName: u.lastName, locale: u.locale, adminRoles: u.adminRoles, createTime: u.createTime }));
    this.server.count("goto admin user searches");
    return page(req, all);
  }

  private listLicenses(req: SandboxRequest): SandboxReply {
    const all = this.licenses.map((l) => ({
      key: big(l.key),
      description: l.description,
      type: l.type,
      channel: l.channel,
      products: l.products,
      seats: l.seats,
      userCount: l.userKeys.length,
      enabled: l.enabled,
      userKeys: l.userKeys.map(big),
      invitedUserKeys: (l.invitedUserKeys ?? []).map(big),
      deviceKeys: [],
      childLicenseKeys: [],
      devicesOnly: false,
      devicesAllowed: false,
      externallyManaged: false,
    }));
    return page(req, all);
  }

  private createUsers(req: SandboxRequest): SandboxReply {
    let body: { users?: unknown; licenseKeys?: unknown; adminRoles?: unknown; suppressEmail?: unknown };
    try {
      body = (req.rawBody ? parseLossless(req.rawBody, null, (v) => (isSafeNumber(v) ? Number(v) : v)) : {}) as typeof body;
    } catch {
      return refuse(400, "INVALID_JSON", "The request body is not valid JSON");
    }
    const users = Array.isArray(body.users) ? (body.users as Array<Record<string, unknown>>) : [];
    if (users.length === 0) return refuse(400, "INVALID_ARGUMENT", "users is required");
    for (const u of users) {
      if (!["email", "firstName", "lastName"].every((f) => typeof u?.[f] === "string" && (u[f] as string).trim())) {
        return refuse(400, "INVALID_ARGUMENT", "Each user needs an email, a firstName and a lastName");
      }
    }
    const keys = Array.isArray(body.licenseKeys) ? body.licenseKeys.map(String) : [];
    const roles = Array.isArray(body.adminRoles) ? body.adminRoles : [];
    // "You must also assign a new user either a licenseKey or an adminRole" (goto-apis.md §4.3).
    if (keys.length === 0 && roles.length === 0) return refuse(400, "INVALID_ARGUMENT", "A new user needs a licenseKey or an adminRole");
    if (this.refuseCreate) return refuse(this.refuseCreate.status, this.refuseCreate.errorCode, this.refuseCreate.message);
    const unknown = keys.filter((k) => !this.license(k));
    if (unknown.length) return refuse(400, "INVALID_LICENSE", `Unknown license key(s): ${unknown.join(", ")}`);
    const conflicts = users.filter((u) => this.usersWithEmail(String(u.email)).length > 0 || this.elsewhere.has(String(u.email).toLowerCase()));
    const allOrNothing = this.createConflicts === "409" && req.query.get("allOrNothing") !== "false";
    if (conflicts.length && allOrNothing) {
      this.server.count("goto admin 409");
      return refuse(409, "CONFLICT", `Email already in use: ${conflicts.map((u) => String(u.email)).join(", ")}`);
    }
    const fresh = users.filter((u) => !conflicts.includes(u));
    for (const k of keys) {
      const l = this.license(k)!;
      if (seatsTaken(l) + fresh.length > l.seats) return refuse(409, "SEATS_EXCEEDED", `No seats left on license ${k}`);
    }
    const answer = [];
    for (const u of users) {
      if (conflicts.includes(u)) {
        // "Emails already in use will not have a corresponding user key in the response" (§4.3): another account's.
        const mine = this.usersWithEmail(String(u.email))[0];
        if (mine) answer.push({ key: big(mine.key), email: String(u.email) });
        else if (this.createConflicts === "listed") answer.push({ email: String(u.email) });
        continue;
      }
      const user = this.addUser({ email: String(u.email), firstName: String(u.firstName), lastName: String(u.lastName) });
      for (const k of keys) this.license(k)!.userKeys.push(user.key);
      if (body.suppressEmail !== true) this.welcomeMails.push(user.email);
      this.server.count("goto admin users created");
      answer.push({ key: big(user.key), email: user.email });
    }
    return bigJson(answer);
  }

  private deleteUser(userKey: string): SandboxReply {
    if (!this.users.delete(userKey)) return refuse(404, "NOT_FOUND", "User not found");
    for (const l of this.licenses) l.userKeys = l.userKeys.filter((k) => k !== userKey);
    this.server.count("goto admin users deleted");
    return { status: 204 };
  }

  private assign(req: SandboxRequest, give: boolean): SandboxReply {
    const licenses = req.params.licenseKeys!.split(",").map((k) => this.license(k.trim()));
    const userKeys = req.params.userKeys!.split(",").map((k) => k.trim());
    if (licenses.some((l) => !l)) return refuse(404, "NOT_FOUND", "License not found");
    if (userKeys.some((k) => !this.users.has(k))) return refuse(404, "NOT_FOUND", "User not found");
    for (const l of licenses as SandboxLicense[]) {
      if (give) {
        const added = userKeys.filter((k) => !l.userKeys.includes(k));
        if (seatsTaken(l) + added.length > l.seats) return refuse(409, "SEATS_EXCEEDED", `No seats left on license ${l.key}`);
      }
    }
    for (const l of licenses as SandboxLicense[]) {
      if (give) l.userKeys.push(...userKeys.filter((k) => !l.userKeys.includes(k)));
      else l.userKeys = l.userKeys.filter((k) => !userKeys.includes(k));
    }
    this.server.count(give ? "goto admin licenses assigned" : "goto admin licenses removed");
    return { status: 204 };
  }
}

/** Seats in use: the license's users and its pending invitations. */
function seatsTaken(l: SandboxLicense): number {
  return l.userKeys.length + (l.invitedUserKeys?.length ?? 0);
}

function license(key: string, description: string, products: string[], seats: number): SandboxLicense {
  return { key, description, type: "PAID", channel: "DIRECT", products, seats, enabled: true, userKeys: [] };
}

function refuse(status: number, errorCode: string, message: string): SandboxReply {
  return { status, json: { errorCode, message } };
}

/** One page of a list, as GoTo pages: `offset` from 0, `pageSize`. */
function page(req: SandboxRequest, all: unknown[]): SandboxReply {
  const offset = Number(req.query.get("offset") ?? 0);
  const size = Number(req.query.get("pageSize") ?? 50);
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(size) || size < 1) return refuse(400, "INVALID_ARGUMENT", "offset and pageSize must be whole numbers");
  const results = all.slice(offset, offset + Math.min(size, MAX_PAGE));
  return bigJson({ results, fromIndex: offset, toIndex: offset + results.length, total: all.length });
}

/** A key written as GoTo writes it: a JSON integer, all its digits. */
function big(key: string): LosslessNumber {
  return new LosslessNumber(key);
}

function bigJson(value: unknown): SandboxReply {
  return { headers: { "content-type": "application/json" }, text: stringifyLossless(value) ?? "null" };
}

/**
 * GoTo's filter: `(field="regex")` terms joined by `|` (or) and `&` (and), parentheses for groups;
 * also `field eq "value"` (seen in 2022–2023 scripts). A regex must match the whole value (GoTo's
 * examples wrap a substring in `.*`); `(?i)` at its start makes it case-insensitive.
 */
export function parseFilter(filter: string | null): (user: SandboxAdminUser) => boolean {
  if (!filter) return () => true;
  let at = 0;
  const fields = new Set(["email", "firstName", "lastName"]);
  const skip = () => {
    while (filter[at] === " ") at++;
  };
  const fail = (what: string): never => {
    throw new Error(`Invalid filter at ${at}: ${what}`);
  };
  const quoted = (): string => {
    if (filter[at] !== '"') fail("a quoted value");
    let value = "";
    for (at++; at < filter.length && filter[at] !== '"'; at++) {
      // A backslash keeps the next character, quote included, for the regex to read.
      if (filter[at] === "\\" && at + 1 < filter.length) value += filter[at++];
      value += filter[at];
    }
    if (filter[at] !== '"') fail("a closing quote");
    at++;
    return value;
  };
  const condition = (): ((u: SandboxAdminUser) => boolean) => {
    skip();
    if (filter[at] === "(") {
      at++;
      const inner = expression();
      skip();
      if (filter[at] !== ")") fail("a closing parenthesis");
      at++;
      return inner;
    }
    const name = /^[A-Za-z]+/.exec(filter.slice(at))?.[0] ?? fail("a field name");
    if (!fields.has(name)) fail(`unknown field ${name}`);
    at += name.length;
    skip();
    let test: (value: string) => boolean;
    if (filter[at] === "=") {
      at++;
      skip();
      test = regexTest(quoted());
    } else if (filter.slice(at, at + 2).toLowerCase() === "eq") {
      at += 2;
      skip();
      const value = quoted().toLowerCase();
      test = (v) => v.toLowerCase() === value;
    } else {
      return fail("= or eq");
    }
    return (u) => test(String(u[name as keyof SandboxAdminUser] ?? ""));
  };
  const expression = (): ((u: SandboxAdminUser) => boolean) => {
    let left = condition();
    for (;;) {
      skip();
      const op = filter[at];
      if (op !== "|" && op !== "&") return left;
      at++;
      const right = condition();
      const l = left;
      left = op === "|" ? (u) => l(u) || right(u) : (u) => l(u) && right(u);
    }
  };
  const result = expression();
  skip();
  if (at < filter.length) fail("unexpected text");
  return result;
}

function regexTest(source: string): (value: string) => boolean {
  const insensitive = source.startsWith("(?i)");
  const pattern = insensitive ? source.slice(4) : source;
  let regex: RegExp;
  try {
    regex = new RegExp(`^(?:${pattern})$`, insensitive ? "i" : "");
  } catch (err) {
    throw new Error(`Invalid regular expression: ${(err as Error).message}`);
  }
  return (value) => regex.test(value);
}

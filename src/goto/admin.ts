import { LosslessNumber, isSafeNumber, parse as parseLossless, stringify as stringifyLossless } from "lossless-json";
import { HttpClient, HttpError, HttpResponse, QueryValue } from "../core/http/client";
import { PipelineError } from "../core/errors";
import { describeGoToError, isGoToTokenRejected } from "./api";

// The GoTo Admin API (api.getgo.com/admin/rest/v1, goto-apis.md §4): users and licenses of one
// account. What the reference could not verify is marked [unverified] where it is used, and each
// such call lives in one method so that correcting it is a one-line change.

/** A user of the account, as `GET /accounts/{accountKey}/users` lists them. */
export interface AdminUser {
  /** About 19 digits (GoTo's own example has 26): always text, never a JS number. */
  key: string;
  email: string;
  firstName?: string;
  lastName?: string;
  adminRoles?: string[];
}

/** A license of the account, as `GET /accounts/{accountKey}/licenses` lists them. */
export interface AdminLicense {
  key: string;
  description?: string;
  type?: string;
  products: string[];
  /** Seats bought; absent means no limit was given. */
  seats?: number;
  /** Users holding the license. */
  userCount: number;
  userKeys: string[];
  enabled: boolean;
}

/** The fields GoTo needs to create a user (goto-apis.md §4.3: email, first and last name). */
export interface NewUser {
  email: string;
  firstName: string;
  lastName: string;
  locale?: string;
}

/** GoTo's list shape: `{ results, fromIndex, toIndex, total }`, paged with `offset` and `pageSize`. */
interface AdminPage {
  results?: Array<Record<string, unknown>>;
  total?: number;
}

export const ADMIN_PAGE_SIZE = 100;

/**
 * The Admin API of one account. Every response is read from its text with large integers kept as
 * text, so a user or license key of 19 digits or more arrives exact.
 */
export class GoToAdminApi {
  constructor(
    private readonly http: HttpClient,
    readonly accountKey: string,
    private readonly options: { pageSize?: number; signal?: AbortSignal } = {},
  ) {}

  /**
   * The users whose address is `email`, compared exactly and without regard to case. GoTo's filter
   * value is a regular expression (`(?i)` for case-insensitive), so the address is escaped and
   * anchored; the comparison in code keeps a filter that matches more (a substring, a `.` taken as
   * any character) from ever picking the wrong user.
   */
  async usersByEmail(email: string): Promise<AdminUser[]> {
    const wanted = email.trim().toLowerCase();
    const found: AdminUser[] = [];
    for await (const row of this.pages("users", { filter: emailFilter(email) })) {
      const user = toUser(row);
      if (user.email.trim().toLowerCase() === wanted) found.push(user);
    }
    return found;
  }

  async licenses(): Promise<AdminLicense[]> {
    const all: AdminLicense[] = [];
    for await (const row of this.pages("licenses")) all.push(toLicense(row));
    return all;
  }

  /**
   * Creates one user holding `licenseKeys`. The body follows GoTo's guide (`users`,
   * `suppressEmail`); `licenseKeys` next to `users` is [unverified] (goto-apis.md §4.3), as is
   * sending the keys as JSON numbers, the way GoTo's own responses write them. An address already
   * in use comes back as `conflict`: a 409 (with `allOrNothing`, GoTo's older default), or a 200
   * whose payload lists the address without a user key. A 200 that lists it with a key gives
   * `key`; GoTo's guide says such a payload lists "existing (conflicting) users" too, so the key
   * may be of a user that existed: the caller tells which. A refusal for want of seats, or for a
   * reason of its own, is an error that says which (see `refusalOf`).
   */
  async createUser(user: NewUser, licenseKeys: string[], welcomeEmail: boolean): Promise<{ key: string } | { conflict: string }> {
    const body = {
      users: [{ email: user.email, firstName: user.firstName, lastName: user.lastName, ...(user.locale ? { locale: user.locale } : {}) }],
      licenseKeys: licenseKeys.map((k) => new LosslessNumber(k)),
      suppressEmail: !welcomeEmail,
    };
    let res: HttpResponse;
    try {
      res = await this.call({ method: "POST", path: this.path("users"), body: stringifyLossless(body)!, headers: { "content-type": "application/json" } }, true);
    } catch (err) {
      const refusal = refusalOf(err, `create ${user.email}`, licenseKeys);
      if (refusal === "address in use") return { conflict: describeGoToError(409, (err as HttpError).body) ?? "409 Conflict" };
      throw refusal;
    }
    // GoTo answers an array of { key, email }; an older client read a single object (§4.3).
    const parsed = parseGoToJson(res.text);
    const rows = (Array.isArray(parsed) ? parsed : [parsed]) as Array<Record<string, unknown>>;
    const wanted = user.email.toLowerCase();
    const listed = rows.filter((r) => typeof r?.email === "string");
    const mine = listed.length ? listed.find((r) => (r.email as string).toLowerCase() === wanted) : rows[0];
    const key = mine?.key;
    if (listed.length && (!mine || key === undefined || key === null)) {
      // "Emails already in use will not have a corresponding user key in the response" (§4.3).
      return { conflict: `200, ${user.email} listed without a user key: the address is in use` };
    }
    if (key === undefined || key === null || !/^\d+$/.test(String(key))) {
      throw new PipelineError(`GoTo created ${user.email} but did not say its user key`, { status: "no user key", code: "GW_GOTO_NO_USER_KEY" });
    }
    return { key: String(key) };
  }

  /**
   * Gives a user licenses. [unverified] The path is the one the original provisioning script used,
   * license keys comma-separated (goto-apis.md §4.4: found in no GoTo source).
   */
  async assignLicenses(licenseKeys: string[], userKey: string): Promise<void> {
    try {
      await this.call({ method: "POST", path: this.path(`licenses/${licenseKeys.join(",")}/users/${userKey}`) });
    } catch (err) {
      const refusal = refusalOf(err, `give user ${userKey} license ${licenseKeys.join(", ")}`, licenseKeys);
      throw refusal === "address in use" ? err : refusal;
    }
  }

  /** Takes licenses from a user. [unverified] The assignment's path with DELETE, by symmetry. */
  async removeLicenses(licenseKeys: string[], userKey: string): Promise<void> {
    await this.call({ method: "DELETE", path: this.path(`licenses/${licenseKeys.join(",")}/users/${userKey}`) });
  }

  /**
   * Deletes a user. The path is seen in third-party code (goto-apis.md §4.6); the success status
   * (200 or 204) is [unverified], so any 2xx will do. A user already gone answers 404: `absent`.
   */
  async deleteUser(userKey: string): Promise<"deleted" | "absent"> {
    try {
      await this.call({ method: "DELETE", path: this.path(`users/${userKey}`) });
      return "deleted";
    } catch (err) {
      if (err instanceof HttpError && err.statusCode === 404) return "absent";
      throw err;
    }
  }

  private path(rest: string): string {
    return `accounts/${encodeURIComponent(this.accountKey)}/${rest}`;
  }

  /** Every row of a list, page by page (`offset` and `pageSize`; `toIndex` is read differently by different clients, so it is not used). */
  private async *pages(resource: string, query: Record<string, QueryValue> = {}): AsyncGenerator<Record<string, unknown>> {
    const pageSize = this.options.pageSize ?? ADMIN_PAGE_SIZE;
    for (let offset = 0; ; ) {
      // A list (or the users collection) that is not found means the account is not.
      const res = await this.call({ path: this.path(resource), query: { ...query, offset, pageSize } }, true);
      const page = parseGoToJson(res.text) as AdminPage;
      const results = Array.isArray(page?.results) ? page.results : [];
      yield* results;
      offset += results.length;
      if (results.length === 0 || typeof page.total !== "number" || offset >= page.total) return;
    }
  }

  private async call(req: Parameters<HttpClient["request"]>[0], accountLevel = false): Promise<HttpResponse> {
    try {
      return await this.http.request({ ...req, signal: this.options.signal });
    } catch (err) {
      throw explainAdminError(err, this.accountKey, accountLevel);
    }
  }
}

/** GoTo's refusals that mean the connection, not one user, is wrong: said in words a user can act on. */
function explainAdminError(err: unknown, accountKey: string, accountLevel: boolean): unknown {
  if (!(err instanceof HttpError)) return err;
  if (err.statusCode === 403 && isGoToTokenRejected(403, err.body)) {
    // The client refreshed the token once already: GoTo refuses the new one too.
    return new AdminAccessError(`GoTo refused the access token even after refreshing it (${err.message}): authorize again in the goto-credentials node`, {
      status: "token refused",
      code: "GW_GOTO_TOKEN_REFUSED",
      cause: err,
    });
  }
  if (err.statusCode === 403) {
    return new AdminAccessError(
      `GoTo refused the Admin API (403): the user who authorized the goto-credentials node must be an admin of the account (super admin, or a role that manages users) and the OAuth client needs the scope identity: (${err.message})`,
      { status: "not an admin", code: "GW_GOTO_NOT_ADMIN", cause: err },
    );
  }
  if (err.statusCode === 404 && accountLevel) {
    return new AdminAccessError(`GoTo does not know the account ${accountKey}: check the account key in the goto-credentials node (${err.message})`, {
      status: "unknown account",
      code: "GW_GOTO_UNKNOWN_ACCOUNT",
      cause: err,
    });
  }
  return err;
}

/** Who authorized the connection, from `GET /me` (goto-apis.md §4.1). */
export interface AdminMe {
  /** Digits as text, exact whatever their number. */
  accountKey?: string;
  email?: string;
  adminRoles: string[];
}

/**
 * `GET /me`'s answer read as JSON: its own top-level `accountKey`, `email` and `adminRoles`, not
 * the first text anywhere that looks like one (an object inside may carry its own). A key written
 * as a JSON number of 19 digits keeps every digit.
 */
export function readMe(text: string): AdminMe {
  let parsed: unknown;
  try {
    parsed = parseGoToJson(text);
  } catch (err) {
    throw new PipelineError(`GoTo's Admin API answered GET /me with text that is not JSON (${(err as Error).message})`, { status: "unexpected answer", code: "GW_GOTO_BAD_ME", cause: err });
  }
  const me = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  const key = me.accountKey === undefined || me.accountKey === null ? "" : String(me.accountKey).trim();
  return {
    accountKey: /^\d+$/.test(key) ? key : undefined,
    email: typeof me.email === "string" ? me.email : undefined,
    adminRoles: Array.isArray(me.adminRoles) ? me.adminRoles.filter((r): r is string => typeof r === "string" && r !== "") : [],
  };
}

/** A failure about one user or license, with the HTTP status to answer it with. */
export class ProvisioningError extends PipelineError {}

/** Codes GoTo (or what stands in for it) gives when a license has no seat left. [unverified] */
const SEATS_EXCEEDED = /SEATS?_EXCEEDED|NO_(FREE_)?SEATS?|SEATS?_(LIMIT|UNAVAILABLE)/i;
/** Codes of an address already in use; a 409 without a code means that too (goto-apis.md §4.3). [unverified] */
const ADDRESS_IN_USE = /^(CONFLICT|EMAIL_CONFLICT|EMAIL_IN_USE|EMAIL_ALREADY_(EXISTS|IN_USE)|USER_ALREADY_EXISTS|USER_EXISTS|DUPLICATE_EMAIL)$/i;

/**
 * What GoTo's refusal of a change says, read from its `errorCode`: no free seat, an address in use
 * (409 only), or anything else, told verbatim with its status. Other errors pass as they are.
 */
export function refusalOf(err: unknown, what: string, licenseKeys: string[]): unknown {
  if (!(err instanceof HttpError) || err.statusCode < 400 || err.statusCode >= 500) return err;
  const code = err.providerCode;
  const said = describeGoToError(err.statusCode, err.body) ?? `${err.statusCode}`;
  if (code && SEATS_EXCEEDED.test(code)) {
    return new ProvisioningError(`no free seat: GoTo refused to ${what}, license ${licenseKeys.join(", ")} has no seat left (${err.statusCode} ${said})`, {
      status: "no free seat",
      code: "GW_GOTO_NO_FREE_SEAT",
      httpStatus: 409,
      cause: err,
    });
  }
  if (err.statusCode !== 409) return err;
  if (code === undefined || ADDRESS_IN_USE.test(code)) return "address in use";
  return new ProvisioningError(`GoTo refused to ${what} with 409 ${said}`, { status: `refused: ${code}`, code: "GW_GOTO_REFUSED", httpStatus: 409, cause: err });
}

/** The connection itself is refused: every further request would be too. */
export class AdminAccessError extends PipelineError {}

/** Characters with a meaning in a regular expression, and the quote that ends a filter value. */
const REGEX_SPECIALS = /[.*+?^${}()|[\]\\"]/g;

export function escapeRegex(text: string): string {
  return text.replace(REGEX_SPECIALS, "\\$&");
}

/** The Admin API filter for one address: case-insensitive, escaped, anchored (goto-apis.md §4.2). */
export function emailFilter(email: string): string {
  return `(email="(?i)^${escapeRegex(email.trim())}$")`;
}

/**
 * JSON as GoTo writes it: keys are integers of 19 digits or more, beyond what a JS number holds.
 * Integers that a number holds exactly stay numbers; larger ones arrive as their digits.
 */
export function parseGoToJson(text: string): unknown {
  if (!text.trim()) return undefined;
  return parseLossless(text, null, (value) => (isSafeNumber(value) ? Number(value) : value));
}

function toUser(row: Record<string, unknown>): AdminUser {
  return {
    key: String(row.key),
    email: String(row.email ?? ""),
    firstName: typeof row.firstName === "string" ? row.firstName : undefined,
    lastName: typeof row.lastName === "string" ? row.lastName : undefined,
    adminRoles: Array.isArray(row.adminRoles) ? row.adminRoles.map(String) : undefined,
  };
}

function toLicense(row: Record<string, unknown>): AdminLicense {
  const userKeys = Array.isArray(row.userKeys) ? row.userKeys.map(String) : [];
  return {
    key: String(row.key),
    description: typeof row.description === "string" ? row.description : undefined,
    type: typeof row.type === "string" ? row.type : undefined,
    products: Array.isArray(row.products) ? row.products.map(String) : [],
    // [unverified] whether an unlimited license omits `seats`: treated as no limit.
    seats: typeof row.seats === "number" ? row.seats : undefined,
    userCount: typeof row.userCount === "number" ? row.userCount : userKeys.length,
    userKeys,
    enabled: row.enabled !== false,
  };
}

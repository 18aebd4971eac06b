import { AuthorizationRequiredError, ConfigError, InputError, PipelineError, asPipelineError } from "../core/errors";
import { AdminAccessError, AdminLicense, AdminUser, GoToAdminApi, ProvisioningError, parseGoToJson } from "./admin";

export { ProvisioningError };

// Provisioning and de-provisioning GoTo users with license keys, as the original workflow scripts
// did (find by e-mail; create with licenses, or give an existing user the licenses it lacks;
// delete on de-provisioning), made idempotent and safe to run on a batch.

export type ProvisionAction = "provision" | "deprovision";
export type ProvisionResult = "created" | "licensed" | "unchanged" | "deleted" | "unlicensed" | "absent";

export interface ProvisionRequest {
  action: ProvisionAction;
  email: string;
  firstName?: string;
  lastName?: string;
  /** Digits as text: keys have 19 digits or more. */
  licenseKeys: string[];
}

/** What happened to one user: the message a flow receives. */
export interface ProvisionReport {
  action: ProvisionAction;
  email: string;
  result: ProvisionResult;
  userKey: string | null;
  /** The licenses this run gave (created, licensed) or took (unlicensed); empty otherwise. */
  licenseKeys: string[];
}

/** An item of a batch that failed; the others went on. */
export interface FailedItem {
  action?: string;
  email?: string;
  result: "failed";
  error: string;
  code: string;
}

export type Outcome = { ok: true; report: ProvisionReport } | { ok: false; error: PipelineError; item: FailedItem };

/** An item refused before any request: what it said of itself, for its report. */
export interface RejectedItem {
  error: PipelineError;
  action?: string;
  email?: string;
}

/** The node's own settings, used for what an item leaves out. */
export interface RequestDefaults {
  /** A node that only provisions (or only de-provisions) refuses items that ask otherwise. */
  action: ProvisionAction | "item";
  email?: unknown;
  firstName?: unknown;
  lastName?: unknown;
  licenseKeys?: unknown;
}

/** How many users are worked on at once: GoTo's limiter decides the pace, this bounds what waits. */
export const DEFAULT_CONCURRENCY = 4;

/** The items of `msg.payload`: an array is a batch; an object, or nothing, is one item. JSON text is read with large integers exact. */
export function itemsOf(payload: unknown): { batch: boolean; items: unknown[] } {
  let value = payload;
  if (Buffer.isBuffer(value)) value = value.toString("utf8");
  if (typeof value === "string" && /^\s*[[{]/.test(value)) {
    try {
      value = parseGoToJson(value);
    } catch (err) {
      throw new InputError(`msg.payload is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw new InputError("msg.payload is an empty list: nothing to provision");
    return { batch: true, items: value };
  }
  if (value && typeof value === "object") return { batch: false, items: [value] };
  // An inject's timestamp, an empty body: everything comes from the node's settings.
  return { batch: false, items: [{}] };
}

/** Every item as a request, or as the reason it cannot be one. */
export function requestsOf(items: unknown[], defaults: RequestDefaults): Array<ProvisionRequest | RejectedItem> {
  return items.map((item) => {
    try {
      return provisionRequest(item, defaults);
    } catch (err) {
      const said = item && typeof item === "object" ? (item as Record<string, unknown>) : {};
      return { error: asPipelineError(err), action: textOr(said.action), email: textOr(said.email) };
    }
  });
}

function textOr(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** One item as a request, each field from the item or else from the node's settings. */
export function provisionRequest(raw: unknown, defaults: RequestDefaults): ProvisionRequest {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new InputError("each item must be an object { action, email, firstName, lastName, licenseKeys }");
  const item = raw as Record<string, unknown>;
  const action = actionOf(item.action, defaults.action);
  const email = item.email ?? defaults.email;
  if (typeof email !== "string" || !/^[^\s@]+@[^\s@]+$/.test(email.trim())) {
    throw new InputError(email === undefined || email === "" ? "email is missing" : `"${String(email)}" is not an e-mail address`);
  }
  const licenseKeys = licenseKeyList(item.licenseKeys ?? defaults.licenseKeys);
  if (action === "provision" && licenseKeys.length === 0) {
    throw new InputError(`no license keys for ${email.trim()}: GoTo gives a user its products through licenses`);
  }
  return { action, email: email.trim(), firstName: text(item.firstName ?? defaults.firstName), lastName: text(item.lastName ?? defaults.lastName), licenseKeys };
}

function actionOf(value: unknown, setting: RequestDefaults["action"]): ProvisionAction {
  if (setting !== "item") {
    if (value !== undefined && value !== setting) throw new InputError(`this node only ${setting}s: "${String(value)}" is not taken here`);
    return setting;
  }
  if (value === "provision" || value === "deprovision") return value;
  throw new InputError(value === undefined ? 'action is missing: "provision" or "deprovision"' : `unknown action "${String(value)}": "provision" or "deprovision"`);
}

/** License keys from a list or a comma-separated text; a JS number too large to be exact is refused rather than guessed. */
export function licenseKeyList(value: unknown): string[] {
  if (value === undefined || value === null || value === "") return [];
  const list = Array.isArray(value) ? value : typeof value === "string" ? value.split(/[\s,;]+/).filter(Boolean) : [value];
  const keys = list.map((k) => {
    if (typeof k === "number") {
      if (Number.isSafeInteger(k) && k >= 0) return String(k);
      throw new InputError(`the license key ${String(k)} lost digits as a JSON number: send license keys as strings ("7288486601101397001")`);
    }
    if (typeof k === "string" && /^\d+$/.test(k.trim())) return k.trim();
    throw new InputError(`"${String(k)}" is not a license key (digits)`);
  });
  return [...new Set(keys)];
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() ? value.trim() : undefined;
}

/** The HTTP status that answers a failure: the caller's mistake (4xx), or GoTo's side (502/503). */
export function failureStatus(err: PipelineError): number {
  if (err instanceof InputError || err instanceof ProvisioningError) return err.httpStatus ?? 400;
  if (err instanceof AuthorizationRequiredError || err instanceof ConfigError || err instanceof AdminAccessError) return 503;
  return 502;
}

export interface ProvisionerOptions {
  admin: GoToAdminApi;
  /** What de-provisioning does: delete the user (the original's way), or only take its licenses. */
  deprovision?: "delete" | "unlicense";
  /** GoTo's welcome mail to a created user. */
  welcomeEmail?: boolean;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Provisions a list of requests, a few at a time; each item's outcome is reported and a failed
 * item does not stop the others. The account's licenses are read once per run and kept up to date
 * as this run changes them, so seats are counted across the whole batch.
 */
export class Provisioner {
  private licensesRead?: Promise<LicenseBook>;
  /** Creations answered with a key this run did not know: confirmed new, or found existing, after the run. */
  private readonly unconfirmed: Array<{ request: ProvisionRequest; report: ProvisionReport }> = [];
  private readonly locks = new Map<string, Promise<unknown>>();
  private stopped?: PipelineError;

  constructor(private readonly options: ProvisionerOptions) {}

  async run(requests: Array<ProvisionRequest | RejectedItem>): Promise<Outcome[]> {
    const outcomes: Outcome[] = new Array(requests.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < requests.length) {
        const index = next++;
        outcomes[index] = await this.outcome(requests[index]!);
        this.options.onProgress?.(++done, requests.length);
      }
    };
    const workers = Math.max(1, Math.min(this.options.concurrency ?? DEFAULT_CONCURRENCY, requests.length));
    await Promise.all(Array.from({ length: workers }, worker));
    await this.confirmCreations(outcomes);
    return outcomes;
  }

  private async outcome(request: ProvisionRequest | RejectedItem): Promise<Outcome> {
    if ("error" in request) return failed(request.error, request);
    if (this.stopped) return failed(new PipelineError(`not attempted: ${this.stopped.message}`, { code: this.stopped.code, status: this.stopped.status }), request);
    try {
      this.options.signal?.throwIfAborted();
      // Two items for one address run one after the other, so the second sees what the first did.
      const report = await this.serially(request.email.toLowerCase(), () => (request.action === "provision" ? this.provision(request) : this.deprovision(request)));
      return { ok: true, report };
    } catch (err) {
      const error = asPipelineError(err);
      if (isFatal(err) || this.options.signal?.aborted) this.stopped ??= error;
      return failed(error, request);
    }
  }

  private async provision(request: ProvisionRequest): Promise<ProvisionReport> {
    const { admin } = this.options;
    const book = await this.licenses();
    book.check(request.licenseKeys);
    let user = single(await admin.usersByEmail(request.email), request.email);
    if (!user) {
      if (!request.firstName || !request.lastName) throw new InputError(`${request.email} is not a GoTo user yet, and GoTo needs firstName and lastName to create one`);
      const release = book.reserve(request.licenseKeys, undefined);
      let created: { key: string } | { conflict: string };
      try {
        created = await admin.createUser({ email: request.email, firstName: request.firstName, lastName: request.lastName }, request.licenseKeys, this.options.welcomeEmail ?? true);
      } finally {
        release();
      }
      if ("key" in created) {
        if (!book.knows(created.key)) {
          book.granted(request.licenseKeys, created.key);
          const made = report(request, "created", created.key, request.licenseKeys);
          this.unconfirmed.push({ request, report: made });
          return made;
        }
        // GoTo listed a user the run knew (one the search missed): it gets what it lacks, below.
        user = { key: created.key, email: request.email };
      } else {
        // Created by someone else since the search: go on with that user.
        user = single(await admin.usersByEmail(request.email), request.email);
        if (!user) {
          throw new ProvisioningError(`GoTo refused to create ${request.email}, the address being in use (${/^\d{3}\b/.test(created.conflict) ? "" : "409 "}${created.conflict}), and no user of this account has it`, {
            status: "address in use",
            code: "GW_GOTO_ADDRESS_IN_USE",
            httpStatus: 409,
          });
        }
      }
    }
    const missing = book.missing(request.licenseKeys, user.key);
    if (missing.length === 0) return report(request, "unchanged", user.key, []);
    const release = book.reserve(missing, user.key);
    try {
      await admin.assignLicenses(missing, user.key);
    } finally {
      release();
    }
    book.granted(missing, user.key);
    return report(request, "licensed", user.key, missing);
  }

  private async deprovision(request: ProvisionRequest): Promise<ProvisionReport> {
    const { admin } = this.options;
    if (this.options.deprovision === "unlicense") {
      const book = await this.licenses();
      book.check(request.licenseKeys, { seatsMatter: false });
      const user = single(await admin.usersByEmail(request.email), request.email);
      if (!user) return report(request, "absent", null, []);
      const held = book.heldBy(user.key);
      const take = request.licenseKeys.length ? request.licenseKeys.filter((k) => held.includes(k)) : held;
      if (take.length === 0) return report(request, "unchanged", user.key, []);
      await admin.removeLicenses(take, user.key);
      book.taken(take, user.key);
      return report(request, "unlicensed", user.key, take);
    }
    const user = single(await admin.usersByEmail(request.email), request.email);
    if (!user) return report(request, "absent", null, []);
    const result = await admin.deleteUser(user.key);
    if (this.licensesRead) (await this.licensesRead).forget(user.key);
    return report(request, result === "deleted" ? "deleted" : "absent", result === "deleted" ? user.key : null, []);
  }

  /**
   * The creations of this run whose user GoTo's 200 named by a key the run did not know: GoTo's
   * guide has that answer list "existing (conflicting) users" beside created ones, alike. A user it
   * created holds the licenses asked for; one that existed need not. One read of the licenses after
   * the run tells them apart, and an existing user gets what it lacks and is reported `licensed`.
   */
  private async confirmCreations(outcomes: Outcome[]): Promise<void> {
    const pending = this.unconfirmed.splice(0);
    if (pending.length === 0) return;
    const book = await this.licenses();
    const fail = (entry: (typeof pending)[number], err: PipelineError) => {
      const at = outcomes.findIndex((o) => o?.ok && o.report === entry.report);
      if (at >= 0) outcomes[at] = failed(err, entry.request);
    };
    let licenses: AdminLicense[];
    try {
      licenses = await this.options.admin.licenses();
    } catch (err) {
      for (const entry of pending) {
        fail(entry, new PipelineError(`GoTo answered the creation of ${entry.request.email} with user key ${entry.report.userKey}, but its licenses could not be read to tell a new user from one that existed (${asPipelineError(err).message}): run the item again`, {
          status: "creation unconfirmed",
          code: "GW_GOTO_CREATION_UNCONFIRMED",
          cause: err,
        }));
      }
      return;
    }
    for (const entry of pending) {
      const userKey = entry.report.userKey!;
      const held = licenses.filter((l) => l.userKeys.includes(userKey)).map((l) => l.key);
      const missing = entry.request.licenseKeys.filter((k) => !held.includes(k));
      if (missing.length === 0) continue;
      book.taken(missing, userKey);
      try {
        const release = book.reserve(missing, userKey);
        try {
          await this.options.admin.assignLicenses(missing, userKey);
        } finally {
          release();
        }
        book.granted(missing, userKey);
        entry.report.result = "licensed";
        entry.report.licenseKeys = missing;
      } catch (err) {
        fail(entry, asPipelineError(err));
      }
    }
  }

  private licenses(): Promise<LicenseBook> {
    this.licensesRead ??= this.options.admin.licenses().then(
      (list) => new LicenseBook(list),
      (err: unknown) => {
        // Without the licenses no item can be checked: the run stops here.
        this.stopped ??= asPipelineError(err);
        throw err;
      },
    );
    return this.licensesRead;
  }

  private async serially<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.locks.get(key) ?? Promise.resolve();
    const mine = before.then(task, task);
    const settled = mine.catch(() => undefined);
    this.locks.set(key, settled);
    try {
      return await mine;
    } finally {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    }
  }
}

/** Errors after which every further item would fail the same way. */
function isFatal(err: unknown): boolean {
  return err instanceof AdminAccessError || err instanceof AuthorizationRequiredError || err instanceof ConfigError;
}

function single(users: AdminUser[], email: string): AdminUser | undefined {
  if (users.length > 1) {
    throw new ProvisioningError(`${users.length} GoTo users have the address ${email}: ${users.map((u) => `${u.email} (user key ${u.key})`).join(", ")}; keep one and run again`, {
      status: "several users",
      code: "GW_GOTO_SEVERAL_USERS",
      httpStatus: 409,
    });
  }
  return users[0];
}

function report(request: ProvisionRequest, result: ProvisionResult, userKey: string | null, licenseKeys: string[]): ProvisionReport {
  return { action: request.action, email: request.email, result, userKey, licenseKeys };
}

function failed(error: PipelineError, request?: { action?: string; email?: string }): Outcome {
  return { ok: false, error, item: { action: request?.action, email: request?.email, result: "failed", error: error.message, code: error.code } };
}

/**
 * The account's licenses as this run knows them: who holds each, and seats promised to requests
 * under way, so that two users created at once never both take the last seat.
 */
class LicenseBook {
  private readonly byKey = new Map<string, { license: AdminLicense; holders: Set<string>; used: number; reserved: number }>();

  constructor(licenses: AdminLicense[]) {
    for (const license of licenses) {
      this.byKey.set(license.key, { license, holders: new Set(license.userKeys), used: Math.max(license.userCount, license.userKeys.length), reserved: 0 });
    }
  }

  /** Every key is a license of the account, and (for giving) an enabled one. */
  check(keys: string[], { seatsMatter = true } = {}): void {
    const unknown = keys.filter((k) => !this.byKey.has(k));
    if (unknown.length) {
      const known = [...this.byKey.values()].slice(0, 10).map((e) => `${e.license.key} (${e.license.description ?? e.license.products.join("/")})`);
      throw new ProvisioningError(`unknown license key${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: the account's licenses are ${known.join(", ") || "none"}`, {
        status: "unknown license",
        code: "GW_GOTO_UNKNOWN_LICENSE",
        httpStatus: 400,
      });
    }
    const disabled = seatsMatter ? keys.filter((k) => !this.byKey.get(k)!.license.enabled) : [];
    if (disabled.length) {
      throw new ProvisioningError(`license ${disabled.map((k) => this.describe(k)).join(", ")} is disabled in GoTo`, { status: "license disabled", code: "GW_GOTO_LICENSE_DISABLED", httpStatus: 409 });
    }
  }

  missing(keys: string[], userKey: string): string[] {
    return keys.filter((k) => !this.byKey.get(k)!.holders.has(userKey));
  }

  /** The user holds, or was given in this run, a license of the account. */
  knows(userKey: string): boolean {
    return [...this.byKey.values()].some((e) => e.holders.has(userKey));
  }

  heldBy(userKey: string): string[] {
    return [...this.byKey.values()].filter((e) => e.holders.has(userKey)).map((e) => e.license.key);
  }

  /** Holds a seat on each license for a request under way, or fails before anything changes. */
  reserve(keys: string[], userKey: string | undefined): () => void {
    const full = keys.filter((k) => {
      const e = this.byKey.get(k)!;
      if (userKey && e.holders.has(userKey)) return false;
      return e.license.seats !== undefined && e.used + e.reserved >= e.license.seats;
    });
    if (full.length) {
      throw new ProvisioningError(`no free seat on license ${full.map((k) => `${this.describe(k)} (all ${this.byKey.get(k)!.license.seats} seats are taken)`).join("; ")}`, {
        status: "no free seat",
        code: "GW_GOTO_NO_FREE_SEAT",
        httpStatus: 409,
      });
    }
    for (const k of keys) this.byKey.get(k)!.reserved++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const k of keys) this.byKey.get(k)!.reserved--;
    };
  }

  granted(keys: string[], userKey: string): void {
    for (const k of keys) {
      const e = this.byKey.get(k)!;
      if (!e.holders.has(userKey)) {
        e.holders.add(userKey);
        e.used++;
      }
    }
  }

  taken(keys: string[], userKey: string): void {
    for (const k of keys) {
      const e = this.byKey.get(k)!;
      if (e.holders.delete(userKey)) e.used--;
    }
  }

  /** A deleted user's seats are free again. */
  forget(userKey: string): void {
    this.taken(this.heldBy(userKey), userKey);
  }

  private describe(key: string): string {
    const l = this.byKey.get(key)!.license;
    return l.description ? `${key} (${l.description})` : key;
  }
}

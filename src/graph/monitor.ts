import { Clock, systemClock } from "../core/clock";
import { AuthorizationRequiredError, ConfigError, InputError, PipelineError, asPipelineError } from "../core/errors";
import { HttpError } from "../core/http/client";
import { backoffDelay, serverRetryDelay } from "../core/http/retry";
import { GraphClient, MAX_BATCH, UserLookupError, UserProblem, userPath, userProblem } from "./client";
import { Observation, atMoment, isChange, nextBoundary, observe, plainText } from "./out-of-office";
import { OUTLOOK_ITEMS_PER_BATCH, ReadBudget, ReadTicket } from "./read-budget";
import { AutomaticRepliesSetting, BatchResponse, GraphErrorBody, GraphUser } from "./types";
import { WatchEntry, WatchListStore } from "./watch-list";

/** A message-worthy change of one user (or the first look at one: `initial`). */
export interface OutOfOfficeChange {
  email: string;
  userId: string;
  displayName: string | null;
  observation: Observation;
  previous: Observation | null;
  initial: boolean;
}

/** A watched user Graph refused to show (gone, no mailbox, no permission), reported once per problem. */
export interface WatchProblem {
  email: string;
  userId: string;
  error: UserLookupError;
}

/** Why a watched user was not read in a cycle. */
export type NotReadReason = "throttled" | "error" | "not reached" | "lookup failed" | UserProblem;

export interface PollResult {
  changes: OutOfOfficeChange[];
  problems: WatchProblem[];
  /** Users watched when the cycle ended, plus addresses whose lookup is still to be retried. */
  watched: number;
  /** Users whose setting was read in this cycle. */
  read: number;
  /** Users not read in this cycle, and why: they go first in the next one. */
  notRead: Array<{ email: string; reason: NotReadReason }>;
  /** Batch requests sent (the envelopes; the token is msal's business). */
  batches: number;
  /** Mailbox reads Outlook answered with 429. */
  throttled: number;
  /** Answers that were neither a setting nor a 429: failed batches, failed items, users Graph refused. */
  errors: number;
  /** Addresses from the list whose lookup failed again (they are retried at the next poll). */
  lookupsPending: string[];
  /** Lookups that failed for good at this poll (unknown user, no mailbox, no permission). */
  refused: Array<{ email: string; error: PipelineError }>;
  seconds: number;
  /** Why the cycle stopped early, or read nobody: the app's secret, a missing permission, Graph unreachable. */
  failure?: PipelineError;
}

export interface MonitorOptions {
  graph: GraphClient;
  store: WatchListStore;
  clock?: Clock;
  /** Mailbox reads in flight at once, counted across every batch (Outlook allows 4 per app). */
  readsInFlight?: number;
  /** How long one cycle may go on reading before the users left wait for the next one. */
  cycleBudgetMs?: number;
}

interface Watched extends WatchEntry {
  problem?: string;
  /** When this user was last read, as a sequence number: the least recently read go first. */
  readSeq?: number;
}

/** Failed batches in a row after which a cycle stops: Graph is not answering. */
const MAX_BATCH_FAILURES = 3;
/** Failed lookups in a row after which a poll stops retrying them: Graph is not answering. */
const MAX_LOOKUP_FAILURES = 3;
const ITEM_BACKOFF = { baseDelayMs: 500, maxDelayMs: 8000 };

/**
 * The out-of-office monitor: a durable watch list, each user looked up in Entra ID once and
 * watched by id from then on, polled in JSON batches with a bounded number of mailbox reads in
 * flight across all of them, every item's own 429 and Retry-After waited out, and a change reported
 * only when whether the user is out, the status, or a reply text changes. The first look at a user
 * is a baseline (`initial`), never a change; a restart knows what it already reported. A cycle
 * reads every user unless Outlook refuses for longer than the cycle may last; those not read go
 * first next time, and the result says who they are.
 */
export class OutOfOfficeMonitor {
  private watched = new Map<string, Watched>();
  /** Other addresses of watched people (lower case → user id), learned from lookups. */
  private readonly aliases = new Map<string, string>();
  /** Addresses from the list whose lookup failed for a passing reason (lower case → address). */
  private readonly lookups = new Map<string, string>();
  private loaded?: Promise<void>;
  private readonly clock: Clock;
  private readSeq = 0;
  readonly budget: ReadBudget;

  constructor(private readonly opts: MonitorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.budget = new ReadBudget(opts.readsInFlight ?? 4);
  }

  /** Loads the stored list (once). */
  load(): Promise<void> {
    this.loaded ??= this.opts.store.list().then(
      (entries) => {
        this.watched = new Map(entries.map((e) => [e.userId, { ...e }]));
      },
      (err) => {
        this.loaded = undefined;
        throw err;
      },
    );
    return this.loaded;
  }

  get users(): ReadonlyArray<Readonly<Watched>> {
    return [...this.watched.values()];
  }

  get outOfOffice(): number {
    return this.users.filter((u) => u.observation?.outOfOffice).length;
  }

  /** Addresses whose lookup failed for a passing reason, retried at each poll. */
  get pendingLookups(): string[] {
    return [...this.lookups.values()];
  }

  /**
   * Starts watching an address: found in Entra ID, its mailbox read once (which proves there is
   * one), stored, and its first observation returned as a baseline. Already watched, under this
   * address or another of the same person: that entry, and no change.
   */
  async watch(address: string): Promise<{ entry: WatchEntry; change: OutOfOfficeChange | null }> {
    await this.load();
    const email = checkAddress(address);
    const known = this.byEmail(email);
    if (known) return { entry: known, change: null };
    const user = await this.opts.graph.findUser(email);
    const same = this.watched.get(user.id);
    if (same) {
      this.aliases.set(email.toLowerCase(), user.id);
      this.lookups.delete(email.toLowerCase());
      return { entry: same, change: null };
    }
    const setting = await this.readOne(user, email);
    const observation = observe(setting, this.clock.now());
    const entry: Watched = { userId: user.id, email, displayName: user.displayName ?? null, observation, readSeq: ++this.readSeq };
    await this.opts.store.add(entry);
    this.watched.set(user.id, entry);
    this.lookups.delete(email.toLowerCase());
    return { entry, change: { email, userId: user.id, displayName: entry.displayName, observation, previous: null, initial: true } };
  }

  async unwatch(address: string): Promise<boolean> {
    await this.load();
    const email = checkAddress(address);
    const pending = this.lookups.delete(email.toLowerCase());
    const known = this.byEmail(email);
    const removed = await this.opts.store.remove(known?.email ?? email);
    if (known) {
      this.watched.delete(known.userId);
      for (const [alias, id] of this.aliases) if (id === known.userId) this.aliases.delete(alias);
    }
    return removed || !!known || pending;
  }

  /**
   * Makes the list exactly `addresses`: the missing ones are watched, the others dropped. Two
   * addresses of one person watch that person once. An address whose lookup fails for a passing
   * reason (Graph unavailable, throttled) is retried at the following polls.
   */
  async replace(addresses: string[]): Promise<{ added: string[]; removed: string[]; refused: Array<{ email: string; error: PipelineError }>; pending: string[]; changes: OutOfOfficeChange[] }> {
    await this.load();
    const wanted = new Map<string, string>();
    for (const a of addresses) if (a.trim()) wanted.set(a.trim().toLowerCase(), a.trim());
    for (const key of this.lookups.keys()) if (!wanted.has(key)) this.lookups.delete(key);
    const kept = new Set<string>();
    const added: string[] = [];
    const refused: Array<{ email: string; error: PipelineError }> = [];
    const changes: OutOfOfficeChange[] = [];
    const queue = [...wanted.values()];
    for (let i = 0; i < queue.length; i++) {
      const email = queue[i]!;
      const known = this.byEmail(email);
      if (known) {
        kept.add(known.userId);
        continue;
      }
      try {
        const { entry, change } = await this.watch(email);
        kept.add(entry.userId);
        if (change) {
          added.push(email);
          changes.push(change);
        }
      } catch (err) {
        const error = asPipelineError(err);
        if (isSettingsError(error)) {
          // Not about this user: every lookup would fail the same way. They wait, and nobody is dropped.
          for (const rest of queue.slice(i)) if (!this.byEmail(rest)) this.lookups.set(rest.toLowerCase(), rest);
          throw error;
        }
        if (error instanceof UserLookupError || error instanceof InputError) refused.push({ email, error });
        else this.lookups.set(email.toLowerCase(), email);
      }
    }
    const removed: string[] = [];
    for (const user of this.users) {
      if (kept.has(user.userId)) continue;
      await this.unwatch(user.email);
      removed.push(user.email);
    }
    return { added, removed, refused, pending: this.pendingLookups, changes };
  }

  /**
   * One polling cycle: the lookups that failed before are tried again, then every watched user is
   * read, least recently read first, with at most the budget's reads in flight.
   */
  async poll(signal?: AbortSignal): Promise<PollResult> {
    await this.load();
    const started = this.clock.now();
    const deadline = started + (this.opts.cycleBudgetMs ?? 60_000);
    const result: PollResult = { changes: [], problems: [], watched: 0, read: 0, notRead: [], batches: 0, throttled: 0, errors: 0, lookupsPending: [], refused: [], seconds: 0 };
    const lookupFailure = await this.retryLookups(result);

    // Users never read in this process first, then the least recently read.
    const order = [...this.watched.values()].sort((a, b) => (a.readSeq ?? -1) - (b.readSeq ?? -1));
    const pending = new Set(order);
    const sending = new Set<Watched>();
    const notBefore = new Map<Watched, number>();
    const attempts = new Map<Watched, number>();
    const reasons = new Map<Watched, NotReadReason>();
    const observed: Array<{ userId: string; observation: Observation }> = [];
    /** What the users read with a change held before this cycle, until the change is stored. */
    const before = new Map<Watched, Observation | null>();
    const inFlight = new Set<Promise<void>>();
    const forbidden = { count: 0, first: undefined as UserLookupError | undefined };
    let fatal: PipelineError | undefined;
    let batchFailures = 0;

    const later = (user: Watched, reason: NotReadReason, asked?: number) => {
      const attempt = attempts.get(user) ?? 0;
      attempts.set(user, attempt + 1);
      notBefore.set(user, this.clock.now() + (asked ?? backoffDelay(attempt, Math.random(), ITEM_BACKOFF)));
      reasons.set(user, reason);
    };

    let wake: () => void = () => undefined;
    const sendBatch = async (chunk: Watched[], ticket: ReadTicket): Promise<void> => {
      let responses: BatchResponse[];
      try {
        result.batches++;
        responses = await this.opts.graph.batch(chunk.map((u, i) => ({ id: String(i + 1), method: "GET", url: `/${userPath(u.userId)}/mailboxSettings/automaticRepliesSetting` })), signal);
      } catch (err) {
        release(ticket);
        result.errors++;
        const error = asPipelineError(err);
        // Graph refusing the token itself (401 after a fresh one) will not pass within this cycle.
        const refusedToken = err instanceof HttpError && err.statusCode === 401;
        if (!isPassing(error) || refusedToken || ++batchFailures >= MAX_BATCH_FAILURES) fatal ??= error;
        for (const user of chunk) later(user, "error");
        return;
      }
      // The reads are over: the next batch goes out while this one's answers are judged.
      release(ticket);
      await new Promise<void>((resolve) => setImmediate(resolve));
      batchFailures = 0;
      const byId = new Map(responses.map((r) => [String(r.id), r]));
      let refused = false;
      let reads = 0;
      chunk.forEach((user, i) => {
        const answer = byId.get(String(i + 1));
        if (!answer) {
          result.errors++;
          return later(user, "error");
        }
        if (answer.status === 200) {
          reads++;
          const observation = observe(answer.body as AutomaticRepliesSetting, this.clock.now());
          const change = this.record(user, observation);
          if (change) result.changes.push(change);
          if (!user.observation || change) {
            observed.push({ userId: user.userId, observation });
            if (!before.has(user)) before.set(user, user.observation);
          }
          user.observation = observation;
          user.problem = undefined;
          user.readSeq = ++this.readSeq;
          result.read++;
          pending.delete(user);
          return;
        }
        if (answer.status === 429) {
          result.throttled++;
          refused = true;
          return later(user, "throttled", serverRetryDelay(lowerCaseKeys(answer.headers), this.clock.now()));
        }
        result.errors++;
        if (answer.status >= 500 || answer.status === 401) return later(user, "error", serverRetryDelay(lowerCaseKeys(answer.headers), this.clock.now()));
        const code = (answer.body as GraphErrorBody | undefined)?.error?.code ?? "";
        const problem = userProblem(answer.status, code, user.email) ?? new UserLookupError("not-found", `Graph answered ${answer.status} ${code} for ${user.email}`, 502);
        if (problem.problem === "forbidden") {
          forbidden.count++;
          forbidden.first ??= problem;
        }
        if (user.problem !== problem.problem) result.problems.push({ email: user.email, userId: user.userId, error: problem });
        user.problem = problem.problem;
        reasons.set(user, problem.problem);
        pending.delete(user);
      });
      if (refused) this.budget.throttled(ticket);
      if (reads) this.budget.succeeded(reads);
    };
    const release = (ticket: ReadTicket) => {
      this.budget.release(ticket);
      wake();
    };

    while (!fatal && !signal?.aborted) {
      const now = this.clock.now();
      if (now >= deadline) break;
      const available = this.budget.available;
      // A batch holds at most 4 reads in flight (Graph's own limit per batch): with fewer slots, fewer
      // users; full batches of 20 only once Outlook has stopped refusing.
      const size = available < OUTLOOK_ITEMS_PER_BATCH ? available : this.budget.calm ? MAX_BATCH : OUTLOOK_ITEMS_PER_BATCH;
      const chunk: Watched[] = [];
      let nextReady = Infinity;
      let readyLeft = false;
      for (const user of pending) {
        if (sending.has(user)) continue;
        const at = notBefore.get(user) ?? 0;
        if (at > now) nextReady = Math.min(nextReady, at);
        else if (chunk.length < size) chunk.push(user);
        else readyLeft = true;
      }
      if (chunk.length > 0) {
        const ticket = this.budget.take(Math.min(chunk.length, OUTLOOK_ITEMS_PER_BATCH));
        for (const user of chunk) sending.add(user);
        const batch: Promise<void> = sendBatch(chunk, ticket).finally(() => {
          for (const user of chunk) sending.delete(user);
          inFlight.delete(batch);
          wake();
        });
        inFlight.add(batch);
        continue;
      }
      // Done, or the rest waits for a Retry-After that ends after this cycle: it goes first next time.
      if (!readyLeft && inFlight.size === 0 && nextReady >= deadline) break;
      // Wait for a slot, a batch to come back, or the next Retry-After to pass, whichever is first.
      const waited = new AbortController();
      const waits: Array<Promise<unknown>> = [...inFlight, new Promise<void>((resolve) => (wake = resolve))];
      if (readyLeft) waits.push(this.budget.freed());
      else if (nextReady < deadline) waits.push(this.clock.sleep(nextReady - now, waited.signal).catch(() => undefined));
      await Promise.race(waits);
      waited.abort();
    }
    await Promise.all(inFlight);
    try {
      await this.opts.store.saveObservations(observed);
    } catch (err) {
      // Not stored, so not sent: the next cycle finds these changes again and sends them then, once.
      for (const [user, observation] of before) user.observation = observation;
      throw err;
    }

    for (const user of pending) result.notRead.push({ email: user.email, reason: reasons.get(user) ?? "not reached" });
    for (const user of this.watched.values()) if (user.problem && !pending.has(user)) result.notRead.push({ email: user.email, reason: user.problem as UserProblem });
    for (const email of result.lookupsPending) result.notRead.push({ email, reason: "lookup failed" });
    result.watched = this.watched.size + result.lookupsPending.length;
    result.seconds = (this.clock.now() - started) / 1000;

    if (result.read === 0 && forbidden.count > 0 && forbidden.count === this.watched.size) {
      // Every mailbox refused: the app lacks the permission, not each user. Said once, not per user.
      result.problems = [];
      result.failure = new ConfigError(
        `Graph refused every mailbox read (403): grant the app the MailboxSettings.Read application permission with admin consent, and check any Exchange application access policy`,
        { code: "GW_GRAPH_PERMISSION", status: "missing permission", cause: forbidden.first },
      );
    } else if (fatal ?? lookupFailure) {
      const first = (fatal ?? lookupFailure)!;
      const Failure = isSettingsError(first) ? ConfigError : PipelineError;
      result.failure = new Failure(`${result.notRead.length} of ${result.watched} users not read: ${first.message}`, { cause: first, code: first.code, status: first.status });
    }
    return result;
  }

  /** Tries the list's failed lookups again; returns why it stopped when Graph kept failing. */
  private async retryLookups(result: PollResult): Promise<PipelineError | undefined> {
    let failures = 0;
    let failure: PipelineError | undefined;
    for (const email of this.pendingLookups) {
      if (failures >= MAX_LOOKUP_FAILURES) break;
      try {
        const { change } = await this.watch(email);
        if (change) result.changes.push(change);
        failures = 0;
      } catch (err) {
        const error = asPipelineError(err);
        if (isSettingsError(error)) {
          failure = error;
          break;
        }
        if (error instanceof UserLookupError || error instanceof InputError) {
          this.lookups.delete(email.toLowerCase());
          result.refused.push({ email, error });
        } else {
          failures++;
          failure = error;
        }
      }
    }
    result.lookupsPending = this.pendingLookups;
    return failure && (isSettingsError(failure) || failures >= MAX_LOOKUP_FAILURES) ? failure : undefined;
  }

  /** One user's setting outside a poll, within the same budget of reads in flight. */
  private async readOne(user: GraphUser, email: string): Promise<AutomaticRepliesSetting> {
    while (this.budget.available === 0) await this.budget.freed();
    const ticket = this.budget.take(1);
    try {
      return await this.opts.graph.automaticReplies(user, email);
    } finally {
      this.budget.release(ticket);
    }
  }

  /**
   * The changes that time alone makes: a scheduled window opening or closing since the last look,
   * with no new setting. Called at the moment `nextWakeup` gave (and after every poll).
   */
  async checkWindows(): Promise<OutOfOfficeChange[]> {
    await this.load();
    const now = this.clock.now();
    const changes: OutOfOfficeChange[] = [];
    const saved: Array<{ userId: string; observation: Observation }> = [];
    for (const user of this.watched.values()) {
      if (!user.observation) continue;
      const next = atMoment(user.observation, now);
      if (next.outOfOffice !== user.observation.outOfOffice) {
        changes.push({ email: user.email, userId: user.userId, displayName: user.displayName, observation: next, previous: user.observation, initial: false });
        user.observation = next;
        saved.push({ userId: user.userId, observation: next });
      }
    }
    await this.opts.store.saveObservations(saved);
    return changes;
  }

  /** When the next scheduled window opens or closes, among the watched users. */
  nextWakeup(): number | undefined {
    const now = this.clock.now();
    const moments = this.users.map((u) => (u.observation ? nextBoundary(u.observation, now) : undefined)).filter((m): m is number => m !== undefined);
    return moments.length ? Math.min(...moments) : undefined;
  }

  private record(user: Watched, observation: Observation): OutOfOfficeChange | null {
    const previous = user.observation;
    if (!previous) return { email: user.email, userId: user.userId, displayName: user.displayName, observation, previous: null, initial: true };
    if (!isChange(previous, observation)) return null;
    return { email: user.email, userId: user.userId, displayName: user.displayName, observation, previous, initial: false };
  }

  private byEmail(email: string): Watched | undefined {
    const wanted = email.toLowerCase();
    const alias = this.aliases.get(wanted);
    if (alias && this.watched.has(alias)) return this.watched.get(alias);
    return this.users.find((u) => u.email.toLowerCase() === wanted) as Watched | undefined;
  }
}

/** The message payload for a change: what a flow (or the mediator of the original) needs. */
export function changePayload(change: OutOfOfficeChange) {
  const o = change.observation;
  const summary = (x: Observation | null) =>
    x && { status: x.status, outOfOffice: x.outOfOffice, scheduledStart: x.scheduledStart, scheduledEnd: x.scheduledEnd, externalReplyMessage: { html: x.externalReplyMessage, text: plainText(x.externalReplyMessage) } };
  return {
    email: change.email,
    userId: change.userId,
    displayName: change.displayName,
    status: o.status,
    outOfOffice: o.outOfOffice,
    externalReplyMessage: { html: o.externalReplyMessage, text: plainText(o.externalReplyMessage) },
    internalReplyMessage: { html: o.internalReplyMessage, text: plainText(o.internalReplyMessage) },
    scheduledStart: o.scheduledStart,
    scheduledEnd: o.scheduledEnd,
    audience: o.audience,
    previous: summary(change.previous),
    initial: change.initial,
  };
}

function checkAddress(address: unknown): string {
  const email = typeof address === "string" ? address.trim() : "";
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new InputError(`"${String(address).slice(0, 80)}" is not an e-mail address`);
  return email;
}

function lowerCaseKeys(headers: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

/** A failure that may pass by the next poll: not a refused user, a bad address or a wrong setting. */
function isPassing(error: PipelineError): boolean {
  return !(error instanceof UserLookupError || error instanceof InputError || isSettingsError(error));
}

/** The app's settings are wrong (its secret, tenant, permissions): no user can be read until they are fixed. */
export function isSettingsError(error: unknown): boolean {
  return error instanceof ConfigError || error instanceof AuthorizationRequiredError;
}

/** The end-of-cycle message payload: who was read, who was not and why, and what Graph answered. */
export function cycleSummary(result: PollResult) {
  return {
    watched: result.watched,
    read: result.read,
    notRead: result.notRead.length,
    throttled: result.throttled,
    errors: result.errors,
    batches: result.batches,
    seconds: Math.round(result.seconds * 1000) / 1000,
    notReadUsers: result.notRead,
    failure: result.failure ? result.failure.message : null,
  };
}

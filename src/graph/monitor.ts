import { randomUUID } from "node:crypto";
import { Clock, systemClock } from "../core/clock";
import { instanceName } from "../core/instance";
import { AuthorizationRequiredError, ConfigError, InputError, PipelineError, asPipelineError } from "../core/errors";
import { HttpError } from "../core/http/client";
import type { RunCounts } from "../core/run-counts";
import { backoffDelay, serverRetryDelay } from "../core/http/retry";
import { GraphClient, MAX_BATCH, UserLookupError, UserProblem, userPath, userProblem } from "./client";
import { Observation, atMoment, isChange, nextBoundary, observe, plainText } from "./out-of-office";
import { OUTLOOK_ITEMS_PER_BATCH, ReadOutcome, SharedReadBudget, SharedTicket } from "./read-budget";
import { AutomaticRepliesSetting, BatchResponse, GraphErrorBody, GraphUser } from "./types";
import { CycleHolder, WatchEntry, WatchListStore } from "./watch-list";

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
  /** Another instance ran this cycle (or runs it now): this one stood aside and read nobody. */
  doneBy?: CycleHolder;
  /** Outlook was still refusing the app's reads when the cycle ended: the users left, and the pace kept. */
  throttling?: ThrottledCycle;
  /** Why the cycle stopped early, or read nobody: the app's secret, a missing permission, Graph unreachable. */
  failure?: PipelineError;
}

export interface MonitorOptions {
  graph: GraphClient;
  store: WatchListStore;
  clock?: Clock;
  /** Mailbox reads in flight at once, counted across every batch (Outlook allows 4 per app). */
  readsInFlight?: number;
  /** Whose reads these are: every monitor of one app and tenant, on any instance, shares one budget. */
  budgetKey?: string;
  /** How long one cycle may go on reading before the users left wait for the next one. */
  cycleBudgetMs?: number;
  /** How often cycles come (the cycle budget when not given): no instance starts one sooner. */
  intervalMs?: number;
  /**
   * Told during a cycle when Outlook starts refusing the app's reads, as the users waiting or the
   * pace change, and (with undefined) when batches go through again.
   */
  onThrottling?: (throttling: ThrottledCycle | undefined) => void;
}

/** A cycle slowed down by Outlook's 429s: how many users wait to be read, and the pause kept between batches. */
export interface ThrottledCycle {
  waiting: number;
  paceMs: number;
}

interface Watched extends WatchEntry {
  problem?: string;
  /** When this user was last read, as a sequence number: the least recently read go first. */
  readSeq?: number;
}

/** A cycle's hold on its watch list, renewed while it runs: a dead instance's cycle is taken over after this. */
const CYCLE_LEASE_MS = 30_000;
/** The most a cycle may start before its interval is over: replicas' timers do not tick together. */
const CYCLE_SLACK_MS = 5_000;
/** An instance that starts polls at once unless a cycle started this recently. */
const STARTING_GAP_MS = 60_000;

/** Failed batches in a row after which a cycle stops: Graph is not answering. */
const MAX_BATCH_FAILURES = 3;
/** Failed lookups in a row after which a poll stops retrying them: Graph is not answering. */
const MAX_LOOKUP_FAILURES = 3;
const ITEM_BACKOFF = { baseDelayMs: 500, maxDelayMs: 8000 };

/**
 * The out-of-office monitor: a durable watch list, each user looked up in Entra ID once and
 * watched by id from then on, polled in JSON batches with a bounded number of mailbox reads in
 * flight across all of them, the largest Retry-After of a batch's 429s waited out (and, when Outlook
 * refuses whole batches, every reader of the app slowed to one batch at that pace), and a change reported
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
  private loading?: Promise<void>;
  private readonly clock: Clock;
  private readSeq = 0;
  /** This monitor, to the cycle lease: a process may hold several over redeploys. */
  private readonly holder = randomUUID();
  readonly budget: SharedReadBudget;

  constructor(private readonly opts: MonitorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.budget = new SharedReadBudget(opts.store.db, opts.budgetKey ?? `graph-list:${opts.store.listKey}`, opts.readsInFlight ?? 4);
  }

  /**
   * Reads the stored list again: another instance may have watched or dropped users, or stored
   * what it saw. What this one knows of each user (when it was last read) is kept.
   */
  load(): Promise<void> {
    this.loading ??= this.opts.store
      .list()
      .then((entries) => {
        const next = new Map<string, Watched>();
        for (const e of entries) {
          const known = this.watched.get(e.userId);
          next.set(e.userId, known ? Object.assign(known, { email: e.email, displayName: e.displayName, observation: e.observation }) : { ...e });
        }
        this.watched = next;
        for (const [alias, id] of this.aliases) if (!next.has(id)) this.aliases.delete(alias);
      })
      .finally(() => {
        this.loading = undefined;
      });
    return this.loading;
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
    return this.watchLoaded(address);
  }

  /** `watch` on the list as last read (a list of many is read once, not once per address). */
  private async watchLoaded(address: string, graph = this.opts.graph): Promise<{ entry: WatchEntry; change: OutOfOfficeChange | null }> {
    const email = checkAddress(address);
    const known = this.byEmail(email);
    if (known) return { entry: known, change: null };
    const user = await graph.findUser(email);
    const same = this.watched.get(user.id);
    if (same) {
      this.aliases.set(email.toLowerCase(), user.id);
      this.lookups.delete(email.toLowerCase());
      return { entry: same, change: null };
    }
    const setting = await this.readOne(user, email, graph);
    const observation = observe(setting, this.clock.now());
    const entry: Watched = { userId: user.id, email, displayName: user.displayName ?? null, observation, readSeq: ++this.readSeq };
    const added = await this.opts.store.add(entry);
    this.watched.set(user.id, entry);
    this.lookups.delete(email.toLowerCase());
    // Another instance watched this user a moment before: its first look was the baseline.
    if (!added) return { entry, change: null };
    return { entry, change: { email, userId: user.id, displayName: entry.displayName, observation, previous: null, initial: true } };
  }

  async unwatch(address: string): Promise<boolean> {
    await this.load();
    return this.unwatchLoaded(address);
  }

  private async unwatchLoaded(address: string): Promise<boolean> {
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
        const { entry, change } = await this.watchLoaded(email);
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
      await this.unwatchLoaded(user.email);
      removed.push(user.email);
    }
    return { added, removed, refused, pending: this.pendingLookups, changes };
  }

  /**
   * One polling cycle, run by one instance of all those on the database: this one when the cycle
   * is due (`due`; any time when a poll is asked for) and no other runs it, else it stands aside
   * and the result names who ran it (`doneBy`). The list is read anew, the lookups that failed
   * before are tried again, then every watched user is read, least recently read first, with at
   * most the shared budget's reads in flight.
   */
  async poll(signal?: AbortSignal, options: { due?: boolean; starting?: boolean; counts?: RunCounts } = {}): Promise<PollResult> {
    const result: PollResult = { changes: [], problems: [], watched: 0, read: 0, notRead: [], batches: 0, throttled: 0, errors: 0, lookupsPending: [], refused: [], seconds: 0 };
    const cycleMs = this.opts.cycleBudgetMs ?? 60_000;
    const intervalMs = this.opts.intervalMs ?? cycleMs;
    const doneBy = await this.opts.store.claimCycle(this.holder, instanceName(), {
      leaseMs: CYCLE_LEASE_MS,
      nextInMs: Math.max(0, intervalMs - Math.min(CYCLE_SLACK_MS, intervalMs / 4)),
      due: options.due ?? false,
      // An instance that starts polls unless a cycle ran within the last minute: a restart does not wait out a long interval.
      earlyMs: options.starting ? Math.max(0, intervalMs - STARTING_GAP_MS) : 0,
    });
    if (doneBy) {
      await this.load();
      result.doneBy = doneBy;
      result.watched = this.watched.size;
      return result;
    }
    const renew = setInterval(() => void this.opts.store.renewCycle(this.holder, CYCLE_LEASE_MS).catch(() => undefined), CYCLE_LEASE_MS / 3);
    renew.unref?.();
    try {
      return await this.runCycle(result, cycleMs, signal, this.opts.graph.withCounts(options.counts));
    } finally {
      clearInterval(renew);
      await this.opts.store.endCycle(this.holder).catch(() => undefined);
    }
  }

  private async runCycle(result: PollResult, cycleMs: number, signal: AbortSignal | undefined, graph: GraphClient): Promise<PollResult> {
    await this.load();
    const started = this.clock.now();
    const deadline = started + cycleMs;
    const lookupFailure = await this.retryLookups(result, graph);

    // Users never read in this process first, then the least recently read.
    const order = [...this.watched.values()].sort((a, b) => (a.readSeq ?? -1) - (b.readSeq ?? -1));
    const pending = new Set(order);
    const sending = new Set<Watched>();
    const notBefore = new Map<Watched, number>();
    const attempts = new Map<Watched, number>();
    const reasons = new Map<Watched, NotReadReason>();
    const observed: Array<{ userId: string; observation: Observation; previous: Observation | null }> = [];
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

    /** What the node was last told of the throttling, so it hears of changes only. */
    let told: ThrottledCycle | undefined;
    const tellThrottling = () => {
      const shared = this.budget.throttling;
      const now = shared ? { waiting: pending.size, paceMs: shared.paceMs } : undefined;
      if (now?.waiting === told?.waiting && now?.paceMs === told?.paceMs) return;
      told = now;
      this.opts.onThrottling?.(now);
    };

    let wake: () => void = () => undefined;
    const sendBatch = async (chunk: Watched[], ticket: SharedTicket): Promise<void> => {
      let responses: BatchResponse[];
      try {
        result.batches++;
        responses = await graph.batch(chunk.map((u, i) => ({ id: String(i + 1), method: "GET", url: `/${userPath(u.userId)}/mailboxSettings/automaticRepliesSetting` })), signal);
      } catch (err) {
        await release(ticket, { reads: 0, throttled: false });
        result.errors++;
        const error = asPipelineError(err);
        // Graph refusing the token itself (401 after a fresh one) will not pass within this cycle.
        const refusedToken = err instanceof HttpError && err.statusCode === 401;
        if (!isPassing(error) || refusedToken || ++batchFailures >= MAX_BATCH_FAILURES) fatal ??= error;
        for (const user of chunk) later(user, "error");
        return;
      }
      // The reads are over: the next batch goes out while this one's answers are judged.
      // Slots kept for the next batch while users are left to read.
      const keep = pending.size > chunk.length ? ticket.slots : 0;
      // A batch refused outright slows every reader of this app down to one batch after its largest Retry-After.
      const retryAfters = responses.filter((r) => r.status === 429).map((r) => serverRetryDelay(lowerCaseKeys(r.headers), this.clock.now()));
      const stated = retryAfters.filter((ms): ms is number => ms !== undefined);
      const outcome: ReadOutcome = { reads: responses.filter((r) => r.status === 200).length, throttled: retryAfters.length > 0, retryAfterMs: stated.length ? Math.max(...stated) : undefined };
      const released = release(ticket, outcome, keep);
      await new Promise<void>((resolve) => setImmediate(resolve));
      batchFailures = 0;
      const byId = new Map(responses.map((r) => [String(r.id), r]));
      chunk.forEach((user, i) => {
        const answer = byId.get(String(i + 1));
        if (!answer) {
          result.errors++;
          return later(user, "error");
        }
        if (answer.status === 200) {
          const observation = observe(answer.body as AutomaticRepliesSetting, this.clock.now());
          const change = this.record(user, observation);
          if (change) result.changes.push(change);
          if (!user.observation || change) {
            observed.push({ userId: user.userId, observation, previous: user.observation });
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
          // The refused requests of a batch are asked again together, after its largest Retry-After.
          return later(user, "throttled", outcome.retryAfterMs);
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
      await released;
    };
    /** Slots kept from a batch that came back, for the next one. */
    const spare: SharedTicket[] = [];
    /** The spare slots as one ticket, up to a batch's worth: after the window halved, batches grow back together. */
    const spareTicket = (): SharedTicket | undefined => {
      if (spare.length === 0) return undefined;
      spare.sort((a, b) => b.slots - a.slots);
      let merged = spare.shift()!;
      while (spare.length && merged.slots + spare[spare.length - 1]!.slots <= OUTLOOK_ITEMS_PER_BATCH) {
        const next = spare.pop()!;
        merged = { ...next, slots: merged.slots + next.slots, numbers: [...merged.numbers, ...next.numbers], epoch: Math.max(merged.epoch, next.epoch) };
      }
      return merged;
    };
    const release = (ticket: SharedTicket, outcome: ReadOutcome, keep = 0): Promise<void> =>
      this.budget.release(ticket, outcome, keep).then(
        (kept) => {
          if (kept) spare.push(kept);
          tellThrottling();
          wake();
        },
        (err: unknown) => {
          fatal ??= asPipelineError(err);
          wake();
        },
      );

    while (!fatal && !signal?.aborted) {
      const now = this.clock.now();
      if (now >= deadline) break;
      let ready = 0;
      let nextReady = Infinity;
      for (const user of pending) {
        if (sending.has(user)) continue;
        const at = notBefore.get(user) ?? 0;
        if (at > now) nextReady = Math.min(nextReady, at);
        else ready++;
      }
      let starved = false;
      /** How long until Outlook's largest Retry-After has passed, when it throttles the app. */
      let gatedMs = 0;
      if (ready > 0) {
        let ticket: SharedTicket;
        const wanted = Math.min(ready, OUTLOOK_ITEMS_PER_BATCH);
        try {
          ticket = spareTicket() ?? (await this.budget.take(wanted));
        } catch (err) {
          fatal ??= asPipelineError(err);
          break;
        }
        tellThrottling();
        // Fewer slots than a batch wants while this cycle's other batches are out: their slots join these
        // when they come back, for one fuller batch rather than many of one user (the same reads in flight).
        if (ticket.slots > 0 && ticket.slots < wanted && inFlight.size > 0) spare.push(ticket);
        else {
          // A batch holds at most 4 reads in flight (Graph's own limit per batch): with fewer slots, fewer
          // users; full batches of 20 only once Outlook has stopped refusing.
          const size = ticket.slots < OUTLOOK_ITEMS_PER_BATCH ? ticket.slots : ticket.calm ? MAX_BATCH : OUTLOOK_ITEMS_PER_BATCH;
          const chunk: Watched[] = [];
          const at = this.clock.now();
          for (const user of pending) {
            if (chunk.length >= size) break;
            if (!sending.has(user) && (notBefore.get(user) ?? 0) <= at) chunk.push(user);
          }
          if (chunk.length > 0) {
            for (const user of chunk) sending.add(user);
            const batch: Promise<void> = sendBatch(chunk, ticket).finally(() => {
              for (const user of chunk) sending.delete(user);
              inFlight.delete(batch);
              wake();
            });
            inFlight.add(batch);
            continue;
          }
          if (ticket.slots > 0) {
            await release(ticket, { reads: 0, throttled: false });
            continue;
          }
          gatedMs = ticket.waitMs;
          starved = gatedMs === 0;
        }
      }
      // Done, or the rest waits for a Retry-After that ends after this cycle: it goes first next time.
      if (ready === 0 && inFlight.size === 0 && nextReady >= deadline) break;
      if (gatedMs > 0 && inFlight.size === 0 && this.clock.now() + gatedMs >= deadline) break;
      // Wait for a slot, a batch to come back, or the next Retry-After to pass, whichever is first.
      const waited = new AbortController();
      // A close ends the wait at once, however long Outlook asked to wait.
      const waitSignal = signal ? AbortSignal.any([waited.signal, signal]) : waited.signal;
      const waits: Array<Promise<unknown>> = [...inFlight, new Promise<void>((resolve) => (wake = resolve))];
      if (gatedMs > 0) waits.push(this.clock.sleep(Math.min(gatedMs, deadline - this.clock.now()), waitSignal).catch(() => undefined));
      else if (starved) waits.push(this.budget.freed());
      else if (nextReady < deadline) waits.push(this.clock.sleep(nextReady - now, waitSignal).catch(() => undefined));
      await Promise.race(waits);
      waited.abort();
    }
    await Promise.all(inFlight);
    for (const ticket of spare.splice(0)) await release(ticket, { reads: 0, throttled: false });
    // A change another instance stored first (a cycle of its own that overlapped) is its to report.
    let stored: Set<string>;
    try {
      if (signal?.aborted) {
        // A closing node can no longer send what it found: left unstored, the next cycle reports it.
        for (const [user, observation] of before) user.observation = observation;
        stored = new Set();
      } else stored = await this.opts.store.saveObservations(observed);
    } catch (err) {
      // Not stored, so not sent: the next cycle finds these changes again and sends them then, once.
      for (const [user, observation] of before) user.observation = observation;
      throw err;
    }
    const saving = new Set(observed.map((o) => o.userId));
    result.changes = result.changes.filter((c) => !saving.has(c.userId) || stored.has(c.userId));

    // Users the cycle never got to while Outlook throttled the app were kept back by that throttling.
    const throttling = this.budget.throttling;
    for (const user of pending) result.notRead.push({ email: user.email, reason: reasons.get(user) ?? (throttling ? "throttled" : "not reached") });
    if (throttling && pending.size > 0) result.throttling = { waiting: pending.size, paceMs: throttling.paceMs };
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
  private async retryLookups(result: PollResult, graph: GraphClient): Promise<PipelineError | undefined> {
    let failures = 0;
    let failure: PipelineError | undefined;
    for (const email of this.pendingLookups) {
      if (failures >= MAX_LOOKUP_FAILURES) break;
      try {
        const { change } = await this.watchLoaded(email, graph);
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
  private async readOne(user: GraphUser, email: string, graph: GraphClient): Promise<AutomaticRepliesSetting> {
    let ticket = await this.budget.take(1);
    while (ticket.slots === 0) {
      await (ticket.waitMs > 0 ? this.clock.sleep(ticket.waitMs) : this.budget.freed());
      ticket = await this.budget.take(1);
    }
    let outcome: ReadOutcome = { reads: 0, throttled: false };
    try {
      const setting = await graph.automaticReplies(user, email);
      outcome = { reads: 1, throttled: false };
      return setting;
    } catch (err) {
      // Refused even after the client waited out its Retry-Afters: every reader of the app slows down.
      if (err instanceof HttpError && err.statusCode === 429) outcome = { reads: 0, throttled: true };
      throw err;
    } finally {
      await this.budget.release(ticket, outcome);
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
    for (const user of this.watched.values()) {
      if (!user.observation) continue;
      const next = atMoment(user.observation, now);
      if (next.outOfOffice !== user.observation.outOfOffice) {
        changes.push({ email: user.email, userId: user.userId, displayName: user.displayName, observation: next, previous: user.observation, initial: false });
        user.observation = next;
      }
    }
    // Every instance sees a window open at the same moment: the one that stores it reports it.
    const stored = await this.opts.store.saveObservations(changes.map((c) => ({ userId: c.userId, observation: c.observation, previous: c.previous })));
    return changes.filter((c) => stored.has(c.userId));
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
    throttling: result.throttling ? { waiting: result.throttling.waiting, secondsBetweenBatches: result.throttling.paceMs / 1000 } : null,
    failure: result.failure ? result.failure.message : null,
  };
}

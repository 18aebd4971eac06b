import { Clock, systemClock } from "../core/clock";
import { InputError, PipelineError, asPipelineError } from "../core/errors";
import { backoffDelay, serverRetryDelay } from "../core/http/retry";
import { GraphClient, MAX_BATCH, UserLookupError, userProblem } from "./client";
import { Observation, atMoment, isChange, nextBoundary, observe, plainText } from "./out-of-office";
import { AutomaticRepliesSetting, BatchResponse, GraphErrorBody } from "./types";
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

export interface PollResult {
  changes: OutOfOfficeChange[];
  problems: WatchProblem[];
  /** Batch requests sent (the envelopes; the token is msal's business). */
  batches: number;
  /** Items Graph throttled (429) and that were waited out. */
  throttled: number;
  /** Batches that failed as a whole (Graph unreachable, token refused): their users wait for the next poll. */
  failure?: PipelineError;
}

export interface MonitorOptions {
  graph: GraphClient;
  store: WatchListStore;
  clock?: Clock;
  /** JSON batches in flight at once (Graph hands Outlook at most 4 requests of each at a time). */
  batchesInFlight?: number;
  /** Rounds of retries for throttled or failed items within one poll. */
  retryRounds?: number;
  /** The longest per-item Retry-After a poll waits out before leaving the item for the next poll. */
  maxItemWaitMs?: number;
}

interface Watched extends WatchEntry {
  problem?: string;
}

/**
 * The out-of-office monitor: a durable watch list, each user looked up in Entra ID once and
 * watched by id from then on, polled in JSON batches of 20 with a few in flight, every item's own
 * 429 and Retry-After waited out, and a change reported only when whether the user is out, the
 * status, or a reply text changes. The first look at a user is a baseline (`initial`), never a
 * change; a restart knows what it already reported.
 */
export class OutOfOfficeMonitor {
  private watched = new Map<string, Watched>();
  private loaded?: Promise<void>;
  private readonly clock: Clock;

  constructor(private readonly opts: MonitorOptions) {
    this.clock = opts.clock ?? systemClock;
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

  /**
   * Starts watching an address: found in Entra ID, its mailbox read once (which proves there is
   * one), stored, and its first observation returned as a baseline. Already watched: the current
   * observation, not a change.
   */
  async watch(address: string): Promise<{ entry: WatchEntry; change: OutOfOfficeChange | null }> {
    await this.load();
    const email = checkAddress(address);
    const known = this.byEmail(email);
    if (known) return { entry: known, change: null };
    const user = await this.opts.graph.findUser(email);
    const setting = await this.opts.graph.automaticReplies(user, email);
    const observation = observe(setting, this.clock.now());
    const existing = this.watched.get(user.id);
    const entry: Watched = { userId: user.id, email, displayName: user.displayName ?? null, observation };
    await this.opts.store.add(entry);
    if (existing) this.watched.delete(existing.userId);
    this.watched.set(user.id, entry);
    return { entry, change: { email, userId: user.id, displayName: entry.displayName, observation, previous: null, initial: true } };
  }

  async unwatch(address: string): Promise<boolean> {
    await this.load();
    const email = checkAddress(address);
    const removed = await this.opts.store.remove(email);
    const known = this.byEmail(email);
    if (known) this.watched.delete(known.userId);
    return removed || !!known;
  }

  /** Makes the list exactly `addresses`: the missing ones are watched, the others dropped. */
  async replace(addresses: string[]): Promise<{ added: string[]; removed: string[]; refused: Array<{ email: string; error: PipelineError }>; changes: OutOfOfficeChange[] }> {
    await this.load();
    const wanted = new Map<string, string>();
    for (const a of addresses) if (a.trim()) wanted.set(a.trim().toLowerCase(), a.trim());
    const removed: string[] = [];
    for (const user of this.users) {
      if (!wanted.has(user.email.toLowerCase())) {
        await this.unwatch(user.email);
        removed.push(user.email);
      }
    }
    const added: string[] = [];
    const refused: Array<{ email: string; error: PipelineError }> = [];
    const changes: OutOfOfficeChange[] = [];
    for (const email of wanted.values()) {
      if (this.byEmail(email)) continue;
      try {
        const { change } = await this.watch(email);
        added.push(email);
        if (change) changes.push(change);
      } catch (err) {
        refused.push({ email, error: asPipelineError(err) });
      }
    }
    return { added, removed, refused, changes };
  }

  /** One polling cycle over every watched user. */
  async poll(): Promise<PollResult> {
    await this.load();
    const result: PollResult = { changes: [], problems: [], batches: 0, throttled: 0 };
    let pending = [...this.watched.values()];
    const observed: Array<{ userId: string; observation: Observation }> = [];
    const failures: unknown[] = [];
    const retryRounds = this.opts.retryRounds ?? 5;

    for (let round = 0; pending.length > 0 && round <= retryRounds; round++) {
      const retry: Watched[] = [];
      let wait = 0;
      const chunks: Watched[][] = [];
      for (let i = 0; i < pending.length; i += MAX_BATCH) chunks.push(pending.slice(i, i + MAX_BATCH));
      await runWithLimit(chunks, this.opts.batchesInFlight ?? 4, async (chunk) => {
        let responses: BatchResponse[];
        try {
          result.batches++;
          responses = await this.opts.graph.batch(chunk.map((u, i) => ({ id: String(i + 1), method: "GET", url: `/users/${encodeURIComponent(u.userId)}/mailboxSettings/automaticRepliesSetting` })));
        } catch (err) {
          failures.push(err);
          return;
        }
        const byId = new Map(responses.map((r) => [String(r.id), r]));
        chunk.forEach((user, i) => {
          const answer = byId.get(String(i + 1));
          if (!answer) {
            retry.push(user);
            return;
          }
          if (answer.status === 200) {
            const observation = observe(answer.body as AutomaticRepliesSetting, this.clock.now());
            const change = this.record(user, observation);
            if (change) result.changes.push(change);
            if (!user.observation || change) observed.push({ userId: user.userId, observation });
            user.observation = observation;
            user.problem = undefined;
            return;
          }
          if (answer.status === 429 || answer.status >= 500 || answer.status === 401) {
            if (answer.status === 429) result.throttled++;
            retry.push(user);
            const asked = serverRetryDelay(lowerCaseKeys(answer.headers), this.clock.now());
            wait = Math.max(wait, asked ?? backoffDelay(round, Math.random(), { baseDelayMs: 500, maxDelayMs: 8000 }));
            return;
          }
          const code = (answer.body as GraphErrorBody | undefined)?.error?.code ?? "";
          const problem = userProblem(answer.status, code, user.email) ?? new UserLookupError("not-found", `Graph answered ${answer.status} ${code} for ${user.email}`, 502);
          if (user.problem !== problem.problem) result.problems.push({ email: user.email, userId: user.userId, error: problem });
          user.problem = problem.problem;
        });
      });
      pending = retry;
      if (pending.length > 0 && round < retryRounds) {
        if (wait > (this.opts.maxItemWaitMs ?? 60_000)) break; // left for the next poll
        await this.clock.sleep(wait);
      }
    }
    await this.opts.store.saveObservations(observed);
    if (failures.length > 0) {
      const first = asPipelineError(failures[0]);
      result.failure = new PipelineError(`${failures.length} of ${result.batches} Graph batches failed: ${first.message}`, { cause: first, code: first.code, status: first.status });
    }
    return result;
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

async function runWithLimit<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

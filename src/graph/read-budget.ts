import { randomUUID } from "node:crypto";
import type { Database, Migration } from "../core/db/database";
import { BackoffOptions, backoffDelay } from "../core/http/retry";

/** Graph hands Outlook at most this many requests of one unordered batch at a time (graph-ooo.md §2). */
export const OUTLOOK_ITEMS_PER_BATCH = 4;

/** Who holds read slots: the number held, and the window they were taken under. */
export interface ReadTicket {
  slots: number;
  epoch: number;
}

/** Good reads per slot before the window grows by one: slow enough that probing costs few 429s. */
const GROWTH_READS_PER_SLOT = 8;
/** Good reads in a row after which the budget is calm again (full batches allowed). */
const CALM_READS = 100;

/**
 * How many mailbox reads may be in flight at once, counted across every batch: at most `max`,
 * halved when Outlook answers 429 and raised by one per few windows of good reads (additive
 * increase, multiplicative decrease). A window is halved once for the 429s of reads sent under it,
 * not once per 429, so a burst of refusals does not drive it to one. Until reads have gone through
 * for a while (`calm`), batches stay small, since Graph sends four items of a batch at once and the
 * rest of a large batch would be refused in a burst.
 */
export class ReadBudget {
  private window: number;
  private held = 0;
  private epoch = 0;
  private waiters: Array<() => void> = [];
  private cleanReads = CALM_READS;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError("mailbox reads in flight must be a whole number of at least 1");
    this.window = max;
  }

  /** The reads allowed in flight now. */
  get limit(): number {
    return Math.max(1, Math.floor(this.window));
  }

  get available(): number {
    return Math.max(0, this.limit - this.held);
  }

  /** No 429 for a while: batches may be full. */
  get calm(): boolean {
    return this.cleanReads >= CALM_READS;
  }

  get inFlight(): number {
    return this.held;
  }

  /** Takes up to `wanted` slots of those available (none when none are). */
  take(wanted: number): ReadTicket {
    const slots = Math.min(wanted, this.available);
    this.held += slots;
    return { slots, epoch: this.epoch };
  }

  release(ticket: ReadTicket): void {
    this.held = Math.max(0, this.held - ticket.slots);
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next release (at once when a slot is free). */
  freed(): Promise<void> {
    if (this.available > 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Outlook refused reads sent under this ticket's window: halve it (once per window). */
  throttled(ticket: ReadTicket): void {
    this.cleanReads = 0;
    if (ticket.epoch !== this.epoch) return;
    this.window = halved(this.window);
    this.epoch++;
  }

  /** `reads` went through: grow by one per few windows' worth, up to the setting. */
  succeeded(reads: number): void {
    this.cleanReads += reads;
    this.window = grown(this.window, reads, this.max);
  }
}

function halved(window: number): number {
  return Math.max(1, window / 2);
}

function grown(window: number, reads: number, max: number): number {
  return Math.min(max, window + reads / (window * GROWTH_READS_PER_SLOT));
}


export const READ_BUDGET_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "mailbox reads in flight per Graph app and tenant, shared by every instance",
    sql: `CREATE TABLE IF NOT EXISTS gluework_graph_read_window (
      bucket text PRIMARY KEY,
      size double precision NOT NULL,
      clean_reads integer NOT NULL,
      epoch integer NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS gluework_graph_read_slots (
      bucket text NOT NULL,
      slot integer NOT NULL,
      holder text,
      held_until timestamptz,
      PRIMARY KEY (bucket, slot)
    );`,
  },
  {
    id: 2,
    description: "a throttled Graph app and tenant sends no batch before the largest Retry-After, one at a time, on every instance",
    sql: `ALTER TABLE gluework_graph_read_window
      ADD COLUMN IF NOT EXISTS not_before timestamptz,
      ADD COLUMN IF NOT EXISTS throttled_since timestamptz,
      ADD COLUMN IF NOT EXISTS pace_ms integer NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS backoff_attempt integer NOT NULL DEFAULT 0;`,
  },
];

/** Read slots held by a process that died are free again after this long (a batch never lasts as long). */
const SLOT_HOLD_MS = 120_000;
/** How often a wait for a slot looks again for slots another instance freed. */
const FREED_LOOK_MS = 40;

/**
 * The window after the 429s of a release: halved once per window, in SQL on the row as it is now,
 * and not again while the app is throttled: one batch goes at a time then anyway, and the window it
 * ends with is the one reads go back to.
 */
const HALVED = "(CASE WHEN $4 AND epoch = $5 AND throttled_since IS NULL THEN greatest(1, size / 2) ELSE size END)";
/**
 * A release that throttles the whole app: Outlook refused and nothing was read. A 429 among reads that
 * went through is one mailbox's or too many reads at once: those users wait, and the window halves.
 */
const REFUSED = "($4 AND $6 = 0)";
/** A release that ends a throttling: reads went through, under the window as it is now. */
const RECOVERED = "($6 > 0 AND epoch = $5)";
/** The slots that count now: one while throttled (one batch in flight), else those within the window. */
const LIMIT = (w: string, max: string) => `(CASE WHEN ${w}.throttled THEN 1 ELSE greatest(1, floor(least(${max}::float8, ${w}.size))) END)`;
/**
 * Our own pause between batches when Outlook refuses without a Retry-After: doubling from 0.5 s up
 * to 30 s, with jitter. It is bounded in time, not in count: a cycle gives up at its deadline.
 */
export const THROTTLE_BACKOFF: BackoffOptions = { baseDelayMs: 500, maxDelayMs: 30_000 };

/** Outlook refusing the app's reads: the pause now kept between batches. */
export interface Throttling {
  paceMs: number;
}

/** Slots taken from the shared budget: their numbers, and the window they were taken under. */
export interface SharedTicket extends ReadTicket {
  numbers: number[];
  /** No 429 for a while when they were taken: batches may be full. */
  calm: boolean;
  /** No slot because the app is throttled: how long until the next batch may go (0 when not). */
  waitMs: number;
  /** Refusals without a Retry-After in a row when taken: our own backoff's attempt. */
  backoffAttempt: number;
}

/** What the reads sent under a ticket came to. */
export interface ReadOutcome {
  reads: number;
  throttled: boolean;
  /** The largest Retry-After among the 429s, in milliseconds (undefined: none stated, our own backoff). */
  retryAfterMs?: number;
}

interface WindowRow {
  size: number;
  clean_reads: number;
  epoch: number;
  throttled_since: Date | null;
  pace_ms: number;
  backoff_attempt: number;
}

/**
 * The budget of mailbox reads in flight of one Graph app in one tenant (`bucket`), shared by
 * every instance on the database: numbered slots held with an expiry, and the window of the
 * `ReadBudget` (halved once per window on 429, grown back as reads go through) in one row, so two
 * replicas together keep at most `max` reads in flight and calm down together after 429s.
 *
 * A batch Outlook refused with 429 and nothing read throttles the whole app and tenant: no slot is
 * handed out, on any instance, before the largest Retry-After of that batch has passed (our own
 * backoff when Outlook states none), and only one slot counts, so one batch is in flight, until a
 * batch comes back with reads.
 */
export class SharedReadBudget {
  private readonly holder = randomUUID();
  private ready?: Promise<unknown>;
  private waiters: Array<() => void> = [];
  private seen: { limit: number; calm: boolean; held: number; throttling?: Throttling } = { limit: 0, calm: true, held: 0 };

  constructor(
    private readonly db: Database,
    readonly bucket: string,
    readonly max: number,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError("mailbox reads in flight must be a whole number of at least 1");
    this.seen.limit = max;
  }

  /** The reads allowed in flight at the last look. */
  get limit(): number {
    return this.seen.limit;
  }

  get calm(): boolean {
    return this.seen.calm;
  }

  /** Whether Outlook was refusing this app's reads at the last look, and the pause kept between batches. */
  get throttling(): Throttling | undefined {
    return this.seen.throttling;
  }

  /** Reads this instance holds now. */
  get inFlight(): number {
    return this.seen.held;
  }

  /**
   * Takes up to `wanted` slots of those free across every instance (none when none are), in one
   * statement: only slots numbered within the window count, and a slot another instance is taking
   * at the same moment is skipped.
   */
  async take(wanted: number): Promise<SharedTicket> {
    await this.migrated();
    // The window row is locked for the statement: a release that throttles the app frees its slot and
    // closes the gate at once, never one without the other.
    const { rows } = await this.db.query<WindowRow & { wait_ms: number; slots: number[] }>(
      `WITH w AS (
         SELECT size, clean_reads, epoch, throttled_since, pace_ms, backoff_attempt, throttled_since IS NOT NULL AS throttled,
                CASE WHEN not_before > clock_timestamp() THEN ceil(extract(epoch FROM not_before - clock_timestamp()) * 1000)::int ELSE 0 END AS wait_ms
           FROM gluework_graph_read_window WHERE bucket = $1 FOR NO KEY UPDATE),
       free AS (
         SELECT s.slot FROM gluework_graph_read_slots s, w
          WHERE s.bucket = $1 AND w.wait_ms = 0 AND s.slot <= ${LIMIT("w", "$4")} AND (s.holder IS NULL OR s.held_until <= clock_timestamp())
          ORDER BY s.slot LIMIT $3 FOR UPDATE OF s SKIP LOCKED),
       taken AS (
         UPDATE gluework_graph_read_slots s SET holder = $2, held_until = clock_timestamp() + $5 * interval '1 millisecond'
           FROM free WHERE s.bucket = $1 AND s.slot = free.slot RETURNING s.slot)
       SELECT w.size, w.clean_reads, w.epoch, w.throttled_since, w.pace_ms, w.backoff_attempt, w.wait_ms, array(SELECT slot FROM taken ORDER BY slot) AS slots FROM w`,
      [this.bucket, this.holder, Math.max(0, wanted), this.max, SLOT_HOLD_MS],
    );
    const state = rows[0]!;
    const numbers = state.slots.map(Number);
    this.look(state, numbers.length);
    return { slots: numbers.length, numbers, epoch: state.epoch, calm: this.seen.calm, waitMs: numbers.length ? 0 : Number(state.wait_ms), backoffAttempt: state.backoff_attempt };
  }

  /**
   * Gives the slots back and moves the shared window by what their reads came to, in one
   * statement: halved once for the 429s of a window (`ReadBudget.throttled`), then grown by the
   * reads that went through (`ReadBudget.succeeded`). Up to `keep` of them, within the new window,
   * are kept for the caller's next batch (one trip to the database between batches, not two).
   */
  async release(ticket: SharedTicket, outcome: ReadOutcome, keep = 0): Promise<SharedTicket | undefined> {
    if (ticket.slots === 0 && outcome.reads === 0 && !outcome.throttled) return undefined;
    // The pause before the next batch: the largest Retry-After Outlook stated, else our own backoff.
    const refused = outcome.throttled && outcome.reads === 0;
    const pauseMs = refused ? (outcome.retryAfterMs ?? backoffDelay(ticket.backoffAttempt, Math.random(), THROTTLE_BACKOFF)) : 0;
    try {
      const { rows } = await this.db.query<WindowRow & { kept: number[] }>(
        `WITH win AS (
           UPDATE gluework_graph_read_window
              SET size = CASE WHEN $6 > 0 THEN least($7::float8, ${HALVED} + $6 / (${HALVED} * $8)) ELSE ${HALVED} END,
                  epoch = CASE WHEN $4 AND epoch = $5 THEN epoch + 1 ELSE epoch END,
                  clean_reads = least(CASE WHEN $4 THEN 0 ELSE clean_reads END + $6, 1000000),
                  not_before = CASE WHEN ${REFUSED} THEN greatest(not_before, clock_timestamp() + $11 * interval '1 millisecond') WHEN ${RECOVERED} THEN NULL ELSE not_before END,
                  throttled_since = CASE WHEN ${REFUSED} THEN coalesce(throttled_since, clock_timestamp()) WHEN ${RECOVERED} THEN NULL ELSE throttled_since END,
                  pace_ms = CASE WHEN ${REFUSED} THEN $11 WHEN ${RECOVERED} THEN 0 ELSE pace_ms END,
                  backoff_attempt = CASE WHEN ${REFUSED} AND $12 THEN backoff_attempt + 1 WHEN ${REFUSED} OR ${RECOVERED} THEN 0 ELSE backoff_attempt END
            WHERE bucket = $1
           RETURNING size, clean_reads, epoch, throttled_since, pace_ms, backoff_attempt, throttled_since IS NOT NULL AS throttled,
                     coalesce(not_before > clock_timestamp(), false) AS gated),
         keeping AS (
           SELECT n FROM unnest($2::int[]) AS n, win WHERE NOT win.gated AND n <= ${LIMIT("win", "$7")} ORDER BY n LIMIT $9),
         freed AS (
           UPDATE gluework_graph_read_slots SET holder = NULL, held_until = NULL
            WHERE bucket = $1 AND slot = ANY($2::int[]) AND holder = $3 AND slot NOT IN (SELECT n FROM keeping)),
         kept AS (
           UPDATE gluework_graph_read_slots SET held_until = clock_timestamp() + $10 * interval '1 millisecond'
            WHERE bucket = $1 AND slot IN (SELECT n FROM keeping) AND holder = $3 RETURNING slot)
         SELECT size, clean_reads, epoch, throttled_since, pace_ms, backoff_attempt, array(SELECT slot FROM kept ORDER BY slot) AS kept FROM win`,
        [
          this.bucket,
          ticket.numbers,
          this.holder,
          outcome.throttled,
          ticket.epoch,
          outcome.reads,
          this.max,
          GROWTH_READS_PER_SLOT,
          Math.max(0, keep),
          SLOT_HOLD_MS,
          Math.ceil(pauseMs),
          refused && outcome.retryAfterMs === undefined,
        ],
      );
      const state = rows[0];
      if (!state) return undefined;
      const numbers = state.kept.map(Number);
      this.look(state, numbers.length);
      return numbers.length ? { slots: numbers.length, numbers, epoch: state.epoch, calm: this.seen.calm, waitMs: 0, backoffAttempt: state.backoff_attempt } : undefined;
    } finally {
      this.seen.held = Math.max(0, this.seen.held - ticket.slots);
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** What a statement saw of the shared window, and the slots it gave this instance. */
  private look(state: WindowRow, taken: number): void {
    const throttling = state.throttled_since ? { paceMs: Number(state.pace_ms) } : undefined;
    this.seen = {
      limit: throttling ? 1 : Math.max(1, Math.floor(Math.min(this.max, state.size))),
      calm: state.clean_reads >= CALM_READS,
      held: this.seen.held + taken,
      throttling,
    };
  }

  /** Resolves when this instance gives slots back, or after a short while (another one may have). */
  freed(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, FREED_LOOK_MS);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db
      .migrate("graph-read-budget", READ_BUDGET_MIGRATIONS)
      .then(() =>
        this.db.query(
          `WITH w AS (INSERT INTO gluework_graph_read_window (bucket, size, clean_reads) VALUES ($1, $2, $3) ON CONFLICT (bucket) DO NOTHING)
           INSERT INTO gluework_graph_read_slots (bucket, slot) SELECT $1, n FROM generate_series(1, $2::int) AS n ON CONFLICT DO NOTHING`,
          [this.bucket, this.max, CALM_READS],
        ),
      )
      .catch((err) => {
        this.ready = undefined;
        throw err;
      });
    return this.ready;
  }
}

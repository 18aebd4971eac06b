import { randomUUID } from "node:crypto";
import type { Database, Migration } from "../core/db/database";

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
];

/** Read slots held by a process that died are free again after this long (a batch never lasts as long). */
const SLOT_HOLD_MS = 120_000;
/** How often a wait for a slot looks again for slots another instance freed. */
const FREED_LOOK_MS = 40;

/** The window after the 429s of a release: halved once per window, in SQL on the row as it is now. */
const HALVED = "(CASE WHEN $4 AND epoch = $5 THEN greatest(1, size / 2) ELSE size END)";

/** Slots taken from the shared budget: their numbers, and the window they were taken under. */
export interface SharedTicket extends ReadTicket {
  numbers: number[];
  /** No 429 for a while when they were taken: batches may be full. */
  calm: boolean;
}

/** What the reads sent under a ticket came to. */
export interface ReadOutcome {
  reads: number;
  throttled: boolean;
}

/**
 * The budget of mailbox reads in flight of one Graph app in one tenant (`bucket`), shared by
 * every instance on the database: numbered slots held with an expiry, and the window of the
 * `ReadBudget` (halved once per window on 429, grown back as reads go through) in one row, so two
 * replicas together keep at most `max` reads in flight and calm down together after 429s.
 */
export class SharedReadBudget {
  private readonly holder = randomUUID();
  private ready?: Promise<unknown>;
  private waiters: Array<() => void> = [];
  private seen = { limit: 0, calm: true, held: 0 };

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
    const { rows } = await this.db.query<{ size: number; clean_reads: number; epoch: number; slots: number[] }>(
      `WITH w AS (SELECT size, clean_reads, epoch FROM gluework_graph_read_window WHERE bucket = $1),
       free AS (
         SELECT s.slot FROM gluework_graph_read_slots s, w
          WHERE s.bucket = $1 AND s.slot <= greatest(1, floor(least($4::float8, w.size))) AND (s.holder IS NULL OR s.held_until <= clock_timestamp())
          ORDER BY s.slot LIMIT $3 FOR UPDATE OF s SKIP LOCKED),
       taken AS (
         UPDATE gluework_graph_read_slots s SET holder = $2, held_until = clock_timestamp() + $5 * interval '1 millisecond'
           FROM free WHERE s.bucket = $1 AND s.slot = free.slot RETURNING s.slot)
       SELECT w.size, w.clean_reads, w.epoch, array(SELECT slot FROM taken ORDER BY slot) AS slots FROM w`,
      [this.bucket, this.holder, Math.max(0, wanted), this.max, SLOT_HOLD_MS],
    );
    const state = rows[0]!;
    const numbers = state.slots.map(Number);
    const calm = state.clean_reads >= CALM_READS;
    this.seen = { limit: Math.max(1, Math.floor(Math.min(this.max, state.size))), calm, held: this.seen.held + numbers.length };
    return { slots: numbers.length, numbers, epoch: state.epoch, calm };
  }

  /**
   * Gives the slots back and moves the shared window by what their reads came to, in one
   * statement: halved once for the 429s of a window (`ReadBudget.throttled`), then grown by the
   * reads that went through (`ReadBudget.succeeded`). Up to `keep` of them, within the new window,
   * are kept for the caller's next batch (one trip to the database between batches, not two).
   */
  async release(ticket: SharedTicket, outcome: ReadOutcome, keep = 0): Promise<SharedTicket | undefined> {
    if (ticket.slots === 0 && outcome.reads === 0 && !outcome.throttled) return undefined;
    try {
      const { rows } = await this.db.query<{ size: number; clean_reads: number; epoch: number; kept: number[] }>(
        `WITH win AS (
           UPDATE gluework_graph_read_window
              SET size = CASE WHEN $6 > 0 THEN least($7::float8, ${HALVED} + $6 / (${HALVED} * $8)) ELSE ${HALVED} END,
                  epoch = CASE WHEN $4 AND epoch = $5 THEN epoch + 1 ELSE epoch END,
                  clean_reads = least(CASE WHEN $4 THEN 0 ELSE clean_reads END + $6, 1000000)
            WHERE bucket = $1
           RETURNING size, clean_reads, epoch),
         keeping AS (
           SELECT n FROM unnest($2::int[]) AS n, win WHERE n <= greatest(1, floor(least($7::float8, win.size))) ORDER BY n LIMIT $9),
         freed AS (
           UPDATE gluework_graph_read_slots SET holder = NULL, held_until = NULL
            WHERE bucket = $1 AND slot = ANY($2::int[]) AND holder = $3 AND slot NOT IN (SELECT n FROM keeping)),
         kept AS (
           UPDATE gluework_graph_read_slots SET held_until = clock_timestamp() + $10 * interval '1 millisecond'
            WHERE bucket = $1 AND slot IN (SELECT n FROM keeping) AND holder = $3 RETURNING slot)
         SELECT size, clean_reads, epoch, array(SELECT slot FROM kept ORDER BY slot) AS kept FROM win`,
        [this.bucket, ticket.numbers, this.holder, outcome.throttled, ticket.epoch, outcome.reads, this.max, GROWTH_READS_PER_SLOT, Math.max(0, keep), SLOT_HOLD_MS],
      );
      const state = rows[0];
      if (!state) return undefined;
      const calm = state.clean_reads >= CALM_READS;
      this.seen = { limit: Math.max(1, Math.floor(Math.min(this.max, state.size))), calm, held: this.seen.held };
      const numbers = state.kept.map(Number);
      this.seen.held += numbers.length;
      return numbers.length ? { slots: numbers.length, numbers, epoch: state.epoch, calm } : undefined;
    } finally {
      this.seen.held = Math.max(0, this.seen.held - ticket.slots);
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
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

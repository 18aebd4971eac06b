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

  /** Takes up to `wanted` slots of those free across every instance (none when none are). */
  async take(wanted: number): Promise<SharedTicket> {
    await this.migrated();
    return this.db.transaction(async (client) => {
      const {
        rows: [state],
      } = await client.query<{ size: number; clean_reads: number; epoch: number }>(
        "SELECT size, clean_reads, epoch FROM gluework_graph_read_window WHERE bucket = $1 FOR UPDATE",
        [this.bucket],
      );
      const limit = Math.max(1, Math.floor(Math.min(this.max, state!.size)));
      const calm = state!.clean_reads >= CALM_READS;
      const { rows: held } = await client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM gluework_graph_read_slots WHERE bucket = $1 AND holder IS NOT NULL AND held_until > clock_timestamp()",
        [this.bucket],
      );
      const free = Math.min(wanted, limit - (held[0]?.n ?? 0));
      let numbers: number[] = [];
      if (free > 0) {
        const { rows } = await client.query<{ slot: number }>(
          `UPDATE gluework_graph_read_slots SET holder = $2, held_until = clock_timestamp() + $4 * interval '1 millisecond'
            WHERE bucket = $1 AND slot IN (
              SELECT slot FROM gluework_graph_read_slots WHERE bucket = $1 AND (holder IS NULL OR held_until <= clock_timestamp()) ORDER BY slot LIMIT $3)
            RETURNING slot`,
          [this.bucket, this.holder, free, SLOT_HOLD_MS],
        );
        numbers = rows.map((r) => r.slot);
      }
      this.seen = { limit, calm, held: this.seen.held + numbers.length };
      return { slots: numbers.length, numbers, epoch: state!.epoch, calm };
    });
  }

  /** Gives the slots back and moves the shared window by what their reads came to. */
  async release(ticket: SharedTicket, outcome: ReadOutcome): Promise<void> {
    if (ticket.slots === 0 && outcome.reads === 0 && !outcome.throttled) return;
    try {
      await this.db.transaction(async (client) => {
        await client.query("UPDATE gluework_graph_read_slots SET holder = NULL, held_until = NULL WHERE bucket = $1 AND slot = ANY($2::int[]) AND holder = $3", [
          this.bucket,
          ticket.numbers,
          this.holder,
        ]);
        const {
          rows: [state],
        } = await client.query<{ size: number; clean_reads: number; epoch: number }>(
          "SELECT size, clean_reads, epoch FROM gluework_graph_read_window WHERE bucket = $1 FOR UPDATE",
          [this.bucket],
        );
        let { size, clean_reads: clean, epoch } = state!;
        if (outcome.throttled) {
          clean = 0;
          if (ticket.epoch === epoch) {
            size = halved(size);
            epoch++;
          }
        }
        if (outcome.reads > 0) {
          clean = Math.min(clean + outcome.reads, 1_000_000);
          size = grown(size, outcome.reads, this.max);
        }
        await client.query("UPDATE gluework_graph_read_window SET size = $2, clean_reads = $3, epoch = $4 WHERE bucket = $1", [this.bucket, size, clean, epoch]);
        this.seen = { limit: Math.max(1, Math.floor(Math.min(this.max, size))), calm: clean >= CALM_READS, held: this.seen.held };
      });
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

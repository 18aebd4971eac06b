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
    this.window = Math.max(1, this.window / 2);
    this.epoch++;
  }

  /** `reads` went through: grow by one per few windows' worth, up to the setting. */
  succeeded(reads: number): void {
    this.cleanReads += reads;
    this.window = Math.min(this.max, this.window + reads / (this.window * GROWTH_READS_PER_SLOT));
  }
}

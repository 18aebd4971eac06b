import { createHash } from "node:crypto";
import { isIPv6 } from "node:net";
import { promises as fs } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { Clock, systemClock } from "../core/clock";
import type { Database, Migration } from "../core/db/database";
import { PipelineError } from "../core/errors";

export interface LoginThrottleOptions {
  /** Failures one user may have from one address before each further try must wait. */
  freeFailures?: number;
  /** The first wait; each further failure doubles it. */
  baseDelayMs?: number;
  /** The longest wait, however many failures: the real user is slowed, never locked out. */
  maxDelayMs?: number;
  /** Failures of one user (from any address) or of one address (for any user) that end the free tries. */
  suspiciousAfter?: number;
  /** A key with no failure for this long starts afresh. */
  forgetAfterMs?: number;
  /** Keys remembered at most in memory or in the file (the oldest go first). */
  maxKeys?: number;
}

/** One key's failures: how many, the last one, and when the next try is allowed (epoch ms). */
export interface ThrottleRecord {
  failures: number;
  lastFailure: number;
  allowedAt: number;
}

/**
 * Where the counts live. `change` reads the records of `keys`, lets `decide` say what they become
 * (undefined: delete), and writes that, as one step no other caller (process) can come between.
 */
export interface ThrottleStore {
  change<T>(keys: readonly string[], decide: (records: Map<string, ThrottleRecord>) => { next: Map<string, ThrottleRecord | undefined>; result: T }): Promise<T>;
  close?(): Promise<void>;
}

/** The records one login try touches. */
interface TryKeys {
  /** This user from this address: the only record that ever makes a try wait. */
  pair: string;
  /** All failures of the user, and all of the address: they only shorten and lengthen the pair's waits. */
  user: string;
  address: string;
}

/**
 * Slows password guessing without locking anyone out. Failures are counted per user and address
 * together: after a few failures of one user from one address, that pair must wait before its next
 * try, twice as long after each further failure, up to a bound. Guesses from one address therefore
 * never make the user wait at another address, and guesses for a name that does not exist make
 * only that name wait, at that address. The user's failures from every address, and the
 * address's failures for every user, are counted too: once either is high, a pair has no free
 * tries, and a user under attack from many addresses gets longer first waits (still bounded).
 * A try is counted when it is reserved, before the password is checked, so concurrent guesses
 * cannot all pass one check; a right password then clears the pair and takes its try back from
 * the user's and address's counts. The counts live in a store that every key node and every
 * instance sharing it see.
 */
export class LoginThrottle {
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly suspiciousAfter: number;
  private readonly forgetAfterMs: number;

  constructor(
    options: LoginThrottleOptions = {},
    private readonly clock: Clock = systemClock,
    readonly store: ThrottleStore = new MemoryThrottleStore(options.maxKeys),
  ) {
    this.freeFailures = options.freeFailures ?? 3;
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.suspiciousAfter = options.suspiciousAfter ?? 10;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
  }

  /**
   * Takes a try for `username` from `address`: 0 when it may go ahead (it is counted as a failure
   * until `succeeded`), else how long this pair must still wait (nothing is counted then).
   */
  reserve(username: string, address: string): Promise<number> {
    const keys = tryKeys(username, address);
    const now = this.clock.now();
    return this.store.change([keys.pair, keys.user, keys.address], (records) => {
      const next = new Map<string, ThrottleRecord | undefined>();
      const pair = this.current(records.get(keys.pair), now);
      if (pair && pair.allowedAt > now) return { next, result: pair.allowedAt - now };
      const user = this.counted(records.get(keys.user), now);
      const address = this.counted(records.get(keys.address), now);
      next.set(keys.user, user);
      next.set(keys.address, address);
      const failures = (pair?.failures ?? 0) + 1;
      const suspicious = Math.max(user.failures, address.failures) > this.suspiciousAfter;
      const over = failures - (suspicious ? 0 : this.freeFailures);
      // A user failing at many addresses: each further doubling of their failures doubles the first wait.
      const spread = user.failures > this.suspiciousAfter ? Math.floor(Math.log2(user.failures / this.suspiciousAfter)) : 0;
      const delay = over > 0 ? Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(30, over - 1 + spread)) : 0;
      next.set(keys.pair, { failures, lastFailure: now, allowedAt: now + delay });
      return { next, result: 0 };
    });
  }

  /** How long `username` must still wait at `address`, without taking a try. */
  retryAfterMs(username: string, address: string): Promise<number> {
    const keys = tryKeys(username, address);
    const now = this.clock.now();
    return this.store.change([keys.pair], (records) => {
      const pair = this.current(records.get(keys.pair), now);
      return { next: new Map(), result: Math.max(0, (pair?.allowedAt ?? now) - now) };
    });
  }

  /** The right password: the pair's failures are forgotten, and its reserved try is no failure of the user or address. */
  succeeded(username: string, address: string): Promise<void> {
    const keys = tryKeys(username, address);
    const now = this.clock.now();
    return this.store.change([keys.pair, keys.user, keys.address], (records) => {
      const next = new Map<string, ThrottleRecord | undefined>([[keys.pair, undefined]]);
      for (const key of [keys.user, keys.address]) {
        const record = this.current(records.get(key), now);
        if (record) next.set(key, record.failures > 1 ? { ...record, failures: record.failures - 1 } : undefined);
      }
      return { next, result: undefined };
    });
  }

  private current(record: ThrottleRecord | undefined, now: number): ThrottleRecord | undefined {
    if (record && now - record.lastFailure > this.forgetAfterMs && now >= record.allowedAt) return undefined;
    return record;
  }

  /** A user's or address's count with one more failure: these records never make a try wait. */
  private counted(record: ThrottleRecord | undefined, now: number): ThrottleRecord {
    return { failures: (this.current(record, now)?.failures ?? 0) + 1, lastFailure: now, allowedAt: now };
  }
}

function tryKeys(username: string, address: string): TryKeys {
  const group = addressGroup(address);
  return { pair: storeKey(`pair:${group}|${username}`), user: storeKey(`user:${username}`), address: storeKey(`address:${group}`) };
}

/**
 * The address as counted: an IPv6 client commonly holds a whole /64, so its addresses count as
 * one; IPv4 (also written as IPv6-mapped) as itself.
 */
export function addressGroup(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = "", tail = ""] = address.split("%")[0]!.toLowerCase().split("::");
  const front = head ? head.split(":") : [];
  const back = address.includes("::") ? (tail ? tail.split(":") : []) : [];
  const groups = [...front, ...Array(Math.max(0, 8 - front.length - back.length)).fill("0"), ...back];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

/** A key as stored: long ones (a name is whatever a caller sends) as a hash of fixed length. */
function storeKey(key: string): string {
  return key.length <= 200 ? key : `sha256:${createHash("sha256").update(key).digest("base64url")}`;
}

/** Counts in this process only: for tests and for a key node whose store cannot be opened yet. */
export class MemoryThrottleStore implements ThrottleStore {
  private readonly records = new Map<string, ThrottleRecord>();
  constructor(private readonly maxKeys = 10_000) {}

  async change<T>(keys: readonly string[], decide: (records: Map<string, ThrottleRecord>) => { next: Map<string, ThrottleRecord | undefined>; result: T }): Promise<T> {
    const found = new Map<string, ThrottleRecord>();
    for (const key of keys) {
      const record = this.records.get(key);
      if (record) found.set(key, record);
    }
    const { next, result } = decide(found);
    apply(this.records, next, this.maxKeys);
    return result;
  }
}

function apply(records: Map<string, ThrottleRecord>, next: Map<string, ThrottleRecord | undefined>, maxKeys: number): void {
  for (const [key, record] of next) {
    records.delete(key); // re-insert: Map order is the age order used for eviction
    if (record) records.set(key, record);
  }
  while (records.size > maxKeys) records.delete(records.keys().next().value!);
}

/**
 * Counts in one JSON file (the Node-RED user directory), shared by every key node of every
 * Node-RED process on the host: each change holds a lock file, reads, decides and writes the file
 * through a temporary file and a rename. Changes within a process are queued, so they wait for
 * each other rather than for the lock.
 */
export class FileThrottleStore implements ThrottleStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly maxKeys = 10_000,
  ) {}

  change<T>(keys: readonly string[], decide: (records: Map<string, ThrottleRecord>) => { next: Map<string, ThrottleRecord | undefined>; result: T }): Promise<T> {
    const run = this.queue.then(() => this.locked(keys, decide));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async locked<T>(keys: readonly string[], decide: (records: Map<string, ThrottleRecord>) => { next: Map<string, ThrottleRecord | undefined>; result: T }): Promise<T> {
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const release = await lockfile.lock(this.file, {
      realpath: false,
      stale: 10_000,
      retries: { retries: 200, factor: 1.3, minTimeout: 5, maxTimeout: 100, randomize: true },
      onCompromised: () => undefined, // the default throws from a timer, which would end Node-RED
    });
    try {
      const records = await this.read();
      const found = new Map<string, ThrottleRecord>();
      for (const key of keys) {
        const record = records.get(key);
        if (record) found.set(key, record);
      }
      const { next, result } = decide(found);
      if (next.size) {
        apply(records, next, this.maxKeys);
        const temp = `${this.file}.${process.pid}.tmp`;
        await fs.writeFile(temp, JSON.stringify(Object.fromEntries(records)), { mode: 0o600 });
        await fs.rename(temp, this.file);
      }
      return result;
    } finally {
      await release().catch(() => undefined);
    }
  }

  private async read(): Promise<Map<string, ThrottleRecord>> {
    let raw: string;
    try {
      raw = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
      throw new PipelineError(`the login throttle file ${this.file} cannot be read: ${(err as Error).message}`, { cause: err, code: "GW_THROTTLE_STORE" });
    }
    try {
      return new Map(Object.entries(JSON.parse(raw) as Record<string, ThrottleRecord>));
    } catch {
      return new Map(); // a damaged file starts afresh rather than locking everyone out
    }
  }
}

export const THROTTLE_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "failed logins per user and address",
    sql: `CREATE TABLE IF NOT EXISTS gluework_login_throttle (
      key text PRIMARY KEY,
      failures integer NOT NULL,
      last_failure bigint NOT NULL,
      allowed_at bigint NOT NULL
    )`,
  },
];

/**
 * Counts in the flow's PostgreSQL database, shared by every key node and every Node-RED instance
 * that uses it: each change locks the rows of its keys (inserted first, so a new key is locked
 * too) in one transaction.
 */
export class PostgresThrottleStore implements ThrottleStore {
  private ready?: Promise<unknown>;
  private changes = 0;

  constructor(
    private readonly db: () => Promise<Database>,
    private readonly forgetAfterMs = 15 * 60_000,
  ) {}

  async change<T>(keys: readonly string[], decide: (records: Map<string, ThrottleRecord>) => { next: Map<string, ThrottleRecord | undefined>; result: T }): Promise<T> {
    const db = await this.db();
    await this.migrated(db);
    const sorted = [...new Set(keys)].sort();
    const result = await db.transaction(async (client) => {
      await client.query("INSERT INTO gluework_login_throttle (key, failures, last_failure, allowed_at) SELECT k, 0, 0, 0 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING", [sorted]);
      const { rows } = await client.query<{ key: string; failures: number; last_failure: string; allowed_at: string }>(
        "SELECT key, failures, last_failure, allowed_at FROM gluework_login_throttle WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE",
        [sorted],
      );
      const found = new Map<string, ThrottleRecord>();
      for (const row of rows) {
        if (row.failures > 0) found.set(row.key, { failures: row.failures, lastFailure: Number(row.last_failure), allowedAt: Number(row.allowed_at) });
      }
      const { next, result } = decide(found);
      for (const [key, record] of next) {
        if (record) {
          await client.query("UPDATE gluework_login_throttle SET failures = $2, last_failure = $3, allowed_at = $4 WHERE key = $1", [key, record.failures, record.lastFailure, record.allowedAt]);
        } else {
          await client.query("DELETE FROM gluework_login_throttle WHERE key = $1", [key]);
        }
      }
      return result;
    });
    // Now and then, forget what no longer counts, so the table stays small.
    if (++this.changes % 200 === 1) {
      const before = Date.now() - this.forgetAfterMs;
      await db.query("DELETE FROM gluework_login_throttle WHERE last_failure < $1 AND allowed_at < $2", [before, Date.now()]).catch(() => undefined);
    }
    return result;
  }

  private migrated(db: Database): Promise<unknown> {
    this.ready ??= db.migrate("login-throttle", THROTTLE_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { Clock, systemClock } from "../core/clock";
import type { Database, Migration } from "../core/db/database";
import { PipelineError } from "../core/errors";

export interface LoginThrottleOptions {
  /** Failures a key may have before it must wait. */
  freeFailures?: number;
  /** The first wait; each further failure doubles it. */
  baseDelayMs?: number;
  maxDelayMs?: number;
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

/**
 * Slows password guessing: after a few failures for one key (a user name, an address), that key
 * must wait before its next try, twice as long after each further failure. A try is counted as a
 * failure when it is reserved, before the password is checked, so concurrent guesses cannot all
 * pass one check; a right password then clears the keys. The counts live in a store that every
 * key node and every instance sharing it see.
 */
export class LoginThrottle {
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly forgetAfterMs: number;

  constructor(
    options: LoginThrottleOptions = {},
    private readonly clock: Clock = systemClock,
    readonly store: ThrottleStore = new MemoryThrottleStore(options.maxKeys),
  ) {
    this.freeFailures = options.freeFailures ?? 3;
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.forgetAfterMs = options.forgetAfterMs ?? 15 * 60_000;
  }

  /**
   * Takes a try for `keys`: 0 when it may go ahead (it is counted as a failure until `succeeded`),
   * else how long the longest-waiting key must still wait (nothing is counted then).
   */
  reserve(keys: readonly string[]): Promise<number> {
    const stored = keys.map(storeKey);
    const now = this.clock.now();
    return this.store.change(stored, (records) => {
      const next = new Map<string, ThrottleRecord | undefined>();
      let wait = 0;
      for (const key of stored) {
        const record = this.current(records.get(key), now);
        if (record) wait = Math.max(wait, record.allowedAt - now);
      }
      if (wait > 0) return { next, result: wait };
      for (const key of stored) {
        const record = this.current(records.get(key), now) ?? { failures: 0, lastFailure: now, allowedAt: now };
        const failures = record.failures + 1;
        const over = failures - this.freeFailures;
        next.set(key, { failures, lastFailure: now, allowedAt: over > 0 ? now + Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (over - 1)) : now });
      }
      return { next, result: 0 };
    });
  }

  /** The wait for `keys` now, without taking a try. */
  retryAfterMs(keys: readonly string[]): Promise<number> {
    const stored = keys.map(storeKey);
    const now = this.clock.now();
    return this.store.change(stored, (records) => {
      let wait = 0;
      for (const key of stored) wait = Math.max(wait, (this.current(records.get(key), now)?.allowedAt ?? now) - now);
      return { next: new Map(), result: wait };
    });
  }

  /** The right password: the reserved try and the earlier failures of `keys` are forgotten. */
  succeeded(keys: readonly string[]): Promise<void> {
    const stored = keys.map(storeKey);
    return this.store.change(stored, () => ({ next: new Map(stored.map((k) => [k, undefined])), result: undefined }));
  }

  private current(record: ThrottleRecord | undefined, now: number): ThrottleRecord | undefined {
    if (record && now - record.lastFailure > this.forgetAfterMs && now >= record.allowedAt) return undefined;
    return record;
  }
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

import { randomUUID } from "node:crypto";
import { systemClock } from "../clock";
import type { Database, Migration } from "../db/database";
import { errorMessage } from "../errors";
import { RateLimit, RateLimiter, RequestKind, RequestLimiter, bulkSpacing, callReserve } from "./limiter";

const MIGRATIONS: Migration[] = [
  {
    id: 1,
    description: "rate budgets shared by every instance on the database",
    sql: `
      CREATE TABLE gluework_rate_buckets (
        bucket text PRIMARY KEY,
        paused_until timestamptz,
        next_bulk_at timestamptz);
      CREATE TABLE gluework_rate_slots (
        id bigserial PRIMARY KEY,
        bucket text NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        kind text NOT NULL);
      CREATE INDEX gluework_rate_slots_bucket ON gluework_rate_slots (bucket, started_at);
      CREATE TABLE gluework_rate_callers (
        bucket text NOT NULL,
        caller text NOT NULL,
        seen_at timestamptz NOT NULL,
        PRIMARY KEY (bucket, caller));`,
  },
];

/** A request whose process died is counted this long after it started, then forgotten. */
const ABANDONED_AFTER_MS = 5 * 60_000;
/** A waiting call is known to the others while it asked within this long. */
const CALLER_FRESH_MS = 2_000;
/** How long a limiter whose database could not be opened paces alone before it looks again. */
const DATABASE_RETRY_MS = 10_000;

/** Longest sleep between two looks at the shared window. */
const MAX_POLL_MS = 250;

export interface SharedLimiterOptions {
  /** Who owns the budget: the provider and its client id (`teamleader:<client id>`). */
  bucket: string;
  limit: RateLimit;
  /** The database the instances share; without one, the limiter stays in this process. */
  database: () => Promise<Database>;
  log?: (line: string) => void;
}

/**
 * One provider's rate budget shared by every instance on a PostgreSQL server: each request takes
 * a row in `gluework_rate_slots` under a row lock of its bucket, counting from its start until a
 * full window after it finished, by the database's clock, so all instances see one window. The
 * rules are those of the in-process `RateLimiter`: calls first (a waiting call is registered, and
 * bulk requests hold back while one is), bulk requests spaced evenly and kept out of the last few
 * places of the window, and a server's pause obeyed by all. Should the database fail, it falls
 * back to the in-process limiter.
 * The budget lives in the database, so a node redeployed gets a new one of these and loses nothing.
 */
export class SharedRateLimiter implements RequestLimiter {
  private readonly local: RateLimiter;
  private shared?: Promise<Database | undefined>;
  private migrated?: Promise<unknown>;
  private pausedUntil = 0;

  constructor(private readonly options: SharedLimiterOptions) {
    this.local = processLimiter(options.bucket, options.limit);
  }

  get limit(): RateLimit {
    return this.options.limit;
  }

  async acquire(kind: RequestKind = "call", signal?: AbortSignal): Promise<unknown> {
    const db = await this.database();
    if (!db) return this.local.acquire(kind, signal).then(() => LOCAL);
    const caller = kind === "call" ? randomUUID() : undefined;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const wait = Math.max(0, this.pausedUntil - Date.now());
        if (wait > 0) {
          await systemClock.sleep(Math.min(wait, MAX_POLL_MS), signal);
          continue;
        }
        const answer = await this.tryTake(db, kind, caller);
        if (typeof answer === "string") return { db, id: answer } satisfies SharedSlot;
        await systemClock.sleep(Math.max(10, Math.min(answer, MAX_POLL_MS)) + Math.random() * 20, signal);
      }
    } catch (err) {
      if (signal?.aborted) throw err;
      this.shared = undefined; // a closed or lost database: the next request looks again
      this.options.log?.(`the shared rate budget ${this.options.bucket} could not be read (${errorMessage(err)}); pacing in this process`);
      await this.local.acquire(kind, signal);
      return LOCAL;
    } finally {
      if (caller) db.query("DELETE FROM gluework_rate_callers WHERE bucket = $1 AND caller = $2", [this.options.bucket, caller]).catch(() => undefined);
    }
  }

  release(ticket?: unknown): void {
    if (ticket === LOCAL || !ticket || typeof ticket !== "object") {
      this.local.release();
      return;
    }
    const { db, id } = ticket as SharedSlot;
    db.query("UPDATE gluework_rate_slots SET finished_at = clock_timestamp() WHERE id = $1", [id]).catch((err) =>
      this.options.log?.(`a finished request was not recorded in the shared rate budget: ${errorMessage(err)}`),
    );
  }

  pauseUntil(until: number): void {
    this.local.pauseUntil(until);
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    void this.shared?.then((db) =>
      db
        ?.query(
          "UPDATE gluework_rate_buckets SET paused_until = greatest(paused_until, clock_timestamp() + $2 * interval '1 millisecond') WHERE bucket = $1",
          [this.options.bucket, Math.max(0, until - Date.now())],
        )
        .catch(() => undefined),
    );
  }

  observeQuota(remaining: number | undefined, resetAt: number | undefined): void {
    if (remaining !== undefined && remaining <= 0 && resetAt !== undefined) this.pauseUntil(resetAt);
  }

  private database(): Promise<Database | undefined> {
    this.shared ??= this.options.database().catch(() => {
      // Not there now (starting, or down): pace in this process for a while, then look again.
      setTimeout(() => (this.shared = undefined), DATABASE_RETRY_MS).unref();
      return undefined;
    });
    return this.shared.then(async (db) => {
      if (!db) return undefined;
      this.migrated ??= db.migrate("rate-limits", MIGRATIONS).catch((err) => {
        this.migrated = undefined;
        throw err;
      });
      try {
        await this.migrated;
        return db;
      } catch (err) {
        this.options.log?.(`the shared rate budget is not available (${errorMessage(err)}); pacing in this process`);
        return undefined;
      }
    });
  }

  /** One look at the shared window: a slot's id when granted, otherwise how long to wait (ms). */
  private async tryTake(db: Database, kind: RequestKind, caller: string | undefined): Promise<string | number> {
    const { bucket, limit } = this.options;
    return db.transaction(async (client) => {
      await client.query("INSERT INTO gluework_rate_buckets (bucket) VALUES ($1) ON CONFLICT (bucket) DO NOTHING", [bucket]);
      const { rows: [state] } = await client.query(
        `SELECT coalesce(extract(epoch FROM (paused_until - clock_timestamp())) * 1000, 0) AS pause_ms,
                coalesce(extract(epoch FROM (next_bulk_at - clock_timestamp())) * 1000, 0) AS bulk_ms
           FROM gluework_rate_buckets WHERE bucket = $1 FOR UPDATE`,
        [bucket],
      );
      await client.query(
        "DELETE FROM gluework_rate_slots WHERE bucket = $1 AND (finished_at < clock_timestamp() - $2 * interval '1 millisecond' OR started_at < clock_timestamp() - $3 * interval '1 millisecond')",
        [bucket, limit.windowMs, ABANDONED_AFTER_MS],
      );
      // Finished ones in order of when they leave the window; those in flight do not leave before they finish.
      const { rows: used } = await client.query<{ leaves_ms: number | null; kind: string }>(
        `SELECT extract(epoch FROM (finished_at + $2 * interval '1 millisecond' - clock_timestamp())) * 1000 AS leaves_ms, kind
           FROM gluework_rate_slots WHERE bucket = $1 ORDER BY finished_at NULLS LAST`,
        [bucket, limit.windowMs],
      );
      let callsWaiting = 0;
      if (kind === "bulk") {
        const { rows } = await client.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM gluework_rate_callers WHERE bucket = $1 AND seen_at > clock_timestamp() - $2 * interval '1 millisecond'",
          [bucket, CALLER_FRESH_MS],
        );
        callsWaiting = rows[0]?.n ?? 0;
      }
      const cap = kind === "bulk" ? limit.requests - callReserve(limit) - callsWaiting : limit.requests;
      const inFlight = used.filter((u) => u.leaves_ms === null).length;
      const pause = Number(state.pause_ms);
      const spacing = kind === "bulk" ? Number(state.bulk_ms) : 0;
      const excess = used.length - cap;
      const window = excess >= 0 ? Number(used[excess]?.leaves_ms ?? MAX_POLL_MS) : 0;
      const overInFlight = limit.maxInFlight !== undefined && inFlight >= limit.maxInFlight;
      const wait = Math.max(pause, spacing, window, overInFlight ? MAX_POLL_MS : 0, 0);
      if (wait > 0) {
        if (caller) {
          await client.query(
            "INSERT INTO gluework_rate_callers (bucket, caller, seen_at) VALUES ($1, $2, clock_timestamp()) ON CONFLICT (bucket, caller) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            [bucket, caller],
          );
        }
        return wait;
      }
      if (kind === "bulk") {
        const calls = used.filter((u) => u.kind === "call").length;
        await client.query("UPDATE gluework_rate_buckets SET next_bulk_at = clock_timestamp() + $2 * interval '1 millisecond' WHERE bucket = $1", [bucket, bulkSpacing(limit, calls)]);
      }
      const { rows: [slot] } = await client.query<{ id: string }>("INSERT INTO gluework_rate_slots (bucket, started_at, kind) VALUES ($1, clock_timestamp(), $2) RETURNING id::text AS id", [bucket, kind]);
      return slot!.id;
    });
  }
}

const LOCAL = Symbol("local slot");

interface SharedSlot {
  db: Database;
  id: string;
}

const inProcess = new Map<string, RateLimiter>();

/**
 * The in-process limiter of one budget, shared by every node of this process that uses it; it
 * outlives redeploys, so a new node does not start with an allowance the old one spent.
 */
export function processLimiter(bucket: string, limit: RateLimit): RateLimiter {
  const key = `${bucket}|${limit.requests}/${limit.windowMs}|${limit.maxInFlight ?? ""}`;
  let limiter = inProcess.get(key);
  if (!limiter) {
    limiter = new RateLimiter(limit);
    inProcess.set(key, limiter);
  }
  return limiter;
}

/**
 * The limiter of one provider's budget (`bucket`: provider and client id): shared through the
 * database when instances have one, else the one every node of this process shares.
 */
export function budgetLimiter(bucket: string, limit: RateLimit, database?: () => Promise<Database>, log?: (line: string) => void): RequestLimiter {
  return database ? new SharedRateLimiter({ bucket, limit, database, log }) : processLimiter(bucket, limit);
}

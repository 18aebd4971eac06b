import type { Database, Migration } from "../core/db/database";
import type { Observation } from "./out-of-office";

export const WATCH_LIST_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "out-of-office watch list",
    sql: `CREATE TABLE IF NOT EXISTS gluework_ooo_watch (
      list_key text NOT NULL,
      user_id text NOT NULL,
      email text NOT NULL,
      display_name text,
      added_at timestamptz NOT NULL DEFAULT now(),
      observation jsonb,
      observed_at timestamptz,
      PRIMARY KEY (list_key, user_id)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS gluework_ooo_watch_email ON gluework_ooo_watch (list_key, lower(email));`,
  },
  {
    id: 2,
    description: "one polling cycle of a watch list at a time, across instances",
    sql: `CREATE TABLE IF NOT EXISTS gluework_ooo_cycle (
      list_key text PRIMARY KEY,
      holder text NOT NULL,
      holder_name text NOT NULL,
      running_until timestamptz,
      next_at timestamptz NOT NULL,
      finished_at timestamptz
    );`,
  },
];

/** Who polls a watch list now, or polled it last, when this instance stands aside. */
export interface CycleHolder {
  /** The instance ("host pid 123"). */
  by: string;
  /** A cycle of it is under way. */
  running: boolean;
  finishedAt: Date | null;
}

export interface WatchEntry {
  userId: string;
  email: string;
  displayName: string | null;
  observation: Observation | null;
}

/**
 * The watched users of one monitor and the last thing seen of each, in the platform's database:
 * a restart keeps the list and knows what it already reported.
 */
export class WatchListStore {
  private ready?: Promise<unknown>;

  constructor(
    readonly db: Database,
    readonly listKey: string,
  ) {}

  async list(): Promise<WatchEntry[]> {
    await this.migrated();
    const { rows } = await this.db.query<{ user_id: string; email: string; display_name: string | null; observation: Observation | null }>(
      "SELECT user_id, email, display_name, observation FROM gluework_ooo_watch WHERE list_key = $1 ORDER BY added_at, email",
      [this.listKey],
    );
    return rows.map((r) => ({ userId: r.user_id, email: r.email, displayName: r.display_name, observation: r.observation }));
  }

  /**
   * Adds (or refreshes) a user; an address that moved to another user id replaces the old entry.
   * True when the user was not watched yet (another instance may have added it a moment before).
   */
  async add(entry: WatchEntry): Promise<boolean> {
    await this.migrated();
    return this.db.transaction(async (client) => {
      await client.query("DELETE FROM gluework_ooo_watch WHERE list_key = $1 AND lower(email) = lower($2) AND user_id <> $3", [this.listKey, entry.email, entry.userId]);
      const { rows } = await client.query<{ inserted: boolean }>(
        `INSERT INTO gluework_ooo_watch (list_key, user_id, email, display_name, observation, observed_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::jsonb IS NULL THEN NULL ELSE now() END)
         ON CONFLICT (list_key, user_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
           observation = COALESCE(EXCLUDED.observation, gluework_ooo_watch.observation),
           observed_at = COALESCE(EXCLUDED.observed_at, gluework_ooo_watch.observed_at)
         RETURNING (xmax = 0) AS inserted`,
        [this.listKey, entry.userId, entry.email, entry.displayName, entry.observation ? JSON.stringify(entry.observation) : null],
      );
      return rows[0]?.inserted === true;
    });
  }

  /** Removes a user by address; true when it was watched. */
  async remove(email: string): Promise<boolean> {
    await this.migrated();
    const { rowCount } = await this.db.query("DELETE FROM gluework_ooo_watch WHERE list_key = $1 AND lower(email) = lower($2)", [this.listKey, email]);
    return (rowCount ?? 0) > 0;
  }

  /**
   * Stores what was seen, for the users whose observation changed, each only where the stored one
   * is still `previous`: of two instances that saw the same change, one stores it. Returns the
   * users stored, whose changes are this instance's to report.
   */
  async saveObservations(entries: Array<{ userId: string; observation: Observation; previous: Observation | null }>): Promise<Set<string>> {
    if (entries.length === 0) return new Set();
    await this.migrated();
    const { rows } = await this.db.query<{ user_id: string }>(
      `UPDATE gluework_ooo_watch AS w SET observation = v.observation, observed_at = now()
       FROM jsonb_to_recordset($2::jsonb) AS v(user_id text, observation jsonb, previous jsonb)
       WHERE w.list_key = $1 AND w.user_id = v.user_id AND w.observation IS NOT DISTINCT FROM v.previous
       RETURNING w.user_id`,
      [this.listKey, JSON.stringify(entries.map((e) => ({ user_id: e.userId, observation: e.observation, ...(e.previous ? { previous: e.previous } : {}) })))],
    );
    return new Set(rows.map((r) => r.user_id));
  }

  /**
   * The right to run this list's polling cycle, or who has it. A cycle is due once `next_at` has
   * passed, or will within `earlyMs` (any time when `due` is false: a poll asked for); it is held for `leaseMs` (renewed while
   * it runs), so a cycle of a process that died is taken over once the lease ran out.
   */
  async claimCycle(holder: string, name: string, opts: { leaseMs: number; nextInMs: number; due: boolean; earlyMs?: number }): Promise<CycleHolder | null> {
    await this.migrated();
    const { rows } = await this.db.query(
      `INSERT INTO gluework_ooo_cycle AS c (list_key, holder, holder_name, running_until, next_at)
       VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 millisecond', clock_timestamp() + $5 * interval '1 millisecond')
       ON CONFLICT (list_key) DO UPDATE SET holder = EXCLUDED.holder, holder_name = EXCLUDED.holder_name, running_until = EXCLUDED.running_until, next_at = EXCLUDED.next_at
         WHERE (c.running_until IS NULL OR c.running_until < clock_timestamp()) AND (NOT $6 OR c.next_at <= clock_timestamp() + $7 * interval '1 millisecond')
       RETURNING list_key`,
      [this.listKey, holder, name, opts.leaseMs, opts.nextInMs, opts.due, opts.earlyMs ?? 0],
    );
    if (rows.length > 0) return null;
    const { rows: other } = await this.db.query<{ holder_name: string; running: boolean; finished_at: Date | null }>(
      "SELECT holder_name, coalesce(running_until > clock_timestamp(), false) AS running, finished_at FROM gluework_ooo_cycle WHERE list_key = $1",
      [this.listKey],
    );
    return { by: other[0]?.holder_name ?? "another instance", running: other[0]?.running ?? false, finishedAt: other[0]?.finished_at ?? null };
  }

  /** Keeps a running cycle's lease from running out. */
  async renewCycle(holder: string, leaseMs: number): Promise<void> {
    await this.db.query("UPDATE gluework_ooo_cycle SET running_until = clock_timestamp() + $3 * interval '1 millisecond' WHERE list_key = $1 AND holder = $2 AND running_until IS NOT NULL", [
      this.listKey,
      holder,
      leaseMs,
    ]);
  }

  /** The cycle is over: the next one is due at the time set when it was claimed. */
  async endCycle(holder: string): Promise<void> {
    await this.db.query("UPDATE gluework_ooo_cycle SET running_until = NULL, finished_at = clock_timestamp() WHERE list_key = $1 AND holder = $2", [this.listKey, holder]);
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("ooo-watch-list", WATCH_LIST_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

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
];

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
    private readonly db: Database,
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

  /** Adds (or refreshes) a user; an address that moved to another user id replaces the old entry. */
  async add(entry: WatchEntry): Promise<void> {
    await this.migrated();
    await this.db.transaction(async (client) => {
      await client.query("DELETE FROM gluework_ooo_watch WHERE list_key = $1 AND lower(email) = lower($2) AND user_id <> $3", [this.listKey, entry.email, entry.userId]);
      await client.query(
        `INSERT INTO gluework_ooo_watch (list_key, user_id, email, display_name, observation, observed_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::jsonb IS NULL THEN NULL ELSE now() END)
         ON CONFLICT (list_key, user_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
           observation = COALESCE(EXCLUDED.observation, gluework_ooo_watch.observation),
           observed_at = COALESCE(EXCLUDED.observed_at, gluework_ooo_watch.observed_at)`,
        [this.listKey, entry.userId, entry.email, entry.displayName, entry.observation ? JSON.stringify(entry.observation) : null],
      );
    });
  }

  /** Removes a user by address; true when it was watched. */
  async remove(email: string): Promise<boolean> {
    await this.migrated();
    const { rowCount } = await this.db.query("DELETE FROM gluework_ooo_watch WHERE list_key = $1 AND lower(email) = lower($2)", [this.listKey, email]);
    return (rowCount ?? 0) > 0;
  }

  /** Stores what the last poll saw, for the users whose observation changed. */
  async saveObservations(entries: Array<{ userId: string; observation: Observation }>): Promise<void> {
    if (entries.length === 0) return;
    await this.migrated();
    await this.db.query(
      `UPDATE gluework_ooo_watch AS w SET observation = v.observation, observed_at = now()
       FROM jsonb_to_recordset($2::jsonb) AS v(user_id text, observation jsonb)
       WHERE w.list_key = $1 AND w.user_id = v.user_id`,
      [this.listKey, JSON.stringify(entries.map((e) => ({ user_id: e.userId, observation: e.observation })))],
    );
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("ooo-watch-list", WATCH_LIST_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

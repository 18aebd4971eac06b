import { randomUUID } from "node:crypto";
import { instanceName } from "../instance";
import type { Database, Migration } from "./database";

const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "work done once across the instances on the database",
    sql: `CREATE TABLE IF NOT EXISTS gluework_once (
      job text NOT NULL,
      run_key text NOT NULL,
      holder text NOT NULL,
      holder_name text NOT NULL,
      state text NOT NULL,
      lease_until timestamptz,
      started_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      outcome jsonb,
      PRIMARY KEY (job, run_key)
    );`,
  },
];

export interface OnceRules {
  /** How long a run holds its key without news; renewed while it runs, so a dead instance's run can be taken over after it. */
  leaseMs?: number;
  /** A finished run may be run again this long after it finished (never when not given). */
  againAfterMs?: number;
  /** The instance that finished a run may run it again at once (a single instance behaves as before). */
  againHere?: boolean;
}

/** A run this instance holds: end it with what it came to (kept for those who stand aside), or as failed (it may run again). */
export interface OnceClaim {
  done(outcome?: unknown): Promise<void>;
  failed(): Promise<void>;
}

/** Another instance has the run: who, whether it still runs, and what it came to. */
export interface DoneElsewhere {
  by: string;
  running: boolean;
  finishedAt: Date | null;
  outcome: unknown;
}

const DEFAULT_LEASE_MS = 60_000;

/**
 * Runs of one job (a node's nightly export, its provisioning requests) that must happen once
 * across every instance on a database: a row per run key, claimed with a lease that the holder
 * renews while it works, ended as done (with its outcome) or failed (free to run again).
 */
export class OnceRuns {
  private ready?: Promise<unknown>;

  constructor(
    private readonly db: Database,
    readonly job: string,
  ) {}

  /** The run `key` for this instance, or who has it. */
  async claim(key: string, rules: OnceRules = {}): Promise<{ claim: OnceClaim } | { elsewhere: DoneElsewhere }> {
    await this.migrated();
    const holder = randomUUID();
    const leaseMs = rules.leaseMs ?? DEFAULT_LEASE_MS;
    const { rows } = await this.db.query(
      `INSERT INTO gluework_once AS o (job, run_key, holder, holder_name, state, lease_until)
       VALUES ($1, $2, $3, $4, 'running', clock_timestamp() + $5 * interval '1 millisecond')
       ON CONFLICT (job, run_key) DO UPDATE SET holder = EXCLUDED.holder, holder_name = EXCLUDED.holder_name, state = 'running',
         lease_until = EXCLUDED.lease_until, started_at = clock_timestamp(), finished_at = NULL, outcome = NULL
       WHERE (o.state = 'running' AND o.lease_until < clock_timestamp())
          OR o.state = 'failed'
          OR (o.state = 'done' AND $6::float8 IS NOT NULL AND o.finished_at < clock_timestamp() - $6::float8 * interval '1 millisecond')
          OR (o.state = 'done' AND $7 AND o.holder_name = EXCLUDED.holder_name)
       RETURNING run_key`,
      [this.job, key, holder, instanceName(), leaseMs, rules.againAfterMs ?? null, rules.againHere ?? false],
    );
    if (rows.length === 0) {
      const { rows: found } = await this.db.query<{ holder_name: string; running: boolean; finished_at: Date | null; outcome: unknown }>(
        "SELECT holder_name, state = 'running' AS running, finished_at, outcome FROM gluework_once WHERE job = $1 AND run_key = $2",
        [this.job, key],
      );
      const other = found[0];
      return { elsewhere: { by: other?.holder_name ?? "another instance", running: other?.running ?? true, finishedAt: other?.finished_at ?? null, outcome: other?.outcome ?? null } };
    }
    const renew = setInterval(() => {
      this.db
        .query("UPDATE gluework_once SET lease_until = clock_timestamp() + $4 * interval '1 millisecond' WHERE job = $1 AND run_key = $2 AND holder = $3 AND state = 'running'", [this.job, key, holder, leaseMs])
        .catch(() => undefined); // the next renewal tries again; a lease that ran out lets another instance run it
    }, leaseMs / 3);
    renew.unref?.();
    const end = async (state: "done" | "failed", outcome?: unknown) => {
      clearInterval(renew);
      await this.db.query(
        "UPDATE gluework_once SET state = $4, lease_until = NULL, finished_at = clock_timestamp(), outcome = $5 WHERE job = $1 AND run_key = $2 AND holder = $3",
        [this.job, key, holder, state, outcome === undefined ? null : JSON.stringify(outcome)],
      );
    };
    return { claim: { done: (outcome) => end("done", outcome), failed: () => end("failed") } };
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("once", MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

import { EventEmitter } from "node:events";
import type { Database, Migration } from "./db/database";
import { InputError, errorMessage } from "./errors";
import { instanceName } from "./instance";
import { redact } from "./redact";
import { RunCounts, runCounts } from "./run-counts";

export type { RunCounts } from "./run-counts";

/**
 * The record of every pipeline run: what ran (node, pipeline, key), where (instance), when, how it
 * ended and what it did (counts), kept in the flow's database for a set time and announced in
 * this process (`onRun`) and to every instance on the database (`RunLog.subscribe`).
 *
 * A run is measured in memory and written once, when it ends, in one statement that nobody waits
 * for: recording never slows a run, and a database that cannot take the record costs the record,
 * never the run.
 *
 * A pipeline node records its runs so (the recorder built once, in the node; see core/node/runs.ts):
 *
 *   const recorder = runRecorder(node, life, "call-logs", () => provider.database());
 *   const run = recorder.start("2026-11-22");                   // the run's key
 *   for await (const batch of callLogsForDay(client.withCounts(run.counts), …)) …  // requests, 429s, retries, token refreshes
 *   run.counts.rows = calls;
 *   run.end("success");                                         // or run.end("failure", err), or run.track(work)
 *
 * and the others read them: `onRun(listener)` for the runs of this process as they end,
 * `runLog(db).subscribe(listener)` for those of every instance on the database, and
 * `runLog(db).latestPerNode()`, `.runsPerDay()`, `.lastErrors()`, `.list()` for the history.
 */

/** How a run ended. `partial`: done, but not for every item; `skipped`: nothing to do here (done elsewhere, already running). */
export type RunOutcome = "success" | "failure" | "partial" | "skipped";
export const RUN_OUTCOMES: readonly RunOutcome[] = ["success", "failure", "partial", "skipped"];

/** The pipelines this package ships, by the name their runs are recorded under. */
export const PIPELINES = ["call-logs", "provisioning", "teamleader-sync", "ooo-monitor", "mail-relay", "board-audit"] as const;
export type Pipeline = (typeof PIPELINES)[number];

/** Which node a recorder records for, and the pipeline its runs belong to. */
export interface RunSubject {
  nodeId: string;
  nodeName?: string;
  nodeType: string;
  /** One of PIPELINES for the nodes of this package; a blob-csv-writer records under the name its settings give. */
  pipeline: Pipeline | (string & {});
}

/** Why a run failed, as a user reads it: the message (redacted), its code, its cause and its fix when it has them. */
export interface RunError {
  message: string;
  code: string | null;
  cause: string | null;
  fix: string | null;
}

/** One run, as stored in `gluework_runs` and announced. */
export interface RunRecord {
  /** The row's id (a bigint, as text); null when the run was not stored (no database, or it could not be reached). */
  id: string | null;
  nodeId: string;
  nodeName: string;
  nodeType: string;
  pipeline: string;
  /** What the run was about: the day of a call-log export, the Teamleader resource, the request id. */
  key: string | null;
  /** The instance that ran it: `<host> pid <pid>`. */
  instance: string;
  startedAt: Date;
  endedAt: Date;
  durationMs: number;
  outcome: RunOutcome;
  counts: RunCounts;
  error: RunError | null;
  /** What the pipeline adds about the run (a sync's mode and inserts, the relay's failed mails). */
  details: Record<string, unknown> | null;
}

/** A run measured elsewhere (the relay's delivery passes), recorded as it was. */
export interface FinishedRun {
  key?: string | null;
  startedAt: Date;
  endedAt: Date;
  outcome: RunOutcome;
  counts?: Partial<RunCounts>;
  error?: unknown;
  details?: Record<string, unknown>;
}

/** The longest a record's write may take before it counts as not stored. */
const SAVE_DEADLINE_MS = 10_000;
const MAX_MESSAGE = 2000;
const MAX_PART = 1000;
const MAX_DETAILS = 8000;

/** Why `err` failed a run, redacted: its message, code, the message of its cause and its fix. */
export function runError(err: unknown): RunError | null {
  if (err === undefined || err === null) return null;
  const e = err as { code?: unknown; cause?: unknown; fix?: unknown };
  const cause = e.cause instanceof Error ? e.cause.message : typeof e.cause === "string" ? e.cause : null;
  return {
    message: errorMessage(err).slice(0, MAX_MESSAGE),
    code: typeof e.code === "string" ? e.code : null,
    cause: cause ? redact(cause).slice(0, MAX_PART) : null,
    fix: typeof e.fix === "string" && e.fix ? redact(e.fix).slice(0, MAX_PART) : null,
  };
}

/**
 * One run under way: its counts fill as it works, `end` measures it and hands it to be recorded
 * (once; later calls return the first record). `saved` settles with the record as stored and
 * announced, its id set, or null when it could not be stored; it never rejects.
 */
export class Run {
  readonly counts: RunCounts = runCounts();
  readonly startedAt: Date;
  /** What the pipeline wants kept beside the counts; set before `end`. */
  details: Record<string, unknown> | undefined;
  private record?: RunRecord;
  private settle!: (record: RunRecord) => void;
  readonly saved: Promise<RunRecord>;

  constructor(
    private readonly subject: RunSubject,
    /** What the run is about; may be set before `end` when it is known only then (the file written). */
    public key: string | null,
    private readonly finish: (record: RunRecord, saved: (record: RunRecord) => void) => void,
    startedAt = new Date(),
  ) {
    this.startedAt = startedAt;
    this.saved = new Promise((resolve) => (this.settle = resolve));
  }

  get ended(): boolean {
    return this.record !== undefined;
  }

  end(outcome: RunOutcome, error?: unknown): RunRecord {
    if (this.record) return this.record;
    const endedAt = new Date();
    this.record = measured(this.subject, { key: this.key, startedAt: this.startedAt, endedAt, outcome, counts: this.counts, error, details: this.details });
    this.finish(this.record, this.settle);
    return this.record;
  }

  /**
   * Runs `work` as this run: it ends as `outcomeOf(value)` (success by default) when `work`
   * resolves, unless `work` ended it itself (skipped), and as failure when it throws (partial for
   * an error marked partial), the error rethrown.
   */
  async track<T>(work: (run: Run) => Promise<T>, outcomeOf?: (value: T) => RunOutcome): Promise<T> {
    let value: T;
    try {
      value = await work(this);
    } catch (err) {
      this.end((err as { partial?: unknown })?.partial === true ? "partial" : "failure", err);
      throw err;
    }
    if (!this.ended) this.end(outcomeOf?.(value) ?? "success");
    return value;
  }
}

export interface RunRecorderOptions {
  /** Where the runs are kept; undefined (or a failure) when there is none: the runs are then only announced. */
  database(): Promise<Database> | Database | undefined;
  /** One line when runs stop being recorded, and one when they are again. */
  warn(line: string): void;
  /** Each record's write, for a closing node to wait for (Lifecycle.work). */
  track?(write: Promise<unknown>): void;
}

/**
 * Records the runs of one node. `start` begins a run in memory; its end is written in the
 * background and announced. A failed write is logged once per outage, never thrown.
 */
export class RunRecorder {
  private failing = false;
  private lost = 0;

  constructor(
    readonly subject: RunSubject,
    private readonly options: RunRecorderOptions,
  ) {}

  start(key?: string | null, startedAt?: Date): Run {
    return new Run(this.subject, key ?? null, (record, saved) => this.keep(record, saved), startedAt);
  }

  /** A run measured elsewhere, recorded as it was. */
  record(run: FinishedRun): Promise<RunRecord> {
    const record = measured(this.subject, run);
    return new Promise((resolve) => this.keep(record, resolve));
  }

  private keep(record: RunRecord, saved: (record: RunRecord) => void): void {
    const write = this.store(record).then((stored) => {
      announce(stored);
      saved(stored);
    });
    this.options.track?.(write);
  }

  private async store(record: RunRecord): Promise<RunRecord> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const db = await this.options.database();
      if (!db) return record;
      // A database that hangs holds no record (nor a closing node) for long: it counts as away.
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${SAVE_DEADLINE_MS / 1000} s`)), SAVE_DEADLINE_MS);
      });
      const id = await Promise.race([runLog(db).save(record), deadline]);
      if (this.failing) {
        this.failing = false;
        this.options.warn(`runs are recorded again${this.lost ? ` (${this.lost} could not be)` : ""}`);
        this.lost = 0;
      }
      return { ...record, id };
    } catch (err) {
      this.lost++;
      if (!this.failing) {
        this.failing = true;
        this.options.warn(`a run could not be recorded (${errorMessage(err)}); the pipeline goes on, and its runs are recorded again once the database answers`);
      }
      return record;
    } finally {
      clearTimeout(timer);
    }
  }
}

function measured(subject: RunSubject, run: FinishedRun): RunRecord {
  return {
    id: null,
    nodeId: subject.nodeId,
    nodeName: subject.nodeName ?? "",
    nodeType: subject.nodeType,
    pipeline: subject.pipeline,
    key: run.key ?? null,
    instance: instanceName(),
    startedAt: run.startedAt,
    endedAt: run.endedAt,
    durationMs: Math.max(0, run.endedAt.getTime() - run.startedAt.getTime()),
    outcome: run.outcome,
    counts: { ...runCounts(), ...run.counts },
    error: runError(run.error),
    details: fitDetails(run.details),
  };
}

function fitDetails(details: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (!details) return null;
  try {
    const text = JSON.stringify(details);
    return text.length <= MAX_DETAILS ? (JSON.parse(text) as Record<string, unknown>) : { truncated: true };
  } catch {
    return null;
  }
}

// In-process announcements: every run this process recorded (stored or not).
const events = new EventEmitter();
events.setMaxListeners(0);

/** Calls `listener` with every run this process records, once it is stored (or could not be); returns a function that stops it. */
export function onRun(listener: (record: RunRecord) => void): () => void {
  const guarded = (record: RunRecord) => {
    try {
      listener(record);
    } catch {
      // a listener's failure is its own: the next listener and the next run go on
    }
  };
  events.on("run", guarded);
  return () => events.off("run", guarded);
}

function announce(record: RunRecord): void {
  events.emit("run", record);
}

/** The notification channel that tells every instance on a database of a stored run (payload: its id). */
export const RUNS_CHANNEL = "gluework_runs";

const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "a record of every pipeline run, and each node's latest",
    sql: `CREATE TABLE IF NOT EXISTS gluework_runs (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      node_id text NOT NULL,
      node_name text NOT NULL DEFAULT '',
      node_type text NOT NULL,
      pipeline text NOT NULL,
      run_key text,
      instance text NOT NULL,
      started_at timestamptz NOT NULL,
      ended_at timestamptz NOT NULL,
      outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'partial', 'skipped')),
      rows bigint NOT NULL DEFAULT 0,
      pages integer NOT NULL DEFAULT 0,
      requests integer NOT NULL DEFAULT 0,
      http_429 integer NOT NULL DEFAULT 0,
      retries integer NOT NULL DEFAULT 0,
      token_refreshes integer NOT NULL DEFAULT 0,
      error_message text,
      error_code text,
      error_cause text,
      error_fix text,
      details jsonb
    );
    CREATE INDEX IF NOT EXISTS gluework_runs_node ON gluework_runs (node_id, started_at);
    CREATE INDEX IF NOT EXISTS gluework_runs_pipeline ON gluework_runs (pipeline, started_at);
    CREATE INDEX IF NOT EXISTS gluework_runs_started ON gluework_runs (started_at);
    CREATE INDEX IF NOT EXISTS gluework_runs_errors ON gluework_runs (started_at) WHERE outcome IN ('failure', 'partial');
    CREATE TABLE IF NOT EXISTS gluework_run_nodes (
      node_id text PRIMARY KEY,
      node_name text NOT NULL DEFAULT '',
      node_type text NOT NULL,
      pipeline text NOT NULL,
      last_run_id bigint,
      last_started_at timestamptz,
      last_outcome text,
      last_success_at timestamptz,
      last_failure_at timestamptz,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS gluework_runs_pruned (
      id integer PRIMARY KEY CHECK (id = 1),
      pruned_at timestamptz NOT NULL,
      pruned_by text NOT NULL
    );
    INSERT INTO gluework_runs_pruned (id, pruned_at, pruned_by) VALUES (1, '-infinity', '') ON CONFLICT (id) DO NOTHING;`,
  },
];

/** How long runs are kept unless the postgres-database node says otherwise. */
export const DEFAULT_KEEP_DAYS = 30;
/** How often, at most, the instances on one database prune between them. */
const PRUNE_EVERY_MS = 3600_000;
/** Rows one prune statement deletes: a backlog goes in steps, each short. */
const PRUNE_BATCH = 10_000;

/** Per node: its latest run (skipped ones aside) and when it last succeeded and failed, kept beyond the runs' retention. */
export interface NodeRuns {
  nodeId: string;
  nodeName: string;
  nodeType: string;
  pipeline: string;
  /** The latest run that was not skipped; null when it has been pruned. */
  last: RunRecord | null;
  lastStartedAt: Date | null;
  lastOutcome: RunOutcome | null;
  lastSuccessAt: Date | null;
  lastFailureAt: Date | null;
}

/** Runs of one day (in `timeZone`), of one pipeline (and node, when asked per node). */
export interface RunDay {
  /** YYYY-MM-DD in the time zone asked for. */
  day: string;
  pipeline: string;
  /** Set when grouped by node. */
  nodeId?: string;
  runs: number;
  outcomes: Record<RunOutcome, number>;
  counts: RunCounts;
  durationMs: number;
}

export interface RunFilter {
  nodeId?: string;
  pipeline?: string;
  outcomes?: readonly RunOutcome[];
  /** Runs that started at or after this. */
  since?: Date;
  /** Runs that started before this. */
  until?: Date;
  /** The most to return, newest first (100 by default, 1,000 at most). */
  limit?: number;
}

/** The columns a RunRecord is read from, of the table aliased `t` when given. */
function columns(t?: string): string {
  const p = t ? `${t}.` : "";
  return `${p}id::text AS id, ${p}node_id, ${p}node_name, ${p}node_type, ${p}pipeline, ${p}run_key, ${p}instance, ${p}started_at, ${p}ended_at, ${p}outcome,
    ${p}rows::float8 AS rows, ${p}pages, ${p}requests, ${p}http_429, ${p}retries, ${p}token_refreshes, ${p}error_message, ${p}error_code, ${p}error_cause, ${p}error_fix, ${p}details`;
}
const COLUMNS = columns();

/**
 * The runs of one database: `save` writes one (and the node's latest) in one statement and tells
 * the other instances; the reads serve the health page and the metrics; `prune` drops runs older
 * than `keepDays`, once an hour across all instances. One per Database (`runLog(db)`).
 */
export class RunLog {
  keepDays = DEFAULT_KEEP_DAYS;
  private ready?: Promise<unknown>;
  private nextPrune = 0;
  private readonly listeners = new Set<(record: RunRecord) => void>();
  private listening?: Promise<() => void>;
  private lastSeenId = 0n;

  constructor(private readonly db: Database) {}

  /** Stores `record` and tells every instance on the database; resolves with its id. */
  async save(record: RunRecord): Promise<string> {
    await this.migrated();
    const c = record.counts;
    const e = record.error;
    const { rows } = await this.db.query<{ id: string }>(
      `WITH r AS (
         INSERT INTO gluework_runs (node_id, node_name, node_type, pipeline, run_key, instance, started_at, ended_at, outcome,
           rows, pages, requests, http_429, retries, token_refreshes, error_message, error_code, error_cause, error_fix, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
         RETURNING id, node_id, node_name, node_type, pipeline, started_at, outcome
       ), n AS (
         INSERT INTO gluework_run_nodes AS s (node_id, node_name, node_type, pipeline, last_run_id, last_started_at, last_outcome, last_success_at, last_failure_at)
         SELECT node_id, node_name, node_type, pipeline,
           CASE WHEN outcome <> 'skipped' THEN id END, CASE WHEN outcome <> 'skipped' THEN started_at END, CASE WHEN outcome <> 'skipped' THEN outcome END,
           CASE WHEN outcome = 'success' THEN started_at END, CASE WHEN outcome = 'failure' THEN started_at END
         FROM r
         ON CONFLICT (node_id) DO UPDATE SET
           node_name = EXCLUDED.node_name, node_type = EXCLUDED.node_type, pipeline = EXCLUDED.pipeline, updated_at = now(),
           last_run_id = CASE WHEN EXCLUDED.last_run_id IS NOT NULL AND (s.last_started_at IS NULL OR EXCLUDED.last_started_at >= s.last_started_at) THEN EXCLUDED.last_run_id ELSE s.last_run_id END,
           last_outcome = CASE WHEN EXCLUDED.last_run_id IS NOT NULL AND (s.last_started_at IS NULL OR EXCLUDED.last_started_at >= s.last_started_at) THEN EXCLUDED.last_outcome ELSE s.last_outcome END,
           last_started_at = GREATEST(s.last_started_at, EXCLUDED.last_started_at),
           last_success_at = GREATEST(s.last_success_at, EXCLUDED.last_success_at),
           last_failure_at = GREATEST(s.last_failure_at, EXCLUDED.last_failure_at)
       )
       SELECT id::text AS id, pg_notify($21, id::text) FROM r`,
      [
        record.nodeId,
        record.nodeName,
        record.nodeType,
        record.pipeline,
        record.key,
        record.instance,
        record.startedAt,
        record.endedAt,
        record.outcome,
        c.rows,
        c.pages,
        c.requests,
        c.http429,
        c.retries,
        c.tokenRefreshes,
        e?.message ?? null,
        e?.code ?? null,
        e?.cause ?? null,
        e?.fix ?? null,
        record.details === null ? null : JSON.stringify(record.details),
        RUNS_CHANNEL,
      ],
    );
    if (Date.now() >= this.nextPrune) {
      this.nextPrune = Date.now() + PRUNE_EVERY_MS;
      // In the background: the instance whose turn it is prunes; a failure waits for the next turn.
      this.prune().catch(() => (this.nextPrune = Date.now() + PRUNE_EVERY_MS / 12));
    }
    return rows[0]!.id;
  }

  /**
   * Drops the runs that started more than `keepDays` ago, in steps of 10,000 rows. Once per hour
   * across every instance on the database: the one that moves the shared mark prunes, the others
   * return 0 at once (`force` ignores the hour, for tests and an operator).
   */
  async prune(options: { force?: boolean } = {}): Promise<number> {
    await this.migrated();
    const { rows: claimed } = await this.db.query(
      `UPDATE gluework_runs_pruned SET pruned_at = now(), pruned_by = $2
       WHERE id = 1 AND ($3 OR pruned_at < now() - $1 * interval '1 millisecond') RETURNING id`,
      [PRUNE_EVERY_MS, instanceName(), options.force === true],
    );
    if (claimed.length === 0) return 0;
    let deleted = 0;
    for (;;) {
      const { rowCount } = await this.db.query(
        `DELETE FROM gluework_runs WHERE id IN (
           SELECT id FROM gluework_runs WHERE started_at < now() - $1 * interval '1 day' ORDER BY started_at LIMIT $2)`,
        [this.keepDays, PRUNE_BATCH],
      );
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < PRUNE_BATCH) return deleted;
    }
  }

  /** One run by id, or undefined. */
  async get(id: string): Promise<RunRecord | undefined> {
    await this.migrated();
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM gluework_runs WHERE id = $1`, [id]);
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  /** Runs that match `filter`, newest first. */
  async list(filter: RunFilter = {}): Promise<RunRecord[]> {
    await this.migrated();
    const { where, params } = conditions(filter);
    params.push(Math.min(1000, Math.max(1, filter.limit ?? 100)));
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM gluework_runs ${where} ORDER BY started_at DESC, id DESC LIMIT $${params.length}`, params);
    return rows.map(fromRow);
  }

  /** The latest failures and partial runs, newest first, with their cause and fix. */
  lastErrors(filter: Omit<RunFilter, "outcomes"> = {}): Promise<RunRecord[]> {
    return this.list({ limit: 20, ...filter, outcomes: ["failure", "partial"] });
  }

  /** Every node that recorded a run: its latest (skipped ones aside), last success and last failure. */
  async latestPerNode(filter: { pipeline?: string } = {}): Promise<NodeRuns[]> {
    await this.migrated();
    const params: unknown[] = [];
    const where = filter.pipeline ? (params.push(filter.pipeline), "WHERE n.pipeline = $1") : "";
    const { rows } = await this.db.query(
      `SELECT n.node_id AS n_node_id, n.node_name AS n_node_name, n.node_type AS n_node_type, n.pipeline AS n_pipeline,
         n.last_started_at AS n_last_started_at, n.last_outcome AS n_last_outcome, n.last_success_at AS n_last_success_at, n.last_failure_at AS n_last_failure_at,
         ${columns("r")}
       FROM gluework_run_nodes n LEFT JOIN gluework_runs r ON r.id = n.last_run_id ${where}
       ORDER BY n.pipeline, n.node_name, n.node_id`,
      params,
    );
    return rows.map((row) => ({
      nodeId: row.n_node_id,
      nodeName: row.n_node_name,
      nodeType: row.n_node_type,
      pipeline: row.n_pipeline,
      last: row.id ? fromRow(row) : null,
      lastStartedAt: row.n_last_started_at,
      lastOutcome: row.n_last_outcome,
      lastSuccessAt: row.n_last_success_at,
      lastFailureAt: row.n_last_failure_at,
    }));
  }

  /**
   * Runs per day over the last `days` (30 by default), in `timeZone` (UTC by default), per
   * pipeline or per node: how many, by outcome, and the sums of their counts and durations.
   */
  async runsPerDay(options: { days?: number; timeZone?: string; by?: "pipeline" | "node"; pipeline?: string; nodeId?: string } = {}): Promise<RunDay[]> {
    await this.migrated();
    const params: unknown[] = [options.timeZone ?? "UTC", Math.max(1, options.days ?? 30)];
    const filters = ["started_at >= date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1 - ($2 - 1) * interval '1 day'"];
    if (options.pipeline) filters.push(`pipeline = $${params.push(options.pipeline)}`);
    if (options.nodeId) filters.push(`node_id = $${params.push(options.nodeId)}`);
    const byNode = options.by === "node";
    const { rows } = await this.db.query(
      `SELECT to_char(started_at AT TIME ZONE $1, 'YYYY-MM-DD') AS day, pipeline${byNode ? ", node_id" : ""},
         count(*)::int AS runs,
         count(*) FILTER (WHERE outcome = 'success')::int AS success, count(*) FILTER (WHERE outcome = 'failure')::int AS failure,
         count(*) FILTER (WHERE outcome = 'partial')::int AS partial, count(*) FILTER (WHERE outcome = 'skipped')::int AS skipped,
         sum(rows)::float8 AS rows, sum(pages)::float8 AS pages, sum(requests)::float8 AS requests, sum(http_429)::float8 AS http_429,
         sum(retries)::float8 AS retries, sum(token_refreshes)::float8 AS token_refreshes,
         (sum(extract(epoch FROM ended_at - started_at)) * 1000)::float8 AS duration_ms
       FROM gluework_runs WHERE ${filters.join(" AND ")}
       GROUP BY 1, 2${byNode ? ", 3" : ""} ORDER BY 1, 2${byNode ? ", 3" : ""}`,
      params,
    );
    return rows.map((r) => ({
      day: r.day,
      pipeline: r.pipeline,
      ...(byNode ? { nodeId: r.node_id } : {}),
      runs: r.runs,
      outcomes: { success: r.success, failure: r.failure, partial: r.partial, skipped: r.skipped },
      counts: { rows: r.rows, pages: r.pages, requests: r.requests, http429: r.http_429, retries: r.retries, tokenRefreshes: r.token_refreshes },
      durationMs: Math.round(r.duration_ms),
    }));
  }

  /**
   * Calls `listener` with every run stored on this database, by any instance, as the
   * notification arrives (runs stored while the notification connection was lost are read
   * afterwards). Returns a function that stops it.
   */
  async subscribe(listener: (record: RunRecord) => void): Promise<() => void> {
    await this.migrated();
    this.listeners.add(listener);
    try {
      this.listening ??= this.db.subscribe(
        RUNS_CHANNEL,
        (payload) => void this.heard(payload),
        () => void this.caughtUp(),
      );
      await this.listening;
    } catch (err) {
      this.listening = undefined;
      this.listeners.delete(listener);
      throw err;
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.listening) {
        const stopping = this.listening;
        this.listening = undefined;
        void stopping.then((stop) => stop()).catch(() => undefined);
      }
    };
  }

  private async heard(payload: string): Promise<void> {
    if (!/^\d+$/.test(payload)) return;
    const record = await this.get(payload).catch(() => undefined);
    if (record) this.tell(record);
  }

  /** After a lost notification connection: the runs stored meanwhile (those after the last one heard). */
  private async caughtUp(): Promise<void> {
    if (this.lastSeenId === 0n) return;
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM gluework_runs WHERE id > $1 ORDER BY id LIMIT 1000`, [this.lastSeenId.toString()]).catch(() => ({ rows: [] as any[] }));
    for (const row of rows) this.tell(fromRow(row));
  }

  private tell(record: RunRecord): void {
    const id = BigInt(record.id!);
    if (id > this.lastSeenId) this.lastSeenId = id;
    for (const listener of [...this.listeners]) {
      try {
        listener(record);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("runs", MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

const logs = new WeakMap<Database, RunLog>();

/** The run log of `db` (one per database, kept as long as the database is). */
export function runLog(db: Database): RunLog {
  let log = logs.get(db);
  if (!log) logs.set(db, (log = new RunLog(db)));
  return log;
}

function conditions(filter: RunFilter): { where: string; params: unknown[] } {
  const params: unknown[] = [];
  const parts: string[] = [];
  if (filter.nodeId) parts.push(`node_id = $${params.push(filter.nodeId)}`);
  if (filter.pipeline) parts.push(`pipeline = $${params.push(filter.pipeline)}`);
  if (filter.outcomes?.length) parts.push(`outcome = ANY($${params.push([...filter.outcomes])})`);
  if (filter.since) parts.push(`started_at >= $${params.push(filter.since)}`);
  if (filter.until) parts.push(`started_at < $${params.push(filter.until)}`);
  return { where: parts.length ? `WHERE ${parts.join(" AND ")}` : "", params };
}

function fromRow(row: any): RunRecord {
  const startedAt: Date = row.started_at;
  const endedAt: Date = row.ended_at;
  return {
    id: row.id,
    nodeId: row.node_id,
    nodeName: row.node_name,
    nodeType: row.node_type,
    pipeline: row.pipeline,
    key: row.run_key,
    instance: row.instance,
    startedAt,
    endedAt,
    durationMs: Math.max(0, endedAt.getTime() - startedAt.getTime()),
    outcome: row.outcome,
    counts: { rows: row.rows, pages: row.pages, requests: row.requests, http429: row.http_429, retries: row.retries, tokenRefreshes: row.token_refreshes },
    error: row.error_message === null ? null : { message: row.error_message, code: row.error_code, cause: row.error_cause, fix: row.error_fix },
    details: row.details,
  };
}

/** The reads a flow can ask for (the pipeline-runs node's input): `msg.topic` names one, `msg.payload` its options. */
export const RUN_QUERIES = ["latest", "errors", "days", "runs"] as const;
export type RunQuery = (typeof RUN_QUERIES)[number];

/**
 * Answers one read, as plain JSON (times as ISO strings):
 * - `latest`: every node's latest run, last success and last failure (`{ pipeline? }`);
 * - `errors`: the latest failures and partial runs (`{ pipeline?, nodeId?, limit? }`);
 * - `days`: runs per day (`{ days?, timeZone?, by?: "pipeline" | "node", pipeline?, nodeId? }`);
 * - `runs`: runs newest first (`{ pipeline?, nodeId?, outcomes?, since?, until?, limit? }`).
 */
export async function answerRunQuery(log: RunLog, query: RunQuery, payload: unknown): Promise<unknown> {
  const p = (payload && typeof payload === "object" && !Array.isArray(payload) ? payload : {}) as Record<string, unknown>;
  const text = (name: string) => optional(p[name], name, (v) => typeof v === "string" && v !== "", "a string") as string | undefined;
  const count = (name: string) => optional(p[name], name, (v) => Number.isInteger(v) && (v as number) > 0, "a whole number above 0") as number | undefined;
  const date = (name: string) => {
    const v = optional(p[name], name, (x) => (typeof x === "string" || typeof x === "number") && !Number.isNaN(new Date(x).getTime()), "a date (ISO text or epoch ms)");
    return v === undefined ? undefined : new Date(v as string | number);
  };
  switch (query) {
    case "latest":
      return plain(await log.latestPerNode({ pipeline: text("pipeline") }));
    case "errors":
      return plain(await log.lastErrors({ pipeline: text("pipeline"), nodeId: text("nodeId"), limit: count("limit") }));
    case "days": {
      const by = text("by");
      if (by !== undefined && by !== "pipeline" && by !== "node") throw new InputError(`msg.payload.by must be "pipeline" or "node", not "${by}"`);
      return plain(await log.runsPerDay({ days: count("days"), timeZone: text("timeZone"), by, pipeline: text("pipeline"), nodeId: text("nodeId") }));
    }
    case "runs": {
      const outcomes = p.outcomes === undefined ? undefined : Array.isArray(p.outcomes) ? p.outcomes : String(p.outcomes).split(",").map((o) => o.trim());
      const unknown = (outcomes ?? []).filter((o) => !RUN_OUTCOMES.includes(o as RunOutcome));
      if (unknown.length) throw new InputError(`unknown outcomes: ${unknown.join(", ")} (use ${RUN_OUTCOMES.join(", ")})`);
      return plain(await log.list({ pipeline: text("pipeline"), nodeId: text("nodeId"), outcomes: outcomes as RunOutcome[] | undefined, since: date("since"), until: date("until"), limit: count("limit") }));
    }
  }
}

function optional(value: unknown, name: string, valid: (v: unknown) => boolean, what: string): unknown {
  if (value === undefined || value === null || value === "") return undefined;
  if (!valid(value)) throw new InputError(`msg.payload.${name} must be ${what}`);
  return value;
}

/** A record (or a list of them) as plain JSON: times as ISO strings, as a flow and a browser see them. */
export function plain<T>(value: T): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

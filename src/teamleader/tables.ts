import type pg from "pg";
import { ConfigError, PipelineError, errorMessage } from "../core/errors";
import { Database, Migration } from "../core/db/database";
import { instanceName } from "../core/instance";
import { SYNC_RESOURCES, SyncResource } from "./types";

/** One record as the sync writes it: the Teamleader id, the record as JSON text, its `updated_at`. */
export interface SyncRow {
  id: string;
  record: string;
  updatedAt: string | null;
}

export interface SyncState {
  resource: SyncResource;
  /** Delta runs ask for changes since this moment (minus the overlap). */
  cursor: Date | null;
  lastMode: string | null;
  completedAt: Date | null;
  lastFullAt: Date | null;
  lastError: string | null;
}

export interface WriteResult {
  inserted: number;
  updated: number;
}

export const DEFAULT_TABLE_PREFIX = "teamleader_";

/** How the database is told one sync of a resource runs: an advisory lock key per table. */
const LOCK_NAMESPACE = "gluework:teamleader-sync:";

// Per process as well: a session advisory lock is re-entrant for its own connection, and two syncs
// of this process may hold different pool connections; this set keeps them apart without a query.
const runningHere = new Set<string>();

/** The tables a sync writes, for one table prefix: one per resource, and the cursors in `<prefix>sync_state`. */
export function syncMigrations(prefix: string): Migration[] {
  const resourceTables = (resources: readonly SyncResource[]) =>
    resources
      .map(
        (resource) => `CREATE TABLE IF NOT EXISTS ${prefix}${resource} (
      id text PRIMARY KEY,
      record jsonb NOT NULL,
      updated_at timestamptz,
      synced_at timestamptz NOT NULL,
      deleted_at timestamptz
    );`,
      )
      .join("\n");
  return [
    {
      id: 1,
      description: "a table per Teamleader resource and the sync cursors",
      sql: `${resourceTables(FIRST_RELEASE_RESOURCES)}
      CREATE TABLE IF NOT EXISTS ${prefix}sync_state (
        resource text PRIMARY KEY,
        cursor timestamptz,
        last_mode text,
        started_at timestamptz,
        completed_at timestamptz,
        last_full_at timestamptz,
        last_error text,
        last_summary jsonb,
        running_on text
      );`,
    },
    {
      id: 2,
      description: "tables for the current Projects module, deals, quotations, time tracking, tasks and products",
      sql: resourceTables(SYNC_RESOURCES.filter((r) => !FIRST_RELEASE_RESOURCES.includes(r))),
    },
  ];
}

/** The resources of the first migration, as it was: a migration never changes once released. */
const FIRST_RELEASE_RESOURCES: readonly SyncResource[] = ["companies", "contacts", "departments", "events", "invoices", "projects", "users"];

/**
 * The database side of a Teamleader sync: the tables, batched upserts that tell inserted from
 * changed rows, the mark-and-sweep of deleted records, the per-resource cursor, and the lock
 * that keeps one sync of a resource running at a time across every instance on the database.
 */
export class SyncTables {
  private ready?: Promise<unknown>;

  constructor(
    readonly db: Database,
    readonly prefix = DEFAULT_TABLE_PREFIX,
  ) {
    if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
      throw new ConfigError(`"${prefix}" cannot start a table name: use lower-case letters, digits and _ (e.g. teamleader_)`);
    }
  }

  table(resource: SyncResource): string {
    return `${this.prefix}${resource}`;
  }

  /** Creates the tables once per process (idempotent and safe when instances start together). */
  ensure(): Promise<unknown> {
    this.ready ??= this.db.migrate(`teamleader-sync:${this.prefix}`, syncMigrations(this.prefix)).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /**
   * The database's clock, as PostgreSQL's own text (microseconds kept): every timestamp the sync
   * compares with `synced_at` comes from it.
   */
  async now(): Promise<string> {
    const { rows } = await this.db.query<{ now: string }>("SELECT now()::text AS now");
    return rows[0]!.now;
  }

  /**
   * Writes a batch with one multi-row INSERT … ON CONFLICT in its own transaction, stamping
   * `synced_at` and clearing `deleted_at`. The statement also reads the rows as they were (all
   * parts of one statement see the same snapshot) to count new and changed records.
   */
  async upsert(resource: SyncResource, rows: readonly SyncRow[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0, updated: 0 };
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const row of dedupe(rows)) {
      const n = params.length;
      tuples.push(`($${n + 1}, $${n + 2}::jsonb, $${n + 3}::timestamptz)`);
      params.push(row.id, row.record, row.updatedAt);
    }
    const table = this.table(resource);
    const { rows: counts } = await this.db.query<{ written: number; existed: number; changed: number }>(
      `WITH incoming (id, record, updated_at) AS (VALUES ${tuples.join(",")}),
      prior AS (
        SELECT t.id, (t.record = i.record AND t.deleted_at IS NULL) AS same
        FROM ${table} t JOIN incoming i USING (id)
      ),
      written AS (
        INSERT INTO ${table} (id, record, updated_at, synced_at)
        SELECT id, record, updated_at, now() FROM incoming
        ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at, synced_at = EXCLUDED.synced_at, deleted_at = NULL
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM written)::int AS written, (SELECT count(*) FROM prior)::int AS existed, (SELECT count(*) FROM prior WHERE NOT same)::int AS changed`,
      params,
    );
    const c = counts[0]!;
    return { inserted: c.written - c.existed, updated: c.changed };
  }

  /** Rows a full sweep that started at `since` did not see, and that are not marked deleted yet. */
  async unseenSince(resource: SyncResource, since: string): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM ${this.table(resource)} WHERE deleted_at IS NULL AND synced_at < $1::timestamptz ORDER BY id`, [since]);
    return rows.map((r) => r.id);
  }

  /** Marks `ids` deleted, unless a sync saw them again since `since`; returns how many it marked. */
  async markDeleted(resource: SyncResource, ids: readonly string[], since: string): Promise<number> {
    if (ids.length === 0) return 0;
    const { rowCount } = await this.db.query(`UPDATE ${this.table(resource)} SET deleted_at = now() WHERE id = ANY($1::text[]) AND deleted_at IS NULL AND synced_at < $2::timestamptz`, [ids, since]);
    return rowCount ?? 0;
  }

  async state(resource: SyncResource): Promise<SyncState | null> {
    const { rows } = await this.db.query(
      `SELECT resource, cursor, last_mode, completed_at, last_full_at, last_error FROM ${this.prefix}sync_state WHERE resource = $1`,
      [resource],
    );
    const r = rows[0];
    if (!r) return null;
    return { resource, cursor: r.cursor, lastMode: r.last_mode, completedAt: r.completed_at, lastFullAt: r.last_full_at, lastError: r.last_error };
  }

  async started(resource: SyncResource, mode: string): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.prefix}sync_state (resource, last_mode, started_at, running_on) VALUES ($1, $2, now(), $3)
       ON CONFLICT (resource) DO UPDATE SET last_mode = EXCLUDED.last_mode, started_at = EXCLUDED.started_at, running_on = EXCLUDED.running_on`,
      [resource, mode, instanceName()],
    );
  }

  /** The run finished: only now does the cursor move. */
  async completed(resource: SyncResource, mode: string, cursor: Date | null, summary: object): Promise<void> {
    await this.db.query(
      `UPDATE ${this.prefix}sync_state SET cursor = COALESCE($2, cursor), last_mode = $3, completed_at = now(),
         last_full_at = CASE WHEN $3 = 'full' THEN now() ELSE last_full_at END, last_error = NULL, last_summary = $4, running_on = NULL
       WHERE resource = $1`,
      [resource, cursor, mode, JSON.stringify(summary)],
    );
  }

  async failed(resource: SyncResource, reason: string): Promise<void> {
    await this.db.query(`UPDATE ${this.prefix}sync_state SET last_error = $2, running_on = NULL WHERE resource = $1`, [resource, reason.slice(0, 2000)]);
  }

  /** Where a sync of `resource` that holds the lock says it runs ("host pid 123"), if known. */
  async runningOn(resource: SyncResource): Promise<string | null> {
    const { rows } = await this.db.query<{ running_on: string | null }>(`SELECT running_on FROM ${this.prefix}sync_state WHERE resource = $1`, [resource]);
    return rows[0]?.running_on ?? null;
  }

  /**
   * The right to sync `resource`, or null while another sync of it runs in this process or on
   * any instance using this database. The database lock is a session advisory lock on a
   * connection held for the run, so it ends with the process if that dies.
   */
  async tryLock(resource: SyncResource): Promise<{ release(): Promise<void> } | null> {
    const key = `${databaseIdentity(this.db)}|${this.prefix}${resource}`;
    if (runningHere.has(key)) return null;
    runningHere.add(key);
    let client: pg.PoolClient | undefined;
    try {
      client = await this.db.connect();
      const { rows } = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [LOCK_NAMESPACE + this.table(resource)]);
      if (!rows[0]?.ok) {
        client.release();
        runningHere.delete(key);
        return null;
      }
    } catch (err) {
      client?.release(err as Error);
      runningHere.delete(key);
      throw err;
    }
    const held = client;
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        try {
          await held.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [LOCK_NAMESPACE + this.table(resource)]);
          held.release();
        } catch (err) {
          // A broken connection loses its session locks with it; drop it from the pool.
          held.release(new Error(`advisory unlock failed: ${errorMessage(err)}`));
        } finally {
          runningHere.delete(key);
        }
      },
    };
  }
}

export interface BatchWriterOptions {
  /** Rows per statement. */
  batchSize?: number;
  /** Statements in flight at once: the server parses each batch's JSON on one core. */
  concurrency?: number;
  /** Keep the records' `updated_at` in its column. */
  updatedAt: boolean;
}

/** A batch could not be written: which pages it held, and why. */
export class BatchWriteError extends PipelineError {
  constructor(
    message: string,
    readonly lastPage: number | undefined,
    cause: unknown,
  ) {
    super(message, { cause, status: (cause as PipelineError)?.status ?? "database error", code: (cause as PipelineError)?.code ?? "GW_DB" });
  }
}

/**
 * Collects records into batches and writes each with one upsert, two batches in flight at a time
 * by default, so the database parses one batch while the next is sent. Rows are sorted by id in
 * each batch: two batches holding the same ids then lock them in the same order and cannot
 * deadlock. It counts what it wrote; the first failure is thrown by the next add() or flush().
 */
export class BatchWriter {
  readonly counts = { inserted: 0, updated: 0 };
  private rows: SyncRow[] = [];
  private firstPage?: number;
  private lastPage?: number;
  private readonly inflight = new Set<Promise<void>>();
  private failure?: BatchWriteError;
  private readonly batchSize: number;
  private readonly concurrency: number;

  constructor(
    private readonly tables: SyncTables,
    private readonly resource: SyncResource,
    private readonly options: BatchWriterOptions,
  ) {
    this.batchSize = Math.max(1, options.batchSize ?? 500);
    this.concurrency = Math.max(1, options.concurrency ?? 2);
  }

  async add(records: readonly { id?: unknown; updated_at?: unknown }[], page?: number): Promise<void> {
    this.throwIfFailed();
    for (const record of records) {
      if (typeof record?.id !== "string" || !record.id) continue;
      this.rows.push({ id: record.id, record: JSON.stringify(record), updatedAt: this.options.updatedAt && typeof record.updated_at === "string" ? record.updated_at : null });
    }
    if (page !== undefined) {
      this.firstPage ??= page;
      this.lastPage = page;
    }
    if (this.rows.length >= this.batchSize) await this.write();
  }

  /** Writes what is buffered and waits for every write in flight. */
  async flush(): Promise<void> {
    if (this.rows.length > 0) this.start();
    await this.settle();
    this.throwIfFailed();
  }

  /** Waits for the writes in flight, whatever their outcome. */
  async settle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all(this.inflight);
  }

  private async write(): Promise<void> {
    this.start();
    while (this.inflight.size >= this.concurrency) await Promise.race(this.inflight);
    this.throwIfFailed();
  }

  private start(): void {
    const rows = dedupe(this.rows).slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const pages = this.firstPage === undefined ? "" : this.firstPage === this.lastPage ? ` page ${this.lastPage}` : ` pages ${this.firstPage}–${this.lastPage}`;
    const lastPage = this.lastPage;
    this.rows = [];
    this.firstPage = undefined;
    const write: Promise<void> = this.tables.upsert(this.resource, rows).then(
      (written) => {
        this.counts.inserted += written.inserted;
        this.counts.updated += written.updated;
      },
      (err: unknown) => {
        this.failure ??= new BatchWriteError(`writing${pages} failed: ${errorMessage(err)}`, lastPage, err);
      },
    );
    const tracked = write.finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}

/** The last occurrence of each id wins: one statement may not update a row twice. */
function dedupe(rows: readonly SyncRow[]): readonly SyncRow[] {
  const seen = new Map<string, SyncRow>();
  for (const row of rows) seen.set(row.id, row);
  return seen.size === rows.length ? rows : [...seen.values()];
}

/** Which database a Database object talks to, so two config nodes on the same one share the guard. */
function databaseIdentity(db: Database): string {
  const o = (db.pool as unknown as { options?: pg.PoolConfig }).options ?? {};
  return `${o.connectionString ?? ""}|${o.host ?? ""}:${o.port ?? ""}/${o.database ?? ""}`;
}

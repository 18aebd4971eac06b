import { Counter, Gauge, Registry } from "prom-client";
import type { Database } from "./db/database";
import { errorMessage } from "./errors";
import { instanceName } from "./instance";
import { RUN_OUTCOMES, RunRecord, onRun } from "./runs";

/**
 * The figures `GET /gluework/metrics` serves, in Prometheus text format, from a registry of our
 * own (never prom-client's global one, which other packages in the same Node-RED may fill).
 *
 * Two kinds of figure:
 * - counters of the runs this process ended (from `onRun`): each replica serves its own, and
 *   Prometheus tells the replicas apart by their scrape target;
 * - gauges read from each database at scrape time (last success and failure, the relay's outbox,
 *   the out-of-office monitor's last cycle): the same on every replica. The read is one short
 *   transaction of indexed, bounded statements under a deadline; a database that does not answer
 *   in time costs its gauges and sets `gluework_database_up` to 0, never the answer.
 */

/** Where a scrape reads the database figures: a postgres-database node of the deployed flows. */
export interface MetricsDatabase {
  /** The postgres-database node's id and name, for the `gluework_database_up` labels. */
  id: string;
  name: string;
  database(): Promise<Database>;
  /** What a read under way belongs to (the node itself): a redeployed node does not wait on its predecessor's read. */
  key?: object;
}

/** What the deployed flows hold, as a scrape needs it. */
export interface MetricsScope {
  databases: MetricsDatabase[];
  /** Every deployed node id: the nodes whose latest runs are read (others on the same database are not this flow's). */
  nodeIds: string[];
  /** The deployed mail relays (their outbox queue is their node id). */
  relays: Array<{ id: string; name: string }>;
}

export interface NodeFigures {
  nodeId: string;
  nodeName: string;
  pipeline: string;
  lastSuccess: number | null;
  lastFailure: number | null;
  lastRun: number | null;
  /** Out-of-office monitors only: the users watched and not read in the latest cycle. */
  watched: number | null;
  notRead: number | null;
}

export interface OutboxFigures {
  queue: string;
  waiting: number;
  failed: number;
  /** Seconds since the oldest waiting mail was queued; null when none waits. */
  oldestAgeSeconds: number | null;
}

export interface DatabaseFigures {
  nodes: NodeFigures[];
  outbox: OutboxFigures[];
}

/** Mails counted per queue and state, at most: a huge backlog reads as this many, in bounded time. */
export const OUTBOX_COUNT_CAP = 50_000;
/** How long a scrape waits for the databases unless the settings say otherwise. */
export const DEFAULT_DATABASE_TIMEOUT_MS = 2_000;

/** Per database: the tables found there (once there, they stay; a read that fails forgets them). */
const tablesFound = new WeakMap<Database, { runs: boolean; outbox: boolean }>();

/**
 * One short read-only transaction, sent as one simple query (one round trip): its statement
 * deadline, then one statement that reads the deployed nodes' latest runs (primary key lookups,
 * and the out-of-office monitors' last run by its id) and each relay's outbox depth (counted up to
 * OUTBOX_COUNT_CAP) and oldest waiting mail (index (queue, state, created_at)). Until both kinds
 * of table have been seen, a first round trip asks which exist.
 */
export async function readDatabaseFigures(db: Database, scope: Pick<MetricsScope, "nodeIds" | "relays">, timeoutMs: number): Promise<DatabaseFigures> {
  const client = await db.connect();
  let broken: Error | undefined;
  try {
    let found = tablesFound.get(db);
    if (!found?.runs || !found.outbox) {
      const { rows } = await client.query<{ runs: boolean; outbox: boolean }>(
        "SELECT to_regclass('gluework_run_nodes') IS NOT NULL AND to_regclass('gluework_runs') IS NOT NULL AS runs, to_regclass('gluework_mail_outbox') IS NOT NULL AS outbox",
      );
      found = rows[0]!;
      tablesFound.set(db, found);
    }
    // The values go in as escaped literals: a query with parameters could not hold several statements.
    const texts = (values: string[]) => `ARRAY[${values.map((v) => client.escapeLiteral(v)).join(", ")}]::text[]`;
    const parts = [
      found.runs && scope.nodeIds.length
        ? `(SELECT coalesce(json_agg(json_build_object(
             'node_id', n.node_id, 'node_name', n.node_name, 'pipeline', n.pipeline,
             'last_success', extract(epoch FROM n.last_success_at)::float8,
             'last_failure', extract(epoch FROM n.last_failure_at)::float8,
             'last_run', extract(epoch FROM n.last_started_at)::float8,
             'watched', r.details->'watched', 'not_read', r.details->'notRead')), '[]')
           FROM gluework_run_nodes n
           LEFT JOIN gluework_runs r ON n.pipeline = 'ooo-monitor' AND r.id = n.last_run_id
           WHERE n.node_id = ANY(${texts(scope.nodeIds)})) AS nodes`
        : "'[]'::json AS nodes",
      found.outbox && scope.relays.length
        ? `(SELECT coalesce(json_agg(json_build_object(
             'queue', q,
             'waiting', (SELECT count(*) FROM (SELECT 1 FROM gluework_mail_outbox o WHERE o.queue = q AND o.state IN ('pending', 'sending') LIMIT ${OUTBOX_COUNT_CAP}) c),
             'failed', (SELECT count(*) FROM (SELECT 1 FROM gluework_mail_outbox o WHERE o.queue = q AND o.state = 'failed' LIMIT ${OUTBOX_COUNT_CAP}) c),
             'oldest_age', extract(epoch FROM now() - LEAST(
               (SELECT created_at FROM gluework_mail_outbox o WHERE o.queue = q AND o.state = 'pending' ORDER BY created_at LIMIT 1),
               (SELECT created_at FROM gluework_mail_outbox o WHERE o.queue = q AND o.state = 'sending' ORDER BY created_at LIMIT 1)))::float8)), '[]')
           FROM unnest(${texts(scope.relays.map((r) => r.id))}) AS q) AS outbox`
        : "'[]'::json AS outbox",
    ];
    const results = (await client.query(
      `BEGIN READ ONLY; SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}; SELECT ${parts.join(", ")}; COMMIT`,
    )) as unknown as Array<{ rows: Array<{ nodes: any[]; outbox: any[] }> }>;
    const row = results[2]!.rows[0]!;
    const nodes: NodeFigures[] = row.nodes.map((n) => {
      const ooo = n.pipeline === "ooo-monitor";
      return {
        nodeId: n.node_id,
        nodeName: n.node_name,
        pipeline: n.pipeline,
        lastSuccess: finite(n.last_success),
        lastFailure: finite(n.last_failure),
        lastRun: finite(n.last_run),
        watched: ooo ? finite(n.watched) : null,
        notRead: ooo ? finite(n.not_read) : null,
      };
    });
    const outbox: OutboxFigures[] = row.outbox.map((q) => ({
      queue: q.queue,
      waiting: Number(q.waiting),
      failed: Number(q.failed),
      oldestAgeSeconds: finite(q.oldest_age) === null ? null : Math.max(0, finite(q.oldest_age)!),
    }));
    return { nodes, outbox };
  } catch (err) {
    tablesFound.delete(db);
    // A connection that cannot roll back is not given back to the pool.
    await client.query("ROLLBACK").catch((failure: Error) => (broken = failure));
    throw err;
  } finally {
    client.release(broken);
  }
}

function finite(value: unknown): number | null {
  const n = typeof value === "string" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

const NODE_LABELS = ["node_id", "node_name", "pipeline"] as const;

/** The metrics of this process: one registry, counters fed by every run it ends. */
export class PipelineMetrics {
  readonly registry = new Registry();
  private readonly runs: Counter<string>;
  private readonly counted: Array<{ counter: Counter<string>; of: (r: RunRecord) => number }>;
  private readonly seen = new Set<string>();
  private readonly up: Gauge<string>;
  private readonly readSeconds: Gauge<string>;
  private readonly lastSuccess: Gauge<string>;
  private readonly lastFailure: Gauge<string>;
  private readonly lastRun: Gauge<string>;
  private readonly outboxMails: Gauge<string>;
  private readonly outboxOldest: Gauge<string>;
  private readonly oooWatched: Gauge<string>;
  private readonly oooNotRead: Gauge<string>;
  /** The read under way per database node: a scrape never starts a second one beside a slow first. */
  private readonly reading = new Map<object | string, Promise<DatabaseFigures>>();
  private scraping?: Promise<string>;
  private stopListening?: () => void;

  constructor() {
    const registers = [this.registry];
    const counter = (name: string, help: string, labelNames: readonly string[] = NODE_LABELS) => new Counter({ name, help, labelNames, registers });
    const gauge = (name: string, help: string, labelNames: readonly string[] = NODE_LABELS) => new Gauge({ name, help, labelNames, registers });
    this.runs = counter("gluework_pipeline_runs_total", "Runs this Node-RED process ended, by outcome (success, failure, partial, skipped).", [...NODE_LABELS, "outcome"]);
    this.counted = [
      { counter: counter("gluework_pipeline_rows_total", "Records the runs of this process moved (calls exported, records synced, users read, mails sent)."), of: (r) => r.counts.rows },
      { counter: counter("gluework_pipeline_pages_total", "Pages of paged APIs the runs of this process read."), of: (r) => r.counts.pages },
      { counter: counter("gluework_pipeline_requests_total", "HTTP requests the runs of this process sent to the provider's API (each try)."), of: (r) => r.counts.requests },
      { counter: counter("gluework_pipeline_http_429_total", "429 Too Many Requests answers the runs of this process met."), of: (r) => r.counts.http429 },
      { counter: counter("gluework_pipeline_retries_total", "Requests sent again after a network error or a 5xx answer."), of: (r) => r.counts.retries },
      { counter: counter("gluework_pipeline_token_refreshes_total", "Access tokens the runs of this process had to ask the provider for."), of: (r) => r.counts.tokenRefreshes },
    ];
    this.lastSuccess = gauge("gluework_pipeline_last_success_timestamp_seconds", "When the node's latest successful run started (Unix time), from the database.");
    this.lastFailure = gauge("gluework_pipeline_last_failure_timestamp_seconds", "When the node's latest failed run started (Unix time), from the database.");
    this.lastRun = gauge("gluework_pipeline_last_run_timestamp_seconds", "When the node's latest run that was not skipped started (Unix time), from the database.");
    this.outboxMails = gauge("gluework_relay_outbox_mails", `Mails in the relay's outbox, by state (waiting: to be sent or being sent; failed: given up), from the database; counted up to ${OUTBOX_COUNT_CAP}.`, ["node_id", "node_name", "state"]);
    this.outboxOldest = gauge("gluework_relay_outbox_oldest_mail_age_seconds", "Age of the oldest mail waiting in the relay's outbox (0 when none waits), from the database.", ["node_id", "node_name"]);
    this.oooWatched = gauge("gluework_ooo_users_watched", "Users the out-of-office monitor watched in its latest recorded cycle.", ["node_id", "node_name"]);
    this.oooNotRead = gauge("gluework_ooo_users_not_read", "Watched users the out-of-office monitor could not read in its latest recorded cycle.", ["node_id", "node_name"]);
    this.up = gauge("gluework_database_up", "1 when the database answered this scrape within its deadline, 0 when not (its gauges are then left out).", ["database_node", "database_name"]);
    this.readSeconds = gauge("gluework_database_read_seconds", "How long this scrape's read of the database took (the deadline when it did not answer).", ["database_node"]);
    gauge("gluework_instance_info", "This Node-RED process, as its runs name it (host and pid).", ["replica"]).set({ replica: instanceName() }, 1);
  }

  /** Counts every run this process ends from now on; idempotent. */
  listen(): void {
    this.stopListening ??= onRun((record) => this.count(record));
  }

  stop(): void {
    this.stopListening?.();
    this.stopListening = undefined;
  }

  count(record: RunRecord): void {
    const labels = { node_id: record.nodeId, node_name: record.nodeName, pipeline: record.pipeline };
    const key = JSON.stringify(labels);
    if (!this.seen.has(key)) {
      // Every outcome from the first run on, so that rate() and increase() see the first failure.
      this.seen.add(key);
      for (const outcome of RUN_OUTCOMES) this.runs.inc({ ...labels, outcome }, 0);
      for (const { counter } of this.counted) counter.inc(labels, 0);
    }
    this.runs.inc({ ...labels, outcome: record.outcome });
    for (const { counter, of } of this.counted) {
      const n = of(record);
      if (Number.isFinite(n) && n > 0) counter.inc(labels, n);
    }
  }

  /**
   * The text of one scrape. Scrapes that arrive while one is being answered get its answer: the
   * databases are read once, and the gauges are never set by two scrapes at once.
   */
  scrape(scope: MetricsScope, timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS): Promise<string> {
    this.scraping ??= this.answer(scope, timeoutMs).finally(() => (this.scraping = undefined));
    return this.scraping;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async answer(scope: MetricsScope, timeoutMs: number): Promise<string> {
    const read = await Promise.all(scope.databases.map((d) => this.readWithin(d, scope, timeoutMs)));
    for (const gauge of [this.up, this.readSeconds, this.lastSuccess, this.lastFailure, this.lastRun, this.outboxMails, this.outboxOldest, this.oooWatched, this.oooNotRead]) gauge.reset();
    const relayNames = new Map(scope.relays.map((r) => [r.id, r.name]));
    const nodesDone = new Set<string>();
    const queuesDone = new Set<string>();
    scope.databases.forEach((d, i) => {
      const { figures, seconds } = read[i]!;
      this.up.set({ database_node: d.id, database_name: d.name }, figures ? 1 : 0);
      this.readSeconds.set({ database_node: d.id }, seconds);
      if (!figures) return;
      // Two database nodes on one database: each node's figures once.
      for (const n of figures.nodes) {
        if (nodesDone.has(n.nodeId)) continue;
        nodesDone.add(n.nodeId);
        const labels = { node_id: n.nodeId, node_name: n.nodeName, pipeline: n.pipeline };
        if (n.lastSuccess !== null) this.lastSuccess.set(labels, n.lastSuccess);
        if (n.lastFailure !== null) this.lastFailure.set(labels, n.lastFailure);
        if (n.lastRun !== null) this.lastRun.set(labels, n.lastRun);
        const short = { node_id: n.nodeId, node_name: n.nodeName };
        if (n.watched !== null) this.oooWatched.set(short, n.watched);
        if (n.notRead !== null) this.oooNotRead.set(short, n.notRead);
      }
      for (const q of figures.outbox) {
        if (queuesDone.has(q.queue)) continue;
        queuesDone.add(q.queue);
        const labels = { node_id: q.queue, node_name: relayNames.get(q.queue) ?? "" };
        this.outboxMails.set({ ...labels, state: "waiting" }, q.waiting);
        this.outboxMails.set({ ...labels, state: "failed" }, q.failed);
        this.outboxOldest.set(labels, q.oldestAgeSeconds ?? 0);
      }
    });
    return this.registry.metrics();
  }

  /** The figures of one database, or none when it did not answer within `timeoutMs`. */
  private async readWithin(d: MetricsDatabase, scope: MetricsScope, timeoutMs: number): Promise<{ figures?: DatabaseFigures; seconds: number; error?: string }> {
    const started = process.hrtime.bigint();
    const key = d.key ?? d.id;
    let reading = this.reading.get(key);
    if (!reading) {
      reading = (async () => readDatabaseFigures(await d.database(), scope, timeoutMs))();
      this.reading.set(key, reading);
      const forget = () => void this.reading.delete(key);
      void reading.then(forget, forget);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      const figures = await Promise.race([
        reading,
        new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs))),
      ]);
      return { figures, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
    } catch (err) {
      return { seconds: Number(process.hrtime.bigint() - started) / 1e9, error: errorMessage(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}

let shared: PipelineMetrics | undefined;

/** The metrics of this process (one registry, one run listener, whatever the number of deploys). */
export function pipelineMetrics(): PipelineMetrics {
  if (!shared) {
    shared = new PipelineMetrics();
    shared.listen();
  }
  return shared;
}

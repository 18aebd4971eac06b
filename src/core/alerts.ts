import { randomUUID } from "node:crypto";
import type pg from "pg";
import { escapeHtml } from "../mail/compose";
import { OUTBOX_MIGRATIONS, enqueueIn } from "../mail/outbox";
import type { Database, Migration } from "./db/database";
import { InputError } from "./errors";
import { instanceName } from "./instance";
import { redact } from "./redact";
import { RunRecord, runLog } from "./runs";
import { formatInZone } from "./time";

/**
 * Alert mails about pipeline runs: one when a pipeline fails, one when it has not succeeded within
 * its expected interval plus a grace time (missed), one when it succeeds again (recovered).
 *
 * Every decision is taken from the database, never from memory: per watched node a row holds how
 * far its runs have been read and whether an episode (failed or missed, until the next success) is
 * open. Any instance may read on (on a run it heard, or on its periodic check); it locks that row,
 * folds the node's new runs into it, and claims each alert in `gluework_alerts`, keyed by node,
 * episode and kind, in the same transaction as the mail it puts in the outbox. So each alert is
 * mailed once, whichever instance decides it and whatever restarts in between; the relay of the
 * outbox delivers it as it delivers every mail.
 */

export type AlertKind = "failure" | "missed" | "recovered";

/** Which nodes a rule watches: one node (by id), every node of a pipeline, or every pipeline node. */
export interface AlertRule {
  scope: "node" | "pipeline" | "all";
  /** The node id or pipeline name; ignored for `all`. */
  match: string;
  /** Recipients of this rule's alerts; empty: the watcher's. */
  to: string[];
  /** How often the node is expected to succeed; undefined: no missed alert. */
  everyMs?: number;
  /** How long past that interval a success may still come before it counts as missed. */
  graceMs: number;
}

/** An alert as claimed, for the watcher's output and status. */
export interface Alert {
  kind: AlertKind;
  nodeId: string;
  nodeName: string;
  pipeline: string;
  episode: number;
  /** The run that failed or recovered; null for a missed alert. */
  runId: string | null;
  mailId: string | null;
  to: string[];
  subject: string;
  at: Date;
}

export interface AlertWatchOptions {
  db: Database;
  /** The watcher: its alerts and the outbox queue its mails go to (the pipeline-alerts node's id). */
  watcher: string;
  rules: AlertRule[];
  /** Recipients of rules that name none. */
  to: string[];
  messageIdDomain: string;
  /** Times in the mails: in this zone, else UTC. */
  timeZone?: string;
  /** This instance stored `count` mails in the outbox. */
  queued?(count: number): void;
}

const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "alert mails about pipeline runs: each watched node's episode, and the alerts claimed",
    sql: `CREATE TABLE IF NOT EXISTS gluework_alert_watchers (
      watcher text PRIMARY KEY,
      since timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS gluework_alert_nodes (
      watcher text NOT NULL,
      node_id text NOT NULL,
      last_run_id bigint NOT NULL DEFAULT 0,
      watch_since timestamptz NOT NULL,
      last_success_at timestamptz,
      episode integer NOT NULL DEFAULT 0,
      open boolean NOT NULL DEFAULT false,
      PRIMARY KEY (watcher, node_id)
    );
    CREATE TABLE IF NOT EXISTS gluework_alerts (
      watcher text NOT NULL,
      node_id text NOT NULL,
      episode integer NOT NULL,
      kind text NOT NULL CHECK (kind IN ('failure', 'missed', 'recovered')),
      run_id bigint,
      mail_id text,
      recipients jsonb NOT NULL,
      subject text NOT NULL,
      instance text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (watcher, node_id, episode, kind)
    );`,
  },
];

/** A node first watched reads its runs from this far back (at most), so a new rule does not mail old history. */
const FIRST_LOOK_BACK_MS = 10 * 60_000;
/** A failed run that ended longer ago than this is history (a rule watched again after a pause): it opens no episode. */
const STALE_MS = 3600_000;
/** Runs folded per node per transaction; a longer backlog goes on at the next look. */
const RUNS_PER_LOOK = 500;

interface NodeRow {
  last_run_id: string;
  watch_since: Date;
  last_success_at: Date | null;
  episode: number;
  open: boolean;
}

interface RunRow {
  id: string;
  node_name: string;
  node_type: string;
  pipeline: string;
  run_key: string | null;
  instance: string;
  started_at: Date;
  ended_at: Date;
  outcome: "success" | "failure";
  error_message: string | null;
  error_code: string | null;
  error_cause: string | null;
  error_fix: string | null;
}

/** The rule that applies to a node: its own, else its pipeline's, else the one for all. */
export function ruleFor(rules: readonly AlertRule[], nodeId: string, pipeline: string | undefined): AlertRule | undefined {
  return rules.find((r) => r.scope === "node" && r.match === nodeId) ?? rules.find((r) => r.scope === "pipeline" && r.match === pipeline) ?? rules.find((r) => r.scope === "all");
}

/** "24h", "90m", "30s", "2d", "1.5h", or a number of seconds, in milliseconds; empty: undefined. */
export function parseDuration(text: unknown, what: string): number | undefined {
  const value = String(text ?? "").trim();
  if (!value) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(value);
  if (!m) throw new InputError(`${what} "${value.slice(0, 40)}" is not a duration (such as 30m, 24h or 2d)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[(m[2] ?? "s").toLowerCase() as "s"];
  return Math.round(Number(m[1]) * unit);
}

/**
 * The alerts of one watcher on one database. `heard` reads on for the node of a run just stored;
 * `check` reads on for every watched node and raises missed alerts. Both are safe on every
 * instance at once.
 */
export class AlertWatch {
  private ready?: Promise<unknown>;

  constructor(private readonly options: AlertWatchOptions) {}

  /** Creates the tables and registers the watcher (the first instance's start counts for all). */
  start(): Promise<unknown> {
    this.ready ??= (async () => {
      const { db, watcher } = this.options;
      await db.migrate("mail-outbox", OUTBOX_MIGRATIONS);
      await runLog(db).list({ limit: 1 }); // the run tables exist
      await db.migrate("alerts", MIGRATIONS);
      await db.query(`INSERT INTO gluework_alert_watchers (watcher) VALUES ($1) ON CONFLICT (watcher) DO NOTHING`, [watcher]);
    })().catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  /** A run was stored: when its node is watched, its alerts are decided now. */
  async heard(record: RunRecord): Promise<Alert[]> {
    if (record.outcome !== "success" && record.outcome !== "failure") return [];
    const rule = ruleFor(this.options.rules, record.nodeId, record.pipeline);
    return rule ? this.look(record.nodeId, rule) : [];
  }

  /** Every watched node: its runs read on, and missed alerts for those past their interval and grace. */
  async check(): Promise<Alert[]> {
    await this.start();
    const { rows } = await this.options.db.query<{ node_id: string; pipeline: string }>(`SELECT node_id, pipeline FROM gluework_run_nodes`);
    const nodes = new Map<string, AlertRule>();
    for (const row of rows) {
      const rule = ruleFor(this.options.rules, row.node_id, row.pipeline);
      if (rule) nodes.set(row.node_id, rule);
    }
    // A node named in a rule is watched before its first run: one that never runs is missed too.
    for (const rule of this.options.rules) if (rule.scope === "node" && rule.match && !nodes.has(rule.match)) nodes.set(rule.match, rule);
    const alerts: Alert[] = [];
    for (const [nodeId, rule] of nodes) alerts.push(...(await this.look(nodeId, rule)));
    return alerts;
  }

  /** Which watched nodes have an episode open (failed or missed, not recovered yet). */
  async openEpisodes(): Promise<string[]> {
    await this.start();
    const { rows } = await this.options.db.query<{ node_id: string }>(`SELECT node_id FROM gluework_alert_nodes WHERE watcher = $1 AND open ORDER BY node_id`, [this.options.watcher]);
    return rows.map((r) => r.node_id);
  }

  /** One node, in one transaction: its new runs folded in, a missed deadline checked, each alert claimed with its mail. */
  private async look(nodeId: string, rule: AlertRule): Promise<Alert[]> {
    await this.start();
    const { watcher } = this.options;
    const alerts = await this.options.db.transaction(async (client) => {
      await client.query(
        `INSERT INTO gluework_alert_nodes (watcher, node_id, last_run_id, watch_since, last_success_at)
         SELECT w.watcher, $2,
           coalesce((SELECT max(r.id) FROM gluework_runs r WHERE r.node_id = $2 AND r.started_at < greatest(w.since, now() - $3 * interval '1 millisecond')), 0),
           w.since, (SELECT n.last_success_at FROM gluework_run_nodes n WHERE n.node_id = $2)
         FROM gluework_alert_watchers w WHERE w.watcher = $1
         ON CONFLICT (watcher, node_id) DO NOTHING`,
        [watcher, nodeId, FIRST_LOOK_BACK_MS],
      );
      const state = (await client.query<NodeRow & { now: Date }>(
        `SELECT last_run_id::text AS last_run_id, watch_since, last_success_at, episode, open, now() AS now
         FROM gluework_alert_nodes WHERE watcher = $1 AND node_id = $2 FOR UPDATE`,
        [watcher, nodeId],
      )).rows[0];
      if (!state) return [];
      const now = state.now;
      const { rows: runs } = await client.query<RunRow>(
        `SELECT id::text AS id, node_name, node_type, pipeline, run_key, instance, started_at, ended_at, outcome, error_message, error_code, error_cause, error_fix
         FROM gluework_runs WHERE node_id = $1 AND id > $2 AND outcome IN ('success', 'failure') ORDER BY id LIMIT $3`,
        [nodeId, state.last_run_id, RUNS_PER_LOOK],
      );
      const claimed: Alert[] = [];
      let { episode, open } = state;
      let lastSuccess = state.last_success_at;
      let lastRunId = state.last_run_id;
      let subject = { name: "", pipeline: rule.scope === "pipeline" ? rule.match : "" };
      for (const run of runs) {
        lastRunId = run.id;
        subject = { name: run.node_name, pipeline: run.pipeline };
        if (run.outcome === "failure") {
          if (!open && now.getTime() - run.ended_at.getTime() > STALE_MS) continue;
          if (!open) ((episode += 1), (open = true));
          const alert = await this.claim(client, nodeId, episode, "failure", run, subject, now, lastSuccess, rule);
          if (alert) claimed.push(alert);
        } else {
          lastSuccess = run.ended_at;
          if (open) {
            open = false;
            const alert = await this.claim(client, nodeId, episode, "recovered", run, subject, now, lastSuccess, rule);
            if (alert) claimed.push(alert);
          }
        }
      }
      if (rule.everyMs !== undefined) {
        const from = lastSuccess && lastSuccess > state.watch_since ? lastSuccess : state.watch_since;
        if (now.getTime() > from.getTime() + rule.everyMs + rule.graceMs) {
          if (!subject.name) subject = await this.nodeNamed(client, nodeId, subject);
          if (!open) ((episode += 1), (open = true));
          const alert = await this.claim(client, nodeId, episode, "missed", null, subject, now, lastSuccess, rule);
          if (alert) claimed.push(alert);
        }
      }
      await client.query(
        `UPDATE gluework_alert_nodes SET last_run_id = $3, last_success_at = $4, episode = $5, open = $6 WHERE watcher = $1 AND node_id = $2`,
        [watcher, nodeId, lastRunId, lastSuccess, episode, open],
      );
      return claimed;
    });
    const mails = alerts.filter((a) => a.mailId).length;
    if (mails) this.options.queued?.(mails);
    return alerts;
  }

  private async nodeNamed(client: pg.PoolClient, nodeId: string, fallback: { name: string; pipeline: string }): Promise<{ name: string; pipeline: string }> {
    const { rows } = await client.query<{ node_name: string; pipeline: string }>(`SELECT node_name, pipeline FROM gluework_run_nodes WHERE node_id = $1`, [nodeId]);
    return rows[0] ? { name: rows[0].node_name, pipeline: rows[0].pipeline } : fallback;
  }

  /** Claims one alert; when it is new (no instance claimed it before), its mail goes into the outbox in the same transaction. */
  private async claim(
    client: pg.PoolClient,
    nodeId: string,
    episode: number,
    kind: AlertKind,
    run: RunRow | null,
    subject: { name: string; pipeline: string },
    now: Date,
    lastSuccess: Date | null,
    rule: AlertRule,
  ): Promise<Alert | undefined> {
    const to = rule.to.length ? rule.to : this.options.to;
    const mail = alertMail({ kind, nodeId, nodeName: subject.name, pipeline: subject.pipeline, run, now, lastSuccess, rule, timeZone: this.options.timeZone });
    const mailId = to.length ? randomUUID() : null;
    const { rowCount } = await client.query(
      `INSERT INTO gluework_alerts (watcher, node_id, episode, kind, run_id, mail_id, recipients, subject, instance)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) ON CONFLICT (watcher, node_id, episode, kind) DO NOTHING`,
      [this.options.watcher, nodeId, episode, kind, run?.id ?? null, mailId, JSON.stringify(to), mail.subject, instanceName()],
    );
    if (!rowCount) return undefined;
    if (mailId) {
      await enqueueIn(client, this.options.watcher, { id: mailId, messageId: `<${mailId}@${this.options.messageIdDomain}>`, createdAt: now, to, subject: mail.subject, text: mail.text, html: mail.html, kind: "message" });
    }
    return { kind, nodeId, nodeName: subject.name, pipeline: subject.pipeline, episode, runId: run?.id ?? null, mailId, to, subject: mail.subject, at: now };
  }
}

interface MailFacts {
  kind: AlertKind;
  nodeId: string;
  nodeName: string;
  pipeline: string;
  run: RunRow | null;
  now: Date;
  lastSuccess: Date | null;
  rule: AlertRule;
  timeZone?: string;
}

const TITLES: Record<AlertKind, string> = { failure: "failed", missed: "missed its schedule", recovered: "recovered" };
const COLOURS: Record<AlertKind, string> = { failure: "#c62828", missed: "#ef6c00", recovered: "#2e7d32" };

/** The alert mail: a title line, then `Label: value` rows (text), and the same as a table (HTML). Every value redacted. */
export function alertMail(facts: MailFacts): { subject: string; text: string; html: string } {
  const { kind, run, rule } = facts;
  const zone = facts.timeZone ?? "UTC";
  const time = (d: Date | null) => (d ? `${formatInZone(d.getTime(), zone)} ${zone}` : "never");
  const who = facts.nodeName || facts.nodeId;
  const subject = redact(`[${facts.pipeline || "pipeline"}] ${who} ${TITLES[kind]}`);
  const rows: Array<[string, string]> = [
    ["Pipeline", facts.pipeline],
    ["Node", facts.nodeName ? `${facts.nodeName} (${facts.nodeId})` : facts.nodeId],
  ];
  if (run) {
    if (run.run_key) rows.push(["Run", run.run_key]);
    rows.push(["Started", time(run.started_at)], ["Ended", time(run.ended_at)], ["Instance", run.instance]);
  }
  if (kind === "failure" && run) {
    rows.push(["Error", run.error_message ?? ""]);
    if (run.error_code) rows.push(["Code", run.error_code]);
    rows.push(["Cause", run.error_cause ?? "not known"], ["Fix", run.error_fix ?? "see the error and the node's status"]);
  }
  if (kind === "missed") {
    rows.push(["Last success", time(facts.lastSuccess)], ["Expected every", duration(rule.everyMs ?? 0)], ["Grace", duration(rule.graceMs)], ["Checked at", time(facts.now)]);
    rows.push(["Fix", "check that the pipeline's trigger (inject or schedule) still runs, that Node-RED is up, and the node's status"]);
  }
  const clean = rows.filter(([, v]) => v !== "").map(([k, v]) => [k, redact(v)] as [string, string]);
  const text = [subject, "", ...clean.map(([k, v]) => (v.includes("\n") ? `${k}:\n${v.split("\n").map((l) => `  ${l}`).join("\n")}` : `${k}: ${v}`)), ""].join("\n");
  const html = [
    `<h2 style="margin:0 0 12px 0;font-family:Arial,Helvetica,sans-serif;font-size:18px">${escapeHtml(subject)}</h2>`,
    `<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;border-left:4px solid ${COLOURS[kind]};font-family:Arial,Helvetica,sans-serif;font-size:14px">`,
    ...clean.map(([k, v]) => `<tr><th style="text-align:left;padding:4px 12px;vertical-align:top">${escapeHtml(k)}</th><td style="padding:4px 12px;white-space:pre-wrap">${escapeHtml(v)}</td></tr>`),
    `</table>`,
  ].join("\n");
  return { subject, text, html };
}

function duration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms) return `${ms / 86_400_000} d`;
  if (ms % 3600_000 === 0 && ms) return `${ms / 3600_000} h`;
  if (ms % 60_000 === 0 && ms) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

import assert from "node:assert/strict";
import { simpleParser } from "mailparser";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { RunOutcome, runLog } from "../../src/core/runs";
import pipelineAlerts from "../../src/nodes/pipeline-alerts";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import { SmtpSink, mailHeader } from "../../src/sandbox/smtp-sink";
import { htmlSections, textSections } from "../support/alert-mail";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

const helper = nodeRed();
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

describe("pipeline-alerts node", function () {
  this.timeout(30_000);
  let testDb: TestDatabase;
  let admin: pg.Client;
  /** The pipelines' instance: their runs are stored from here, as another Node-RED would store them. */
  let pipelines: Database;
  let sink: SmtpSink;
  let port = 0;
  let sent: any[] = [];

  before(async () => {
    testDb = await createTestDatabase("gw_alerts");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    pipelines = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  });
  after(async () => {
    await pipelines.close();
    await admin.end();
    await testDb.drop();
  });
  beforeEach(async () => {
    sink = new SmtpSink();
    port = await sink.listen();
  });
  afterEach(async () => {
    await helper.unload();
    await sink.close();
    await admin.query("TRUNCATE gluework_runs, gluework_run_nodes, gluework_alerts, gluework_alert_nodes, gluework_alert_watchers, gluework_mail_outbox").catch(() => undefined);
  });

  async function load(rules: object[], settings: Record<string, unknown> = {}) {
    const flow = [
      { id: "tab", type: "tab", label: "alerts" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "3" },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(port), security: "none", verifyCertificate: false, auth: "none", sender: "alerts@example.com", poolSize: "2" },
      { id: "alerts", type: "pipeline-alerts", z: "tab", database: "db", smtp: "smtp", to: "ops@example.com", rules, check: "0.2s", ...settings, wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", wires: [] },
    ];
    await helper.load([postgresDatabase, smtpConnection, pipelineAlerts], flow, { db: { user: "postgres" } });
    sent = [];
    helper.getNode("out").on("input", (m: any) => sent.push(m));
  }

  /** A run of `nodeId` stored in the database, as its pipeline node records it. */
  function run(nodeId: string, outcome: RunOutcome, error: { message: string; cause?: string; fix?: string } | null = null, startedAt = new Date()): Promise<string> {
    return runLog(pipelines).save({
      id: null,
      nodeId,
      nodeName: `${nodeId} node`,
      nodeType: "goto-call-logs",
      pipeline: "call-logs",
      key: "2026-12-06",
      instance: "pipelines pid 1",
      startedAt,
      endedAt: new Date(startedAt.getTime() + 500),
      durationMs: 500,
      outcome,
      counts: { rows: 0, pages: 0, requests: 1, http429: 0, retries: 0, tokenRefreshes: 0 },
      error: error ? { message: error.message, code: "GW_TEST", cause: error.cause ?? null, fix: error.fix ?? null } : null,
      details: null,
    });
  }

  const subjects = () => sink.received.map((m) => mailHeader(m.raw, "Subject"));
  /** Several checks by the node after now: what had to happen once would have happened twice by then. */
  async function afterChecks(): Promise<void> {
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_mail_outbox")).rowCount === 0, 5000, "an empty outbox");
    await new Promise((resolve) => setTimeout(resolve, 800));
  }

  it("mails one alert for a failed run, with its cause and fix redacted, and none for the next failures of that episode", async () => {
    await run("export", "success"); // the node is known, and well, before the watch begins
    await load([{ scope: "pipeline", match: "call-logs", to: "", every: "", grace: "" }]);
    await eventually(() => helper.getNode("alerts").status.getCalls().some((c: any) => c.args[0].text === "all well"), 10_000, "the first check");
    await run("export", "failure", { message: "GoTo answered 500", cause: `upstream said: bearer ${JWT}`, fix: "wait, then run the day again" });
    await eventually(() => sink.received.length === 1, 10_000, "the failure mail");
    const mail = await simpleParser(sink.received[0]!.raw);
    assert.equal(mail.subject, "[call-logs] export node failed");
    assert.deepEqual(sink.received[0]!.to, ["ops@example.com"]);
    const text = textSections(mail.text!);
    const rows = Object.fromEntries(text.sections[0]!.rows);
    assert.equal(rows.Node, "export node (export)");
    assert.equal(rows.Error, "GoTo answered 500");
    assert.equal(rows.Cause, "upstream said: bearer [redacted]");
    assert.equal(rows.Fix, "wait, then run the day again");
    assert.ok(!mail.text!.includes(JWT) && !String(mail.html).includes(JWT), "no token in the mail");
    assert.deepEqual(Object.fromEntries(htmlSections(String(mail.html)).sections[0]!.rows).Fix, "wait, then run the day again");
    assert.equal(sent.length, 1);
    assert.equal(sent[0].topic, "failure");
    assert.equal(sent[0].payload.nodeId, "export");

    await run("export", "failure", { message: "GoTo answered 500 again" });
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_alert_nodes a JOIN gluework_runs r ON r.id = a.last_run_id WHERE r.error_message LIKE '%again'")).rowCount === 1, 10_000, "the second failure read");
    await afterChecks();
    assert.deepEqual(subjects(), ["[call-logs] export node failed"]);
    await eventually(() => helper.getNode("alerts").status.getCalls().some((c: any) => c.args[0].text === "1 failing or missed"), 5000, "the status");
  });

  it("mails one recovered alert for the first success after a failure, and none for the next successes", async () => {
    await load([{ scope: "node", match: "sync", to: "sync-team@example.com", every: "", grace: "" }]);
    await eventually(() => helper.getNode("alerts").status.getCalls().length > 0, 10_000, "the first check");
    await run("sync", "failure", { message: "Teamleader refused the token" });
    await run("other", "failure", { message: "not watched" });
    await eventually(() => sink.received.length === 1, 10_000, "the failure mail");
    await run("sync", "success");
    await run("sync", "success");
    await eventually(() => sink.received.length === 2, 10_000, "the recovered mail");
    await afterChecks();
    assert.deepEqual(subjects(), ["[call-logs] sync node failed", "[call-logs] sync node recovered"]);
    assert.deepEqual(sink.received.map((m) => m.to), [["sync-team@example.com"], ["sync-team@example.com"]]);
    const { rows } = await admin.query("SELECT node_id, episode, kind FROM gluework_alerts ORDER BY created_at");
    assert.deepEqual(rows, [{ node_id: "sync", episode: 1, kind: "failure" }, { node_id: "sync", episode: 1, kind: "recovered" }]);
  });

  it("mails one missed alert when a node has not succeeded within its interval and grace, and one recovered when it does", async () => {
    await run("nightly", "success");
    await load([{ scope: "node", match: "nightly", to: "", every: "1s", grace: "0.5s" }], { timeZone: "Europe/Brussels" });
    await eventually(() => sink.received.length === 1, 10_000, "the missed mail");
    const mail = await simpleParser(sink.received[0]!.raw);
    assert.equal(mail.subject, "[call-logs] nightly node missed its schedule");
    const rows = Object.fromEntries(textSections(mail.text!).sections[0]!.rows);
    assert.equal(rows["Expected every"], "1 s");
    assert.equal(rows.Grace, "0.5 s");
    assert.match(rows["Last success"]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Europe\/Brussels$/);
    await afterChecks();
    assert.equal(sink.received.length, 1, "one missed mail, however many checks");
    await run("nightly", "success");
    await eventually(() => sink.received.length === 2, 10_000, "the recovered mail");
    assert.equal(mailHeader(sink.received[1]!.raw, "Subject"), "[call-logs] nightly node recovered");
    assert.deepEqual(sent.map((m) => m.topic), ["missed", "recovered"]);
  });

  it("delivers an alert decided while the SMTP server was down once, after a restart", async () => {
    await sink.close();
    await load([{ scope: "all", match: "", to: "", every: "", grace: "" }]);
    await eventually(() => helper.getNode("alerts").status.getCalls().length > 0, 10_000, "the first check");
    await run("export", "failure", { message: "the day could not be written" });
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_mail_outbox")).rowCount === 1, 10_000, "the alert in the outbox");
    await eventually(() => helper.getNode("alerts").status.getCalls().some((c: any) => c.args[0].text === "SMTP down · 1 failing or missed"), 10_000, "the status");
    await helper.unload();
    sink = new SmtpSink();
    await sink.listen(port);
    await load([{ scope: "all", match: "", to: "", every: "", grace: "" }]);
    await eventually(() => sink.received.length === 1, 20_000, "the alert after the restart");
    await afterChecks();
    assert.deepEqual(subjects(), ["[call-logs] export node failed"]);
    assert.equal(sent.length, 0, "the restarted node decided nothing again");
  });

  it("mails nothing for a failed run read over an hour after it ended (a node watched again after a pause)", async () => {
    await load([{ scope: "node", match: "paused", to: "", every: "", grace: "" }]);
    await eventually(() => helper.getNode("alerts").status.getCalls().some((c: any) => c.args[0].text === "all well"), 10_000, "the first check");
    // Stored late (the database was away when it ended): its node's runs are read past it.
    await run("paused", "failure", { message: "long ago" }, new Date(Date.now() - 3 * 3600_000));
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_alert_nodes a JOIN gluework_runs r ON r.id = a.last_run_id WHERE r.node_id = 'paused'")).rowCount === 1, 10_000, "the old failure read");
    await run("paused", "success");
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_alert_nodes a JOIN gluework_runs r ON r.id = a.last_run_id WHERE r.outcome = 'success'")).rowCount === 1, 10_000, "the success read");
    await afterChecks();
    assert.equal(sink.received.length, 0);
    assert.equal((await admin.query("SELECT 1 FROM gluework_alerts")).rowCount, 0);
  });

  it("refuses a rule with no recipient anywhere, in its status", async () => {
    await load([{ scope: "all", match: "", to: "", every: "", grace: "" }], { to: "" });
    await eventually(() => helper.getNode("alerts").status.getCalls().some((c: any) => c.args[0].text === "missing recipient"), 5000, "the status");
  });
});

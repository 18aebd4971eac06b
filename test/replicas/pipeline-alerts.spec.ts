import assert from "node:assert/strict";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { RunOutcome, runLog } from "../../src/core/runs";
import { SmtpSink, mailHeader } from "../../src/sandbox/smtp-sink";
import { eventually } from "../support/node-red";
import type { NodeRedProcess } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { deployEverywhere, readyRoute, startReplicas } from "../support/replicas";

describe("pipeline alerts in 2 Node-RED processes on one PostgreSQL database", function () {
  this.timeout(90_000);
  let sink = new SmtpSink();
  let testDb: TestDatabase;
  let admin: pg.Client;
  let pipelines: Database;
  let replicas: NodeRedProcess[] = [];

  before(async () => {
    await sink.listen();
    testDb = await createTestDatabase("gw_alerts_rep");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    pipelines = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    replicas = await startReplicas(2);
    await deployEverywhere(replicas, flow(), "/ready");
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await pipelines?.close();
    await admin?.end();
    await testDb?.drop();
    await sink.close();
  });

  /** The same flow on every replica: a database, an SMTP connection to the sink, and the alerts node. */
  function flow(): object[] {
    const z = "alerts-rep";
    return [
      { id: z, type: "tab", label: "alerts" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4", credentials: { user: "postgres" } },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(sink.port), security: "none", verifyCertificate: false, auth: "none", sender: "alerts@example.com", poolSize: "2" },
      {
        id: "alerts",
        type: "pipeline-alerts",
        z,
        database: "db",
        smtp: "smtp",
        to: "ops@example.com",
        check: "0.2s",
        rules: [
          { scope: "node", match: "nightly", to: "night@example.com", every: "3s", grace: "0.5s" },
          { scope: "pipeline", match: "call-logs", to: "", every: "", grace: "" },
        ],
        wires: [[]],
      },
      ...readyRoute("/ready", z),
    ];
  }

  function run(nodeId: string, outcome: RunOutcome): Promise<string> {
    const startedAt = new Date();
    return runLog(pipelines).save({
      id: null,
      nodeId,
      nodeName: nodeId,
      nodeType: "goto-call-logs",
      pipeline: "call-logs",
      key: null,
      instance: "pipelines pid 1",
      startedAt,
      endedAt: new Date(startedAt.getTime() + 100),
      durationMs: 100,
      outcome,
      counts: { rows: 0, pages: 0, requests: 0, http429: 0, retries: 0, tokenRefreshes: 0 },
      error: outcome === "failure" ? { message: "GoTo answered 503", code: "GW_HTTP", cause: "maintenance", fix: "run the day again later" } : null,
      details: null,
    });
  }

  const mailsTo = (address: string) => sink.received.filter((m) => m.to.includes(address)).map((m) => mailHeader(m.raw, "Subject"));
  /** Both replicas have heard and checked well past the moment: a second mail would be there by then. */
  async function settled(): Promise<void> {
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_mail_outbox")).rowCount === 0, 10_000, "an empty outbox");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }

  it("mails one failure and one recovery, whichever replica decides them", async () => {
    // Both replicas watch (each has checked once) before the pipeline fails.
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_alert_watchers").catch(() => ({ rowCount: 0 }))).rowCount === 1, 30_000, "the watch registered");
    await run("export", "failure");
    await run("export", "failure");
    await eventually(() => mailsTo("ops@example.com").length >= 1, 20_000, "the failure mail");
    await run("export", "success");
    await eventually(() => mailsTo("ops@example.com").length >= 2, 20_000, "the recovered mail");
    await settled();
    assert.deepEqual(mailsTo("ops@example.com"), ["[call-logs] export failed", "[call-logs] export recovered"]);
  });

  it("mails one missed alert for a node that did not run in time, though both replicas check", async () => {
    await eventually(() => mailsTo("night@example.com").length >= 1, 20_000, "the missed mail");
    await settled();
    assert.deepEqual(mailsTo("night@example.com"), ["[pipeline] nightly missed its schedule"]);
    await run("nightly", "success");
    await eventually(() => mailsTo("night@example.com").length >= 2, 20_000, "the recovered mail");
    await settled();
    assert.deepEqual(mailsTo("night@example.com"), ["[pipeline] nightly missed its schedule", "[call-logs] nightly recovered"]);
    const { rows } = await admin.query("SELECT node_id, episode, kind FROM gluework_alerts ORDER BY node_id, created_at");
    assert.deepEqual(rows, [
      { node_id: "export", episode: 1, kind: "failure" },
      { node_id: "export", episode: 1, kind: "recovered" },
      { node_id: "nightly", episode: 1, kind: "missed" },
      { node_id: "nightly", episode: 1, kind: "recovered" },
    ]);
  });

  it("delivers an alert decided while the SMTP server was down once, after both processes were killed and one started again", async () => {
    const port = sink.port;
    await sink.close();
    await run("crashing", "failure");
    await eventually(async () => (await admin.query("SELECT subject FROM gluework_mail_outbox")).rows.map((r) => r.subject).join() === "[call-logs] crashing failed", 20_000, "the alert in the outbox");
    await Promise.all(replicas.map((r) => new Promise<void>((resolve) => (r.child.exitCode !== null ? resolve() : (r.child.once("exit", () => resolve()), r.child.kill("SIGKILL"))))));
    sink = new SmtpSink();
    await sink.listen(port);
    replicas = await startReplicas(1);
    await deployEverywhere(replicas, flow(), "/ready");
    await eventually(() => mailsTo("ops@example.com").length >= 1, 30_000, "the alert after the restart");
    await settled();
    assert.deepEqual(mailsTo("ops@example.com"), ["[call-logs] crashing failed"]);
  });
});

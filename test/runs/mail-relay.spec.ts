import assert from "node:assert/strict";
import pg from "pg";
import mailRelay from "../../src/nodes/mail-relay";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import { SmtpSink, SmtpSinkOptions } from "../../src/sandbox/smtp-sink";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { RunRow, runsOf, waitForRuns } from "../support/runs";
import { selfSignedCertificate } from "../support/tls";

const helper = nodeRed();
const SMTP_USER = { user: "relay@example.com", pass: "sink-password-0123" };

describe("runs of the mail relay (mail-relay)", function () {
  this.timeout(60_000);
  let testDb: TestDatabase;
  let admin: pg.Client;
  let sink: SmtpSink | undefined;
  let failed: any[];
  let emitted: any[];
  let port = 0;

  before(async () => {
    testDb = await createTestDatabase("gw_runs_relay");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
  });
  after(async () => {
    await admin.end();
    await testDb.drop();
  });
  afterEach(async () => {
    await helper.unload();
    await sink?.close();
    sink = undefined;
    await admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
    await admin.query("DELETE FROM gluework_mail_outbox").catch(() => undefined);
  });

  async function startSink(options: SmtpSinkOptions = {}): Promise<void> {
    sink = new SmtpSink({ tls: selfSignedCertificate(), auth: { user: SMTP_USER.user, pass: SMTP_USER.pass }, ...options });
    port = await sink.listen(port);
  }

  async function load(): Promise<any> {
    const flow = [
      { id: "tab", type: "tab", label: "relay" },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(port), security: "starttls", verifyCertificate: false, auth: "password", sender: "monitoring@example.com", poolSize: "5" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4" },
      { id: "relay", type: "mail-relay", z: "tab", x: 100, y: 100, smtp: "smtp", database: "db", to: "ops@example.com", allowed: "@example.com", subject: "Monitoring message", maxKiB: "64", retries: "0", retryDelay: "10", wires: [[], [], ["failed"]] },
      { id: "failed", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 100, y: 200, scope: "local", pipelines: "mail-relay", outcomes: "", wires: [["emitted"], []] },
      { id: "emitted", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    await helper.load([smtpConnection, postgresDatabase, mailRelay, pipelineRuns], flow, { smtp: { user: SMTP_USER.user, password: SMTP_USER.pass }, db: { user: "postgres" } });
    failed = [];
    emitted = [];
    helper.getNode("failed").on("input", (m: any) => failed.push(m));
    helper.getNode("emitted").on("input", (m: any) => emitted.push(m));
    return helper.getNode("relay");
  }

  const sum = (runs: RunRow[], key: "rows" | "requests" | "retries") => runs.reduce((n, r) => n + r[key], 0);
  /** The runs of the passes that delivered `mails` mails in all. */
  const passesFor = (attempts: number) =>
    eventually(async () => {
      const runs = await runsOf(admin, "relay");
      return sum(runs, "requests") >= attempts ? runs : undefined;
    }, 20_000, `runs covering ${attempts} deliveries`);

  it("records a delivery pass as one run, however many mails it sent", async () => {
    await startSink({ answerDelayMs: 300 });
    const relay = await load();
    for (let i = 0; i < 20; i++) relay.receive({ payload: { message: `alert ${i}` } });
    await eventually(() => sink!.received.length === 20, 20_000, "every mail");
    const runs = await passesFor(20);
    assert.equal(sum(runs, "rows"), 20, "mails sent");
    assert.equal(sum(runs, "requests"), 20);
    assert.ok(runs.length < 20, `fewer runs than mails: ${runs.length}`);
    for (const run of runs) {
      assert.equal(run.outcome, "success");
      assert.equal(run.pipeline, "mail-relay");
      assert.equal(run.error_message, null);
      assert.equal(run.details!.failed, 0);
    }
    await eventually(() => emitted.length === runs.length, 5000, "each pass from pipeline-runs");
  });

  it("records a pass with a mail the server refused as partial, and one with nothing sent as a failure", async () => {
    await startSink({
      answerDelayMs: 500,
      serverOptions: {
        onRcptTo(address, _session, callback) {
          if (address.address === "nobody@example.com") return callback(Object.assign(new Error("no such user"), { responseCode: 550 }));
          callback();
        },
      },
    });
    const relay = await load();
    relay.receive({ payload: { message: "goes" }, to: "ops@example.com" });
    relay.receive({ payload: { message: "never" }, to: "nobody@example.com" });
    await eventually(() => failed.length === 1 && sink!.received.length === 1, 20_000, "one mail sent, one failed");
    const [pass] = await waitForRuns(admin, "relay", 1);
    assert.equal(pass!.outcome, "partial");
    assert.deepEqual([pass!.rows, pass!.requests, pass!.details!.failed], [1, 2, 1]);
    assert.equal(pass!.error_code, "GW_MAIL_NOT_SENT");
    assert.match(pass!.error_message ?? "", /^1 of 2 mails sent; 1 failed: .*550/);

    relay.receive({ payload: { message: "never again" }, to: "nobody@example.com" });
    await eventually(() => failed.length === 2, 20_000, "the second refusal");
    const [, failure] = await waitForRuns(admin, "relay", 2);
    assert.equal(failure!.outcome, "failure");
    assert.deepEqual([failure!.rows, failure!.requests], [0, 1]);
    assert.match(failure!.error_message ?? "", /^0 of 1 mails sent; 1 failed: .*no such user/);
  });

  it("keeps a pass open while the SMTP server is down, and records it as partial once the server took the mail", async () => {
    await startSink();
    await sink!.close();
    const relay = await load();
    relay.receive({ payload: { message: "while down" } });
    await eventually(async () => (await admin.query("SELECT count(*)::int AS n FROM gluework_mail_outbox")).rows[0].n === 1, 10_000, "the mail stored");
    // A probe or two fail, then the server is back.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(await runsOf(admin, "relay"), [], "no run while the relay waits for the server");
    await startSink();
    await eventually(() => sink!.received.length === 1, 30_000, "the mail once the server is back");
    const [pass] = await waitForRuns(admin, "relay", 1);
    assert.equal(pass!.outcome, "partial");
    assert.equal(pass!.rows, 1);
    assert.ok(pass!.details!.deferred >= 1, "the tries while the server was down");
    assert.equal(pass!.requests, pass!.details!.deferred + 1);
    assert.equal(pass!.retries, pass!.details!.deferred);
    assert.match(pass!.error_message ?? "", /waiting for the SMTP server: .*(ECONNREFUSED|ECONNECTION)/);
  });
});

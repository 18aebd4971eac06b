import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { OnceRuns } from "../../src/core/db/once";
import { instanceName } from "../../src/core/instance";
import gotoCallLogs from "../../src/nodes/goto-call-logs";
import gotoCredentials from "../../src/nodes/goto-credentials";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { eventually, nodeRed } from "../support/node-red";
import { countsOf, runsOf, runsSuite, waitForRuns } from "../support/runs";

const helper = nodeRed();

describe("runs of the call-log export (goto-call-logs)", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
  const suite = runsSuite(sandbox, "gw_runs_calls");
  let out: any[];
  let caught: any[];
  let emitted: any[];
  let warnings: string[];

  afterEach(async () => {
    await helper.unload();
    sandbox.server.clearFaults();
    await suite.admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
  });

  async function load(): Promise<void> {
    const flow = [
      { id: "tab", type: "tab", label: "call logs" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: suite.testDb.name, ssl: "disable", poolSize: "4" },
      { id: "creds", type: "goto-credentials", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "postgres", database: "db", requestsPerSecond: "10" },
      { id: "calls", type: "goto-call-logs", z: "tab", x: 100, y: 100, name: "nightly export", goto: "creds", timeZone: "UTC", wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", x: 200, y: 100, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 300, y: 100, scope: ["calls"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 400, y: 100, wires: [] },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 500, y: 100, database: "db", scope: "local", pipelines: "", outcomes: "", wires: [["emitted"], []] },
      { id: "emitted", type: "helper", z: "tab", x: 600, y: 100, wires: [] },
    ];
    await helper.load([postgresDatabase, gotoCredentials, gotoCallLogs, pipelineRuns], flow, {
      db: { user: "postgres" },
      creds: { clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken: sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId) },
    });
    out = [];
    caught = [];
    emitted = [];
    warnings = [];
    helper.getNode("out").on("input", (m: any) => out.push(m));
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
    helper.getNode("emitted").on("input", (m: any) => emitted.push(m));
    helper.getNode("calls").on("call:warn", (call: any) => warnings.push(String(call.args[0])));
  }

  const stat = (name: string) => sandbox.server.counter(name);
  const rowsSent = () => out.reduce((n, m) => n + (m.payload as unknown[]).length, 0);

  it("records a day it exported as a success, with the calls, pages, requests, 429s and the token refresh it made", async () => {
    const day = "2026-05-04";
    sandbox.goto.calls.setVolume(day, 260);
    await load();
    sandbox.server.resetStats();
    helper.getNode("calls").receive({ payload: { from: day } });
    const [run] = await waitForRuns(suite.admin, "calls", 1, 40_000);
    assert.equal(caught.length, 0);
    assert.equal(run!.outcome, "success");
    assert.equal(run!.pipeline, "call-logs");
    assert.equal(run!.node_type, "goto-call-logs");
    assert.equal(run!.run_key, day);
    assert.equal(run!.instance, instanceName());
    assert.equal(run!.error_message, null);
    assert.deepEqual(countsOf(run!), {
      rows: rowsSent(),
      pages: stat("goto call-reports user pages") + stat("goto call-reports call pages"),
      requests: stat("goto call-reports requests") + stat("goto api 401"),
      http_429: stat("goto call-reports 429"),
      retries: 0,
      token_refreshes: stat("goto refresh"),
    });
    assert.equal(run!.rows, 260);
    assert.equal(run!.token_refreshes, 1, "the first run refreshed the seeded token");
    assert.ok(run!.requests > run!.pages || run!.http_429 === 0);

    // The pipeline-runs node sent the same record.
    const msg = await eventually(() => emitted.find((m) => m.payload.id === run!.id), 10_000, "the record from pipeline-runs");
    assert.equal(msg.topic, "call-logs");
    assert.equal(msg.payload.outcome, "success");
    assert.equal(msg.payload.nodeName, "nightly export");
    assert.deepEqual(msg.payload.counts, { rows: 260, pages: run!.pages, requests: run!.requests, http429: run!.http_429, retries: 0, tokenRefreshes: 1 });

    // The same day again, this instance having exported it: a run of its own, with the token it has.
    sandbox.server.resetStats();
    helper.getNode("calls").receive({ payload: { from: day } });
    const again = (await waitForRuns(suite.admin, "calls", 2, 40_000))[1]!;
    assert.equal(again.outcome, "success");
    assert.equal(again.token_refreshes, 0);
    assert.equal(again.requests, stat("goto call-reports requests"));
  });

  it("counts the requests it sent again after a 503, and the 429s of a tighter rate limit", async () => {
    const day = "2026-05-05";
    sandbox.goto.calls.setVolume(day, 120);
    await load();
    sandbox.goto.calls.rateLimit = 3;
    sandbox.server.resetStats();
    sandbox.server.inject({ method: "GET", path: "/goto/api/call-reports/v1", status: 503, times: 2 });
    helper.getNode("calls").receive({ payload: { from: day } });
    const [run] = await waitForRuns(suite.admin, "calls", 1, 40_000).finally(() => (sandbox.goto.calls.rateLimit = 10));
    assert.equal(run!.outcome, "success");
    assert.equal(run!.retries, 2);
    assert.equal(run!.requests, stat("goto call-reports requests") + stat("fault 503") + stat("goto api 401"));
    assert.equal(run!.http_429, stat("goto call-reports 429"));
    assert.ok(run!.http_429 > 0, "GoTo's limit of 3 a second was hit");
    assert.equal(run!.rows, 120);
  });

  it("records a day that failed, with GoTo's answer as the error", async () => {
    const day = "2026-05-06";
    sandbox.goto.calls.setVolume(day, 40);
    await load();
    sandbox.server.inject({ method: "GET", path: "/goto/api/call-reports/v1", status: 400, json: { errorCode: "BAD_REQUEST", message: "the day is out of range" } });
    helper.getNode("calls").receive({ payload: { from: day } });
    const [run] = await waitForRuns(suite.admin, "calls", 1, 40_000);
    await eventually(() => caught.length === 1, 5000, "the failure at Catch");
    assert.equal(run!.outcome, "failure");
    assert.equal(run!.run_key, day);
    assert.equal(run!.error_code, "GW_HTTP_400");
    assert.match(run!.error_message ?? "", /GoTo answered 400 Bad Request .*BAD_REQUEST: the day is out of range/);
    assert.equal(run!.error_message, caught[0].error.message, "what Catch saw");
    assert.ok(run!.requests >= 1);
  });

  it("records a day another instance exported as skipped, naming it", async () => {
    const day = "2026-05-07";
    const db = await Database.open({ kind: "server", connection: suite.testDb.connection }, { warn: () => undefined });
    try {
      const claimed = await new OnceRuns(db, "goto-call-logs:calls").claim(day);
      assert.ok("claim" in claimed);
      await claimed.claim.done({ calls: 12 });
      await db.query("UPDATE gluework_once SET holder_name = 'replica-b pid 7' WHERE job = $1 AND run_key = $2", ["goto-call-logs:calls", day]);
    } finally {
      await db.close();
    }
    await load();
    helper.getNode("calls").receive({ payload: { from: day } });
    const [run] = await waitForRuns(suite.admin, "calls", 1);
    assert.equal(run!.outcome, "skipped");
    assert.deepEqual(run!.details, { doneBy: "replica-b pid 7" });
    assert.equal(run!.requests, 0);
    const [node] = (await suite.admin.query("SELECT * FROM gluework_run_nodes WHERE node_id = 'calls'")).rows;
    assert.ok(node.last_outcome !== "skipped", "a skipped run is not the node's latest");
  });

  it("exports all the same when its run cannot be recorded: one warning, and the record still goes out", async () => {
    const day = "2026-05-08";
    sandbox.goto.calls.setVolume(day, 30);
    await load();
    // The first run creates the table; then it goes away, as on a database that refuses the write.
    helper.getNode("calls").receive({ payload: { from: day } });
    const before = (await waitForRuns(suite.admin, "calls", 1, 40_000)).length;
    await suite.admin.query("ALTER TABLE gluework_runs RENAME TO gluework_runs_away");
    try {
      out = [];
      helper.getNode("calls").receive({ payload: { from: day } });
      await eventually(() => emitted.some((m) => m.payload.id === null), 40_000, "the first run announced");
      helper.getNode("calls").receive({ payload: { from: day } });
      const unstored = await eventually(() => emitted.filter((m) => m.payload.id === null).length === 2 && emitted.filter((m) => m.payload.id === null), 40_000, "two runs announced without an id");
      assert.deepEqual(unstored.map((m) => m.payload.outcome), ["success", "success"]);
      assert.equal(rowsSent(), 60, "both days exported");
      assert.equal(caught.length, 0, "no failure reached Catch");
      assert.equal(warnings.filter((w) => /could not be recorded/.test(w)).length, 1, `one warning: ${JSON.stringify(warnings)}`);
    } finally {
      await suite.admin.query("ALTER TABLE gluework_runs_away RENAME TO gluework_runs");
    }
    helper.getNode("calls").receive({ payload: { from: day } });
    await waitForRuns(suite.admin, "calls", before + 1, 40_000);
    await eventually(() => warnings.some((w) => w === "runs are recorded again (2 could not be)"), 5000, "the line that says so");
    assert.equal((await runsOf(suite.admin, "calls")).length, before + 1);
  });
});

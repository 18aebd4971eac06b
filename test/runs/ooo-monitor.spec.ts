import assert from "node:assert/strict";
import pg from "pg";
import graphApp from "../../src/nodes/graph-app";
import graphOooStatus from "../../src/nodes/graph-ooo-status";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn } from "../../src/sandbox/graph";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { countsOf, waitForRuns } from "../support/runs";

const helper = nodeRed();

describe("runs of the out-of-office monitor (graph-ooo-status)", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  let admin: pg.Client;
  let completed: any[];
  let caught: any[];
  let emitted: any[];
  let tests = 0;
  let id: string;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_runs_ooo");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    sandbox.graph.addUser({ mail: "ann@contoso.test", displayName: "Ann" });
    sandbox.graph.addUser({ mail: "bob@contoso.test", displayName: "Bob", replies: alwaysOn("Bob is away") });
  });
  after(async () => {
    await admin.end();
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(async () => {
    await helper.unload();
    sandbox.server.clearFaults();
  });

  /** A monitor of its own per test (the watch list is kept per node id), its first cycle done. */
  async function start(users: string): Promise<any> {
    id = `ooo${++tests}`;
    const flow = [
      { id: "tab", type: "tab", label: "ooo" },
      { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4" },
      { id, type: "graph-ooo-status", z: "tab", x: 100, y: 100, app: "app", database: "db", watchedUsers: users, interval: "3600", readsInFlight: "4", version: 2, wires: [[], [], [], []] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: [id], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      { id: "complete", type: "complete", z: "tab", x: 100, y: 260, scope: [id], uncaught: false, wires: [["completed"]] },
      { id: "completed", type: "helper", z: "tab", x: 300, y: 260, wires: [] },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 100, y: 320, database: "db", scope: "all", pipelines: "ooo-monitor", outcomes: "", wires: [["emitted"], []] },
      { id: "emitted", type: "helper", z: "tab", x: 300, y: 320, wires: [] },
    ];
    await helper.load([graphApp, graphOooStatus, postgresDatabase, pipelineRuns], flow, { app: { clientSecret: MICROSOFT_DEMO_APP.clientSecret }, db: { user: "postgres" } });
    completed = [];
    caught = [];
    emitted = [];
    for (const [node, list] of [["completed", completed], ["caught", caught], ["emitted", emitted]] as const) helper.getNode(node).on("input", (m: any) => list.push(m));
    const node = helper.getNode(id);
    await eventually(() => node.status.getCalls().some((c: any) => /watched · .* · \d\d:\d\d/.test(c.args[0]?.text ?? "")), 10_000, "the first poll");
    await waitForRuns(admin, id, 1);
    return node;
  }

  async function poll(node: any): Promise<void> {
    const done = completed.length + caught.length;
    node.receive({ topic: "poll" });
    await eventually(() => completed.length + caught.length > done, 15_000, "the poll");
  }

  const stat = (name: string) => sandbox.server.counter(name);

  it("records each cycle as a run: the users read, the batches sent, the mailbox reads throttled and the token it had to get", async () => {
    const node = await start("ann@contoso.test\nbob@contoso.test");
    const [first] = await waitForRuns(admin, id, 1);
    assert.equal(first!.outcome, "success");
    assert.equal(first!.pipeline, "ooo-monitor");
    assert.equal(first!.rows, 2);
    sandbox.microsoft.expireTokens();
    sandbox.graph.throttle("ann@contoso.test", 1, "0");
    sandbox.server.resetStats();
    await poll(node);
    const [, run] = await waitForRuns(admin, id, 2);
    assert.equal(run!.outcome, "success");
    assert.deepEqual(countsOf(run!), {
      rows: 2,
      pages: 0,
      // The batch refused for its expired token, the batch again with a new one, and the one that read Ann after her 429.
      requests: stat("graph batch") + stat("graph 401"),
      http_429: stat("graph 429"),
      retries: 0,
      token_refreshes: stat("microsoft token issued"),
    });
    assert.equal(run!.http_429, 1);
    assert.equal(run!.token_refreshes, 1);
    assert.deepEqual(run!.details, { watched: 2, notRead: 0, batches: run!.details!.batches, throttled: 1, errors: 0, changes: 0 });
    // Every instance's runs, from the database: both cycles, each once.
    await eventually(() => emitted.length === 2, 10_000, "both cycles from pipeline-runs");
    assert.deepEqual(emitted.map((m) => m.payload.id), [first!.id, run!.id]);
  });

  it("records a cycle that missed some users as partial, and one that read nobody as a failure", async () => {
    const node = await start("ann@contoso.test\nbob@contoso.test");
    const bob = sandbox.graph.user("bob@contoso.test")!;
    try {
      bob.mailbox = false;
      await poll(node);
      const [, partial] = await waitForRuns(admin, id, 2);
      assert.equal(partial!.outcome, "partial");
      assert.equal(partial!.rows, 1);
      assert.match(partial!.error_message ?? "", /^1 of 2 users not read \(no-mailbox\)/);
      assert.equal(partial!.details!.notRead, 1);
    } finally {
      bob.mailbox = true;
    }
    sandbox.graph.permissions.mailboxSettingsRead = false;
    try {
      await poll(node);
      const [, , failed] = await waitForRuns(admin, id, 3);
      assert.equal(failed!.outcome, "failure");
      assert.equal(failed!.rows, 0);
      assert.match(failed!.error_message ?? "", /MailboxSettings\.Read/);
      assert.equal(failed!.error_message, caught.at(-1).error.message, "what Catch saw");
    } finally {
      sandbox.graph.permissions.mailboxSettingsRead = true;
    }
    const [latest] = (await admin.query("SELECT last_outcome, last_success_at, last_failure_at FROM gluework_run_nodes WHERE node_id = $1", [id])).rows;
    assert.equal(latest.last_outcome, "failure");
    assert.ok(latest.last_success_at < latest.last_failure_at);
  });
});

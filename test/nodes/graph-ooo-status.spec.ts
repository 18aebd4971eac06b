import assert from "node:assert/strict";
import graphApp from "../../src/nodes/graph-app";
import graphOooStatus from "../../src/nodes/graph-ooo-status";
import postgresDatabase from "../../src/nodes/postgres-database";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn, disabled, scheduled } from "../../src/sandbox/graph";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { DATABASE_KINDS, databaseNode, kindLabel } from "../support/databases";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();
const nodes = [graphApp, graphOooStatus, postgresDatabase];

for (const kind of DATABASE_KINDS) describe(`graph-ooo-status (${kindLabel(kind)})`, function () {
  this.timeout(30_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  let seen: { changes: any[]; answers: any[]; refusals: any[]; caught: any[]; completed: any[] };
  let testNumber = 0;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
    sandbox.graph.addUser({ mail: "ann@contoso.test", displayName: "Ann" });
    sandbox.graph.addUser({ mail: "bob@contoso.test", displayName: "Bob", replies: alwaysOn("Bob is away") });
    sandbox.graph.addUser({ mail: "onprem@contoso.test", mailbox: false });
    sandbox.graph.addUser({ mail: "secret@contoso.test", restricted: true });
    sandbox.graph.addUser({ mail: "carol.smith@contoso.test", userPrincipalName: "csmith@contoso.test", displayName: "Carol" });
  });
  after(async () => {
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(() => helper.unload());

  function flow(users: string, id: string) {
    return [
      { id: "tab", type: "tab", label: "ooo" },
      { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
      { id: "db", ...databaseNode(kind, testDb) },
      { id, type: "graph-ooo-status", z: "tab", x: 100, y: 100, app: "app", database: "db", users, interval: "3600", wires: [["changes"], ["answers"], ["refusals"]] },
      { id: "changes", type: "helper", z: "tab", x: 300, y: 60, wires: [] },
      { id: "answers", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "refusals", type: "helper", z: "tab", x: 300, y: 140, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      { id: "complete", type: "complete", z: "tab", x: 100, y: 260, scope: [id], uncaught: false, wires: [["completed"]] },
      { id: "completed", type: "helper", z: "tab", x: 300, y: 260, wires: [] },
    ];
  }

  /** Each test watches its own list (the list is kept per node id), unless it names one. */
  async function start(users = "", id = `ooo${++testNumber}`) {
    seen = { changes: [], answers: [], refusals: [], caught: [], completed: [] };
    await helper.load(nodes, flow(users, id), { app: { clientSecret: MICROSOFT_DEMO_APP.clientSecret }, db: { user: "postgres" } });
    for (const out of ["changes", "answers", "refusals", "caught", "completed"] as const) helper.getNode(out).on("input", (m: any) => seen[out].push(m));
    const node = helper.getNode(id);
    // The node polls once as it starts; tests begin after that first poll.
    await eventually(() => node.status.getCalls().some((c: any) => /watched · .* · \d\d:\d\d/.test(c.args[0]?.text ?? "")), 10_000, "the first poll");
    return node;
  }

  /** Polls now and waits until the node is done with the message. */
  async function poll(node: any) {
    const done = seen.completed.length + seen.caught.length;
    node.receive({ topic: "poll" });
    await eventually(() => seen.completed.length + seen.caught.length > done, 15_000, "the poll");
  }

  it("watches a user added as the original service did, and sends the first look once, as a baseline", async () => {
    const node = await start();
    node.receive({ payload: { email: "bob@contoso.test", status: "True" } });
    await eventually(() => seen.answers.length === 1, 10_000, "the answer");
    assert.equal(seen.answers[0].statusCode, 200);
    assert.deepEqual({ email: seen.answers[0].payload.email, watching: seen.answers[0].payload.watching }, { email: "bob@contoso.test", watching: true });
    assert.equal(seen.changes.length, 1);
    const baseline = seen.changes[0].payload;
    assert.equal(baseline.initial, true);
    assert.equal(baseline.outOfOffice, true);
    assert.equal(baseline.status, "alwaysEnabled");
    assert.equal(baseline.externalReplyMessage.text, "Bob is away");
    assert.equal(baseline.previous, null);
    await poll(node);
    assert.equal(seen.changes.length, 1, "a poll with nothing new sends nothing");
  });

  it("finds a user by primary address when it differs from the user principal name", async () => {
    const node = await start();
    node.receive({ payload: { email: "carol.smith@contoso.test", status: true } });
    await eventually(() => seen.answers.length === 1, 10_000, "the answer");
    assert.equal(seen.answers[0].payload.displayName, "Carol");
  });

  it("stops watching a user", async () => {
    const node = await start();
    node.receive({ payload: { email: "ann@contoso.test", status: true } });
    await eventually(() => seen.answers.length === 1, 10_000, "the first answer");
    node.receive({ payload: { email: "ann@contoso.test", status: "False" } });
    await eventually(() => seen.answers.length === 2, 10_000, "the second answer");
    assert.deepEqual({ watching: seen.answers[1].payload.watching, wasWatched: seen.answers[1].payload.wasWatched }, { watching: false, wasWatched: true });
    node.receive({ topic: "list" });
    await eventually(() => seen.answers.length === 3, 10_000, "the list");
    assert.equal(seen.answers[2].payload.watching.some((u: any) => u.email === "ann@contoso.test"), false);
  });

  const refusals: Array<[string, number, string]> = [
    ["nobody@contoso.test", 404, "not-found"],
    ["onprem@contoso.test", 404, "no-mailbox"],
    ["secret@contoso.test", 403, "forbidden"],
  ];
  for (const [email, statusCode, problem] of refusals) {
    it(`answers ${problem} for ${email} with ${statusCode} and does not watch it`, async () => {
      const node = await start();
      node.receive({ payload: { email, status: true } });
      await eventually(() => seen.refusals.length === 1, 10_000, "the refusal");
      assert.equal(seen.refusals[0].statusCode, statusCode);
      assert.equal(seen.refusals[0].payload.error, problem);
      assert.match(seen.refusals[0].payload.reason, new RegExp(email.replace(/\./g, "\\.")));
      node.receive({ topic: "list" });
      await eventually(() => seen.answers.length === 1, 10_000, "the list");
      assert.equal(seen.answers[0].payload.watching.some((u: any) => u.email === email), false);
    });
  }

  it("answers a request it cannot read with 400 and reports it to Catch", async () => {
    const node = await start();
    node.receive({ payload: { email: "ann@contoso.test", status: "perhaps" } });
    await eventually(() => seen.refusals.length === 1 && seen.caught.length === 1, 10_000, "the refusal and the catch");
    assert.equal(seen.refusals[0].statusCode, 400);
    assert.match(seen.caught[0].error.message, /status must be true or false/);
  });

  it("reports a change once, then nothing until the next one", async () => {
    const node = await start();
    node.receive({ payload: { email: "ann@contoso.test", status: true } });
    await eventually(() => seen.changes.length === 1, 10_000, "the baseline");
    sandbox.graph.setReplies("ann@contoso.test", alwaysOn("Ann is on leave"));
    await poll(node);
    await poll(node);
    assert.equal(seen.changes.length, 2);
    const change = seen.changes[1].payload;
    assert.equal(change.initial, false);
    assert.equal(change.outOfOffice, true);
    assert.equal(change.previous.outOfOffice, false);
    assert.equal(seen.changes[1].topic, "ann@contoso.test");
    sandbox.graph.setReplies("ann@contoso.test", disabled());
    await poll(node);
    assert.equal(seen.changes.length, 3);
    assert.equal(seen.changes[2].payload.outOfOffice, false);
  });

  it("sends the change when a scheduled window opens and closes, with no change to the setting and no poll", async () => {
    const node = await start();
    const now = Date.now();
    sandbox.graph.setReplies("ann@contoso.test", scheduled("Off this afternoon", new Date(now + 1500), new Date(now + 3000)));
    node.receive({ payload: { email: "ann@contoso.test", status: true } });
    await eventually(() => seen.changes.length === 1, 10_000, "the baseline");
    assert.equal(seen.changes[0].payload.outOfOffice, false);
    assert.equal(seen.changes[0].payload.status, "scheduled");
    const polls = sandbox.server.counter("graph batch");
    await eventually(() => seen.changes.length === 2, 10_000, "the window to open");
    assert.equal(seen.changes[1].payload.outOfOffice, true);
    assert.equal(seen.changes[1].payload.previous.outOfOffice, false);
    await eventually(() => seen.changes.length === 3, 10_000, "the window to close");
    assert.equal(seen.changes[2].payload.outOfOffice, false);
    assert.equal(sandbox.server.counter("graph batch"), polls, "no poll was needed");
    sandbox.graph.setReplies("ann@contoso.test", disabled());
  });

  it("keeps the watch list across a restart and does not report every user again", async () => {
    let node = await start("", "keeper");
    node.receive({ payload: ["ann@contoso.test", "bob@contoso.test"] });
    await eventually(() => seen.answers.length === 1, 10_000, "the answer");
    assert.equal(seen.changes.length, 2, "two baselines");
    await helper.unload();
    node = await start("", "keeper");
    await poll(node);
    node.receive({ topic: "list" });
    await eventually(() => seen.answers.length === 1, 10_000, "the list");
    assert.deepEqual(seen.answers[0].payload.watching.map((u: any) => u.email).sort(), ["ann@contoso.test", "bob@contoso.test"]);
    assert.equal(seen.changes.length, 0, "nothing reported again after the restart");
  });

  it("sets the whole list from its settings at deploy, refusing the unknown ones to Catch", async () => {
    const node = await start("ann@contoso.test\nnobody@contoso.test", "from-settings");
    await eventually(() => seen.caught.length === 1 && seen.changes.length === 1, 10_000, "the baseline and the refusal");
    assert.match(seen.caught[0].error.message, /nobody@contoso\.test/);
    node.receive({ topic: "list" });
    await eventually(() => seen.answers.length === 1, 10_000, "the list");
    assert.deepEqual(seen.answers[0].payload.watching.map((u: any) => u.email), ["ann@contoso.test"]);
  });

  it("waits out a user's own 429 and Retry-After without losing the change", async () => {
    const node = await start();
    node.receive({ payload: ["ann@contoso.test", "bob@contoso.test"] });
    await eventually(() => seen.changes.length === 2, 10_000, "the baselines");
    sandbox.graph.setReplies("ann@contoso.test", alwaysOn("Back soon"));
    sandbox.graph.throttle("ann@contoso.test", 2, "1");
    const throttled = sandbox.server.counter("graph 429");
    const started = Date.now();
    await poll(node);
    assert.equal(sandbox.server.counter("graph 429") - throttled, 2);
    assert.ok(Date.now() - started >= 2000, "each Retry-After was waited out");
    assert.equal(seen.changes.length, 3);
    assert.equal(seen.changes[2].payload.email, "ann@contoso.test");
    assert.equal(seen.caught.length, 0);
    sandbox.graph.setReplies("ann@contoso.test", disabled());
  });

  it("replaces an expired token without a failed poll", async () => {
    const node = await start();
    node.receive({ payload: { email: "bob@contoso.test", status: true } });
    await eventually(() => seen.answers.length === 1, 10_000, "the answer");
    sandbox.microsoft.expireTokens();
    const refused = sandbox.server.counter("graph 401");
    const issued = sandbox.server.counter("microsoft token issued");
    sandbox.graph.setReplies("bob@contoso.test", disabled());
    await poll(node);
    assert.equal(sandbox.server.counter("graph 401") - refused, 1);
    assert.equal(sandbox.server.counter("microsoft token issued") - issued, 1);
    assert.equal(seen.caught.length, 0);
    assert.equal(seen.changes.at(-1).payload.outOfOffice, false, "the change came through");
    sandbox.graph.setReplies("bob@contoso.test", alwaysOn("Bob is away"));
  });
});

import assert from "node:assert/strict";
import graphApp from "../../src/nodes/graph-app";
import graphOooStatus from "../../src/nodes/graph-ooo-status";
import postgresDatabase from "../../src/nodes/postgres-database";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn, disabled, scheduled } from "../../src/sandbox/graph";
import type { Browser } from "playwright-core";
import { launchChromium } from "../support/browser";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { DATABASE_KINDS, databaseNode, kindLabel } from "../support/databases";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();
const nodes = [graphApp, graphOooStatus, postgresDatabase];

for (const kind of DATABASE_KINDS) describe(`graph-ooo-status (${kindLabel(kind)})`, function () {
  this.timeout(30_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  let seen: { changes: any[]; answers: any[]; refusals: any[]; summaries: any[]; caught: any[]; completed: any[] };
  let testNumber = 0;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
    sandbox.graph.addUser({ mail: "ann@contoso.test", displayName: "Ann" });
    sandbox.graph.addUser({ mail: "bob@contoso.test", displayName: "Bob", replies: alwaysOn("Bob is away") });
    sandbox.graph.addUser({ mail: "onprem@contoso.test", mailbox: false });
    sandbox.graph.addUser({ mail: "secret@contoso.test", restricted: true });
    sandbox.graph.addUser({ mail: "carol.smith@contoso.test", userPrincipalName: "csmith@contoso.test", displayName: "Carol" });
    sandbox.graph.addUser({ mail: "admin@contoso.test", userPrincipalName: "$admin@contoso.test", displayName: "Dollar Admin" });
  });
  after(async () => {
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(() => helper.unload());

  function flow(users: string, id: string, extra: Record<string, unknown> = {}) {
    return [
      { id: "tab", type: "tab", label: "ooo" },
      { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
      { id: "db", ...databaseNode(kind, testDb) },
      { id, type: "graph-ooo-status", z: "tab", x: 100, y: 100, app: "app", database: "db", watchedUsers: users, interval: "3600", readsInFlight: "4", version: 2, ...extra, wires: [["changes"], ["answers"], ["refusals"], ["summaries"]] },
      { id: "changes", type: "helper", z: "tab", x: 300, y: 60, wires: [] },
      { id: "summaries", type: "helper", z: "tab", x: 300, y: 180, wires: [] },
      { id: "answers", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "refusals", type: "helper", z: "tab", x: 300, y: 140, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      { id: "complete", type: "complete", z: "tab", x: 100, y: 260, scope: [id], uncaught: false, wires: [["completed"]] },
      { id: "completed", type: "helper", z: "tab", x: 300, y: 260, wires: [] },
    ];
  }

  /** Each test watches its own list (the list is kept per node id), unless it names one. */
  async function start(users = "", id = `ooo${++testNumber}`, options: { extra?: Record<string, unknown>; secret?: string; ready?: RegExp } = {}) {
    seen = { changes: [], answers: [], refusals: [], summaries: [], caught: [], completed: [] };
    await helper.load(nodes, flow(users, id, options.extra), { app: { clientSecret: options.secret ?? MICROSOFT_DEMO_APP.clientSecret }, db: { user: "postgres" } });
    for (const out of ["changes", "answers", "refusals", "summaries", "caught", "completed"] as const) helper.getNode(out).on("input", (m: any) => seen[out].push(m));
    const node = helper.getNode(id);
    // The node polls once as it starts; tests begin after that first poll.
    const ready = options.ready ?? /watched · .* · \d\d:\d\d/;
    await eventually(() => node.status.getCalls().some((c: any) => ready.test(c.args[0]?.text ?? "")), 10_000, "the first poll");
    return node;
  }

  const lastStatus = (node: any) => node.status.lastCall.args[0];

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

  it("watches a user principal name that starts with $, and one person once under two addresses", async () => {
    const node = await start();
    node.receive({ payload: { email: "$admin@contoso.test", status: true } });
    await eventually(() => seen.answers.length === 1, 10_000, "the answer");
    assert.equal(seen.answers[0].payload.displayName, "Dollar Admin");
    node.receive({ payload: { email: "admin@contoso.test", status: true } });
    await eventually(() => seen.answers.length === 2, 10_000, "the second answer");
    assert.equal(seen.changes.length, 1, "one first look");
    node.receive({ topic: "list" });
    await eventually(() => seen.answers.length === 3, 10_000, "the list");
    assert.deepEqual(seen.answers[2].payload.watching.map((u: any) => u.email), ["$admin@contoso.test"]);
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

  it("reads a list saved under the first version's 'users' property", async () => {
    const node = await start("", `v1-${testNumber}`, { extra: { watchedUsers: undefined, users: "ann@contoso.test bob@contoso.test", version: 1 } });
    await eventually(() => seen.changes.length === 2, 10_000, "the baselines");
    assert.deepEqual(seen.changes.map((c) => c.topic).sort(), ["ann@contoso.test", "bob@contoso.test"]);
    await poll(node);
    assert.equal(seen.summaries.at(-1).payload.read, 2);
  });

  it("sends a summary at the end of every cycle and stays green while everyone is read", async () => {
    const node = await start("ann@contoso.test\nbob@contoso.test");
    await poll(node);
    const summary = seen.summaries.at(-1);
    assert.equal(summary.topic, "cycle");
    assert.deepEqual(
      { watched: summary.payload.watched, read: summary.payload.read, notRead: summary.payload.notRead, throttled: summary.payload.throttled, errors: summary.payload.errors, failure: summary.payload.failure },
      { watched: 2, read: 2, notRead: 0, throttled: 0, errors: 0, failure: null },
    );
    assert.equal(lastStatus(node).fill, "green");
    assert.match(lastStatus(node).text, /^2 watched · 1 out · \d\d:\d\d$/);
  });

  it("turns yellow when some users were not read, and red when none were", async () => {
    const node = await start("ann@contoso.test\nbob@contoso.test");
    const ann = sandbox.graph.user("ann@contoso.test")!;
    const bob = sandbox.graph.user("bob@contoso.test")!;
    try {
      bob.mailbox = false;
      await poll(node);
      assert.equal(lastStatus(node).fill, "yellow");
      assert.match(lastStatus(node).text, /^1 of 2 read/);
      assert.deepEqual(seen.summaries.at(-1).payload.notReadUsers, [{ email: "bob@contoso.test", reason: "no-mailbox" }]);
      ann.mailbox = false;
      await poll(node);
      assert.equal(lastStatus(node).fill, "red");
      assert.match(lastStatus(node).text, /^none of 2 read/);
      ann.mailbox = true;
      bob.mailbox = true;
      await poll(node);
      assert.equal(lastStatus(node).fill, "green");
    } finally {
      ann.mailbox = true;
      bob.mailbox = true;
    }
  });

  it("turns red naming a missing permission, and tells Catch once", async () => {
    const node = await start("ann@contoso.test\nbob@contoso.test");
    sandbox.graph.permissions.mailboxSettingsRead = false;
    try {
      const caught = seen.caught.length;
      await poll(node);
      assert.deepEqual(lastStatus(node), { fill: "red", shape: "ring", text: "missing permission" });
      assert.equal(seen.caught.length - caught, 1);
      assert.match(seen.caught.at(-1).error.message, /MailboxSettings\.Read/);
    } finally {
      sandbox.graph.permissions.mailboxSettingsRead = true;
    }
  });

  it("turns red naming a refused client secret, without showing it", async () => {
    const node = await start("ann@contoso.test", undefined, { secret: "not-the-secret", ready: /app secret refused/ });
    assert.deepEqual(lastStatus(node), { fill: "red", shape: "ring", text: "app secret refused" });
    await eventually(() => seen.caught.length >= 1, 10_000, "the catch");
    assert.match(seen.caught[0].error.message, /refused the app's secret/);
    assert.doesNotMatch(JSON.stringify(node.status.getCalls().map((c: any) => c.args[0])), /not-the-secret/);
  });

  it("tries a user whose lookup failed at deploy again at the next poll", async () => {
    // The lookup and its four retries all fail; the poll that follows deploy finds the user.
    sandbox.server.inject({ method: "GET", path: "/microsoft/graph/v1.0/users/ann%40contoso.test", status: 503, headers: { "Retry-After": "0" }, times: 5 });
    const node = await start("ann@contoso.test");
    await eventually(() => seen.changes.length === 1, 10_000, "the baseline");
    assert.equal(seen.changes[0].payload.initial, true);
    assert.equal(seen.summaries.at(-1).payload.read, 1);
    assert.equal(lastStatus(node).fill, "green");
    sandbox.server.clearFaults();
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

describe("graph-ooo-status in the Node-RED editor", function () {
  this.timeout(120_000);
  let red: NodeRedProcess;
  let browser: Browser;

  before(async () => {
    red = await startNodeRed();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
  });

  it("keeps the watched users and the reads in flight through the edit dialog, and exports them", async () => {
    await red.deploy([
      { id: "ed-tab", type: "tab", label: "ooo" },
      { id: "ed-ooo", type: "graph-ooo-status", z: "ed-tab", x: 200, y: 100, app: "", database: "", watchedUsers: "ann@contoso.test\nbob@contoso.test", interval: "60", readsInFlight: "3", version: 2, wires: [[], [], [], []] },
    ]);
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(red.url);
    const loaded = () => (globalThis as any).RED?.nodes?.node?.("ed-ooo");
    await page.waitForFunction(loaded, undefined, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => (globalThis as any).RED.nodes.node("ed-ooo").watchedUsers), "ann@contoso.test\nbob@contoso.test");
    await page.evaluate(() => (globalThis as any).RED.editor.edit((globalThis as any).RED.nodes.node("ed-ooo")));
    const field = page.locator("#node-input-watchedUsers");
    await field.waitFor({ timeout: 20_000 });
    assert.equal(await field.inputValue(), "ann@contoso.test\nbob@contoso.test");
    assert.equal(await page.locator("#node-input-readsInFlight").inputValue(), "3");
    await field.fill("carol@contoso.test");
    // The editor's first-run tour may shade the page: press Done as its own handler would be.
    await page.evaluate(() => (globalThis as any).$("#node-dialog-ok").trigger("click"));
    await page.waitForFunction(() => (globalThis as any).RED.nodes.node("ed-ooo").watchedUsers === "carol@contoso.test", undefined, { timeout: 10_000 });
    const exported = await page.evaluate(() => (globalThis as any).RED.nodes.createCompleteNodeSet().find((n: any) => n.id === "ed-ooo"));
    assert.equal(exported.watchedUsers, "carol@contoso.test");
    assert.equal(exported.readsInFlight, "3");
    assert.equal(exported.version, 2);
    assert.equal(exported.wires.length, 4, "four outputs");
    await page.close();
  });
});

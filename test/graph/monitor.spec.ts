import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { ConfigError } from "../../src/core/errors";
import { EntraAppTokenSource } from "../../src/graph/app-token";
import { GraphClient, userPath } from "../../src/graph/client";
import { OutOfOfficeMonitor, cycleSummary } from "../../src/graph/monitor";
import { ReadBudget } from "../../src/graph/read-budget";
import { WatchListStore } from "../../src/graph/watch-list";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn } from "../../src/sandbox/graph";
import { TestDatabase, createTestDatabase } from "../support/pg";

describe("the budget of mailbox reads in flight", () => {
  it("halves once per window when Outlook answers 429, and grows back slowly as reads go through", () => {
    const budget = new ReadBudget(4);
    const first = budget.take(4);
    assert.equal(budget.available, 0);
    budget.throttled(first);
    budget.throttled(first); // a second 429 of the same window does not halve again
    budget.release(first);
    assert.equal(budget.limit, 2);
    const second = budget.take(4);
    assert.equal(second.slots, 2);
    budget.release(second);
    assert.equal(budget.calm, false);
    budget.succeeded(16);
    assert.equal(budget.limit, 3);
    budget.succeeded(24);
    assert.equal(budget.limit, 4);
    budget.succeeded(100);
    assert.equal(budget.calm, true);
    assert.equal(budget.limit, 4, "never above the setting");
    budget.succeeded(100);
    assert.equal(budget.limit, 4);
  });

  it("never goes below one read", () => {
    const budget = new ReadBudget(2);
    for (let i = 0; i < 5; i++) {
      const t = budget.take(1);
      budget.throttled(t);
      budget.release(t);
    }
    assert.equal(budget.limit, 1);
  });
});

describe("user paths", () => {
  it("addresses a name that starts with $ as users('$…'), quotes doubled, and any other as one encoded segment", () => {
    assert.equal(userPath("$adm'in@contoso.test"), "users('$adm''in%40contoso.test')");
    assert.equal(userPath("guest_x.com#EXT#@contoso.test"), "users/guest_x.com%23EXT%23%40contoso.test");
    assert.equal(userPath("5f0c2a1e-0000-4000-8000-000000000001"), "users/5f0c2a1e-0000-4000-8000-000000000001");
  });
});

describe("out-of-office monitor against the Graph sandbox", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  let db: Database;
  let listNumber = 0;
  const open: GraphClient[] = [];

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
    db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    sandbox.graph.generateUsers(120);
    sandbox.graph.addUser({ mail: "carol.smith@contoso.test", userPrincipalName: "csmith@contoso.test", displayName: "Carol" });
    sandbox.graph.addUser({ mail: "dollar@contoso.test", userPrincipalName: "$dollar@contoso.test", displayName: "Dollar", replies: alwaysOn("Away") });
  });
  after(async () => {
    await Promise.all(open.map((g) => g.close()));
    await db.close();
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(() => {
    sandbox.graph.appReadsInFlight = undefined;
    sandbox.graph.itemLatencyMs = 2;
    sandbox.graph.permissions.mailboxSettingsRead = true;
    sandbox.graph.permissions.userReadAll = true;
    sandbox.microsoft.tokenLifetime = 3599;
    sandbox.server.clearFaults();
  });

  function monitor(options: { readsInFlight?: number; cycleBudgetMs?: number; secret?: string } = {}) {
    const graph = new GraphClient({
      baseUrl: `${sandbox.url}/microsoft/graph`,
      auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, clientSecret: options.secret ?? MICROSOFT_DEMO_APP.clientSecret, authorityHost: sandbox.url }),
    });
    open.push(graph);
    return new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, `list${++listNumber}`), readsInFlight: options.readsInFlight, cycleBudgetMs: options.cycleBudgetMs });
  }

  const addresses = (from: number, count: number) => Array.from({ length: count }, (_, i) => `user${String(from + i).padStart(4, "0")}@contoso.test`);

  it("reads every user in every cycle while Outlook allows fewer reads in flight than the setting", async () => {
    const m = monitor();
    await m.replace(addresses(1, 60));
    sandbox.graph.appReadsInFlight = 2;
    sandbox.graph.appRetryAfter = "0.05";
    sandbox.graph.itemLatencyMs = 10;
    const throttled: number[] = [];
    for (let cycle = 0; cycle < 3; cycle++) {
      const result = await m.poll();
      assert.equal(result.read, 60, `cycle ${cycle} read everyone`);
      assert.deepEqual(result.notRead, []);
      assert.equal(result.failure, undefined);
      throttled.push(result.throttled);
    }
    assert.ok(throttled[0]! > 0, "Outlook refused reads in the first cycle");
    assert.ok(throttled[2]! * 4 < throttled[0]!, `fewer 429s once the budget came down (${throttled.join(", ")})`);
    assert.ok(m.budget.limit <= 3, `the budget came down (now ${m.budget.limit})`);
    // Outlook stops refusing: the budget goes back up to the setting.
    sandbox.graph.appReadsInFlight = undefined;
    for (let cycle = 0; cycle < 2; cycle++) assert.equal((await m.poll()).throttled, 0);
    assert.equal(m.budget.limit, 4);
    assert.equal(m.budget.calm, true);
  });

  it("keeps at most the setting's mailbox reads in flight, counted across every batch", async () => {
    const m = monitor({ readsInFlight: 2 });
    await m.replace(addresses(1, 100));
    sandbox.graph.itemLatencyMs = 10;
    sandbox.graph.resetLoad();
    const result = await m.poll();
    assert.equal(result.read, 100);
    assert.equal(sandbox.graph.peakReadsInFlight, 2);
    const wide = monitor();
    await wide.replace(addresses(1, 100));
    sandbox.graph.resetLoad();
    assert.equal((await wide.poll()).read, 100);
    assert.equal(sandbox.graph.peakReadsInFlight, 4, "four by default, whatever the number of batches");
  });

  it("waits out each user's own decimal Retry-After before asking again", async () => {
    const m = monitor();
    await m.replace(addresses(1, 30));
    sandbox.graph.throttle("user0007@contoso.test", 2, "0.4");
    const started = Date.now();
    const result = await m.poll();
    assert.equal(result.read, 30);
    assert.equal(result.throttled, 2);
    assert.ok(Date.now() - started >= 800, "0.4 s waited twice");
  });

  it("names the users a cycle could not read, and reads them first in the next one", async () => {
    // A budget that reads 40 users on a busy machine too, and a Retry-After well past it.
    const m = monitor({ cycleBudgetMs: 4000 });
    await m.replace(addresses(1, 40));
    sandbox.graph.throttle("user0033@contoso.test", 1, "30");
    const result = await m.poll();
    assert.equal(result.read, 39);
    assert.deepEqual(result.notRead, [{ email: "user0033@contoso.test", reason: "throttled" }]);
    assert.ok(result.seconds < 5, "a Retry-After past the cycle's end is not waited for");
    assert.deepEqual(cycleSummary(result).notReadUsers, [{ email: "user0033@contoso.test", reason: "throttled" }]);
    sandbox.graph.resetLoad();
    const next = await m.poll();
    assert.equal(next.read, 40);
    assert.equal(sandbox.graph.readLog[0], "user0033@contoso.test");
  });

  it("watches a user principal name that starts with $ as users('$…')", async () => {
    const m = monitor();
    const { entry, change } = await m.watch("$dollar@contoso.test");
    assert.equal(entry.displayName, "Dollar");
    assert.equal(change?.observation.outOfOffice, true);
    assert.equal((await m.poll()).read, 1);
  });

  it("tries a lookup that failed for a passing reason again at the next poll", async () => {
    const m = monitor();
    sandbox.server.inject({ method: "GET", path: "/microsoft/graph/v1.0/users/user0050%40contoso.test", status: 503, headers: { "Retry-After": "0" }, times: 10 });
    const first = await m.replace(["user0050@contoso.test", "user0051@contoso.test"]);
    assert.deepEqual(first.pending, ["user0050@contoso.test"]);
    assert.deepEqual(first.refused, []);
    sandbox.server.clearFaults();
    const result = await m.poll();
    assert.deepEqual(result.changes.map((c) => [c.email, c.initial]), [["user0050@contoso.test", true]]);
    assert.equal(result.read, 2);
    assert.deepEqual(m.pendingLookups, []);
  });

  it("counts a lookup that keeps failing as a user not read", async () => {
    const m = monitor();
    sandbox.server.inject({ method: "GET", path: "/microsoft/graph/v1.0/users/user0052%40contoso.test", status: 503, headers: { "Retry-After": "0" }, times: 100 });
    await m.replace(["user0052@contoso.test", "user0053@contoso.test"]);
    const result = await m.poll();
    assert.equal(result.read, 1);
    assert.equal(result.watched, 2);
    assert.deepEqual(result.notRead, [{ email: "user0052@contoso.test", reason: "lookup failed" }]);
  });

  it("watches one person once, whichever address was used", async () => {
    const m = monitor();
    const first = await m.watch("csmith@contoso.test");
    assert.ok(first.change?.initial);
    const second = await m.watch("carol.smith@contoso.test");
    assert.equal(second.change, null, "no second first look");
    assert.equal(second.entry.email, "csmith@contoso.test", "the first address stays");
    assert.equal(m.users.length, 1);
    const replaced = await m.replace(["carol.smith@contoso.test"]);
    assert.deepEqual([replaced.added, replaced.removed, replaced.changes], [[], [], []]);
    assert.equal(m.users.length, 1);
  });

  it("stops with the cause named when the app may not read mailboxes, not once per user", async () => {
    const m = monitor();
    await m.replace(addresses(1, 25));
    sandbox.graph.permissions.mailboxSettingsRead = false;
    const result = await m.poll();
    assert.equal(result.read, 0);
    assert.ok(result.failure instanceof ConfigError);
    assert.equal(result.failure.status, "missing permission");
    assert.match(result.failure.message, /MailboxSettings\.Read/);
    assert.deepEqual(result.problems, []);
  });

  it("stops a list with the cause named when the app may not look users up, and looks them up once it may", async () => {
    const m = monitor();
    sandbox.graph.permissions.userReadAll = false;
    try {
      const refused = await m.replace(addresses(60, 3)).catch((err) => err);
      assert.ok(refused instanceof ConfigError);
      assert.equal(refused.status, "missing permission");
      assert.match(refused.message, /User\.Read\.All/);
      assert.deepEqual(m.pendingLookups, addresses(60, 3));
      const blocked = await m.poll();
      assert.ok(blocked.failure instanceof ConfigError);
      assert.equal(blocked.failure.status, "missing permission");
    } finally {
      sandbox.graph.permissions.userReadAll = true;
    }
    const result = await m.poll();
    assert.equal(result.read, 3);
    assert.equal(result.changes.filter((c) => c.initial).length, 3);
  });

  it("stops with the cause named when Microsoft refuses the app's secret", async () => {
    const good = monitor();
    await good.replace(addresses(1, 5));
    // The same list, read by an app whose secret changed since.
    const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, clientSecret: "wrong", authorityHost: sandbox.url }) });
    open.push(graph);
    const bad = new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, `list${listNumber}`) });
    const requests = sandbox.server.counter("microsoft token request");
    const result = await bad.poll();
    assert.equal(result.read, 0);
    assert.ok(result.failure instanceof ConfigError);
    assert.equal(result.failure.status, "app secret refused");
    assert.equal(result.notRead.length, 5);
    assert.equal(sandbox.server.counter("microsoft token request") - requests, 1, "one refusal stops the cycle");
  });

  it("asks for one token per poll at most, even when tokens live less than five minutes", async () => {
    sandbox.microsoft.tokenLifetime = 240;
    const m = monitor();
    await m.replace(addresses(1, 120));
    const before = sandbox.server.counter("microsoft token request");
    const batches = sandbox.server.counter("graph batch");
    const first = await m.poll();
    const second = await m.poll();
    assert.equal(first.read + second.read, 240);
    assert.ok(sandbox.server.counter("graph batch") - batches >= 12);
    assert.ok(sandbox.server.counter("microsoft token request") - before <= 1);
  });
});

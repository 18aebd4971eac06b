import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { EntraAppTokenSource } from "../../src/graph/app-token";
import { GraphClient } from "../../src/graph/client";
import { OutOfOfficeMonitor, ThrottledCycle } from "../../src/graph/monitor";
import { WatchListStore } from "../../src/graph/watch-list";
import graphApp from "../../src/nodes/graph-app";
import graphOooStatus from "../../src/nodes/graph-ooo-status";
import postgresDatabase from "../../src/nodes/postgres-database";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import type { BatchRecord } from "../../src/sandbox/graph";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

const helper = nodeRed();
const nodes = [graphApp, graphOooStatus, postgresDatabase];

/** The node's shortest interval, so one cycle may last 15 s at most. */
const INTERVAL_S = 15;
const USERS = 60;
/** How long every mailbox read is refused, and the Retry-After each refusal states. */
const STORM_S = 4;
const RETRY_AFTER = "0.2";
const THROTTLED_STATUS = /^throttled by Microsoft Graph: [\d,]+ users waiting, slowed to 1 batch every [\d.]+ s$/;

describe("graph-ooo-status when Microsoft Graph throttles every mailbox read", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  const domain = "storm.test";
  const addresses = Array.from({ length: USERS }, (_, i) => `user${String(i + 1).padStart(4, "0")}@${domain}`);

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_storm");
    sandbox.graph.generateUsers(USERS, domain);
  });
  after(async () => {
    await helper.unload();
    await testDb?.drop();
    await sandbox.close();
  });

  it("slows its whole request rate, says so in yellow within a cycle, and reads everyone once the throttling ends", async () => {
    const summaries: Array<{ at: number; payload: any }> = [];
    await helper.load(
      nodes,
      [
        { id: "tab", type: "tab", label: "storm" },
        { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
        { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable" },
        { id: "ooo", type: "graph-ooo-status", z: "tab", app: "app", database: "db", watchedUsers: addresses.join("\n"), interval: String(INTERVAL_S), readsInFlight: "4", version: 2, wires: [[], [], [], ["summaries"]] },
        { id: "summaries", type: "helper", z: "tab", wires: [] },
      ],
      { app: { clientSecret: MICROSOFT_DEMO_APP.clientSecret }, db: { user: "postgres" } },
    );
    helper.getNode("summaries").on("input", (m: any) => summaries.push({ at: Date.now(), payload: m.payload }));
    const node = helper.getNode("ooo");
    const statuses = () => node.status.getCalls().map((c: any) => ({ ...c.args[0] }));
    // The list is set at deploy and read once in full before the throttling begins.
    await eventually(() => summaries.some((s) => s.payload.read === USERS), 30_000, "a first cycle that read every user");
    assert.equal(node.status.lastCall.args[0].fill, "green");

    sandbox.graph.resetLoad();
    const seenBefore = statuses().length;
    const stormStart = Date.now();
    sandbox.graph.throttleEverything(STORM_S, RETRY_AFTER);
    node.receive({ topic: "poll" });

    const yellow = await eventually(() => statuses().slice(seenBefore).find((s: any) => s.fill === "yellow" && THROTTLED_STATUS.test(s.text)), INTERVAL_S * 1000, "a yellow status naming the throttling");
    assert.ok(Date.now() - stormStart <= INTERVAL_S * 1000, `yellow within one cycle ("${yellow.text}")`);

    await eventually(() => !sandbox.graph.throttlingEverything, 10_000, "the throttling to end");
    const stormEnd = stormStart + STORM_S * 1000;
    const throttledBatches = sandbox.graph.batchLog.filter((b) => b.receivedAt < stormEnd);
    const perSecond = sandbox.graph.batchesPerSecond(stormStart, stormEnd);
    const peakInFlight = sandbox.graph.maxBatchesInFlight(stormStart, stormEnd);

    // Every user read after the throttling, within two cycles of it, and the status green again.
    await eventually(() => new Set(sandbox.graph.readLog).size === USERS, 2 * INTERVAL_S * 1000 + 5000, "every user read after the throttling");
    const allRead = Date.now();
    const cyclesBetween = summaries.filter((s) => s.at > stormEnd && s.at < allRead).length;
    await eventually(() => node.status.lastCall.args[0].fill === "green", INTERVAL_S * 1000, "the status to turn green again");
    assert.match(node.status.lastCall.args[0].text, new RegExp(`^${USERS} watched · `));

    const rate = throttledBatches.length / STORM_S;
    assert.ok(rate <= 5, `at most 5 batches a second while throttled: ${rate} (per second: ${perSecond.join(", ")})`);
    assert.ok(Math.max(...perSecond) <= 5, `at most 5 batches in any second: ${perSecond.join(", ")}`);
    assert.ok(peakInFlight <= 1, `at most one batch in flight while throttled (${peakInFlight})`);
    assertRetryAftersKept(sandbox.graph.batchLog);
    assert.ok(cyclesBetween < 2, `every user read within two cycles of the throttling's end (${cyclesBetween} ended before)`);
  });
});

describe("the out-of-office monitor when Outlook throttles the app", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  const opened: Array<{ close(): Promise<void> }> = [];
  const domain = "storm-monitor.test";
  const addresses = (from: number, count: number) => Array.from({ length: count }, (_, i) => `user${String(from + i).padStart(4, "0")}@${domain}`);
  let listNumber = 0;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_storm");
    sandbox.graph.generateUsers(80, domain);
  });
  after(async () => {
    for (const o of opened.reverse()) await o.close();
    await testDb?.drop();
    await sandbox.close();
  });
  afterEach(() => sandbox.graph.throttleEverything(0));

  /** A monitor as a node builds it: its own database pool and Graph client, the app's shared budget. */
  async function monitor(options: { cycleBudgetMs: number; list?: string; onThrottling?: (t: ThrottledCycle | undefined) => void }) {
    const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
    opened.push(db, graph);
    const budgetKey = `graph:${MICROSOFT_DEMO_APP.tenantId}:${MICROSOFT_DEMO_APP.clientId}`;
    return new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, options.list ?? `storm${++listNumber}`), budgetKey, cycleBudgetMs: options.cycleBudgetMs, onThrottling: options.onThrottling });
  }

  it("sends one batch at a time across two monitors of one app, each on its own pool, and none before the largest Retry-After", async () => {
    const [first, second] = [await monitor({ cycleBudgetMs: 20_000 }), await monitor({ cycleBudgetMs: 20_000 })];
    await first!.replace(addresses(1, 30));
    await second!.replace(addresses(31, 30));
    sandbox.graph.resetLoad();
    const stormStart = Date.now();
    sandbox.graph.throttleEverything(2, RETRY_AFTER);
    const results = await Promise.all([first!.poll(), second!.poll()]);
    const stormEnd = stormStart + 2000;
    assert.deepEqual(results.map((r) => r.read), [30, 30], "each read its list once the throttling ended");
    const during = sandbox.graph.batchLog.filter((b) => b.receivedAt < stormEnd);
    assert.ok(during.length <= 2 * 5 + 1, `at most 5 batches a second between them: ${during.length} in 2 s`);
    assert.equal(sandbox.graph.maxBatchesInFlight(stormStart, stormEnd), 1);
    assertRetryAftersKept(sandbox.graph.batchLog);
  });

  it("ends a cycle Outlook throttles past its deadline in time, names the users left as throttled, and reads them first next time", async () => {
    const told: Array<ThrottledCycle | undefined> = [];
    const m = await monitor({ cycleBudgetMs: 1500, onThrottling: (t) => told.push(t) });
    await m.replace(addresses(1, 40));
    sandbox.graph.itemLatencyMs = 40;
    sandbox.graph.resetLoad();
    try {
      const polling = m.poll();
      // Some users are read, then Outlook refuses everything for longer than the cycle lasts.
      await eventually(() => sandbox.graph.readLog.length >= 8, 10_000, "the first reads");
      sandbox.graph.throttleEverything(3, RETRY_AFTER);
      const throttledAt = Date.now();
      const result = await polling;
      const left = addresses(1, 40).filter((a) => !sandbox.graph.readLog.includes(a));
      assert.ok(left.length > 0 && result.read === 40 - left.length, `${result.read} read, ${left.length} left`);
      assert.ok(result.seconds < 1.5 + 1, `the cycle ended at its deadline (${result.seconds} s)`);
      assert.ok(Date.now() - throttledAt < 2500, "without waiting for the throttling to end");
      assert.deepEqual(result.notRead, left.map((email) => ({ email, reason: "throttled" })));
      assert.deepEqual(result.throttling, { waiting: left.length, paceMs: 200 });
      assert.ok(told.some((t) => t && t.paceMs === 200), "told of the throttling during the cycle");

      await eventually(() => !sandbox.graph.throttlingEverything, 10_000, "the throttling to end");
      sandbox.graph.itemLatencyMs = 2;
      sandbox.graph.resetLoad();
      const next = await m.poll();
      assert.equal(next.read, 40);
      assert.equal(next.throttling, undefined);
      assert.deepEqual(new Set(sandbox.graph.readLog.slice(0, left.length)), new Set(left), "the users left were read first");
      assert.equal(told.at(-1), undefined, "told that the throttling ended");
    } finally {
      sandbox.graph.itemLatencyMs = 2;
    }
  });

  it("slows down by its own doubling backoff when Outlook states no Retry-After, and reads everyone once it stops", async () => {
    const m = await monitor({ cycleBudgetMs: 20_000 });
    await m.replace(addresses(41, 20));
    sandbox.graph.resetLoad();
    const stormStart = Date.now();
    sandbox.graph.throttleEverything(2.5);
    const result = await m.poll();
    assert.equal(result.read, 20);
    const during = sandbox.graph.batchLog.filter((b) => b.receivedAt < stormStart + 2500);
    // Pauses drawn from [250, 500], [500, 1000], [1000, 2000] ms: three or four batches in 2.5 s, not hundreds.
    assert.ok(during.length >= 2 && during.length <= 4, `${during.length} batches while throttled`);
    const gaps = during.slice(1).map((b, i) => b.receivedAt - during[i]!.answeredAt);
    assert.ok(gaps.every((g) => g >= 250), `pauses of at least 250 ms: ${gaps.join(", ")}`);
    assert.ok(gaps.length < 2 || gaps.at(-1)! >= 500, `growing pauses: ${gaps.join(", ")}`);
  });
});

/** No batch went out before the largest Retry-After of the refused batch before it had passed. */
function assertRetryAftersKept(log: BatchRecord[]): void {
  for (let i = 1; i < log.length; i++) {
    const previous = log[i - 1]!;
    if (!previous.throttled || previous.retryAfterMs === null) continue;
    const gap = log[i]!.receivedAt - previous.answeredAt;
    assert.ok(gap >= previous.retryAfterMs, `batch ${i} came ${gap} ms after a refusal that asked for ${previous.retryAfterMs} ms`);
  }
}

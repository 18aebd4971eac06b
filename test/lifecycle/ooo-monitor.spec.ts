import assert from "node:assert/strict";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn } from "../../src/sandbox/graph";
import { eventually } from "../support/node-red";
import type { DeploymentType, NodeRedProcess } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { Collector, deployEverywhere, postJson, postTo, readyRoute, startReplicas } from "../support/replicas";

const USERS = 300;

/** The out-of-office monitor in a Node-RED process, redeployed while a cycle reads the mailboxes. */
describe("lifecycle: an out-of-office cycle interrupted by a deploy reports each reply change once", function () {
  this.timeout(300_000);
  const sandbox = new Sandbox();
  const collector = new Collector();
  let testDb: TestDatabase;
  let red: NodeRedProcess | undefined;

  before(async () => {
    await sandbox.listen();
    await collector.listen();
  });
  after(async () => {
    await collector.close();
    await sandbox.close();
  });
  afterEach(async () => {
    await red?.stop();
    red = undefined;
    await testDb?.drop();
  });

  /** The monitor (its list in the settings), a route that asks for a cycle, and posts of its changes to the collector (the mediator). */
  function flow(watchedUsers: string[], name: string): unknown[] {
    const z = "ooo-life";
    return [
      { id: z, type: "tab", label: "lifecycle" },
      { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph`, credentials: { clientSecret: MICROSOFT_DEMO_APP.clientSecret } },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4", credentials: { user: "postgres" } },
      { id: "poll-in", type: "http in", z, url: "/poll", method: "post", wires: [["poll-topic", "poll-ok"]] },
      { id: "poll-topic", type: "change", z, rules: [{ t: "set", p: "topic", pt: "msg", to: "poll", tot: "str" }, { t: "delete", p: "res", pt: "msg" }], wires: [["monitor"]] },
      { id: "poll-ok", type: "http response", z, statusCode: "202", wires: [] },
      { id: "monitor", type: "graph-ooo-status", z, name, app: "app", database: "db", watchedUsers: watchedUsers.join("\n"), interval: "3600", readsInFlight: "4", version: 2, wires: [["changes"], [], [], ["cycles"]] },
      ...postTo(collector, "changes", "/changes", z),
      ...postTo(collector, "cycles", "/cycles", z),
      ...readyRoute("/ready", z),
    ];
  }

  for (const kind of ["full", "flows", "nodes"] as DeploymentType[]) {
    it(`a ${kind} deploy mid-cycle leaves each of ${USERS} reply changes posted once`, async () => {
      testDb = await createTestDatabase(`gw_life_ooo_${kind}`);
      const domain = `life-${kind}.test`;
      const users = sandbox.graph.generateUsers(USERS, domain).map((u) => u.mail!);
      sandbox.graph.itemLatencyMs = 2;
      [red] = await startReplicas(1);
      const started = Date.now();
      await deployEverywhere([red!], flow(users, "ooo"), "/ready");
      await eventually(() => collector.of("/changes", started).filter((p) => p.body.initial && p.body.email.endsWith(domain)).length >= USERS, 90_000, "a baseline for each user");

      // Every user changes their reply; a slow Outlook keeps the next cycle reading when the deploy lands.
      const changedAt = Date.now();
      for (const address of users) sandbox.graph.setReplies(address, alwaysOn(`Away (${kind} deploy) ${changedAt}`));
      sandbox.graph.itemLatencyMs = 60;
      sandbox.graph.resetLoad();
      await postJson(`${red!.url}/poll`, {});
      await eventually(() => sandbox.graph.readLog.length >= USERS / 6, 60_000, "the cycle to be reading mailboxes");
      const readBefore = sandbox.graph.readLog.length;
      await red!.deploy(flow(users, kind === "full" ? "ooo" : `ooo (${kind})`), kind);
      assert.ok(readBefore < USERS, `the deploy landed mid-cycle (${readBefore} of ${USERS} read)`);
      sandbox.graph.itemLatencyMs = 2;

      // The redeployed node polls as it starts; more cycles until every change came, then two more.
      const reported = () => collector.of("/changes", changedAt).filter((p) => !p.body.initial && p.body.email.endsWith(domain));
      await eventually(async () => {
        if (reported().length >= USERS) return true;
        const cycles = collector.of("/cycles").length;
        await postJson(`${red!.url}/poll`, {});
        await eventually(() => collector.of("/cycles").length > cycles || undefined, 60_000, "the cycle asked for");
        return undefined;
      }, 90_000, "a post for each change").catch((err: Error) => {
        throw new Error(`${err.message}: ${reported().length} posts for ${USERS} changes, ${new Set(reported().map((p) => p.body.email)).size} users (${readBefore} read before the deploy)`);
      });
      // Two more cycles, counted by their posts (two posts may share a millisecond).
      const cyclesBefore = collector.of("/cycles").length;
      for (let i = 1; i <= 2; i++) {
        await postJson(`${red!.url}/poll`, {});
        await eventually(() => collector.of("/cycles").length >= cyclesBefore + i || undefined, 60_000, "another cycle");
      }
      const perUser = new Map<string, number>();
      for (const p of reported()) perUser.set(p.body.email, (perUser.get(p.body.email) ?? 0) + 1);
      if (process.env.COUNTS) console.log(`ooo ${kind}: ${reported().length} posts for ${USERS} changes (${readBefore} read before the deploy), ${perUser.size} users`);
      assert.equal(perUser.size, USERS, "no change was lost");
      assert.deepEqual([...perUser].filter(([, n]) => n !== 1), [], "each change posted once");
      assert.equal(reported().length, USERS);
    });
  }
});

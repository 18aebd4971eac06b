import assert from "node:assert/strict";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { alwaysOn } from "../../src/sandbox/graph";
import { eventually } from "../support/node-red";
import type { NodeRedProcess } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { Collector, deployEverywhere, postJson, postTo, readyRoute, startReplicas, statusesTo } from "../support/replicas";

/** The shortest interval the node allows: cycles come about every 11 to 15 s. */
const INTERVAL_S = 15;

for (const count of [2, 4]) {
  describe(`the out-of-office monitor in ${count} Node-RED processes on one PostgreSQL database`, function () {
    this.timeout(300_000);
    const sandbox = new Sandbox();
    const collector = new Collector();
    let testDb: TestDatabase;
    let replicas: NodeRedProcess[] = [];
    const domain = `replicas${count}.test`;
    const users = () => Array.from({ length: 20 }, (_, i) => `user${String(i + 1).padStart(4, "0")}@${domain}`);

    before(async () => {
      await sandbox.listen();
      await collector.listen();
      sandbox.graph.generateUsers(22, domain);
      testDb = await createTestDatabase(`gw_ooor${count}`);
      replicas = await startReplicas(count);
    });
    after(async () => {
      await Promise.all(replicas.map((r) => r.stop()));
      await collector.close();
      await testDb?.drop();
      await sandbox.close();
    });

    /** The same flow on every replica: the monitor, its HTTP routes, and posts of what it says to the collector. */
    function flow(intervalS: number, watchedUsers = "") {
      const z = "ooo-rep";
      return [
        { id: z, type: "tab", label: "replicas" },
        { id: "app", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph`, credentials: { clientSecret: MICROSOFT_DEMO_APP.clientSecret } },
        { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "6", credentials: { user: "postgres" } },
        { id: "in", type: "http in", z, url: "/monitor", method: "post", wires: [["monitor"]] },
        { id: "poll-in", type: "http in", z, url: "/poll", method: "post", wires: [["poll-topic", "poll-ok"]] },
        { id: "poll-topic", type: "change", z, rules: [{ t: "set", p: "topic", pt: "msg", to: "poll", tot: "str" }, { t: "delete", p: "res", pt: "msg" }], wires: [["monitor"]] },
        { id: "poll-ok", type: "http response", z, statusCode: "202", wires: [] },
        { id: "monitor", type: "graph-ooo-status", z, app: "app", database: "db", watchedUsers, interval: String(intervalS), readsInFlight: "4", version: 2, wires: [["changes"], ["answer"], ["answer"], ["cycles"]] },
        { id: "answer", type: "http response", z, wires: [] },
        ...postTo(collector, "changes", "/changes", z),
        ...postTo(collector, "cycles", "/cycles", z),
        ...statusesTo(collector, "statuses", ["monitor"], z),
        ...readyRoute("/ready", z),
      ];
    }

    const deployAll = (intervalS: number, watchedUsers?: string) => deployEverywhere(replicas, flow(intervalS, watchedUsers), "/ready");
    const pids = () => replicas.map((r) => r.child.pid!);

    it("one replica polls each cycle and each change reaches the mediator once; the others say who polled", async () => {
      // The list in the node's settings: every replica sets it as it starts.
      await deployAll(INTERVAL_S, users().join("\n"));
      await eventually(() => collector.of("/changes").filter((p) => p.body.initial).length >= 20, 60_000, "the 20 baselines");
      // A cycle after the baselines, then 20 people change their replies.
      const listedAt = Date.now();
      await eventually(() => collector.of("/cycles", listedAt).length >= 1, 60_000, "a cycle after the list was set");
      const changedAt = Date.now();
      for (const address of users()) sandbox.graph.setReplies(address, alwaysOn(`Away from ${changedAt}`));
      const reported = () => collector.of("/changes", changedAt).filter((p) => !p.body.initial);
      // Four intervals and more: a busy machine once took longer than 60 s here (the count below still
      // has to be exactly 20, so a change lost or posted twice fails whatever the wait).
      await eventually(() => reported().length >= 20, 120_000, "the 20 changes");
      // Every replica's timer fires at least twice more before the count is taken.
      const after = Date.now();
      await eventually(() => collector.of("/cycles", after).length >= 3, 90_000, "three more cycles");

      const perUser = new Map<string, number>();
      for (const p of reported()) perUser.set(p.body.email, (perUser.get(p.body.email) ?? 0) + 1);
      assert.equal(reported().length, 20, `mediator posts for 20 changes: ${reported().length} (${[...perUser].filter(([, n]) => n > 1).map(([e, n]) => `${e} ×${n}`).join(", ")})`);
      assert.deepEqual([...perUser.values()].filter((n) => n !== 1), [], "one post per change");
      assert.equal(collector.of("/changes").filter((p) => p.body.initial).length, 20, "one baseline per user");

      // One cycle per interval across the replicas: cycles end at least the interval less its slack apart.
      const ends = collector.of("/cycles", listedAt).map((p) => p.at);
      const gaps = ends.slice(1).map((t, i) => t - ends[i]!);
      assert.ok(gaps.every((g) => g > (INTERVAL_S - 3.75 - 3) * 1000), `one cycle per interval (gaps ${gaps.map((g) => (g / 1000).toFixed(1)).join(", ")} s)`);
      for (const p of collector.of("/cycles", listedAt)) assert.equal(p.body.read, 20, "each cycle read every user");

      // The replicas that stood aside said who polled: another replica of these, never themselves.
      const asideStatus = /^done by (.+) pid (\d+)/;
      await eventually(() => new Set(collector.of("/status").filter((p) => asideStatus.test(p.body.text)).map((p) => p.replica)).size >= count - 1, 60_000, "the replicas that stood aside to say so");
      for (const p of collector.of("/status").filter((s) => asideStatus.test(s.body.text))) {
        const pid = Number(asideStatus.exec(p.body.text)![2]);
        assert.ok(pids().includes(pid), `"${p.body.text}" names one of the replicas`);
        assert.notEqual(pid, pids()[p.replica], `replica ${p.replica} does not name itself`);
      }
    });

    it("a user watched or dropped through one replica is read, or not, by another's next cycle", async () => {
      // Cycles only when asked, so that the cycle looked at is the second replica's.
      const deployed = Date.now();
      await deployAll(3600);
      const last = replicas[count - 1]!;
      /** The last replica's own cycle, asked for until it comes: a cycle under way elsewhere keeps it aside. */
      const cycleOfLast = (since: number) =>
        eventually(async () => {
          const mine = collector.of("/cycles", since).find((p) => p.replica === count - 1);
          if (mine) return mine;
          await postJson(`${last.url}/poll`, {});
          await new Promise((r) => setTimeout(r, 300));
          return undefined;
        }, 60_000, "a cycle of the last replica");
      // The redeployed monitors' first cycles are over before the list changes, so the cycle looked
      // at below read the list after the change, not while it was made.
      await cycleOfLast(deployed);
      const [dropped] = users();
      const added = `user0021@${domain}`;
      assert.equal((await postJson(`${replicas[0]!.url}/monitor`, { email: dropped, status: "False" })).status, 200);
      assert.equal((await postJson(`${replicas[0]!.url}/monitor`, { email: added, status: "True" })).status, 200);
      sandbox.graph.resetLoad();
      const cycle = await cycleOfLast(Date.now());
      assert.equal(cycle.body.watched, 20, JSON.stringify(cycle.body));
      assert.equal(cycle.body.read, 20);
      assert.ok(!sandbox.graph.readLog.includes(dropped), `${dropped}, dropped through replica 0, was not read`);
      assert.ok(sandbox.graph.readLog.includes(added), `${added}, watched through replica 0, was read`);
    });
  });
}

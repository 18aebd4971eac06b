import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { Azurite, freePort } from "../../src/sandbox/azurite";
import { SANDBOX_LICENSES as L } from "../../src/sandbox/goto-admin";
import { eventually } from "../support/node-red";
import type { NodeRedProcess } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { Collector, deployEverywhere, postJson, postTo, readyRoute, startReplicas, statusesTo } from "../support/replicas";

for (const count of [2, 4]) {
  describe(`GoTo call logs and provisioning in ${count} Node-RED processes on one PostgreSQL database`, function () {
    this.timeout(240_000);
    const sandbox = new Sandbox();
    const collector = new Collector();
    const azuriteDir = mkdtempSync(path.join(os.tmpdir(), "gw-azurite-rep-"));
    let azurite: Azurite;
    let testDb: TestDatabase;
    let replicas: NodeRedProcess[] = [];

    before(async () => {
      await sandbox.listen();
      await collector.listen();
      azurite = new Azurite({ port: await freePort(), location: azuriteDir });
      await azurite.start();
      testDb = await createTestDatabase(`gw_gotor${count}`);
      replicas = await startReplicas(count);
      // The same flow on every replica, its tokens in the shared database, as the README says to run replicas.
      const refreshToken = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
      await deployEverywhere(replicas, flow(refreshToken), "/ready");
    });
    after(async () => {
      await Promise.all(replicas.map((r) => r.stop()));
      await collector.close();
      await azurite?.stop();
      await testDb?.drop();
      await sandbox.close();
    });

    function flow(refreshToken: string) {
      const z = "goto-rep";
      return [
        { id: z, type: "tab", label: "replicas" },
        { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4", credentials: { user: "postgres" } },
        {
          id: "goto",
          type: "goto-credentials",
          authHost: `${sandbox.url}/goto/auth`,
          apiHost: `${sandbox.url}/goto/api`,
          store: "postgres",
          database: "db",
          requestsPerSecond: "10",
          credentials: { clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken },
        },
        { id: "storage", type: "azure-storage-account", auth: "connection-string", credentials: { connectionString: azurite.connectionString } },
        // Stands in for the nightly inject: every replica's fires at the same moment.
        { id: "nightly", type: "http in", z, url: "/nightly", method: "post", wires: [["calls", "nightly-ok"]] },
        { id: "nightly-ok", type: "http response", z, statusCode: "202", wires: [] },
        { id: "calls", type: "goto-call-logs", z, goto: "goto", timeZone: "UTC", startDay: "-1", days: "1", wires: [["writer"]] },
        { id: "writer", type: "blob-csv-writer", z, target: "azure", storage: "storage", container: "call-logs", path: "{yyyy}-{MM}-{dd}_call_logs.csv", mode: "replace", header: true, wires: [["written"]] },
        ...postTo(collector, "written", "/written", z),
        { id: "provision-in", type: "http in", z, url: "/provision", method: "post", wires: [["request-id"]] },
        // The request's id, from the caller's Idempotency-Key header.
        { id: "request-id", type: "change", z, rules: [{ t: "set", p: "requestId", pt: "msg", to: "req.headers.idempotency-key", tot: "msg" }], wires: [["prov-node"]] },
        { id: "prov-node", type: "goto-provision-user", z, goto: "goto", action: "provision", welcomeEmail: true, wires: [["provision-res"], ["provision-res"]] },
        { id: "provision-res", type: "http response", z, wires: [] },
        ...statusesTo(collector, "statuses", ["calls", "prov-node"], z),
        ...readyRoute("/ready", z),
      ];
    }

    it("the nightly export fired on every replica at once writes the day once, and the others say who did", async () => {
      const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
      sandbox.goto.calls.setVolume(day, 300);
      sandbox.server.resetStats();
      const fired = Date.now();
      const answers = await Promise.all(replicas.map((r) => postJson(`${r.url}/nightly`, {})));
      assert.deepEqual(answers.map((a) => a.status), replicas.map(() => 202));
      const asideStatus = new RegExp(`^${day} · done by (.+) pid (\\d+)$`);
      const statuses = () => collector.of("/status", fired).filter((p) => p.body.source === "calls");
      await eventually(() => collector.of("/written", fired).length >= 1 && statuses().filter((p) => asideStatus.test(p.body.text)).length >= count - 1, 90_000, "the export and the others standing aside");
      // The exporting replica has finished; any late second export would have shown by its status.
      const exporter = collector.of("/written", fired)[0]!.replica;
      await eventually(() => statuses().some((p) => p.replica === exporter && /calls$/.test(p.body.text)), 30_000, "the exporter's final status");
      assert.equal(collector.of("/written", fired).length, 1, "the day's file was written once");
      const pids = replicas.map((r) => r.child.pid);
      const aside = statuses().filter((p) => asideStatus.test(p.body.text));
      assert.deepEqual([...new Set(aside.map((p) => p.replica))].sort(), replicas.map((_, i) => i).filter((i) => i !== exporter));
      for (const p of aside) assert.equal(Number(asideStatus.exec(p.body.text)![2]), pids[exporter], `"${p.body.text}" names the replica that exported`);
      const pages = sandbox.server.counter("goto call-reports call pages");
      // One export's pages: exporting the day once more on one replica asks as many again.
      assert.ok(pages > 0);
      sandbox.server.resetStats();
      const again = Date.now();
      await postJson(`${replicas[exporter]!.url}/nightly`, {});
      await eventually(() => collector.of("/written", again).length >= 1, 60_000, "a second export by the same replica");
      assert.equal(sandbox.server.counter("goto call-reports call pages"), pages, "the replicas asked GoTo for the day's calls as often as one export does");
    });

    it("a provisioning request sent to every replica with one Idempotency-Key creates the user once, and every replica answers what it came to", async () => {
      sandbox.server.resetStats();
      const email = `replica.${count}@example.com`;
      const body = { email, firstName: "Rep", lastName: `Lica ${count}`, licenseKeys: [L.connectStandard] };
      const key = `req-${count}-${Date.now()}`;
      const send = (r: NodeRedProcess) => postJson(`${r.url}/provision`, body, { "idempotency-key": key });
      const answers = await Promise.all(replicas.map(send));
      assert.equal(sandbox.goto.admin.usersWithEmail(email).length, 1, "one user");
      assert.equal(sandbox.server.counter("goto admin users created"), 1, "one creation asked of GoTo");
      assert.equal(answers.filter((a) => a.status === 200).length >= 1, true, JSON.stringify(answers));
      assert.ok(answers.every((a) => a.status === 200 || (a.status === 409 && a.body.result === "in progress")), JSON.stringify(answers));
      // Asked again once it is over, every replica answers the kept outcome.
      const later = await Promise.all(replicas.map(send));
      assert.deepEqual(later.map((a) => a.status), replicas.map(() => 200));
      for (const a of later) assert.equal(a.body.result, "created");
      assert.equal(sandbox.server.counter("goto admin users created"), 1, "still one creation");
      assert.ok(collector.of("/status").some((p) => p.body.source === "prov-node" && /^done by .+ pid \d+$/.test(p.body.text)), "a replica that stood aside said so");
    });
  });
}


import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { request } from "undici";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { eventually } from "../support/node-red";
import { DeploymentType, NodeRedProcess, startNodeRed } from "../support/node-red-process";

const USERS = 100;

describe("lifecycle: a provisioning batch interrupted by a deploy, then run again, leaves each user once", function () {
  this.timeout(240_000);
  const sandbox = new Sandbox();
  let red: NodeRedProcess | undefined;

  before(() => sandbox.listen());
  after(() => sandbox.close());
  afterEach(async () => {
    await red?.stop();
    red = undefined;
  });

  function provisioningFlow(client: { clientId: string; clientSecret: string; refreshToken: string }, rps: string): unknown[] {
    return [
      { id: "tab", type: "tab", label: "provisioning" },
      { id: "goto", type: "goto-credentials", name: "GoTo", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file", requestsPerSecond: rps, credentials: client },
      { id: "in", type: "http in", z: "tab", url: "/provision", method: "post", wires: [["prov"]] },
      { id: "prov", type: "goto-provision-user", z: "tab", goto: "goto", action: "item", welcomeEmail: false, wires: [["res"], ["res"]] },
      { id: "res", type: "http response", z: "tab", wires: [] },
    ];
  }

  /** Posts the batch and waits for its answer; a 404 is the route not there yet. */
  async function provision(target: NodeRedProcess, items: unknown[], signal?: AbortSignal): Promise<number> {
    return eventually(async () => {
      if (signal?.aborted) return -1; // no answer wanted any more
      const res = await request(`${target.url}/provision`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(items), headersTimeout: 120_000, bodyTimeout: 120_000, signal });
      await res.body.dump();
      return res.statusCode === 404 ? undefined : res.statusCode;
    }, 120_000, "the batch's answer");
  }

  for (const kind of ["full", "flows", "nodes"] as DeploymentType[]) {
    it(`a ${kind} deploy mid-batch, then the batch again, leaves ${USERS} users exactly once each`, async () => {
      const clientId = `goto-life-${randomUUID().slice(0, 8)}`;
      sandbox.goto.oauth.registerClient(clientId, GOTO_DEMO_CLIENT.clientSecret);
      const client = { clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken: sandbox.goto.oauth.issueRefreshToken(clientId) };
      sandbox.goto.admin.addLicense(`Deploy ${kind}`, USERS + 10);
      const license = sandbox.goto.admin.licenses.at(-1)!.key;
      const items = Array.from({ length: USERS }, (_, i) => ({ action: "provision", email: `u${i}.${kind}@deploy.example.com`, firstName: "Deploy", lastName: `User ${i}`, licenseKeys: [license] }));
      sandbox.server.resetStats();
      red = await startNodeRed();
      await red.deploy(provisioningFlow(client, "10"));
      const gone = new AbortController(); // the deploy ends the flow that would answer this batch
      const interrupted = provision(red, items, gone.signal).catch(() => 0);
      await eventually(() => sandbox.server.counter("goto admin users created") >= 10, 60_000, "the batch to be creating users");
      await red.deploy(provisioningFlow(client, kind === "full" ? "10" : "9"), kind);
      gone.abort();
      await interrupted;
      assert.equal(await provision(red, items), 200);
      const counts = items.map((item) => sandbox.goto.admin.usersWithEmail(item.email).length);
      if (process.env.COUNTS) console.log(`provisioning ${kind}: ${counts.reduce((a, b) => a + b, 0)} users for ${USERS}, ${sandbox.server.counter("goto admin users created")} created`);
      assert.deepEqual(counts, items.map(() => 1), "each user exists once");
      assert.equal(sandbox.goto.admin.license(license)!.userKeys.length, USERS, "each user holds the license once");
      assert.equal(sandbox.server.counter("goto admin users created"), USERS, "no user was created twice");
    });
  }
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import gotoCredentials from "../../src/nodes/goto-credentials";
import gotoProvisionUser from "../../src/nodes/goto-provision-user";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { SANDBOX_LICENSES as L } from "../../src/sandbox/goto-admin";
import { eventually, nodeRed } from "../support/node-red";
import { countsOf, runsSuite, waitForRuns } from "../support/runs";

const helper = nodeRed();

describe("runs of GoTo provisioning (goto-provision-user)", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
  const suite = runsSuite(sandbox, "gw_runs_prov");
  let answers: any[];
  let emitted: any[];

  beforeEach(() => {
    sandbox.goto.admin.reset();
    sandbox.goto.admin.rateLimit = 10;
  });
  afterEach(async () => {
    await helper.unload();
    await suite.admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
  });

  async function load(): Promise<void> {
    // A client of its own per load: the token store keys a connection by its client id.
    const clientId = `goto-runs-${randomBytes(4).toString("hex")}`;
    sandbox.goto.oauth.registerClient(clientId, GOTO_DEMO_CLIENT.clientSecret);
    const flow = [
      { id: "tab", type: "tab", label: "provisioning" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: suite.testDb.name, ssl: "disable", poolSize: "4" },
      { id: "goto", type: "goto-credentials", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "postgres", database: "db", accountKey: sandbox.goto.accountKey, requestsPerSecond: "10" },
      { id: "prov", type: "goto-provision-user", z: "tab", x: 100, y: 100, goto: "goto", action: "item", welcomeEmail: true, wires: [["answers"], ["answers"]] },
      { id: "answers", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 100, y: 200, scope: "local", pipelines: "provisioning", outcomes: "failure,partial", wires: [["emitted"], []] },
      { id: "emitted", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    await helper.load([postgresDatabase, gotoCredentials, gotoProvisionUser, pipelineRuns], flow, {
      db: { user: "postgres" },
      goto: { clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken: sandbox.goto.oauth.issueRefreshToken(clientId) },
    });
    answers = [];
    emitted = [];
    helper.getNode("answers").on("input", (m: unknown) => answers.push(m));
    helper.getNode("emitted").on("input", (m: unknown) => emitted.push(m));
  }

  async function send(msg: Record<string, unknown>): Promise<any> {
    const before = answers.length;
    helper.getNode("prov").receive(msg);
    return eventually(() => answers.length > before && answers[before], 30_000, "an answer from goto-provision-user");
  }

  const stat = (name: string) => sandbox.server.counter(name);
  const user = (email: string, licenseKeys: string[] = [L.connectStandard]) => ({ action: "provision", email, firstName: "Test", lastName: "User", licenseKeys });

  it("records a request that provisioned a user as a success, keyed by its request id, with the Admin API requests it made", async () => {
    await load();
    sandbox.server.resetStats();
    const answer = await send({ requestId: "hr-4711", payload: user("fien.peeters@example.com") });
    assert.equal(answer.statusCode, 200);
    const [run] = await waitForRuns(suite.admin, "prov", 1);
    assert.equal(run!.outcome, "success");
    assert.equal(run!.pipeline, "provisioning");
    assert.equal(run!.run_key, "hr-4711");
    assert.deepEqual(countsOf(run!), { rows: 1, pages: 0, requests: stat("goto admin requests") + stat("goto api 401"), http_429: stat("goto admin 429"), retries: 0, token_refreshes: stat("goto refresh") });
    assert.equal(run!.token_refreshes, 1);
    assert.ok(run!.requests >= 3, "the licenses, a search and a creation at least");
    assert.deepEqual(run!.details, { action: "created" });
    assert.equal(emitted.length, 0, "a success is not among the outcomes the pipeline-runs node sends");
  });

  it("records a batch with a refused item as partial, counting the users done, and the pipeline-runs node sends it", async () => {
    await load();
    const items = [user("a@example.com"), user("b@example.com"), user("c@example.com", ["1234567890123456789"]), user("d@example.com")];
    sandbox.server.resetStats();
    const answer = await send({ requestId: "batch-1", payload: items });
    assert.equal(answer.statusCode, 207);
    const [run] = await waitForRuns(suite.admin, "prov", 1);
    assert.equal(run!.outcome, "partial");
    assert.equal(run!.rows, 3);
    assert.deepEqual(run!.details, { items: 4, failed: 1 });
    assert.equal(run!.error_code, "GW_GOTO_PROVISIONING_PARTLY_FAILED");
    assert.match(run!.error_message ?? "", /^1 of 4 items failed; the first: c@example.com: unknown license key 1234567890123456789/);
    assert.match(run!.error_cause ?? "", /unknown license key/);
    assert.equal(run!.requests, stat("goto admin requests") + stat("goto api 401"));
    const msg = await eventually(() => emitted[0], 5000, "the partial run from pipeline-runs");
    assert.equal(msg.payload.id, run!.id);
    assert.equal(msg.payload.error.code, "GW_GOTO_PROVISIONING_PARTLY_FAILED");
  });

  it("records a request GoTo refused as a failure with its reason", async () => {
    await load();
    const answer = await send({ requestId: "late-1", payload: user("late@example.com", [L.meetingBusiness]) });
    assert.equal(answer.statusCode, 409);
    const [run] = await waitForRuns(suite.admin, "prov", 1);
    assert.equal(run!.outcome, "failure");
    assert.equal(run!.error_code, "GW_GOTO_NO_FREE_SEAT");
    assert.match(run!.error_message ?? "", /no free seat on license 7288486601101397003/);
    assert.equal(run!.rows, 0);
  });

  it("records the same request asked again as skipped, naming who answered it", async () => {
    await load();
    await send({ requestId: "twice", payload: user("twice@example.com") });
    sandbox.server.resetStats();
    const again = await send({ requestId: "twice", payload: user("twice@example.com") });
    assert.equal(again.statusCode, 200);
    const [first, second] = await waitForRuns(suite.admin, "prov", 2);
    assert.equal(first!.outcome, "success");
    assert.equal(second!.outcome, "skipped");
    assert.equal(second!.run_key, "twice");
    assert.equal(second!.requests, 0);
    assert.equal(stat("goto admin requests"), 0, "nothing asked of GoTo");
    assert.equal(second!.details!.running, false);
  });
});

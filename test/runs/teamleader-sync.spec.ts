import assert from "node:assert/strict";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import teamleaderQuery from "../../src/nodes/teamleader-query";
import { Sandbox } from "../../src/sandbox";
import { eventually, nodeRed } from "../support/node-red";
import { countsOf, runsSuite, waitForRuns } from "../support/runs";
import { sandboxClient } from "../support/teamleader";

const helper = nodeRed();
const VOLUMES = { companies: 230, contacts: 40, departments: 3, events: 20, invoices: 60, projects: 15, users: 8, projects_v2: 12, deals: 30, quotations: 10, time_tracking: 20, tasks: 10, products: 10 };

describe("runs of the Teamleader sync (teamleader-query)", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox({ teamleader: { volumes: VOLUMES } });
  const suite = runsSuite(sandbox, "gw_runs_tl");
  let prefixes = 0;
  let outputs: any[];
  let caught: any[];
  let emitted: any[];
  let statuses: string[];

  beforeEach(() => {
    sandbox.teamleader.data.reset(VOLUMES);
    sandbox.server.clearFaults();
    sandbox.teamleader.latencyMs = 0;
    sandbox.teamleader.goneInfoStatus = 404;
  });
  afterEach(async () => {
    await helper.unload();
    await suite.admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
  });

  async function load(query: Record<string, unknown>): Promise<void> {
    const client = sandboxClient(sandbox);
    const flow = [
      { id: "tab", type: "tab", label: "teamleader" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: suite.testDb.name, poolSize: "4" },
      { id: "conn", type: "teamleader-connection", name: "Main", database: "db", redirectUri: "http://127.0.0.1:1880/teamleader/oauth", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api` },
      { id: "sync", type: "teamleader-query", z: "tab", x: 100, y: 100, connection: "conn", mode: "sync", syncMode: "full", tablePrefix: `r${++prefixes}_`, ...query, wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: ["sync"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 100, y: 300, scope: "local", pipelines: "teamleader-sync", outcomes: "", wires: [["emitted"], []] },
      { id: "emitted", type: "helper", z: "tab", x: 300, y: 300, wires: [] },
    ];
    await helper.load([postgresDatabase, teamleaderConnection, teamleaderQuery, pipelineRuns], flow, {
      db: { user: "postgres" },
      conn: { ...client, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(client.clientId) },
    });
    outputs = [];
    caught = [];
    emitted = [];
    statuses = [];
    helper.getNode("sync").on("call:status", (call: { args: [{ text?: string }] }) => statuses.push(call.args[0].text ?? ""));
    helper.getNode("out").on("input", (m: unknown) => outputs.push(m));
    helper.getNode("caught").on("input", (m: unknown) => caught.push(m));
    helper.getNode("emitted").on("input", (m: unknown) => emitted.push(m));
  }

  const stat = (name: string) => sandbox.server.counter(name);

  it("records a run per resource, each with its records, pages, requests, 429s and token refreshes", async () => {
    await load({ resources: "companies,users" });
    sandbox.server.resetStats();
    sandbox.server.inject({ path: "/teamleader/api/companies.list", status: 429, headers: { "retry-after": "0" }, json: { errors: [{ title: "Too Many Requests" }] } });
    helper.getNode("sync").receive({ payload: {} });
    const summary = (await eventually(() => outputs[0], 30_000, "the summary")).payload;
    const [companies, users] = await waitForRuns(suite.admin, "sync", 2);
    assert.deepEqual([companies!.run_key, users!.run_key], ["companies", "users"]);
    assert.ok(users!.started_at.getTime() >= companies!.ended_at.getTime(), "one after the other");
    assert.deepEqual(countsOf(companies!), {
      rows: summary.resources.companies.fetched,
      pages: summary.resources.companies.pages,
      requests: stat("teamleader companies.list") + stat("fault 429"),
      http_429: 1,
      retries: 0,
      token_refreshes: 1,
    });
    assert.deepEqual(countsOf(users!), { rows: 8, pages: 1, requests: stat("teamleader users.list"), http_429: 0, retries: 0, token_refreshes: 0 });
    assert.equal(companies!.rows, 230);
    assert.equal(companies!.token_refreshes + users!.token_refreshes, stat("teamleader refresh"));
    assert.equal(companies!.requests + users!.requests, stat("teamleader api requests") + stat("fault 429"));
    for (const run of [companies!, users!]) {
      assert.equal(run.outcome, "success");
      assert.equal(run.pipeline, "teamleader-sync");
      assert.equal(run.details!.mode, "full");
    }
    assert.equal(companies!.details!.inserted, 230);
    await eventually(() => emitted.length === 2, 5000, "both records from pipeline-runs");
    assert.deepEqual(emitted.map((m) => m.payload.key), ["companies", "users"]);
  });

  it("records a sweep whose lookups could not tell as partial, with what they got", async () => {
    await load({ resources: "projects", projectsModule: "legacy" });
    helper.getNode("sync").receive({ payload: {} });
    await waitForRuns(suite.admin, "sync", 1, 30_000);
    sandbox.teamleader.goneInfoStatus = 400;
    sandbox.teamleader.data.remove("projects", 2);
    sandbox.server.resetStats();
    helper.getNode("sync").receive({ payload: {} });
    const [, run] = await waitForRuns(suite.admin, "sync", 2, 30_000);
    assert.equal(run!.outcome, "partial");
    assert.equal(run!.run_key, "projects");
    assert.equal(run!.error_code, "GW_TEAMLEADER_UNRESOLVED");
    assert.match(run!.error_message ?? "", /^2 projects not seen in the sweep could not be looked up \(.*400/);
    assert.equal(run!.details!.unresolved, 2);
    assert.equal(run!.requests, stat("teamleader projects.list") + stat("teamleader projects.info"));
    assert.equal(stat("teamleader projects.info"), 2, "one lookup for each unseen record");
  });

  it("records a resource that failed with the page and Teamleader's answer, and the Catch node sees the same", async () => {
    await load({ resources: "invoices" });
    sandbox.server.inject({ path: "/teamleader/api/invoices.list", status: 403, json: { errors: [{ code: 403, title: "Forbidden", status: 403, meta: { hint: "the integration has no invoices scope" } }] } });
    helper.getNode("sync").receive({ payload: {} });
    const [run] = await waitForRuns(suite.admin, "sync", 1);
    const err = await eventually(() => caught[0], 10_000, "the Catch node");
    assert.equal(run!.outcome, "failure");
    assert.equal(run!.run_key, "invoices");
    assert.equal(run!.error_message, err.error.message);
    assert.match(run!.error_message ?? "", /^the invoices sync stopped at page 1: Teamleader answered 403 Forbidden .*invoices scope/);
    assert.equal(run!.error_code, "GW_HTTP_403");
    assert.equal(run!.requests, 1);
  });

  it("records a trigger that found the resource already syncing as skipped", async () => {
    sandbox.teamleader.latencyMs = 60;
    await load({ resources: "companies" });
    helper.getNode("sync").receive({ payload: {} });
    await eventually(() => statuses.some((s) => /^companies \d/.test(s)), 10_000, "the first sync to run");
    helper.getNode("sync").receive({ payload: {} });
    const runs = await waitForRuns(suite.admin, "sync", 2, 30_000);
    assert.deepEqual(runs.map((r) => r.outcome).sort(), ["skipped", "success"]);
    const skipped = runs.find((r) => r.outcome === "skipped")!;
    assert.equal(skipped.requests, 0);
    assert.ok("runningOn" in (skipped.details ?? {}));
  });
});

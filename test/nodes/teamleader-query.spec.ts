import assert from "node:assert/strict";
import postgresDatabase from "../../src/nodes/postgres-database";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import teamleaderQuery from "../../src/nodes/teamleader-query";
import { Sandbox } from "../../src/sandbox";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually, nodeRed } from "../support/node-red";
import { sandboxClient } from "../support/teamleader";
import pg from "pg";

const helper = nodeRed();
const VOLUMES = { companies: 230, contacts: 40, departments: 3, events: 20, invoices: 60, projects: 15, users: 8, projects_v2: 12, deals: 30, quotations: 10, time_tracking: 20, tasks: 10, products: 10 };

describe("teamleader-query node", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox({ teamleader: { volumes: VOLUMES } });
  let testDb: TestDatabase;
  let admin: pg.Client;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_tlq");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
  });
  after(async () => {
    await admin.end();
    await testDb.drop();
    await sandbox.close();
  });
  beforeEach(() => {
    sandbox.teamleader.data.reset(VOLUMES);
    sandbox.server.clearFaults();
    sandbox.teamleader.latencyMs = 0;
  });
  afterEach(() => helper.unload());

  let prefixes = 0;

  /** The flow: query node → out, Catch → caught; the connection on the test database. */
  async function load(query: Record<string, unknown>, opts: { authorized?: boolean } = {}) {
    const client = sandboxClient(sandbox);
    const tablePrefix = `q${++prefixes}_`;
    const flow = [
      { id: "tab", type: "tab", label: "teamleader" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, poolSize: "4" },
      { id: "conn", type: "teamleader-connection", name: "Main", database: "db", redirectUri: "http://127.0.0.1:1880/teamleader/oauth", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api` },
      { id: "query", type: "teamleader-query", z: "tab", x: 100, y: 100, connection: "conn", mode: "sync", syncMode: "delta", resources: "companies,contacts,departments,events,invoices,projects,users", tablePrefix, ...query, wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    const refreshToken = opts.authorized === false ? undefined : sandbox.teamleader.oauth.issueRefreshToken(client.clientId);
    await helper.load([postgresDatabase, teamleaderConnection, teamleaderQuery], flow, {
      db: { user: "postgres" },
      conn: { ...client, ...(refreshToken ? { refreshToken } : {}) },
    });
    const node = helper.getNode("query");
    const statuses: Array<{ fill?: string; text?: string }> = [];
    node.on("call:status", (call: { args: [{ fill?: string; text?: string }] }) => statuses.push(call.args[0]));
    const outputs: any[] = [];
    const caught: any[] = [];
    helper.getNode("out").on("input", (m: unknown) => outputs.push(m));
    helper.getNode("caught").on("input", (m: unknown) => caught.push(m));
    return { node, statuses, outputs, caught, client, tablePrefix };
  }

  it("calls users.me in call mode and puts the answer's data in msg.payload", async () => {
    const { node, outputs } = await load({ mode: "call", endpoint: "users.me" });
    node.receive({ payload: {}, topic: "kept" });
    const msg = await eventually(() => outputs[0], 10_000, "the answer");
    assert.equal(msg.payload.email, "admin@example.com");
    assert.equal(msg.topic, "kept");
  });

  it("reads every page of a .list call when asked, with msg.payload as the body", async () => {
    const { node, outputs } = await load({ mode: "call", endpoint: "", allPages: true });
    node.receive({ topic: "companies.list", payload: { sort: [{ field: "added_at" }], page: { size: 50 } } });
    const msg = await eventually(() => outputs[0], 10_000, "the records");
    assert.equal(msg.payload.length, 230);
    assert.equal(new Set(msg.payload.map((c: { id: string }) => c.id)).size, 230);
    assert.equal(sandbox.teamleader.data.list("companies", { sort: { field: "added_at", order: "asc" }, page: { size: 1, number: 1 } })[0]!.id, msg.payload[0].id);
  });

  it("syncs the chosen resources into tables, shows progress and sends a summary per resource", async () => {
    const { node, outputs, statuses, tablePrefix } = await load({ syncMode: "full", resources: "companies,departments" });
    node.receive({ payload: { resources: ["companies", "users"] } });
    const msg = await eventually(() => outputs[0], 20_000, "the summary");
    assert.deepEqual(Object.keys(msg.payload.resources), ["companies", "users"], "msg.payload.resources overrides the node's choice");
    const companies = msg.payload.resources.companies;
    assert.deepEqual({ ...companies, seconds: 0 }, { status: "synced", mode: "full", fetched: 230, inserted: 230, updated: 0, deleted: 0, pages: 3, seconds: 0 });
    assert.equal(msg.payload.mode, "full");
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${tablePrefix}companies WHERE deleted_at IS NULL`);
    assert.equal(rows[0].n, 230);
    assert.ok(statuses.some((s) => s.fill === "blue" && /^companies \d/.test(s.text ?? "")), `progress in the status: ${JSON.stringify(statuses)}`);
    assert.match(statuses.at(-1)!.text ?? "", /^synced 238 · /);
    assert.equal(statuses.at(-1)!.fill, "green");

    node.receive({ payload: { mode: "delta", resources: "companies" } });
    const delta = await eventually(() => outputs[1], 20_000, "the delta summary");
    assert.equal(delta.payload.resources.companies.mode, "delta");
    assert.ok(delta.payload.resources.companies.fetched < 230);
  });

  it("reads 'projects' of a node saved before the Projects setting as the module the account uses, and one named as chosen", async () => {
    sandbox.teamleader.projectsVersion = "projects-v2";
    try {
      const { node, outputs, tablePrefix } = await load({ syncMode: "full", resources: "projects,deals", version: 1 });
      node.receive({ payload: {} });
      const msg = await eventually(() => outputs[0], 20_000, "the summary");
      assert.deepEqual(Object.keys(msg.payload.resources), ["projects_v2", "deals"]);
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${tablePrefix}projects_v2`);
      assert.equal(rows[0].n, sandbox.teamleader.data.live("projects_v2"));
      node.receive({ payload: { projectsModule: "legacy" } });
      const legacy = await eventually(() => outputs[1], 20_000, "the second summary");
      assert.deepEqual(Object.keys(legacy.payload.resources), ["projects", "deals"]);
    } finally {
      sandbox.teamleader.projectsVersion = "legacy";
    }
  });

  it("answers a second trigger while a sync runs with 'already running'", async () => {
    sandbox.teamleader.latencyMs = 60;
    const { node, outputs, statuses } = await load({ resources: "companies" });
    node.receive({ payload: { mode: "full" } });
    await eventually(() => statuses.some((s) => /^companies \d/.test(s.text ?? "")), 10_000, "the first sync to run");
    node.receive({ payload: { mode: "full" } });
    const second = await eventually(() => outputs[0], 10_000, "the second answer");
    assert.equal(second.payload.resources.companies.status, "already running");
    assert.ok(statuses.some((s) => s.text === "already running" && s.fill === "yellow"));
    const first = await eventually(() => outputs[1], 20_000, "the first sync's summary");
    assert.equal(first.payload.resources.companies.status, "synced");
  });

  it("sends a failure to the Catch node with the resource and page, and turns red", async () => {
    const { node, caught, statuses, outputs } = await load({ resources: "invoices" });
    sandbox.server.inject({ path: "/teamleader/api/invoices.list", status: 403, json: { errors: [{ code: 403, title: "Forbidden", status: 403, meta: { hint: "the integration has no invoices scope" } }] } });
    node.receive({ payload: {} });
    const err = await eventually(() => caught[0], 10_000, "the Catch node");
    assert.match(err.error.message, /^the invoices sync stopped at page 1: Teamleader answered 403 Forbidden .*invoices scope/);
    assert.equal(statuses.at(-1)!.fill, "red");
    assert.equal(outputs.length, 0, "no half summary");
  });

  it("refuses unknown resources and modes as invalid input", async () => {
    const { node, caught } = await load({});
    node.receive({ payload: { resources: ["companies", "opportunities"] } });
    node.receive({ payload: { mode: "sometimes" } });
    node.receive({ payload: { projectsModule: "newest" } });
    await eventually(() => caught.length === 3, 10_000, "three refusals");
    assert.match(caught[0].error.message, /unknown Teamleader resources: opportunities/);
    assert.match(caught[1].error.message, /msg.payload.mode must be "delta" or "full"/);
    assert.match(caught[2].error.message, /msg.payload.projectsModule must be one of detect, legacy, new, both/);
  });

  it("keeps the tokens sealed in the database under the integration's key", async () => {
    const { node, outputs, client } = await load({ mode: "call", endpoint: "users.me" });
    node.receive({ payload: {} });
    await eventually(() => outputs[0], 10_000, "the answer");
    const { rows } = await admin.query("SELECT token_key, sealed FROM gluework_oauth_tokens WHERE token_key = $1", [`teamleader:${client.clientId}`]);
    assert.equal(rows.length, 1);
    assert.doesNotMatch(rows[0].sealed, /teamleader-(rt|at)-/, "no token in clear");
  });

  it("says it needs authorization when the connection has no token yet", async () => {
    const { node, caught, statuses } = await load({ mode: "call", endpoint: "users.me" }, { authorized: false });
    await eventually(() => statuses.some((s) => s.text === "needs authorization"), 5000, "the status");
    node.receive({ payload: {} });
    const err = await eventually(() => caught[0], 10_000, "the Catch node");
    assert.match(err.error.message, /use Authorize in the teamleader-connection node 'Main'/);
  });
});

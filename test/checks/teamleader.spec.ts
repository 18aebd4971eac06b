import assert from "node:assert/strict";
import postgresDatabase from "../../src/nodes/postgres-database";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import teamleaderQuery from "../../src/nodes/teamleader-query";
import { Sandbox } from "../../src/sandbox";
import { nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { sandboxClient } from "../support/teamleader";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

describe("teamleader-connection connection test", () => {
  const sandbox = new Sandbox();
  let db: TestDatabase;
  before(async () => {
    await sandbox.listen();
    db = await createTestDatabase();
  });
  after(async () => {
    await sandbox.close();
    await db?.drop();
  });
  afterEach(() => helper.unload());

  const config = () => ({ name: "Focus", redirectUri: "http://127.0.0.1:1880/teamleader/callback", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api`, database: "db" });
  const database = { id: "db", type: "postgres-database", mode: "server", database: "x", ssl: "disable" };
  const client = () => {
    const c = sandboxClient(sandbox);
    return { ...c, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(c.clientId) };
  };
  const load = (extra: object[] = [], creds: Record<string, unknown> = {}) =>
    helper.load([postgresDatabase, teamleaderConnection, teamleaderQuery], [database, ...extra], { db: { url: db.url }, ...creds });

  const PLACEHOLDERS = { clientSecret: "__PWRD__", refreshToken: "__PWRD__" };
  /** A deployed t1 that has used its connection once, so the shared chain holds a current access token. */
  async function deployed(creds = client(), extra: object[] = []) {
    await load([{ id: "t1", type: "teamleader-connection", ...config() }, ...extra], { t1: creds });
    await (helper.getNode("t1") as any).connection.oauth.getAccessToken();
    return { clientId: creds.clientId, ...PLACEHOLDERS };
  }

  it("checks the client, uses the shared chain's access token, calls users.me and may read every resource", async () => {
    const report = await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: await deployed() });
    expectLine(report, "client id and secret", "passed");
    expectLine(report, "token through the shared chain", "passed");
    expectLine(report, "users.me", "passed", /signed in as Demo Admin \(admin@example.com\)/);
    expectLine(report, "scopes", "passed", /companies, contacts, departments, events, invoices, projects, users/);
    assert.equal(report.ok, true);
  });

  it("never spends the single-use refresh token, typed or stored, so the deployed node goes on", async () => {
    const creds = client();
    const placeholders = await deployed(creds);
    const refreshes = sandbox.server.counter("teamleader refresh");
    for (let i = 0; i < 3; i++) expectLine(await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: placeholders }), "token through the shared chain", "passed");
    const typed = sandbox.teamleader.oauth.issueRefreshToken(creds.clientId);
    const report = await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: { ...placeholders, refreshToken: typed } });
    expectLine(report, "token through the shared chain", "skipped", /would spend it[\s\S]*Authorize/);
    assert.equal(sandbox.server.counter("teamleader refresh"), refreshes, "a test spent a refresh token");
    assert.equal(sandbox.server.counter("teamleader refresh reused"), 0);
    const node = helper.getNode("t1") as any;
    await node.connection.api.call("users.me");
  });

  it("names the resources the integration lacks a scope for, among those the flows sync", async () => {
    const creds = client();
    sandbox.teamleader.deniedResources.set(creds.clientId, new Set(["invoices", "projects"]));
    const sync = { id: "q1", type: "teamleader-query", connection: "t1", mode: "sync", resources: "companies,invoices", wires: [] };
    const report = await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: await deployed(creds, [sync]) });
    expectLine(report, "scopes", "failed", /may not read invoices \(403\)[\s\S]*tick the scopes for invoices/);
    assert.doesNotMatch(JSON.stringify(report), /projects/, "projects is not synced by any flow");
  });

  it("fails the token when Teamleader refused the shared chain, and says to authorize again", async () => {
    const creds = client();
    await load([{ id: "t1", type: "teamleader-connection", ...config() }], { t1: creds });
    sandbox.teamleader.oauth.revokeRefreshToken(creds.refreshToken);
    await assert.rejects((helper.getNode("t1") as any).connection.oauth.getAccessToken());
    const report = await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: { clientId: creds.clientId, ...PLACEHOLDERS } });
    expectLine(report, "token through the shared chain", "failed", /refused the refresh token[\s\S]*Authorize/);
    expectLine(report, "users.me", "skipped");
  });

  it("fails the client for a wrong client secret", async () => {
    await load();
    const report = await testConnection("teamleader-connection", { id: "t1", config: config(), credentials: { ...client(), clientSecret: "wrong-secret-0123456789" } });
    expectLine(report, "client id and secret", "failed", /refused the client id or secret/);
  });

  it("answers a test message on a teamleader-query node with the report", async () => {
    const creds = client();
    const sync = { id: "q1", type: "teamleader-query", connection: "t1", mode: "sync", resources: "users", wires: [["out"]] };
    await load([{ id: "t1", type: "teamleader-connection", ...config() }, sync, { id: "out", type: "helper" }], { t1: creds });
    await (helper.getNode("t1") as any).connection.oauth.getAccessToken();
    const got = new Promise<any>((resolve) => helper.getNode("out").on("input", resolve));
    helper.getNode("q1").receive({ topic: "test" } as never);
    const msg = await got;
    assert.equal(msg.payload.ok, true, JSON.stringify(msg.payload));
    expectLine(msg.payload.reports[0], "scopes", "passed", /may read users/);
  });
});

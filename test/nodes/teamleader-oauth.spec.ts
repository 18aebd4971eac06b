import assert from "node:assert/strict";
import { request } from "undici";
import postgresDatabase from "../../src/nodes/postgres-database";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import teamleaderOAuth from "../../src/nodes/teamleader-oauth";
import teamleaderQuery from "../../src/nodes/teamleader-query";
import { Sandbox } from "../../src/sandbox";
import type { Database } from "../../src/core/db/database";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually, nodeRed } from "../support/node-red";
import { HttpNodeServer, coreNode } from "../support/http-nodes";
import { DatabaseKind, sandboxClient } from "../support/teamleader";

const helper = nodeRed();

for (const kind of ["server", "embedded"] as DatabaseKind[]) describe(`teamleader-oauth node: the OAuth callback (${kind === "server" ? "PostgreSQL server" : "embedded PostgreSQL"})`, function () {
  this.timeout(120_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  const web = new HttpNodeServer();

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_tlo");
    await web.listen();
  });
  after(async () => {
    await web.close();
    await testDb.drop();
    await sandbox.close();
  });

  /** SQL on the flow's own database (server or embedded). */
  async function sql(text: string, params?: unknown[]): Promise<any[]> {
    const db: Database = await helper.getNode("db").database();
    return (await db.query(text, params)).rows;
  }
  afterEach(() => helper.unload());

  let client: { clientId: string; clientSecret: string };

  /** http in → teamleader-oauth → http response, a users.me query on the same connection, and a Catch node. */
  async function load(connection: { id?: string; clientId?: string; clientSecret?: string } = {}) {
    const id = connection.id ?? "conn";
    const flow = [
      { id: "tab", type: "tab", label: "oauth" },
      kind === "server" ? { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, poolSize: "4" } : { id: "db", type: "postgres-database", mode: "embedded" },
      { id, type: "teamleader-connection", name: "Main", database: "db", redirectUri: `${web.url}/teamleader/oauth`, authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api` },
      { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/teamleader/oauth", method: "get", wires: [["callback"]] },
      { id: "callback", type: "teamleader-oauth", z: "tab", x: 300, y: 100, connection: id, wires: [["res"], ["res"]] },
      { id: "res", type: "http response", z: "tab", x: 500, y: 100, wires: [] },
      { id: "me", type: "teamleader-query", z: "tab", x: 100, y: 300, connection: id, mode: "call", endpoint: "users.me", wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", x: 300, y: 300, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    await helper.load([postgresDatabase, teamleaderConnection, teamleaderOAuth, teamleaderQuery, coreNode("network/21-httpin.js"), web.capture], flow, {
      db: { user: "postgres" },
      [id]: { clientId: connection.clientId ?? client.clientId, clientSecret: connection.clientSecret ?? client.clientSecret },
    });
    const caught: any[] = [];
    helper.getNode("caught").on("input", (m: unknown) => caught.push(m));
    return { caught };
  }

  /** The dialog's Authorize button: the link with a fresh state. */
  async function authorizeUrl(id = "conn"): Promise<URL> {
    const res = await helper.request().post(`/gluework/teamleader-connection/${id}/authorize`).expect(200);
    return new URL(res.body.authorizeUrl);
  }

  /** The person allows access: Teamleader sends the browser back to the redirect URI. */
  async function consent(url: URL): Promise<URL> {
    const res = await request(url);
    await res.body.dump();
    assert.equal(res.statusCode, 302);
    return new URL(String(res.headers.location));
  }

  async function callback(search: string) {
    const res = await request(`${web.url}/teamleader/oauth${search}`);
    return { status: res.statusCode, type: String(res.headers["content-type"]), text: await res.body.text() };
  }

  async function callsUsersMe(): Promise<boolean> {
    const out: any[] = [];
    helper.getNode("out").on("input", (m: unknown) => out.push(m));
    helper.getNode("me").receive({ payload: {} });
    await eventually(() => out[0], 10_000, "users.me");
    return out[0].payload.email === "admin@example.com";
  }

  beforeEach(() => {
    client = sandboxClient(sandbox);
  });

  it("links to Teamleader's authorize URL with a state, accepts the code and stores the tokens", async () => {
    const { caught } = await load();
    const link = await authorizeUrl();
    assert.equal(link.origin + link.pathname, `${sandbox.url}/teamleader/auth/oauth2/authorize`);
    assert.equal(link.searchParams.get("client_id"), client.clientId);
    assert.equal(link.searchParams.get("response_type"), "code");
    assert.equal(link.searchParams.get("redirect_uri"), `${web.url}/teamleader/oauth`);
    assert.ok((link.searchParams.get("state") ?? "").length >= 40, "a long random state");
    const back = await consent(link);
    const page = await callback(back.search);
    assert.equal(page.status, 200);
    assert.match(page.type, /text\/html/);
    assert.match(page.text, /code accepted/);
    assert.ok(!page.text.includes(back.searchParams.get("code")!), "the code is not echoed");
    assert.ok(await callsUsersMe(), "the connection works with the stored tokens");
    assert.deepEqual(caught, []);
    const rows = await sql("SELECT state FROM gluework_oauth_tokens WHERE token_key = $1", [`teamleader:${client.clientId}`]);
    assert.equal(rows[0].state, "authorized");
  });

  it("accepts the callback after a redeploy: pending states live in the database", async () => {
    await load();
    const back = await consent(await authorizeUrl());
    await helper.unload();
    await load();
    assert.match((await callback(back.search)).text, /code accepted/);
  });

  it("answers a missing state 400, a wrong one 401, and changes nothing", async () => {
    await load();
    const back = await consent(await authorizeUrl());
    const code = back.searchParams.get("code")!;
    const exchanged = sandbox.server.counter("teamleader code exchanged");
    const missing = await callback(`?code=${encodeURIComponent(code)}`);
    assert.equal(missing.status, 400);
    assert.match(missing.text, /code rejected: the state is missing/);
    const wrong = await callback(`?code=${encodeURIComponent(code)}&state=forged-state-value`);
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /code rejected: the state does not belong to an authorization started here/);
    assert.equal(sandbox.server.counter("teamleader code exchanged"), exchanged, "no code was exchanged");
    assert.match((await callback(back.search)).text, /code accepted/, "the real callback still works");
  });

  it("answers a reused state 401, and a reused code 400 with Teamleader's reason", async () => {
    await load();
    const back = await consent(await authorizeUrl());
    assert.equal((await callback(back.search)).status, 200);
    const reused = await callback(back.search);
    assert.equal(reused.status, 401);
    assert.match(reused.text, /this authorization was already used/);

    // The same code once more, under a state of its own: Teamleader refuses it.
    const fresh = await authorizeUrl();
    const again = await callback(`?code=${encodeURIComponent(back.searchParams.get("code")!)}&state=${encodeURIComponent(fresh.searchParams.get("state")!)}`);
    assert.equal(again.status, 400);
    assert.match(again.text, /code rejected: Teamleader refused the authorization code \(Authorization code has been revoked\)/);
  });

  it("answers an expired state 401", async () => {
    await load();
    const back = await consent(await authorizeUrl());
    await sql("UPDATE teamleader_oauth_states SET expires_at = now() - interval '1 second'");
    const expired = await callback(back.search);
    assert.equal(expired.status, 401);
    assert.match(expired.text, /this authorization expired; a link works for 10 minutes/);
  });

  it("answers a state of another connection 401", async () => {
    await load();
    const back = await consent(await authorizeUrl());
    await helper.unload();
    await load({ clientId: sandboxClient(sandbox).clientId });
    const other = await callback(back.search);
    assert.equal(other.status, 401);
    assert.match(other.text, /the state belongs to another Teamleader connection/);
  });

  it("shows a clear page when the person refuses access", async () => {
    await load();
    sandbox.teamleader.oauth.denyNextAuthorization = true;
    const back = await consent(await authorizeUrl());
    assert.equal(back.searchParams.get("error"), "access_denied");
    const page = await callback(back.search);
    assert.equal(page.status, 401);
    assert.match(page.text, /Authorization refused: access to Teamleader was not granted, so nothing changed/);
    assert.equal((await callback(back.search.replace("error=access_denied", "code=x"))).status, 401, "its state is used up");
  });

  it("tells the dialog when the authorization it started has completed", async () => {
    await load();
    const res = await helper.request().post("/gluework/teamleader-connection/conn/authorize").expect(200);
    const startedAt = res.body.startedAt as number;
    const before = await helper.request().get("/gluework/teamleader-connection/conn/authorization").expect(200);
    assert.ok(!(before.body.authorizedAt >= startedAt), "not completed before the callback");
    await callback((await consent(new URL(res.body.authorizeUrl))).search);
    const after = await helper.request().get("/gluework/teamleader-connection/conn/authorization").expect(200);
    assert.ok(after.body.authorizedAt >= startedAt);
    assert.equal(after.body.state, "authorized");
  });

  it("answers 400 when Teamleader refuses the client secret, and tells the Catch node", async () => {
    const { caught } = await load({ clientSecret: "not-the-secret-0123456789" });
    const back = await consent(await authorizeUrl());
    const page = await callback(back.search);
    assert.equal(page.status, 400);
    assert.match(page.text, /code rejected: Teamleader refused the client id or secret: check them in the teamleader-connection node/);
    assert.ok(!page.text.includes("not-the-secret"), "no secret in the page");
    const err = await eventually(() => caught[0], 5000, "the Catch node");
    assert.match(err.error.message, /refused the client id or secret/);
  });

  it("says to deploy first when the connection is not deployed", async () => {
    await load();
    const res = await helper.request().post("/gluework/teamleader-connection/not-deployed/authorize").expect(404);
    assert.match(res.body.error, /deploy it, then authorize/);
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import gotoCredentials from "../../src/nodes/goto-credentials";
import type { GoToConnection } from "../../src/goto/api";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { nodeRed } from "../support/node-red";

const helper = nodeRed();

describe("goto-credentials", () => {
  const sandbox = new Sandbox();
  before(() => sandbox.listen());
  after(() => sandbox.close());
  afterEach(() => helper.unload());

  const flow = (extra: Record<string, unknown> = {}) => [
    { id: "goto", type: "goto-credentials", name: "Main", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file", ...extra },
  ];
  // A client of its own per test: the token store keys a connection by its client id.
  const creds = () => {
    const client = { clientId: `goto-test-${randomBytes(4).toString("hex")}`, clientSecret: GOTO_DEMO_CLIENT.clientSecret };
    sandbox.goto.oauth.registerClient(client.clientId, client.clientSecret);
    return { goto: { ...client, refreshToken: sandbox.goto.oauth.issueRefreshToken(client.clientId) } };
  };

  it("finds the account key through the Admin API when none is set, and keeps it with the tokens", async () => {
    await helper.load(gotoCredentials, flow(), creds());
    const node = helper.getNode("goto") as unknown as GoToConnection;
    assert.equal(await node.accountKey(), sandbox.goto.accountKey);
    assert.equal(await (await node.connection.tokens()).extra("accountKey"), sandbox.goto.accountKey);
  });

  it("uses the account key typed in, as text, without asking GoTo", async () => {
    await helper.load(gotoCredentials, flow({ accountKey: "9988776655443322110" }), creds());
    const node = helper.getNode("goto") as unknown as GoToConnection;
    assert.equal(await node.accountKey(), "9988776655443322110");
    assert.equal(node.configuredAccountKey, "9988776655443322110");
  });

  it("gives clients for GoTo's APIs on their paths under the API host", async () => {
    await helper.load(gotoCredentials, flow(), creds());
    const node = helper.getNode("goto") as unknown as GoToConnection;
    const me = await node.api("admin").json<{ accountKey: string }>({ path: "me" });
    assert.equal(me.accountKey, sandbox.goto.accountKey);
    const users = await node.api("call-reports").json<{ items: unknown[] }>({ path: "reports/user-activity", query: { startTime: "2026-11-02T00:00:00Z", endTime: "2026-11-03T00:00:00Z" } });
    assert.ok(Array.isArray(users.items));
  });

  it("starts an authorization from the dialog's Authorize button", async () => {
    const secrets = creds();
    await helper.load(gotoCredentials, flow({ redirectUri: "http://127.0.0.1:1880/gluework/oauth/callback" }), secrets);
    const res = await helper
      .request()
      .post("/gluework/oauth/goto-credentials/start")
      .send({ nodeId: "goto", authHost: "http://127.0.0.1:9/elsewhere", redirectUri: "http://127.0.0.1:9/steal" })
      .expect(200);
    const url = new URL(res.body.authorizeUrl);
    assert.equal(`${url.origin}${url.pathname}`, `${sandbox.url}/goto/auth/oauth/authorize`);
    assert.equal(url.searchParams.get("client_id"), secrets.goto.clientId);
    assert.equal(url.searchParams.get("redirect_uri"), "http://127.0.0.1:1880/gluework/oauth/callback");
  });

  it("names only what is missing when Authorize cannot start: the redirect URI of a node deployed without it", async () => {
    await helper.load(gotoCredentials, flow(), creds());
    const res = await helper.request().post("/gluework/oauth/goto-credentials/start").send({ nodeId: "goto" }).expect(400);
    assert.match(res.body.error, /^the redirect URI \(open the node's dialog and press Done, which fills it in\) is missing in the deployed node/);
    assert.doesNotMatch(res.body.error, /client id|client secret/);
  });
});

import assert from "node:assert/strict";
import { request } from "undici";
import probeNode from "../fixtures/probe-node";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

describe("node core in a Node-RED runtime", () => {
  const flow = [
    { id: "tab", type: "tab", label: "probe" },
    // Flow nodes need x and y: without them the runtime takes a node for a config node.
    { id: "probe", type: "gw-probe", z: "tab", x: 100, y: 100, wires: [["out"]] },
    { id: "out", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
    { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
    { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
  ];

  afterEach(() => helper.unload());

  it("passes the message on and marks it done", async () => {
    await helper.load(probeNode, flow);
    const out = helper.getNode("out");
    const got = new Promise<any>((r) => out.on("input", r));
    helper.getNode("probe").receive({ payload: { behave: "ok" }, topic: "kept" });
    const msg = await got;
    assert.equal(msg.payload, "ok");
    assert.equal(msg.topic, "kept");
  });

  for (const behave of ["throw-sync", "reject", "reject-string"]) {
    it(`sends a ${behave} failure to the Catch node exactly once, with a red status`, async () => {
      await helper.load(probeNode, flow);
      const probe = helper.getNode("probe");
      const caught: any[] = [];
      helper.getNode("caught").on("input", (m: any) => caught.push(m));
      const statuses: any[] = [];
      probe.on("call:status", (call: any) => statuses.push(call.args[0]));
      probe.receive({ payload: { behave } });
      await eventually(() => caught.length > 0, 5000, "the Catch node");
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(caught.length, 1);
      assert.equal(caught[0].error.source.id, "probe");
      assert.ok(caught[0].error.message.length > 0);
      assert.doesNotMatch(caught[0].error.message, /^[A-Za-z]*Error\b/, "no class name in front of the message");
      assert.equal(statuses.at(-1).fill, "red");
    });
  }

  it("keeps running when a timer throws, and releases everything on close", async () => {
    await helper.load(probeNode, flow);
    const probe = helper.getNode("probe");
    await eventually(() => probe.error.called, 2000, "the timer's error to be logged");
    await helper.unload();
    assert.equal(probe.closedCleanly, true);
  });

  describe("Authorize button routes", () => {
    const sandbox = new Sandbox();
    before(() => sandbox.listen());
    after(() => sandbox.close());

    const redirectUri = "http://127.0.0.1:1880/gluework/oauth/callback";
    const credFlow = () => [{ id: "cred", type: "gw-probe-credentials", authHost: `${sandbox.url}/goto/auth`, redirectUri, connect: false }];
    const credSecrets = { cred: { clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret } };

    async function start() {
      const res = await helper
        .request()
        .post("/gluework/oauth/gw-probe-credentials/start")
        // What the request says about hosts is ignored: the deployed node's settings are used.
        .send({ nodeId: "cred", authHost: "http://127.0.0.1:9/elsewhere", redirectUri: "http://127.0.0.1:9/steal" })
        .expect(200);
      return res.body as { state: string; authorizeUrl: string };
    }

    /** What the browser does: follow the provider's redirect, then land on our callback. */
    async function consent(authorizeUrl: string): Promise<URL> {
      const answer = await request(authorizeUrl);
      await answer.body.dump();
      const back = new URL(String(answer.headers.location));
      assert.equal(back.origin + back.pathname, redirectUri);
      return back;
    }

    it("runs the authorization-code flow and hands the refresh token to the editor once", async () => {
      await helper.load(probeNode, credFlow(), credSecrets);
      const { state, authorizeUrl } = await start();
      assert.match(authorizeUrl, /\/goto\/auth\/oauth\/authorize\?client_id=goto-demo-client&response_type=code/);
      await helper.request().get(`/gluework/oauth/gw-probe-credentials/result/${state}`).expect(200, { status: "pending" });
      const back = await consent(authorizeUrl);
      const page = await helper.request().get(`/gluework/oauth/callback${back.search}`).expect(200);
      assert.match(page.text, /Authorized/);
      assert.doesNotMatch(page.text, /goto-rt-/);
      const result = await helper.request().get(`/gluework/oauth/gw-probe-credentials/result/${state}`).expect(200);
      assert.equal(result.body.status, "done");
      assert.match(result.body.refreshToken, /^goto-rt-/);
      await helper.request().get(`/gluework/oauth/gw-probe-credentials/result/${state}`).expect(404);
    });

    it("refuses a callback with a missing, wrong or reused state", async () => {
      await helper.load(probeNode, credFlow(), credSecrets);
      const { authorizeUrl } = await start();
      const back = await consent(authorizeUrl);
      await helper.request().get(`/gluework/oauth/callback?code=${back.searchParams.get("code")}`).expect(400);
      await helper.request().get(`/gluework/oauth/callback?code=${back.searchParams.get("code")}&state=forged`).expect(400);
      await helper.request().get(`/gluework/oauth/callback${back.search}`).expect(200);
      const reused = await helper.request().get(`/gluework/oauth/callback${back.search}`).expect(400);
      assert.match(reused.text, /already used/);
    });

    it("reports a refusal by the user without exchanging anything", async () => {
      await helper.load(probeNode, credFlow(), credSecrets);
      const { state } = await start();
      const page = await helper.request().get(`/gluework/oauth/callback?error=access_denied&state=${state}`).expect(401);
      assert.match(page.text, /refused \(access_denied\)/);
      const result = await helper.request().get(`/gluework/oauth/gw-probe-credentials/result/${state}`).expect(200);
      assert.equal(result.body.status, "error");
    });
  });
});

describe("the Node-RED runtime under test", () => {
  it("is the line this run asked for", () => {
    const expected = process.env.NODE_RED_EXPECT_MAJOR;
    const version = helper._RED.version() as string;
    if (expected) assert.equal(version.split(".")[0], expected, `Node-RED ${version} under Node ${process.version}`);
    else assert.match(version, /^\d+\.\d+/);
  });
});

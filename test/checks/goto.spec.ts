import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import gotoCredentials from "../../src/nodes/goto-credentials";
import gotoCallLogs from "../../src/nodes/goto-call-logs";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { nodeRed } from "../support/node-red";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

describe("goto-credentials connection test", () => {
  const sandbox = new Sandbox({ goto: { rotateEvery: 1 } });
  before(() => sandbox.listen());
  after(() => sandbox.close());
  afterEach(() => helper.unload());

  const config = () => ({ name: "Main", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file" });
  // A client of its own per test: the token store keys a connection by its client id.
  const client = () => {
    const c = { clientId: `goto-check-${randomBytes(4).toString("hex")}`, clientSecret: GOTO_DEMO_CLIENT.clientSecret };
    sandbox.goto.oauth.registerClient(c.clientId, c.clientSecret);
    return { ...c, refreshToken: sandbox.goto.oauth.issueRefreshToken(c.clientId) };
  };

  const PLACEHOLDERS = { clientSecret: "__PWRD__", refreshToken: "__PWRD__" };
  /** A deployed g1 that has used its connection once, so its chain holds a current access token. */
  async function deployed(creds = client(), extra: Record<string, unknown> = {}) {
    await helper.load([gotoCredentials, gotoCallLogs], [{ id: "g1", type: "goto-credentials", ...config(), ...extra }], { g1: creds });
    await (helper.getNode("g1") as any).connection.getAccessToken();
    return { clientId: creds.clientId, ...PLACEHOLDERS };
  }

  it("checks the client, then uses the deployed node's access token: both scopes, the account key and an admin", async () => {
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: await deployed() });
    expectLine(report, "client id and secret", "passed");
    expectLine(report, "token from the refresh token", "passed");
    expectLine(report, "scopes", "passed", /cr\.v1\.read identity:/);
    expectLine(report, "account key and admin rights", "passed", new RegExp(`account ${sandbox.goto.accountKey}, admin@example.com is SUPER_USER`));
    assert.equal(report.ok, true);
  });

  it("does not try a refresh token typed in the dialog, since GoTo would replace it, and points to Authorize", async () => {
    const creds = client();
    const refreshes = sandbox.server.counter("goto refresh");
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: creds });
    expectLine(report, "client id and secret", "passed");
    expectLine(report, "token from the refresh token", "skipped", /would spend it[\s\S]*Authorize/);
    assert.equal(sandbox.server.counter("goto refresh"), refreshes, "the test spent a refresh token");
  });

  it("fails the client for a wrong client secret, and says to check it", async () => {
    await helper.load(gotoCredentials, []);
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: { ...client(), clientSecret: "not-the-secret-123" } });
    expectLine(report, "client id and secret", "failed", /refused the client id or secret/);
    expectLine(report, "scopes", "skipped");
    assert.ok(!JSON.stringify(report).includes("not-the-secret-123"));
  });

  it("fails the token when GoTo refused the deployed chain, and says to authorize again", async () => {
    const creds = client();
    await helper.load(gotoCredentials, [{ id: "g1", type: "goto-credentials", ...config() }], { g1: creds });
    sandbox.goto.oauth.revokeRefreshToken(creds.refreshToken);
    await assert.rejects((helper.getNode("g1") as any).connection.getAccessToken());
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: { clientId: creds.clientId, ...PLACEHOLDERS } });
    expectLine(report, "token from the refresh token", "failed", /refused the refresh token[\s\S]*Authorize/);
  });

  it("fails the scopes when the client lacks cr.v1.read, naming what it is for", async () => {
    const creds = client();
    sandbox.goto.scopes.set(creds.clientId, "identity:");
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: await deployed(creds) });
    expectLine(report, "scopes", "failed", /lacks cr\.v1\.read \(for the call logs[\s\S]*add cr\.v1\.read/);
    assert.equal(report.ok, false);
  });

  it("reads the account key, address and roles of /me from its own fields, not from an object inside it", async () => {
    sandbox.goto.admin.meShape = "nested";
    try {
      const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: await deployed() });
      expectLine(report, "account key and admin rights", "passed", new RegExp(`^account ${sandbox.goto.accountKey}, admin@example.com is SUPER_USER\\s*$`));
    } finally {
      sandbox.goto.admin.meShape = "plain";
    }
  });

  it("fails the admin rights when the authorizing user is no admin", async () => {
    const creds = client();
    sandbox.goto.admin.nonAdmins.add(creds.clientId);
    const report = await testConnection("goto-credentials", { id: "g1", config: config(), credentials: await deployed(creds) });
    expectLine(report, "account key and admin rights", "failed", /member@example.com is not an admin/);
  });

  it("fails an account key that is not the user's account", async () => {
    const key = { accountKey: "1234567890123456789" };
    const credentials = await deployed(client(), key);
    const report = await testConnection("goto-credentials", { id: "g1", config: { ...config(), ...key }, credentials });
    expectLine(report, "account key and admin rights", "failed", new RegExp(`set the account key to ${sandbox.goto.accountKey}`));
  });

  it("never sends the deployed node's secrets to another auth host", async () => {
    const other = new Sandbox();
    await other.listen();
    try {
      const creds = client();
      await helper.load(gotoCredentials, [{ id: "g1", type: "goto-credentials", ...config() }], { g1: creds });
      const report = await testConnection("goto-credentials", {
        id: "g1",
        config: { ...config(), authHost: `${other.url}/goto/auth`, apiHost: `${other.url}/goto/api` },
        credentials: { clientId: creds.clientId, clientSecret: "__PWRD__", refreshToken: "__PWRD__" },
      });
      expectLine(report, "stored secrets", "skipped", /not used: the auth host and the API host differ from the deployed node/);
      expectLine(report, "client id and secret", "failed");
      assert.equal(other.server.counter("goto refresh") + other.server.counter("goto invalid client"), 0, "the other host got a token request");
    } finally {
      await other.close();
    }
  });

  it("answers a test message on a goto-call-logs node with the report", async () => {
    const creds = client();
    const flow = [
      { id: "g1", type: "goto-credentials", ...config() },
      { id: "logs", type: "goto-call-logs", goto: "g1", wires: [["out"]] },
      { id: "out", type: "helper" },
    ];
    await helper.load([gotoCredentials, gotoCallLogs], flow, { g1: creds });
    await (helper.getNode("g1") as any).connection.getAccessToken();
    const got = new Promise<any>((resolve) => helper.getNode("out").on("input", resolve));
    helper.getNode("logs").receive({ topic: "test" } as never);
    const msg = await got;
    assert.equal(msg.payload.ok, true, JSON.stringify(msg.payload));
    expectLine(msg.payload.reports[0], "account key and admin rights", "passed");
  });

  it("answers with the check under way failed, and its fix, when the provider never answers", async function () {
    this.timeout(20_000); // the route answers within 15 s
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket.on("error", () => undefined)));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      await helper.load(gotoCredentials, []);
      const port = (silent.address() as net.AddressInfo).port;
      const report = await testConnection("goto-credentials", { id: "g1", config: { ...config(), authHost: `http://127.0.0.1:${port}` }, credentials: client() });
      expectLine(report, "client id and secret", "failed", /could not reach the service at 127\.0\.0\.1:\d+[\s\S]*host and port[\s\S]*firewall/);
      assert.equal(report.ok, false);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});

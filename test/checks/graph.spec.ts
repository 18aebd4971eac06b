import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import graphApp from "../../src/nodes/graph-app";
import { Sandbox } from "../../src/sandbox";
import { nodeRed } from "../support/node-red";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

describe("graph-app connection test", () => {
  const sandbox = new Sandbox();
  const tenantId = "00000000-0000-4000-8000-0000000c4eck";
  before(async () => {
    await sandbox.listen();
    sandbox.graph.addUser({ mail: "ada@contoso.test", replies: { status: "alwaysEnabled", externalAudience: "all", internalReplyMessage: "Away", externalReplyMessage: "Away" } as never });
  });
  after(() => sandbox.close());
  afterEach(() => helper.unload());

  // An app of its own per test: its roles are what the test grants it.
  const app = (roles?: string[]) => {
    const clientId = randomUUID();
    const clientSecret = `secret-${randomUUID()}`;
    sandbox.microsoft.registerApp(tenantId, clientId, clientSecret);
    if (roles) sandbox.microsoft.appRoles.set(clientId, roles);
    return { config: { tenantId, clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` }, credentials: { clientSecret } };
  };

  it("gets an app token with both roles and reads a test mailbox's automatic replies", async () => {
    await helper.load(graphApp, []);
    const report = await testConnection("graph-app", { id: "a1", ...app(), options: { testAddress: "ada@contoso.test" } });
    expectLine(report, "app token", "passed");
    expectLine(report, "roles", "passed", /User\.Read\.All, MailboxSettings\.Read/);
    expectLine(report, "automatic replies of ada@contoso.test", "passed", /alwaysEnabled/);
    assert.equal(report.ok, true);
  });

  it("skips the mailbox when no test address is given", async () => {
    await helper.load(graphApp, []);
    const report = await testConnection("graph-app", { id: "a1", ...app() });
    expectLine(report, "automatic replies", "skipped", /no test mailbox/);
  });

  it("fails the token for a wrong client secret, and says where to make a new one", async () => {
    await helper.load(graphApp, []);
    const wrong = app();
    const report = await testConnection("graph-app", { id: "a1", config: wrong.config, credentials: { clientSecret: "not-the-secret" } });
    expectLine(report, "app token", "failed", /refused the app's secret[\s\S]*Certificates & secrets/);
    expectLine(report, "roles", "skipped");
  });

  it("fails the roles when MailboxSettings.Read was not granted, and says to grant admin consent", async () => {
    await helper.load(graphApp, []);
    const report = await testConnection("graph-app", { id: "a1", ...app(["User.Read.All"]) });
    expectLine(report, "roles", "failed", /lacks MailboxSettings\.Read[\s\S]*Grant admin consent/);
  });

  it("fails the roles when the admin consent was revoked (a token without roles)", async () => {
    await helper.load(graphApp, []);
    const report = await testConnection("graph-app", { id: "a1", ...app([]) });
    expectLine(report, "roles", "failed", /no roles at all[\s\S]*consent was revoked/);
  });

  it("fails the mailbox for an address nobody has", async () => {
    await helper.load(graphApp, []);
    const report = await testConnection("graph-app", { id: "a1", ...app(), options: { testAddress: "nobody@contoso.test" } });
    expectLine(report, "automatic replies of nobody@contoso.test", "failed", /no Entra ID user has the address/);
  });

  it("uses the deployed secret only while the authority host is the deployed node's", async () => {
    const a = app();
    await helper.load(graphApp, [{ id: "a1", type: "graph-app", ...a.config }], { a1: a.credentials });
    const same = await testConnection("graph-app", { id: "a1", config: a.config, credentials: { clientSecret: "__PWRD__" } });
    expectLine(same, "app token", "passed");
    const before = sandbox.server.counter("microsoft token request");
    const moved = await testConnection("graph-app", { id: "a1", config: { ...a.config, authorityHost: "http://127.0.0.1:9" }, credentials: { clientSecret: "__PWRD__" } });
    expectLine(moved, "stored secrets", "skipped", /not used: the authority host differs from the deployed node/);
    expectLine(moved, "app settings", "failed", /client secret/);
    assert.equal(sandbox.server.counter("microsoft token request"), before);
  });
});

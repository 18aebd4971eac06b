import assert from "node:assert/strict";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { generateSecret } from "../../src/auth/keys";
import { GOTO_DEMO_CLIENT, MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { Azurite } from "../../src/sandbox/azurite";
import { SmtpSink } from "../../src/sandbox/smtp-sink";
import { launchChromium } from "../support/browser";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { sandboxClient } from "../support/teamleader";
import { selfSignedCertificate } from "../support/tls";

/** With GW_SCREENSHOTS set (a folder, e.g. docs), the picture the README shows is taken anew. */
async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.GW_SCREENSHOTS) await page.locator(".red-ui-tray").last().screenshot({ path: path.join(process.env.GW_SCREENSHOTS, name) });
}

describe("Test connection button in every config node's dialog", function () {
  this.timeout(180_000);
  const sandbox = new Sandbox();
  const azurite = new Azurite();
  const smtp = new SmtpSink({ tls: selfSignedCertificate(), auth: { user: "relay", pass: "relay-password-123" } });
  // The Entra ID app of the picture: MailboxSettings.Read was never granted admin consent.
  const weakApp = { clientId: "22222222-2222-4222-8222-222222222222", clientSecret: "weak-app-secret-0123456789" };
  // An app that proves itself with a certificate, pasted into the dialog as PEM.
  const certApp = { clientId: "33333333-3333-4333-8333-333333333333", ...selfSignedCertificate() };
  let db: TestDatabase;
  let red: NodeRedProcess;
  let browser: Browser;
  let page: Page;

  before(async () => {
    await sandbox.listen();
    await azurite.start();
    const smtpPort = await smtp.listen();
    db = await createTestDatabase();
    sandbox.microsoft.registerApp(MICROSOFT_DEMO_APP.tenantId, weakApp.clientId, weakApp.clientSecret);
    sandbox.microsoft.appRoles.set(weakApp.clientId, ["User.Read.All"]);
    sandbox.microsoft.registerAppCertificate(MICROSOFT_DEMO_APP.tenantId, certApp.clientId, certApp.cert);
    sandbox.microsoft.appRoles.set(certApp.clientId, ["User.Read.All", "MailboxSettings.Read"]);
    sandbox.graph.generateUsers(3);
    sandbox.goto.oauth.registerClient(GOTO_DEMO_CLIENT.clientId, GOTO_DEMO_CLIENT.clientSecret);
    const tl = sandboxClient(sandbox);
    const e = sandbox.endpoints;
    const flow = [
      { id: "tab", type: "tab", label: "Connections" },
      { id: "db", type: "postgres-database", name: "Test database", mode: "server", database: "x", ssl: "disable", credentials: { url: db.url } },
      { id: "goto", type: "goto-credentials", name: "GoTo", authHost: e.gotoAuth, apiHost: e.gotoApi, store: "file", credentials: { ...GOTO_DEMO_CLIENT, refreshToken: sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId) } },
      { id: "tl", type: "teamleader-connection", name: "Focus", redirectUri: "http://127.0.0.1:1880/teamleader/callback", authHost: e.teamleaderAuth, apiHost: e.teamleaderApi, database: "db", credentials: { ...tl, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(tl.clientId) } },
      { id: "graph", type: "graph-app", name: "Out of office", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: weakApp.clientId, authType: "secret", authorityHost: e.microsoftLogin, graphUrl: e.graph, credentials: { clientSecret: weakApp.clientSecret } },
      { id: "graphcert", type: "graph-app", name: "By certificate", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: certApp.clientId, authType: "certificate", authorityHost: e.microsoftLogin, graphUrl: e.graph },
      { id: "storage", type: "azure-storage-account", name: "Azurite", auth: "connection-string", credentials: { connectionString: azurite.connectionString } },
      { id: "smtp", type: "smtp-connection", name: "Mail", host: "127.0.0.1", port: String(smtpPort), security: "starttls", verifyCertificate: false, auth: "password", sender: "desk@example.com", poolSize: "1", credentials: { user: "relay", password: "relay-password-123" } },
      { id: "key", type: "jwt-auth-key", name: "Reports", algorithm: "HS256", issuer: "node-red", audience: "api", credentials: { secret: generateSecret() } },
    ];
    red = await startNodeRed();
    await red.deploy(flow);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(red.url);
    await page.waitForFunction(() => (globalThis as any).RED?.nodes?.node("key"), undefined, { timeout: 60_000 });
    // Node-RED 4 asks once whether to check for updates: answer it, so it covers nothing.
    const ask = page.getByText("No, do not enable notifications");
    if (await ask.isVisible({ timeout: 5000 }).catch(() => false)) await ask.click();
    await page.locator(".red-ui-shade").first().waitFor({ state: "hidden" }).catch(() => undefined);
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
    await db?.drop();
    await smtp.close();
    await azurite.stop();
    await sandbox.close();
  });

  /** Opens a config node's dialog, fills the test's own fields, presses the button: the lines it shows. */
  async function press(type: string, id: string, fill: Record<string, string> = {}, picture?: string): Promise<Record<string, string>> {
    await page.evaluate(([t, i]) => (globalThis as any).RED.editor.editConfig("", t, i), [type, id]);
    const button = page.locator(".gw-test-button");
    await button.waitFor({ timeout: 20_000 });
    for (const [name, value] of Object.entries(fill)) await page.locator(`#gw-test-${name}`).fill(value);
    await button.click();
    await page.locator(".gw-test-state[data-ok]").waitFor({ timeout: 20_000 });
    const lines = await page.locator(".gw-test-result li").evaluateAll((items) => items.map((li) => [li.getAttribute("data-check"), li.getAttribute("data-outcome")]));
    if (picture) await screenshot(page, picture);
    await page.locator("#node-config-dialog-cancel").click();
    await page.locator(".gw-test-button").waitFor({ state: "detached" });
    return Object.fromEntries(lines as Array<[string, string]>);
  }

  // A test spends no refresh token: a node deployed a moment ago, which has made no call yet and
  // so holds no access token, has its client checked and the token checks left for later.
  it("goto-credentials: checks the client of a node just deployed, and spends none of its tokens", async () => {
    assert.deepEqual(await press("goto-credentials", "goto"), { "client id and secret": "passed", "token store": "passed", "token from the refresh token": "skipped", scopes: "skipped", "account key and admin rights": "skipped" });
  });

  it("teamleader-connection: checks the client of a node just deployed, and spends none of its tokens", async () => {
    assert.deepEqual(await press("teamleader-connection", "tl"), { "client id and secret": "passed", "token store": "passed", "token through the shared chain": "skipped", "users.me": "skipped", scopes: "skipped" });
  });

  it("graph-app: the missing MailboxSettings.Read fails, with the fix", async () => {
    const lines = await press("graph-app", "graph", {}, "connection-test.png");
    assert.deepEqual(lines, { "app settings": "passed", "app token": "passed", roles: "failed", "automatic replies": "skipped" });
  });

  it("graph-app: the test mailbox typed beside the button is read", async () => {
    const lines = await press("graph-app", "graph", { testAddress: "user0001@contoso.test" });
    assert.ok(lines["automatic replies of user0001@contoso.test"], JSON.stringify(lines));
  });

  it("graph-app: a certificate and key pasted as PEM keep their lines through Test connection, a deploy and a reload", async () => {
    const open = async () => {
      await page.evaluate(() => (globalThis as any).RED.editor.editConfig("", "graph-app", "graphcert"));
      await page.locator("#node-config-input-certificate").waitFor({ state: "visible", timeout: 20_000 });
    };
    const test = async () => {
      await page.locator(".gw-test-state[data-ok]").waitFor({ state: "detached" }).catch(() => undefined);
      await page.locator(".gw-test-button").click();
      await page.locator(".gw-test-state[data-ok]").waitFor({ timeout: 20_000 });
      const lines = await page.locator(".gw-test-result li").evaluateAll((items) => items.map((li) => [li.getAttribute("data-check"), li.getAttribute("data-outcome")]));
      return Object.fromEntries(lines as Array<[string, string]>);
    };
    await open();
    await page.locator("#node-config-input-certificate").fill(certApp.cert);
    await page.locator("#node-config-input-privateKey").fill(certApp.key);
    assert.equal(await page.locator("#node-config-input-certificate").inputValue(), certApp.cert, "the pasted PEM keeps its line breaks");
    assert.deepEqual(await test(), { "app settings": "passed", "app token": "passed", roles: "passed", "automatic replies": "skipped" });
    await page.locator("#node-config-dialog-ok").click();
    await page.locator("#node-config-input-certificate").waitFor({ state: "detached" });
    await page.locator("#red-ui-header-button-deploy").click();
    await page.waitForFunction(() => !(globalThis as any).RED.nodes.dirty(), undefined, { timeout: 30_000 });

    await page.reload();
    await page.waitForFunction(() => (globalThis as any).RED?.nodes?.node("graphcert"), undefined, { timeout: 60_000 });
    await open();
    // Kept secrets come back as a note, never as the editor's placeholder text.
    const area = page.locator("#node-config-input-certificate");
    assert.equal(await area.inputValue(), "");
    assert.match((await area.getAttribute("placeholder")) ?? "", /kept/);
    assert.deepEqual(await test(), { "app settings": "passed", "app token": "passed", roles: "passed", "automatic replies": "skipped" }, "the deployed PEM works");
    await page.locator("#node-config-dialog-cancel").click();
    await page.locator("#node-config-input-certificate").waitFor({ state: "detached" });
  });

  it("azure-storage-account: the typed container passes every check", async () => {
    const lines = await press("azure-storage-account", "storage", { container: "dialog-probe" });
    assert.deepEqual(lines, {
      "account settings": "passed",
      "container 'dialog-probe'": "passed",
      "stage a block in 'dialog-probe'": "passed",
      "list the probe blob in 'dialog-probe'": "passed",
      "delete the probe blob in 'dialog-probe'": "passed",
    });
  });

  it("smtp-connection: connects, logs in and has the sender accepted", async () => {
    assert.deepEqual(await press("smtp-connection", "smtp"), { "connect with STARTTLS": "passed", "log in": "passed", "sender address": "passed" });
    assert.equal(smtp.received.length, 0);
  });

  it("postgres-database: connects with the rights the pipelines need", async () => {
    assert.deepEqual(await press("postgres-database", "db"), { connect: "passed", "create tables": "passed", "LISTEN/NOTIFY": "passed", "advisory locks": "passed" });
  });

  it("jwt-auth-key: the secret is strong and signs and verifies", async () => {
    assert.deepEqual(await press("jwt-auth-key", "key"), { "secret strength": "passed", "sign and verify": "passed" });
  });
});

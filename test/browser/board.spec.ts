import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { BlobServiceClient } from "@azure/storage-blob";
import { DateTime } from "luxon";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { Azurite } from "../../src/sandbox/azurite";
import { launchChromium } from "../support/browser";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const FLOW = path.join(__dirname, "..", "..", "..", "flows", "support-board.json");

interface Parts {
  db: TestDatabase;
  azurite: Azurite;
  /** The reports key's secret and users ("name:bcrypt hash" lines). */
  reports: { secret: string; users: string };
}

/** The support board flow as deployed here: a test database, Azurite, and a reports user. */
function boardFlow(parts: Parts, overrides: Record<string, unknown> = {}): unknown[] {
  const flow = JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>;
  return flow.map((n) => {
    if (n.type === "postgres-database") return { ...n, mode: "server", credentials: { url: parts.db.url } };
    if (n.type === "azure-storage-account") return { ...n, auth: "connection-string", credentials: { connectionString: parts.azurite.connectionString } };
    if (n.type === "jwt-auth-key") return { ...n, credentials: parts.reports };
    if (n.type === "connection-board") return { ...n, ...overrides };
    return n;
  });
}

/** With GW_SCREENSHOTS set (a folder, e.g. docs), the pictures the README shows are taken anew. */
async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.GW_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.GW_SCREENSHOTS, name) });
}

async function openBoard(browser: Browser, red: NodeRedProcess): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 }, timezoneId: "Pacific/Auckland" });
  page.on("dialog", (d) => {
    throw new Error(`a script ran in the page: ${d.message()}`);
  });
  await page.goto(`${red.url}/dashboard/board`);
  await page.locator("tr[data-sub='VPN radiology']").waitFor({ timeout: 20_000 });
  return page;
}

async function iAm(page: Page, name: string): Promise<void> {
  await page.locator(".gw-me").click();
  await page.locator(".v-overlay .v-list-item", { hasText: name }).first().click();
}

function row(page: Page, main: string, sub: string) {
  return page.locator(`tr[data-main="${main}"][data-sub="${sub}"]`);
}

describe("support desk board in a browser", function () {
  this.timeout(180_000);
  let parts: Parts;
  let red: NodeRedProcess;
  let browser: Browser;
  const MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>";
  const users = { boardUsers: `Burt\nJimmy\n${MARKUP}` };

  before(async () => {
    const azurite = new Azurite();
    await azurite.start();
    parts = { db: await createTestDatabase(), azurite, reports: { secret: generateSecret(), users: `alice:${await hashPassword("correct horse battery")}` } };
    red = await startNodeRed();
    await red.deploy(boardFlow(parts, users));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
    await parts?.db.drop();
    await parts?.azurite.stop();
  });

  /** This week's audit file, as the board's weekly template names it. */
  async function auditFile(): Promise<string> {
    const now = DateTime.now().setZone("Europe/Brussels");
    const name = `audit/${now.toFormat("kkkk")}/${now.toFormat("kkkk")}-W${now.toFormat("WW")}.csv`;
    const blob = BlobServiceClient.fromConnectionString(parts.azurite.connectionString).getContainerClient("support-audit").getBlobClient(name);
    return (await blob.downloadToBuffer()).toString("utf8");
  }

  it("shows a tick in one browser in the other within a second", async () => {
    const burt = await openBoard(browser, red);
    const jimmy = await openBoard(browser, red);
    await iAm(burt, "Burt");
    await row(burt, "Hôpital Saint-Luc", "VPN main").locator(".gw-tick input").click();
    await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-who", { hasText: "Burt" }).waitFor({ timeout: 1000 });
    assert.match(await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-duration").innerText(), /^0h 0m \d+s$/);
    await burt.close();
    await jimmy.close();
  });

  it("shows the current state at once to a browser opened later", async () => {
    const late = await openBoard(browser, red);
    assert.equal(await row(late, "Hôpital Saint-Luc", "VPN main").locator(".gw-who").innerText(), "Burt");
    await late.close();
  });

  it("asks before taking over someone else's connection, and takes it over only when confirmed", async () => {
    const jimmy = await openBoard(browser, red);
    await iAm(jimmy, "Jimmy");
    const target = row(jimmy, "Hôpital Saint-Luc", "VPN main");
    await target.locator(".gw-tick input").click();
    await jimmy.getByText("Take over this connection?").waitFor();
    const asked = /Burt \(since (\d\d:\d\d)\) is connected: take over\?/.exec(await jimmy.locator(".gw-notice").innerText());
    assert.ok(asked, "the takeover question names the person and the time");
    assert.equal(await target.locator(".gw-since").innerText(), asked[1], "one time zone: the Since column says what the question says");
    await jimmy.locator("[data-test=cancel]").click();
    assert.equal(await target.locator(".gw-who").innerText(), "Burt", "cancelled: nothing changed");
    await target.locator(".gw-tick input").click();
    await jimmy.locator("[data-test=take-over]").click();
    await target.locator(".gw-who", { hasText: "Jimmy" }).waitFor({ timeout: 2000 });
    await jimmy.close();
    const audit = await eventually(async () => (await auditFile().catch(() => "")).includes("taken over") && auditFile(), 10_000, "the takeover's audit row");
    assert.match(audit, /^Client,Connection,User,Connected at,Released at,Duration,Released by,Reason\r\n/);
    assert.match(audit, /Hôpital Saint-Luc,VPN main,Burt,\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,0:0\d:\d\d,Jimmy,taken over\r\n/);
  });

  it("writes the audit row when someone releases a connection", async () => {
    const jimmy = await openBoard(browser, red);
    await iAm(jimmy, "Jimmy");
    await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-tick input").click();
    await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-who", { hasText: /^$/ }).waitFor({ timeout: 2000 });
    const audit = await eventually(async () => / Jimmy,released\r\n|,Jimmy,released\r\n/.test(await auditFile()) && auditFile(), 10_000, "the release's audit row");
    assert.match(audit, /Hôpital Saint-Luc,VPN main,Jimmy,.*,Jimmy,released\r\n/);
    // put Jimmy back where the later tests expect him
    await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-tick input").click();
    await row(jimmy, "Hôpital Saint-Luc", "VPN main").locator(".gw-who", { hasText: "Jimmy" }).waitFor({ timeout: 2000 });
    await jimmy.close();
  });

  it("shows the reports only after signing in, and serves this week's audit file", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const anonymous = await context.request.get(`${red.url}/reports/file?name=audit/x.csv`, { maxRedirects: 0 });
    assert.equal(anonymous.status(), 401);
    await page.goto(`${red.url}/reports`);
    assert.match(page.url(), /\/reports\/login$/, "a visitor is sent to the sign-in page");
    await page.fill("#username", "alice");
    await page.fill("#password", "wrong password");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    assert.match(await page.locator(".error").innerText(), /./);
    await page.fill("#username", "alice");
    await page.fill("#password", "correct horse battery");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    assert.match(page.url(), /\/reports$/);
    const cookie = (await context.cookies()).find((c) => c.name === "reports_token");
    assert.ok(cookie?.httpOnly, "the token is an HttpOnly cookie");
    assert.equal(cookie?.sameSite, "Strict");
    const link = page.locator("ul.reports a").first();
    const name = await link.innerText();
    assert.match(name, /^audit\/\d{4}\/\d{4}-W\d\d\.csv$/);
    const download = await context.request.get(`${red.url}/${await link.getAttribute("href")}`);
    assert.equal(download.status(), 200);
    assert.match(download.headers()["content-disposition"] ?? "", /^attachment/);
    assert.match(await download.text(), /^Client,Connection,User/);
    await screenshot(page, "reports.png");
    await context.close();
  });

  it("refuses a signed-in user any path outside the audit folder", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${red.url}/reports/login`);
    await page.fill("#username", "alice");
    await page.fill("#password", "correct horse battery");
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    for (const name of ["../flows.json", "audit/../../flows.json", "%2e%2e/flows.json", "/etc/passwd"]) {
      const res = await context.request.get(`${red.url}/reports/file?name=${name}`);
      assert.equal(res.status(), 400, name);
    }
    await context.close();
  });

  it("shows a name containing <script> and other markup as text, and runs nothing", async () => {
    const page = await openBoard(browser, red);
    await iAm(page, MARKUP);
    await row(page, "CHU Liège", "Citrix gateway").locator(".gw-tick input").click();
    const who = row(page, "CHU Liège", "Citrix gateway").locator(".gw-who");
    await who.getByText(MARKUP, { exact: true }).waitFor({ timeout: 2000 });
    assert.equal(await who.innerText(), MARKUP);
    assert.equal(await who.locator("img, script").count(), 0);
    await page.close();
  });

  it("narrows the list with the filter box", async () => {
    const page = await openBoard(browser, red);
    await page.locator(".gw-filter input").fill("liège");
    await page.waitForFunction("document.querySelectorAll('tr[data-main]').length === 1");
    assert.equal(await page.locator("tr[data-main]").first().getAttribute("data-main"), "CHU Liège");
    await page.close();
  });

  it("comes back as it was after Node-RED restarts", async () => {
    await red.stop();
    red = await startNodeRed({ userDir: red.userDir, port: red.port });
    const page = await openBoard(browser, red);
    assert.equal(await row(page, "Hôpital Saint-Luc", "VPN main").locator(".gw-who").innerText(), "Jimmy");
    await page.close();
  });

  it("shows who is connected where, and for how long", async () => {
    const page = await openBoard(browser, red);
    await iAm(page, "Burt");
    await page.locator(".v-overlay .v-list").waitFor({ state: "hidden" });
    await page.locator(".gw-duration", { hasText: /\ds$/ }).first().waitFor();
    await screenshot(page, "board.png");
    await page.close();
  });

  it("shows a tick on one Node-RED process on the other's dashboard when both use one PostgreSQL server", async () => {
    const second = await startNodeRed();
    try {
      await second.deploy(boardFlow(parts, users));
      const here = await openBoard(browser, red);
      const there = await openBoard(browser, second);
      await iAm(here, "Burt");
      await row(here, "Clinique du Parc", "VPN main").locator(".gw-tick input").click();
      await row(there, "Clinique du Parc", "VPN main").locator(".gw-who", { hasText: "Burt" }).waitFor({ timeout: 2000 });
      await here.close();
      await there.close();
    } finally {
      await second.stop();
    }
  });
});

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../support/browser";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const FLOW = path.join(__dirname, "..", "..", "..", "flows", "support-board.json");

/** The support board flow, its database pointed at a test database on the PostgreSQL server. */
function boardFlow(db: TestDatabase, overrides: Record<string, unknown> = {}): unknown[] {
  const flow = JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>;
  return flow.map((n) => {
    if (n.type === "postgres-database") return { ...n, mode: "server", credentials: { url: db.url } };
    if (n.type === "connection-board") return { ...n, ...overrides };
    return n;
  });
}

async function openBoard(browser: Browser, red: NodeRedProcess): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
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
  let db: TestDatabase;
  let red: NodeRedProcess;
  let browser: Browser;

  before(async () => {
    db = await createTestDatabase();
    red = await startNodeRed();
    await red.deploy(boardFlow(db, { users: "Burt\nJimmy\n<img src=x onerror=alert(1)>" }));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
    await db?.drop();
  });

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
    assert.match(await jimmy.locator(".gw-notice").innerText(), /Burt \(since \d\d:\d\d\) is connected: take over\?/);
    await jimmy.locator("[data-test=cancel]").click();
    assert.equal(await target.locator(".gw-who").innerText(), "Burt", "cancelled: nothing changed");
    await target.locator(".gw-tick input").click();
    await jimmy.locator("[data-test=take-over]").click();
    await target.locator(".gw-who", { hasText: "Jimmy" }).waitFor({ timeout: 2000 });
    await jimmy.close();
  });

  it("shows a name with markup as text and runs nothing", async () => {
    const page = await openBoard(browser, red);
    await iAm(page, "<img src=x onerror=alert(1)>");
    await row(page, "CHU Liège", "Citrix gateway").locator(".gw-tick input").click();
    const who = row(page, "CHU Liège", "Citrix gateway").locator(".gw-who");
    await who.locator("text=<img src=x onerror=alert(1)>").waitFor({ timeout: 2000 });
    assert.equal(await who.locator("img").count(), 0);
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

  it("shows a tick on one Node-RED process on the other's dashboard when both use one PostgreSQL server", async () => {
    const second = await startNodeRed();
    try {
      await second.deploy(boardFlow(db, { users: "Burt\nJimmy\n<img src=x onerror=alert(1)>" }));
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

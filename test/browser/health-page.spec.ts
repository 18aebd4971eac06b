import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { Database } from "../../src/core/db/database";
import { RunOutcome, RunRecord, runLog } from "../../src/core/runs";
import { launchChromium } from "../support/browser";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const FLOW = path.join(__dirname, "..", "..", "..", "flows", "operations.json");
const DAY = 86_400_000;

/**
 * Stand-ins for the six pipeline nodes, wired as the examples start them: what the page reads of
 * a node's schedule is the flow around it (an inject's cron or repeat), not the node itself.
 */
const PIPELINES: Array<{ nodeId: string; pipeline: string; name: string; type: string; trigger?: Record<string, unknown> }> = [
  { nodeId: "t-calllogs", pipeline: "call-logs", name: "Nightly call logs", type: "goto-call-logs", trigger: { crontab: "30 00 * * *", repeat: "" } },
  { nodeId: "t-sync", pipeline: "teamleader-sync", name: "Teamleader sync", type: "teamleader-query", trigger: { crontab: "", repeat: "900" } },
  { nodeId: "t-ooo", pipeline: "ooo-monitor", name: "Out-of-office monitor", type: "graph-ooo-status", trigger: { crontab: "", repeat: "60" } },
  { nodeId: "t-provisioning", pipeline: "provisioning", name: "Provision users", type: "goto-provision-user" },
  { nodeId: "t-relay", pipeline: "mail-relay", name: "Monitoring relay", type: "mail-relay" },
  { nodeId: "t-board", pipeline: "board-audit", name: "weekly audit", type: "blob-csv-writer" },
];

/** The operations example on a test database, beside the stand-ins. */
function operationsFlow(db: TestDatabase): unknown[] {
  const flow = (JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>).map((n) =>
    n.type === "postgres-database" ? { ...n, mode: "server", poolSize: "3", credentials: { url: db.url } } : n,
  );
  const standIns = PIPELINES.flatMap((p, i) => [
    { id: p.nodeId, type: "function", z: "t-tab", name: p.pipeline, func: "return msg;", outputs: 1, x: 400, y: 40 + i * 60, wires: [[]] },
    ...(p.trigger ? [{ id: `${p.nodeId}-start`, type: "inject", z: "t-tab", name: "", props: [], once: false, onceDelay: 0.1, topic: "", ...p.trigger, x: 150, y: 40 + i * 60, wires: [[p.nodeId]] }] : []),
  ]);
  return [...flow, { id: "t-tab", type: "tab", label: "pipelines" }, ...standIns];
}

function run(p: (typeof PIPELINES)[number], startedAt: Date, outcome: RunOutcome, rows: number, error: RunRecord["error"] = null, nodeName = p.name): RunRecord {
  return {
    id: null,
    nodeId: p.nodeId,
    nodeName,
    nodeType: p.type,
    pipeline: p.pipeline,
    key: null,
    instance: "test pid 1",
    startedAt,
    endedAt: new Date(startedAt.getTime() + 1500),
    durationMs: 1500,
    outcome,
    counts: { rows, pages: 1, requests: 2, http429: 0, retries: 0, tokenRefreshes: 1 },
    error,
    details: null,
  };
}

describe("the operations health page in a browser", function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let other: Database;
  let red: NodeRedProcess;
  let browser: Browser;
  let page: Page;
  /** Rows and failed runs per UTC day, as stored. */
  const expected = new Map<string, { rows: number; failures: number }>();
  const MARKUP = `<img src=x onerror="alert('run record')"><script>alert(2)</script>`;

  function count(r: RunRecord): void {
    const day = r.startedAt.toISOString().slice(0, 10);
    const t = expected.get(day) ?? { rows: 0, failures: 0 };
    t.rows += r.counts.rows;
    if (r.outcome === "failure") t.failures++;
    expected.set(day, t);
  }

  before(async () => {
    db = await createTestDatabase();
    other = await Database.open({ kind: "server", connection: db.connection }, { warn: () => undefined });
    // 30 days of runs of all six pipelines; the ooo monitor fails on two of them.
    const now = Date.now();
    const log = runLog(other);
    const records: RunRecord[] = [];
    for (let i = 29; i >= 0; i--) {
      PIPELINES.forEach((p, j) => {
        const startedAt = new Date(now - i * DAY - (j + 1) * 60_000);
        const failed = p.pipeline === "ooo-monitor" && (i === 3 || i === 12);
        records.push(run(p, startedAt, failed ? "failure" : "success", failed ? 0 : 10 * (j + 1) + i, failed ? { message: "Microsoft Graph answered 503", code: "GW_HTTP", cause: "the service is unavailable", fix: "wait, it retries" } : null));
      });
    }
    for (const r of records) {
      if (r.startedAt.toISOString().slice(0, 10) < new Date(now - 29 * DAY).toISOString().slice(0, 10)) continue;
      await log.save(r);
      count(r);
    }
    red = await startNodeRed();
    await red.deploy(operationsFlow(db));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
    await other?.close();
    await db?.drop();
  });

  async function openPage(): Promise<Page> {
    const p = await browser.newPage({ viewport: { width: 1280, height: 1000 }, timezoneId: "UTC" });
    p.on("dialog", (d) => {
      throw new Error(`a script ran in the page: ${d.message()}`);
    });
    await p.goto(`${red.url}/dashboard/operations`);
    await p.locator("tr[data-node]").nth(PIPELINES.length - 1).waitFor({ timeout: 30_000 }).catch(async (err) => {
      throw new Error(`${err.message}\npage: ${(await p.locator("body").innerText()).slice(0, 500)}`);
    });
    await p.locator("g.gw-day").nth(29).waitFor({ timeout: 10_000 });
    return p;
  }

  it("shows each pipeline's last run, outcome, duration, counts and next run", async () => {
    page = await openPage();
    assert.equal(await page.locator("tr[data-node]").count(), PIPELINES.length);
    const cells = async (nodeId: string) =>
      page.locator(`tr[data-node="${nodeId}"]`).evaluate((tr) => Object.fromEntries([...tr.querySelectorAll("td")].map((td) => [td.className, (td as any).innerText.trim()])));
    const calls = await cells("t-calllogs");
    assert.equal(calls["gw-pipeline"], "call-logs");
    assert.equal(calls["gw-outcome"], "success");
    assert.equal(calls["gw-duration"], "2 s");
    assert.equal(calls["gw-rows"], "10");
    assert.equal(calls["gw-refreshes"], "1");
    assert.match(calls["gw-next"]!, / · 30 00 \* \* \*$/, "the next run from the inject's cron time");
    assert.match((await cells("t-sync"))["gw-next"]!, /every 900 s$/);
    assert.equal((await cells("t-provisioning"))["gw-next"], "on demand");
  });

  it("charts 30 days of rows and failed runs, as stored", async () => {
    const days = await page.locator("g.gw-day").evaluateAll((gs) => gs.map((g) => ({ day: g.getAttribute("data-day"), rows: Number(g.getAttribute("data-rows")), failures: Number(g.getAttribute("data-failures")) })));
    assert.equal(days.length, 30);
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(days.at(-1)!.day, today);
    for (const d of days) assert.deepEqual({ day: d.day, rows: d.rows, failures: d.failures }, { day: d.day, ...(expected.get(d.day!) ?? { rows: 0, failures: 0 }) });
    assert.equal(days.reduce((s, d) => s + d.failures, 0), 2);
    if (process.env.GW_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.GW_SCREENSHOTS, "operations-page.png"), fullPage: true });
  });

  it("follows a new failed run live, with its cause and fix in the last errors, its text shown as text", async () => {
    const before = await page.locator("g.gw-day").last().getAttribute("data-failures");
    const relay = PIPELINES.find((p) => p.pipeline === "mail-relay")!;
    const failed = run(relay, new Date(), "failure", 3, { message: `SMTP refused: ${MARKUP}`, code: "GW_SMTP", cause: `550 ${MARKUP}`, fix: "check the relay's sender address" }, `Relay <b>outbox</b>`);
    const id = await runLog(other).save(failed);
    count({ ...failed, id });
    const item = page.locator(`.gw-ops-errors li[data-run="${id}"]`);
    await item.waitFor({ timeout: 10_000 });
    assert.equal(await item.locator(".gw-error-message").innerText(), `SMTP refused: ${MARKUP}`);
    assert.equal(await item.locator(".gw-error-cause span").innerText(), `550 ${MARKUP}`);
    assert.equal(await item.locator(".gw-error-fix span").innerText(), "check the relay's sender address");
    assert.equal(await page.locator(".gw-ops img, .gw-ops script, .gw-ops b").count(), 0, "no markup from a run record");
    assert.equal(await page.locator('tr[data-node="t-relay"] .gw-outcome').innerText(), "failure");
    assert.equal(await page.locator('tr[data-node="t-relay"] .gw-rows').innerText(), "3");
    assert.equal(await page.locator('tr[data-node="t-relay"] .gw-node').innerText(), "Relay <b>outbox</b>", "a node name is shown as text");
    assert.equal(await item.locator(".gw-error-node").innerText(), "Relay <b>outbox</b>");
    assert.equal(Number(await page.locator("g.gw-day").last().getAttribute("data-failures")), Number(before) + 1);
  });

  it("shows the current state to a page opened later", async () => {
    const late = await openPage();
    assert.equal(await late.locator('tr[data-node="t-relay"] .gw-outcome').innerText(), "failure");
    assert.ok((await late.locator(".gw-ops-errors li").count()) >= 3);
    await late.close();
    await page.close();
  });
});

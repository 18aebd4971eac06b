import { readFileSync } from "node:fs";
import path from "node:path";
import { Database } from "../src/core/db/database";
import { PIPELINES, RunRecord, runLog } from "../src/core/runs";
import { launchChromium } from "../test/support/browser";
import { startNodeRed } from "../test/support/node-red-process";
import { createTestDatabase } from "../test/support/pg";

const FLOW = path.join(__dirname, "..", "..", "flows", "operations.json");

/** How often each pipeline runs in the database the page reads (minutes between runs), as the examples schedule them. */
const EVERY_MINUTES: Record<string, number> = {
  "call-logs": 1440,
  "teamleader-sync": 3, // every 15 minutes, five resources
  "ooo-monitor": 1,
  provisioning: 60,
  "mail-relay": 10,
  "board-audit": 30,
};

/**
 * The health page's load time: from navigation to the table and the 30-day chart drawn, in
 * Chromium, with 30 days of runs of all six pipelines in the database (a run every minute of the
 * out-of-office monitor, every 3 of the Teamleader sync, and so on; a tenth of that when quick).
 */
export async function measurePageLoad({ quick }: { quick: boolean }): Promise<Record<string, number | string>> {
  const testDb = await createTestDatabase("gw_bench_page");
  const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  let red: Awaited<ReturnType<typeof startNodeRed>> | undefined;
  const browser = await launchChromium();
  try {
    const log = runLog(db);
    const now = Date.now();
    const scale = quick ? 10 : 1;
    for (const pipeline of PIPELINES) {
      // One run through the run log (its tables and the node's latest), the rest in one statement.
      const every = EVERY_MINUTES[pipeline]! * scale;
      const last: RunRecord = {
        id: null, nodeId: `bench-${pipeline}`, nodeName: pipeline, nodeType: "bench", pipeline, key: null, instance: "bench", startedAt: new Date(now - 60_000), endedAt: new Date(now - 59_000),
        durationMs: 1000, outcome: "success", counts: { rows: 10, pages: 1, requests: 2, http429: 0, retries: 0, tokenRefreshes: 0 }, error: null, details: null,
      };
      await log.save(last);
      await db.query(
        `INSERT INTO gluework_runs (node_id, node_name, node_type, pipeline, instance, started_at, ended_at, outcome, rows, pages, requests, error_message, error_cause, error_fix)
         SELECT $1, $2, 'bench', $2, 'bench', t, t + interval '2 seconds', CASE WHEN i % 97 = 0 THEN 'failure' ELSE 'success' END, (i % 50)::bigint, 1, 3,
           CASE WHEN i % 97 = 0 THEN 'the provider answered 503' END, CASE WHEN i % 97 = 0 THEN 'service unavailable' END, CASE WHEN i % 97 = 0 THEN 'wait: it retries' END
         FROM generate_series(1, $3::int) AS i, LATERAL (SELECT now() - (i * $4::int) * interval '1 minute' AS t) AS s`,
        [`bench-${pipeline}`, pipeline, Math.floor((30 * 1440) / every), every],
      );
    }
    const stored = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM gluework_runs")).rows[0]!.n;
    await db.query("ANALYZE gluework_runs");
    red = await startNodeRed();
    const flow = (JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>).map((n) =>
      n.type === "postgres-database" ? { ...n, mode: "server", poolSize: "3", credentials: { url: testDb.url } } : n,
    );
    await red.deploy(flow);
    const loads: number[] = [];
    for (let i = 0; i < (quick ? 3 : 15); i++) {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const started = performance.now();
      await page.goto(`${red.url}/dashboard/operations`);
      await page.locator("tr[data-node]").nth(PIPELINES.length - 1).waitFor({ timeout: 60_000 });
      await page.locator("g.gw-day").nth(29).waitFor({ timeout: 60_000 });
      loads.push(performance.now() - started);
      await page.close();
    }
    const sorted = [...loads].sort((a, b) => a - b);
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
    return {
      page_load_ms: Math.round(at(0.5)),
      page_load_ms_first: Math.round(loads[0]!),
      page_load_ms_p95: Math.round(at(0.95)),
      page_loads: loads.length,
      page_runs_in_database: stored,
    };
  } finally {
    await browser.close();
    await red?.stop();
    await db.close();
    await testDb.drop();
  }
}

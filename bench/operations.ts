import { ChildProcess, fork } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import v8 from "node:v8";
import vm from "node:vm";
import path from "node:path";
import { request } from "undici";
import { Database } from "../src/core/db/database";
import { HttpClient } from "../src/core/http/client";
import { PipelineMetrics, MetricsScope } from "../src/core/metrics";
import { RunRecorder, RunSubject, runLog } from "../src/core/runs";
import { Outbox } from "../src/mail/outbox";
import { TokenCipher } from "../src/core/tokens/cipher";
import { OAuthGrant } from "../src/core/tokens/oauth-grant";
import { PostgresTokenStore } from "../src/core/tokens/pg-store";
import { TokenManager } from "../src/core/tokens/token-manager";
import { describeGoToError, gotoApiBase } from "../src/goto/api";
import { gotoOAuthProfile } from "../src/goto/auth";
import { callLogsForDay } from "../src/goto/call-reports";
import { calendarDay } from "../src/goto/days";
import { GOTO_DEMO_CLIENT, TEAMLEADER_DEMO_CLIENT } from "../src/sandbox";
import { TeamleaderApi } from "../src/teamleader/api";
import { teamleaderOAuthProfile } from "../src/teamleader/auth";
import { TeamleaderSync } from "../src/teamleader/sync";
import { SyncTables } from "../src/teamleader/tables";
import { createTestDatabase } from "../test/support/pg";
import { measurePageLoad } from "./operations-page";
import type { Benchmark } from "./support";

/**
 * What recording runs costs the pipelines: a full Teamleader sync and a call-log day, each run
 * with its run recorded (requests counted through the HTTP client and token core, one row written
 * to gluework_runs at the end, as the nodes do) and without, in pairs whose order alternates, so
 * that the machine's drift weighs on both alike. The figure is the median of the pairs' ratios.
 * The sandbox runs in a process of its own with its rate limits off, and so do the clients, so
 * that the pipelines' own work, not a limit, sets the pace.
 */
export const benchmark: Benchmark = {
  name: "operations",
  async run({ quick }) {
    // BENCH_OPERATIONS=scrape: only the scrape section, its figures put beside the others already in the results file.
    if (process.env.BENCH_OPERATIONS === "scrape") return scrapeOnly(quick);
    const companies = quick ? 1_000 : 10_000;
    const calls = quick ? 1_000 : 20_000;
    const pairs = quick ? 2 : 20;
    const sandbox = await startSandbox();
    const testDb = await createTestDatabase("gw_bench_ops");
    const db = await Database.open({ kind: "server", connection: { ...testDb.connection, max: 10 } }, { warn: () => undefined });
    try {
      const control = (route: string, body: unknown) => post(`${sandbox.url}/_sandbox/${route}`, body);
      await control("teamleader/data", { volumes: { companies }, seed: "ops" });
      await control("teamleader/settings", { rateLimit: false, resetQuota: true });
      const day = "2026-06-10";
      await control("goto/call-reports", { rateLimit: null, volumes: { [day]: calls } });

      const tlTokens = await tokens(db, "teamleader", teamleaderOAuthProfile(`${sandbox.url}/teamleader/auth`), TEAMLEADER_DEMO_CLIENT, sandbox.url);
      const gotoTokens = await tokens(db, "goto", gotoOAuthProfile(`${sandbox.url}/goto/auth`), GOTO_DEMO_CLIENT, sandbox.url);
      const api = new TeamleaderApi({ apiHost: `${sandbox.url}/teamleader/api`, auth: tlTokens });
      const gotoClient = new HttpClient({ name: "GoTo", baseUrl: gotoApiBase("call-reports", `${sandbox.url}/goto/api`), auth: gotoTokens, describeError: describeGoToError });
      const recorder = (pipeline: RunSubject["pipeline"]) => new RunRecorder({ nodeId: `bench-${pipeline}`, nodeName: "bench", nodeType: "bench", pipeline }, { database: () => db, warn: (line) => process.stderr.write(`${line}\n`) });
      const tlRuns = recorder("teamleader-sync");
      const dayRuns = recorder("call-logs");
      const writes: Array<Promise<unknown>> = [];

      let prefixes = 0;
      const sync = async (recorded: boolean): Promise<number> => {
        const tables = new SyncTables(db, `ops${++prefixes}_`);
        await tables.ensure();
        const started = process.hrtime.bigint();
        const summary = await new TeamleaderSync(api, tables).run({
          resources: ["companies"],
          mode: "full",
          ...(recorded ? { startRun: (resource) => track(tlRuns.start(resource)) } : {}),
        });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (summary.resources.companies?.inserted !== companies) throw new Error(`the sync wrote ${summary.resources.companies?.inserted} rows, not ${companies}`);
        return seconds;
      };
      const callDay = async (recorded: boolean): Promise<number> => {
        const started = process.hrtime.bigint();
        const run = recorded ? track(dayRuns.start(day)) : undefined;
        let rows = 0;
        for await (const batch of callLogsForDay(gotoClient.withCounts(run?.counts), calendarDay(day, "UTC"), { onProgress: ({ pages }) => run && (run.counts.pages = pages) })) rows += batch.rows.length;
        if (run) {
          run.counts.rows = rows;
          run.end("success");
        }
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (rows !== calls) throw new Error(`the day held ${rows} calls, not ${calls}`);
        return seconds;
      };
      function track<T extends { saved: Promise<unknown> }>(run: T): T {
        writes.push(run.saved);
        return run;
      }

      // Each pipeline on its own: a warm-up of both ways (connections, JIT, the first migration),
      // then pairs in the order with-without, without-with, and so on, each run after a full
      // garbage collection so that no run pays for the garbage of the one before.
      const measure = async (run: (recorded: boolean) => Promise<number>) => {
        const times = { with: [] as number[], without: [] as number[], cpuWith: [] as number[], cpuWithout: [] as number[] };
        for (const recorded of [true, false, true, false]) await run(recorded);
        for (let i = 0; i < pairs; i++) {
          for (const recorded of i % 2 === 0 ? [true, false] : [false, true]) {
            collectGarbage();
            const cpu = process.cpuUsage();
            times[recorded ? "with" : "without"].push(await run(recorded));
            const used = process.cpuUsage(cpu);
            times[recorded ? "cpuWith" : "cpuWithout"].push((used.user + used.system) / 1e6);
          }
        }
        return times;
      };
      const measured = { sync: await measure(sync), day: await measure(callDay) };
      await Promise.all(writes);

      // The record's own write, alone: what each run adds to the database, and the CPU time it
      // costs this process (building the record, handing it over, the client's side of the write).
      const writeMs: number[] = [];
      const alone = recorder("mail-relay");
      const cpuBefore = process.cpuUsage();
      for (let i = 0; i < (quick ? 50 : 500); i++) {
        const run = alone.start(String(i));
        run.counts.requests = i;
        const started = process.hrtime.bigint();
        run.end("success");
        const saved = await run.saved;
        if (saved.id === null) throw new Error("a run was not stored");
        writeMs.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      const cpuUsed = process.cpuUsage(cpuBefore);
      const cpuMsPerRecord = (cpuUsed.user + cpuUsed.system) / 1000 / writeMs.length;
      const stored = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM gluework_runs WHERE node_type = 'bench'")).rows[0]!.n;
      const expected = 2 * (pairs + 2) + writeMs.length; // per pipeline: two recorded warm-ups and one run of each pair
      if (stored !== expected) throw new Error(`${stored} runs stored, not ${expected}`);
      await api.close();
      await gotoClient.close();

      // The fastest run of each kind is the one least disturbed by other work on the machine: the
      // ratio of the fastest with to the fastest without is the headline figure; the median of the
      // pairs' ratios and the CPU times are kept beside it.
      const summary = (m: Awaited<ReturnType<typeof measure>>, recordsPerRun: number) => ({
        ratio: round(Math.min(...m.with) / Math.min(...m.without)),
        median_pair_ratio: round(pairedRatio(m.with, m.without)),
        cpu_ratio: round(Math.min(...m.cpuWith) / Math.min(...m.cpuWithout)),
        // What the records' own CPU time adds to the fastest run without them.
        cost_bound_ratio: Number((1 + (recordsPerRun * cpuMsPerRecord) / 1000 / Math.min(...m.without)).toFixed(6)),
        seconds_min: { with: round(Math.min(...m.with)), without: round(Math.min(...m.without)) },
        seconds_median: { with: round(median(m.with)), without: round(median(m.without)) },
        pair_ratios: m.with.map((w, i) => round(w / m.without[i]!)).join(" "),
      });
      const teamleader = summary(measured.sync, 1);
      const callLogDay = summary(measured.day, 1);
      const scrapes = await scrapeFigures(db, quick);
      const page = await measurePageLoad({ quick });
      return {
        recording_overhead_ratio: Math.max(teamleader.ratio, callLogDay.ratio),
        teamleader_sync: teamleader,
        call_log_day: callLogDay,
        pairs,
        companies,
        calls,
        record_write_ms_p50: round(percentile(writeMs, 0.5)),
        record_write_ms_p99: round(percentile(writeMs, 0.99)),
        record_cpu_ms: round(cpuMsPerRecord),
        ...scrapes,
        load_average_1m: round(os.loadavg()[0]!),
        ...page,
        notes:
          "Each pipeline run with recording (its requests, 429s, retries and token refreshes counted through the HTTP client and token core, one row written to gluework_runs when it ends, " +
          "in the background, on the database the sync writes to) against the same run without, in pairs whose order alternates, each run after a full garbage collection. " +
          "ratio: the fastest run with recording over the fastest without (the runs least disturbed by other work on the machine); median_pair_ratio: the median of the pairs' with/without; " +
          "cpu_ratio: the same on this process's CPU time; cost_bound_ratio: the fastest run without, plus the CPU time of its record measured alone (record_cpu_ms). " +
          "teamleader_sync: a full sync of the companies into fresh tables (TeamleaderSync, one run per resource); call_log_day: every page of one day through callLogsForDay, rows counted (no CSV). " +
          "Sandbox in a process of its own, rate limits off on both sides. record_write_ms: one record's write (insert, node's latest, notify) timed alone, awaited. " +
          SCRAPE_NOTE +
          "load_average_1m: the machine's load as the benchmark ended (2 cores). " +
          "page_load_ms: the operations example's health page in Chromium, from navigation to the table of the six pipelines and the 30-day chart drawn (median of the loads; " +
          "first: the first load after deploy; p95), with 30 days of runs of all six pipelines in the database (page_runs_in_database), the page's Node-RED in a process of its own.",
      };
    } finally {
      await db.close();
      await testDb.drop();
      await sandbox.stop();
    }
  },
};

/** What the scrape figures are, for the results file's notes. */
const SCRAPE_NOTE =
  "scrape_p99_ms: GET /gluework/metrics as the route answers it (PipelineMetrics.scrape: the database read, then the registry rendered) over 30 days of runs of all six pipelines in gluework_runs " +
  "(scrape_runs_stored: out-of-office every minute, a relay pass every 5 minutes, 13 Teamleader resources hourly, a call-log day daily, provisioning 20 a day, the board audit weekly), " +
  "a relay outbox with mails waiting and failed, and 200 deployed node ids; scrape_count scrapes one after the other after 10 to warm up; scrape_cpu_ms: this process's CPU time per scrape. " +
  "On this shared 2-core machine the tail follows its load (scrape_load_average_1m): over five runs at loads of 6.5 to 11.6, p99 from 20 to 85 ms and p50 from 5 to 7.5 ms. ";

/**
 * What a Prometheus scrape costs with a month of history: the runs of all six pipelines inserted
 * as they would have been recorded (and each node's latest, as `save` keeps it), a relay's
 * outbox with a backlog, this process's counters for every node, then scrapes one after another.
 */
async function scrapeFigures(db: Database, quick: boolean): Promise<Record<string, number>> {
  const days = quick ? 3 : 30;
  const scrapes = quick ? 20 : 200;
  const log = runLog(db);
  await log.latestPerNode(); // the tables
  const outbox = new Outbox(db, "bench-relay");
  await outbox.migrate();
  // Per pipeline: its node, how often it runs (minutes between runs), its keys, and its failures (one in `failEvery`).
  const schedule = [
    { node: "bench-ooo", pipeline: "ooo-monitor", type: "graph-ooo-status", everyMin: 1, keys: [null], failEvery: 500 },
    { node: "bench-relay", pipeline: "mail-relay", type: "mail-relay", everyMin: 5, keys: [null], failEvery: 300 },
    { node: "bench-tl", pipeline: "teamleader-sync", type: "teamleader-query", everyMin: 60, keys: ["companies", "contacts", "departments", "events", "invoices", "projects", "users", "projects_v2", "deals", "quotations", "time_tracking", "tasks", "products"], failEvery: 200 },
    { node: "bench-calls", pipeline: "call-logs", type: "goto-call-logs", everyMin: 1440, keys: [null], failEvery: 10 },
    { node: "bench-provision", pipeline: "provisioning", type: "goto-provision-user", everyMin: 72, keys: [null], failEvery: 25 },
    { node: "bench-audit", pipeline: "board-audit", type: "blob-csv-writer", everyMin: 10080, keys: [null], failEvery: 1000 },
  ];
  for (const p of schedule) {
    await db.query(
      `INSERT INTO gluework_runs (node_id, node_name, node_type, pipeline, run_key, instance, started_at, ended_at, outcome, rows, pages, requests, http_429, retries, token_refreshes, error_message, details)
       SELECT $1, $1, $2, $3, k, 'bench pid 1', t, t + interval '2 seconds', CASE WHEN i % $6 = 0 THEN 'failure' ELSE 'success' END,
         (i % 50), 1, 2 + (i % 3), (i % 97 = 0)::int, 0, (i % 60 = 0)::int, CASE WHEN i % $6 = 0 THEN 'the provider answered 503' END,
         CASE WHEN $3 = 'ooo-monitor' THEN jsonb_build_object('watched', 40, 'notRead', (i % 7 = 0)::int, 'batches', 2, 'throttled', 0, 'errors', 0, 'changes', 0) END
       FROM generate_series(0, ($4 * 1440 / $5)::int - 1) AS i, unnest($7::text[]) AS k, LATERAL (SELECT now() - ($4 * interval '1 day') + i * $5 * interval '1 minute' AS t) s`,
      [p.node, p.type, p.pipeline, days, p.everyMin, p.failEvery, p.keys],
    );
  }
  await db.query(
    `INSERT INTO gluework_run_nodes (node_id, node_name, node_type, pipeline, last_run_id, last_started_at, last_outcome, last_success_at, last_failure_at)
     SELECT l.node_id, l.node_name, l.node_type, l.pipeline, l.id, l.started_at, l.outcome, a.success, a.failure
     FROM (SELECT DISTINCT ON (node_id) node_id, node_name, node_type, pipeline, id, started_at, outcome FROM gluework_runs
           WHERE node_id LIKE 'bench-%' AND node_type <> 'bench' ORDER BY node_id, started_at DESC) l
     JOIN (SELECT node_id, max(started_at) FILTER (WHERE outcome = 'success') AS success, max(started_at) FILTER (WHERE outcome = 'failure') AS failure
           FROM gluework_runs WHERE node_id LIKE 'bench-%' AND node_type <> 'bench' GROUP BY node_id) a USING (node_id)
     ON CONFLICT (node_id) DO NOTHING`,
  );
  await db.query(
    `INSERT INTO gluework_mail_outbox (id, queue, message_id, created_at, recipients, subject, body, kind, state, attempts)
     SELECT 'bench-' || i, 'bench-relay', '<' || i || '@bench>', now() - i * interval '1 second', '["ops@example.com"]', 'alert', 'body', 'text', CASE WHEN i % 25 = 0 THEN 'failed' ELSE 'pending' END, i % 3
     FROM generate_series(1, 500) AS i`,
  );
  await db.query("ANALYZE gluework_runs; ANALYZE gluework_run_nodes; ANALYZE gluework_mail_outbox");
  const stored = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM gluework_runs WHERE node_id LIKE 'bench-%' AND node_type <> 'bench'")).rows[0]!.n;

  const metrics = new PipelineMetrics();
  // This process's counters, as if it had ended the last day's runs of every node.
  for (const p of schedule) {
    for (const key of p.keys) {
      for (let i = 0; i < Math.min(1440, 1440 / p.everyMin); i++) {
        metrics.count({ id: null, nodeId: p.node, nodeName: p.node, nodeType: p.type, pipeline: p.pipeline, key, instance: "bench", startedAt: new Date(), endedAt: new Date(), durationMs: 1, outcome: i % p.failEvery === 0 ? "failure" : "success", counts: { rows: 3, pages: 1, requests: 2, http429: 0, retries: 0, tokenRefreshes: 0 }, error: null, details: null });
      }
    }
  }
  const others = Array.from({ length: 200 - schedule.length }, (_, i) => `bench-other-${i}`);
  const scope: MetricsScope = {
    databases: [{ id: "bench-db", name: "platform", database: () => Promise.resolve(db) }],
    nodeIds: [...schedule.map((p) => p.node), ...others],
    relays: [{ id: "bench-relay", name: "relay" }],
  };
  const check = (text: string) => {
    if (!/^gluework_database_up\{database_node="bench-db",database_name="platform"\} 1$/m.test(text)) throw new Error("a scrape did not read the database");
    if (!/^gluework_relay_outbox_mails\{node_id="bench-relay",node_name="relay",state="waiting"\} 480$/m.test(text)) throw new Error("a scrape did not count the outbox");
    if (!/^gluework_ooo_users_watched\{node_id="bench-ooo",node_name="bench-ooo"\} 40$/m.test(text)) throw new Error("a scrape did not read the monitor's last cycle");
  };
  for (let i = 0; i < 10; i++) check(await metrics.scrape(scope));
  const ms: number[] = [];
  let bytes = 0;
  const cpu = process.cpuUsage();
  for (let i = 0; i < scrapes; i++) {
    const started = process.hrtime.bigint();
    const text = await metrics.scrape(scope);
    ms.push(Number(process.hrtime.bigint() - started) / 1e6);
    check(text);
    bytes = text.length;
  }
  const cpuUsed = process.cpuUsage(cpu);
  await db.query("DELETE FROM gluework_runs WHERE node_id LIKE 'bench-%' AND node_type <> 'bench'");
  return {
    // This process's CPU time per scrape (the database server's is not in it): what the machine's load cannot inflate.
    scrape_cpu_ms: round((cpuUsed.user + cpuUsed.system) / 1000 / scrapes),
    scrape_p99_ms: round(percentile(ms, 0.99)),
    scrape_p50_ms: round(percentile(ms, 0.5)),
    scrape_max_ms: round(Math.max(...ms)),
    scrape_count: scrapes,
    scrape_days: days,
    scrape_runs_stored: stored,
    scrape_bytes: bytes,
  };
}

async function scrapeOnly(quick: boolean): Promise<Record<string, any>> {
  const testDb = await createTestDatabase("gw_bench_scrape");
  const db = await Database.open({ kind: "server", connection: { ...testDb.connection, max: 10 } }, { warn: () => undefined });
  try {
    const file = path.join(__dirname, "..", "..", "bench", "results", "operations.json");
    const { measured_at, quick: _quick, machine: _machine, ...kept } = JSON.parse(readFileSync(file, "utf8")) as Record<string, any>;
    const scrapes = await scrapeFigures(db, quick);
    const notes = String(kept.notes ?? "");
    if (!notes.includes("scrape_p99_ms")) kept.notes = `${notes} ${SCRAPE_NOTE}`.trim();
    return { ...kept, ...scrapes, scrape_measured_at: new Date().toISOString(), scrape_load_average_1m: round(os.loadavg()[0]!), recording_measured_at: measured_at };
  } finally {
    await db.close();
    await testDb.drop();
  }
}

/** A full garbage collection, when the runtime lets one be asked for. */
function collectGarbage(): void {
  if (typeof global.gc !== "function") {
    v8.setFlagsFromString("--expose-gc");
    (global as { gc?: () => void }).gc = vm.runInNewContext("gc") as () => void;
  }
  global.gc?.();
}

async function tokens(db: Database, name: string, profile: ReturnType<typeof gotoOAuthProfile>, client: { clientId: string; clientSecret: string }, sandboxUrl: string): Promise<TokenManager> {
  const key = `${name}:${client.clientId}:ops`;
  const grant = new OAuthGrant(profile, client, new HttpClient({ name, baseUrl: sandboxUrl }));
  const manager = new TokenManager({ key, store: new PostgresTokenStore(db, TokenCipher.fromSecret(client.clientSecret, `postgres:${key}`)), grant, label: `benchmark ${name} connection` });
  const { refreshToken } = (await post(`${sandboxUrl}/_sandbox/${name}/refresh-tokens`, { clientId: client.clientId })) as { refreshToken: string };
  await manager.seed(refreshToken);
  return manager;
}

/** The median of the ratios of the runs paired in order: each pair ran side by side in time. */
function pairedRatio(withRecording: number[], without: number[]): number {
  return median(withRecording.map((w, i) => w / without[i]!));
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * p;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low);
}

function round(n: number): number {
  return Number(n.toFixed(4));
}

/** The sandbox as a process of its own, so its generated records do not weigh on what is measured. */
async function startSandbox(): Promise<{ url: string; stop(): Promise<void> }> {
  const child: ChildProcess = fork(path.join(__dirname, "..", "src", "sandbox", "main.js"), ["0"], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const url = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { url: string }) => resolve(m.url));
    child.once("exit", (code) => reject(new Error(`the sandbox exited (${code})`)));
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

async function post(url: string, body: unknown): Promise<unknown> {
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${url} answered ${res.statusCode}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

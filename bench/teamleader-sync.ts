import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import pg from "pg";
import { request } from "undici";
import { Database } from "../src/core/db/database";
import { TEAMLEADER_DEMO_CLIENT } from "../src/sandbox";
import { TeamleaderData } from "../src/sandbox/teamleader-data";
import { BatchWriter, SyncTables } from "../src/teamleader/tables";
import { createTestDatabase } from "../test/support/pg";
import { busiestWindow } from "../test/support/workers";
import type { SyncWorkerConfig, SyncWorkerResult } from "./workers/teamleader-sync";
import type { Benchmark } from "./support";

const SEED = "bench";

/**
 * Teamleader → PostgreSQL: a full sync of 100,000 companies end to end (sandbox in a process of
 * its own with its rate limit off, the sync in another, a PostgreSQL server), the database write
 * path alone on the same records against one INSERT per record as a flow of generic PostgreSQL
 * nodes would write them, and the request rate of a sync that keeps to Teamleader's 200 requests
 * per minute.
 */
export const benchmark: Benchmark = {
  name: "teamleader-sync",
  async run({ quick }) {
    const rows = quick ? 2_000 : 100_000;
    const sandbox = await startSandbox();
    const testDb = await createTestDatabase("gw_bench_tl");
    try {
      const control = (route: string, body: unknown) => post(`${sandbox.url}/_sandbox/teamleader/${route}`, body);
      const refreshToken = async () => (await post(`${sandbox.url}/_sandbox/teamleader/refresh-tokens`, { clientId: TEAMLEADER_DEMO_CLIENT.clientId })).refreshToken as string;
      const base = { sandboxUrl: sandbox.url, connection: testDb.connection as Record<string, unknown>, client: TEAMLEADER_DEMO_CLIENT };

      // 1. A full sync end to end, the sandbox's rate limit off (so the sync, not the limit, sets the pace).
      await control("data", { volumes: { companies: rows }, seed: SEED });
      await control("settings", { rateLimit: false, resetQuota: true });
      const full = await runSync({ ...base, refreshToken: await refreshToken(), tablePrefix: "e2e_" });
      if (full.summary.resources.companies?.inserted !== rows) throw new Error(`the sync wrote ${full.summary.resources.companies?.inserted} rows, not ${rows}`);

      // 2. The write path alone, on the same records: batched upserts, then one INSERT per record.
      const records = new TeamleaderData(SEED, { companies: rows }).list("companies", { sort: { field: "added_at", order: "asc" }, customFields: true }) as Array<{ id: string; updated_at: string }>;
      const writeRowsPerS = await batchedWrites(testDb.connection, records);
      const singleRowsPerS = await singleInserts(testDb.connection, records);

      // 3. Teamleader's limit on: 200 requests in any minute (a 5 s window scaled down for --quick).
      const windowMs = quick ? 5_000 : 60_000;
      const perWindow = quick ? 17 : 200;
      const pages = Math.ceil(perWindow * 1.5);
      await control("data", { volumes: { companies: pages * 100 }, seed: SEED });
      await control("settings", { rateLimit: true, requests: perWindow, windowMs, resetQuota: true });
      const limited = await runSync({ ...base, refreshToken: await refreshToken(), tablePrefix: "limited_", limit: { requests: perWindow, windowMs } });
      const times = (await get(`${sandbox.url}/_sandbox/teamleader/request-times`)) as number[];
      const stats = (await get(`${sandbox.url}/_sandbox/stats`)) as Record<string, number>;
      const first = times[0] ?? limited.startedAt;
      const inFirstWindow = times.filter((t) => t < first + windowMs).length;

      // 4. Four instances on one database, sharing the limit through it: each syncs again and again
      // into tables of its own while calling users.me now and then.
      const instances = 4;
      const durationMs = quick ? 12_000 : 60_000;
      const sharedLimit = quick ? { requests: 20, windowMs: 6_000 } : { requests: 200, windowMs: 60_000 };
      await control("data", { volumes: { companies: quick ? 300 : 2_000, users: 10 }, seed: SEED });
      await control("settings", { rateLimit: true, requests: sharedLimit.requests, windowMs: sharedLimit.windowMs, resetQuota: true, latencyMs: 20 });
      const sharedToken = await refreshToken();
      const statsBefore = (await get(`${sandbox.url}/_sandbox/stats`)) as Record<string, number>;
      const workers = await Promise.all(
        Array.from({ length: instances }, (_, i) =>
          runSync({ ...base, refreshToken: sharedToken, tablePrefix: `shared${i}_`, limit: sharedLimit, shared: { durationMs, callEveryMs: 4_000 } }),
        ),
      );
      const sharedTimes = ((await get(`${sandbox.url}/_sandbox/teamleader/request-times`)) as number[]).sort((a, b) => a - b);
      const statsAfter = (await get(`${sandbox.url}/_sandbox/stats`)) as Record<string, number>;
      const errors = workers.flatMap((w) => w.errors ?? []);
      if (errors.length) throw new Error(`the shared-limit instances failed: ${errors.slice(0, 3).join("; ")}`);
      const latencies = workers.flatMap((w) => w.callLatenciesMs ?? []).sort((a, b) => a - b);
      if (process.env.GW_BENCH_VERBOSE) process.stderr.write(`users.me answer times (ms): ${latencies.join(", ")}\n`);
      const perMinute = (n: number) => Math.round((n * 60_000) / sharedLimit.windowMs);

      return {
        rows,
        rows_per_s: Math.round(rows / full.seconds),
        peak_rss_mb: Math.round(full.peakRssMb),
        write_rows_per_s: writeRowsPerS,
        single_insert_rows_per_s: singleRowsPerS,
        requests_per_min: Math.round((inFirstWindow * 60_000) / windowMs),
        http_429: stats["teamleader api 429"] ?? 0,
        instances: {
          instances,
          seconds: durationMs / 1000,
          limit_per_min: perMinute(sharedLimit.requests),
          // The busiest sliding window, as a rate per minute: at most the limit.
          requests_per_min_combined: perMinute(busiestWindow(sharedTimes, sharedLimit.windowMs)),
          requests_per_min_mean: Math.round((sharedTimes.length * 60_000) / Math.max(sharedLimit.windowMs, (sharedTimes.at(-1) ?? 0) - (sharedTimes[0] ?? 0))),
          http_429: (statsAfter["teamleader api 429"] ?? 0) - (statsBefore["teamleader api 429"] ?? 0),
          syncs: workers.reduce((n, w) => n + (w.syncs ?? 0), 0),
          calls: latencies.length,
          call_p50_ms_during_sync: latencies[Math.floor(latencies.length * 0.5)] ?? null,
          call_p99_ms_during_sync: latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] ?? null,
        },
      };
    } finally {
      await testDb.drop();
      await sandbox.stop();
    }
  },
};

/** The sandbox as a process of its own, so its generated records do not weigh on the sync's memory. */
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
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

function runSync(config: SyncWorkerConfig): Promise<SyncWorkerResult> {
  const child = fork(path.join(__dirname, "workers", "teamleader-sync.js"), [], { env: { ...process.env, GW_BENCH_SYNC: JSON.stringify(config) }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("message", (m: { type: string; result?: SyncWorkerResult; error?: string }) => (m.type === "result" ? resolve(m.result!) : reject(new Error(m.error))));
    child.once("exit", (code) => reject(new Error(`the sync worker exited (${code})`)));
  });
}

/** The sync's own write path (its BatchWriter, as the sync sets it up), a page of 100 records at a time, into an empty table. */
async function batchedWrites(connection: pg.PoolConfig, records: Array<{ id: string; updated_at: string }>): Promise<number> {
  const db = await Database.open({ kind: "server", connection }, { warn: () => undefined });
  try {
    const tables = new SyncTables(db, "write_");
    await tables.ensure();
    await db.query("CHECKPOINT");
    const writer = new BatchWriter(tables, "companies", { updatedAt: true });
    const started = process.hrtime.bigint();
    for (let i = 0; i < records.length; i += 100) await writer.add(records.slice(i, i + 100));
    await writer.flush();
    if (writer.counts.inserted !== records.length) throw new Error(`the write path wrote ${writer.counts.inserted} rows, not ${records.length}`);
    return Math.round(records.length / (Number(process.hrtime.bigint() - started) / 1e9));
  } finally {
    await db.close();
  }
}

/** As a flow of generic PostgreSQL nodes writes: one parameterised INSERT per record, each awaited. */
async function singleInserts(connection: pg.PoolConfig, rows: Array<{ id: string; updated_at: string }>): Promise<number> {
  const pool = new pg.Pool({ ...connection, max: 10 });
  try {
    await pool.query("CREATE TABLE single_companies (id text PRIMARY KEY, record jsonb NOT NULL, updated_at timestamptz, synced_at timestamptz NOT NULL, deleted_at timestamptz)");
    await pool.query("CHECKPOINT");
    const started = process.hrtime.bigint();
    for (const row of rows) {
      await pool.query(
        "INSERT INTO single_companies (id, record, updated_at, synced_at) VALUES ($1, $2, $3, now()) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at, synced_at = EXCLUDED.synced_at",
        [row.id, row, row.updated_at], // pg turns the record into JSON, as it does for msg.params
      );
    }
    return Math.round(rows.length / (Number(process.hrtime.bigint() - started) / 1e9));
  } finally {
    await pool.end();
  }
}

async function post(url: string, body: unknown): Promise<any> {
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${url} answered ${res.statusCode}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function get(url: string): Promise<unknown> {
  const res = await request(url);
  return res.body.json();
}

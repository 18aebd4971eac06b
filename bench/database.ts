import { readFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Database } from "../src/core/db/database";
import { acquireEmbedded } from "../src/core/db/embedded";
import { createTestDatabase } from "../test/support/pg";
import type { Benchmark } from "./support";

/**
 * What the embedded default costs next to a PostgreSQL server: the child process's memory, empty
 * and after 10,000 rows, its start-up time, and a small query's round trip on both.
 */
export const benchmark: Benchmark = {
  name: "database",
  async run({ quick }) {
    const dataDir = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-bench-pglite-")), "db");
    const started = process.hrtime.bigint();
    const handle = await acquireEmbedded(dataDir, { keepAliveMs: 0 });
    const embedded = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
    const startSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const emptyRss = rssMb(handle.pid);
    const testDb = await createTestDatabase("gw_bench");
    const server = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    try {
      const rows = quick ? 1000 : 10_000;
      for (const db of [embedded, server]) {
        await db.query("CREATE TABLE IF NOT EXISTS bench_rows (id integer PRIMARY KEY, data jsonb NOT NULL)");
        for (let i = 0; i < rows; i += 500) {
          const values = Array.from({ length: Math.min(500, rows - i) }, (_, k) => `(${i + k}, '{"name": "row ${i + k}", "tags": ["a", "b"]}')`).join(",");
          await db.query(`INSERT INTO bench_rows (id, data) VALUES ${values} ON CONFLICT (id) DO NOTHING`);
        }
      }
      const loadedRss = rssMb(handle.pid);
      const rounds = quick ? 200 : 2000;
      return {
        embedded_start_seconds: round(startSeconds),
        embedded_rss_mb_empty: emptyRss,
        embedded_rss_mb_10k_rows: loadedRss,
        embedded_peak_rss_mb: peakMb(handle.pid),
        node_red_side_rss_mb: Math.round(process.memoryUsage.rss() / 2 ** 20),
        query_p50_ms_embedded: await roundTrip(embedded, rounds),
        query_p50_ms_server: await roundTrip(server, rounds),
        rows,
        notes: "The embedded database is PGlite in a child process behind pglite-socket; its memory is the child's (VmRSS, VmHWM from /proc), not Node-RED's. node_red_side_rss_mb is this benchmark process, which plays Node-RED's part. Round trip: SELECT by primary key over pg, median.",
      };
    } finally {
      await embedded.close();
      await handle.release();
      await server.close();
      await testDb.drop();
    }
  },
};

async function roundTrip(db: Database, rounds: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint();
    await db.query("SELECT data FROM bench_rows WHERE id = $1", [i % 1000]);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  return round(times[Math.floor(times.length / 2)]!);
}

function status(pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(field));
  return Math.round(Number(line?.replace(/\D+/g, " ").trim().split(" ")[0] ?? 0) / 1024);
}

const rssMb = (pid: number) => status(pid, "VmRSS:");
const peakMb = (pid: number) => status(pid, "VmHWM:");

function round(n: number): number {
  return Number(n.toFixed(3));
}

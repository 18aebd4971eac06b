// One measured run of the call-logs benchmark, in a process of its own so that its peak memory is
// its own: either the pipeline as a user runs it (goto-call-logs → blob-csv-writer in Node-RED),
// or the naive script the original was. Prints one JSON line: seconds, rows, bytes, peak RSS.
import { mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { BlockBlobClient, BlobServiceClient } from "@azure/storage-blob";
import { stringify } from "csv-stringify/sync";
import { request } from "undici";
import { DEFAULT_PAGE_SIZE } from "../../src/goto/call-reports";
import { formatDuration } from "../../src/core/time";
import { CALL_LOG_COLUMNS } from "../../src/goto/types";
import { eventually } from "../../test/support/node-red";

export interface WorkerConfig {
  kind: "pipeline" | "naive";
  sandboxUrl: string;
  connectionString: string;
  container: string;
  date: string;
  clientId: string;
  clientSecret: string;
  refreshToken: string;
}

export interface WorkerResult {
  rows: number;
  bytes: number;
  seconds: number;
  peak_rss_mb: number;
  /** RSS once everything is loaded, before the day is read. */
  idle_rss_mb?: number;
}

/**
 * The pipeline in Node-RED as it runs in production: the runtime (without its editor), this
 * package installed in the user directory (a link to the working copy), the flow deployed through
 * the runtime API. The writer's report is seen through Node-RED's onSend hook, a failure through
 * onComplete.
 */
async function pipeline(config: WorkerConfig): Promise<Omit<WorkerResult, "peak_rss_mb">> {
  const RED = require("node-red");
  const userDir = mkdtempSync(path.join(os.tmpdir(), "gw-bench-nr-"));
  // Installed as a user installs it: a module in the user directory's node_modules.
  const repoRoot = path.resolve(__dirname, "..", "..", "..");
  const pkg = require(path.join(repoRoot, "package.json")) as { name: string };
  mkdirSync(path.dirname(path.join(userDir, "node_modules", pkg.name)), { recursive: true });
  symlinkSync(repoRoot, path.join(userDir, "node_modules", pkg.name), "dir");
  RED.init(http.createServer(), {
    userDir,
    flowFile: "flows.json",
    credentialSecret: "bench",
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    logging: { console: { level: "error", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
  });
  // The runtime loads its (empty) flow file after start() resolves; deploy only after that.
  const loaded = new Promise<void>((resolve) => RED.events.once("flows:started", () => resolve()));
  await RED.start();
  await loaded;
  let finished: ((value: { rows: number; bytes: number }) => void) | undefined;
  let failed: ((err: Error) => void) | undefined;
  const done = new Promise<{ rows: number; bytes: number }>((resolve, reject) => {
    finished = resolve;
    failed = reject;
  });
  RED.hooks.add("onSend.bench", (events: Array<{ msg: any; source: { id: string } }>) => {
    for (const e of events) if (e.source.id === "writer" && e.msg.payload?.rows !== undefined) finished!({ rows: e.msg.payload.rows, bytes: e.msg.payload.size });
  });
  RED.hooks.add("onComplete.bench", (event: { error?: Error; node: { id: string } }) => {
    if (event.error) failed!(event.error);
  });
  const flows = [
    { id: "tab", type: "tab", label: "bench" },
    // GoTo's own limit is the same for both ways of reading; it is left out of this figure.
    {
      id: "creds",
      type: "goto-credentials",
      authHost: `${config.sandboxUrl}/goto/auth`,
      apiHost: `${config.sandboxUrl}/goto/api`,
      store: "file",
      requestsPerSecond: "100000",
    },
    { id: "storage", type: "azure-storage-account", auth: "connection-string" },
    { id: "calls", type: "goto-call-logs", z: "tab", x: 100, y: 100, goto: "creds", timeZone: "UTC", wires: [["writer"]] },
    { id: "writer", type: "blob-csv-writer", z: "tab", x: 300, y: 100, target: "azure", storage: "storage", container: config.container, wires: [["sink"]] },
    { id: "sink", type: "junction", z: "tab", x: 500, y: 100, wires: [] },
  ];
  await RED.nodes.addCredentials("creds", { clientId: config.clientId, clientSecret: config.clientSecret, refreshToken: config.refreshToken });
  await RED.nodes.addCredentials("storage", { connectionString: config.connectionString });
  await RED.runtime.flows.setFlows({ flows: { flows }, deploymentType: "full" });
  const calls = await eventually(() => RED.nodes.getNode("calls"), 30_000, "the flow to start");
  const idle = Math.round(process.memoryUsage().rss / 2 ** 20);
  const started = process.hrtime.bigint();
  calls.receive({ payload: { from: config.date } });
  const result = await done;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await RED.stop();
  return { ...result, seconds, idle_rss_mb: idle };
}

/** The original export, in Node: token, pages in a plain loop, the whole CSV in memory, one upload. */
async function naive(config: WorkerConfig): Promise<Omit<WorkerResult, "peak_rss_mb">> {
  const started = process.hrtime.bigint();
  const basic = Buffer.from(`${config.clientId}:${config.clientSecret}`).toString("base64");
  const tokenRes = await request(`${config.sandboxUrl}/goto/auth/oauth/token`, {
    method: "POST",
    headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: config.refreshToken }).toString(),
  });
  const token = ((await tokenRes.body.json()) as { access_token: string }).access_token;
  const get = async (path: string, query: Record<string, string | number>) => {
    const url = new URL(`${config.sandboxUrl}/goto/api/call-reports/v1/${path}`);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v));
    const res = await request(url, { headers: { authorization: `Bearer ${token}`, accept: "application/json" } });
    return (await res.body.json()) as { items: any[] };
  };
  const window = { startTime: `${config.date}T00:00:00Z`, endTime: new Date(Date.parse(`${config.date}T00:00:00Z`) + 86_400_000).toISOString().replace(/\.\d{3}Z$/, "Z") };
  const pageSize = DEFAULT_PAGE_SIZE; // the same pages the pipeline reads
  const rows: Record<string, string>[] = [];
  for (let page = 0; ; page++) {
    const users = (await get("reports/user-activity", { ...window, page, pageSize })).items;
    if (users.length === 0) break;
    for (const user of users) {
      for (let p = 0; ; p++) {
        const calls = (await get(`reports/user-activity/${user.userId}`, { ...window, page: p, pageSize })).items;
        for (const call of calls) {
          rows.push({
            user: user.userName,
            queue: call.queue?.name ?? "",
            direction: call.direction,
            disposition: String(call.disposition),
            startTime: call.startTime,
            endTime: call.endTime,
            answerTime: call.answerTime ?? "",
            duration: formatDuration(call.duration),
            callerName: call.caller?.name,
            callerNumber: call.caller?.number,
            calleeName: call.callee?.name,
            calleeNumber: call.callee?.number,
          });
        }
        if (calls.length < pageSize) break;
      }
    }
  }
  const csv = Buffer.from(stringify(rows, { header: true, columns: [...CALL_LOG_COLUMNS], record_delimiter: "windows" }));
  const container = BlobServiceClient.fromConnectionString(config.connectionString).getContainerClient(config.container);
  await container.createIfNotExists();
  const blob: BlockBlobClient = container.getBlockBlobClient(`${config.date.slice(0, 4)}/${config.date.slice(5, 7)}/${config.date}_naive_call_logs.csv`);
  await blob.upload(csv, csv.length);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { rows: rows.length, bytes: csv.length, seconds };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.GW_BENCH_WORKER ?? "{}") as WorkerConfig;
  const result = config.kind === "naive" ? await naive(config) : await pipeline(config);
  const out: WorkerResult = { ...result, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  });
}

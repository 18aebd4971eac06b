import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { GOTO_DEMO_CLIENT, Sandbox } from "../src/sandbox";
import { Azurite } from "../src/sandbox/azurite";
import { DEFAULT_PAGE_SIZE } from "../src/goto/call-reports";
import type { Benchmark } from "./support";
import type { WorkerConfig, WorkerResult } from "./workers/call-logs-worker";

/**
 * One day of calls from GoTo's Call Reports API to one CSV blob: the pipeline as a user runs it
 * (goto-call-logs → blob-csv-writer in Node-RED, streaming) against the naive script the original
 * was (the same pages in a plain loop, the whole CSV in memory, one upload), each in a process of
 * its own, in the same run, against the sandbox and Azurite; and the pipeline again on a tenth of
 * the day, to show that its memory does not follow the size of the day. The sandbox's rate limit
 * is off and so is the client's: GoTo's 10 requests per second would bound both alike.
 */
export const benchmark: Benchmark = {
  name: "call-logs",
  async run({ quick }) {
    const calls = quick ? 5_000 : 100_000;
    const smallCalls = quick ? 1_000 : 10_000;
    // A day ten times the large one, for the pipeline alone (the naive way would hold it all); not in a quick run.
    const hugeCalls = quick ? 0 : 1_000_000;
    const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
    await sandbox.listen();
    sandbox.goto.calls.rateLimit = null;
    const azurite = new Azurite();
    await azurite.start();
    try {
      const day = "2026-06-10";
      const smallDay = "2026-06-11";
      const hugeDay = "2026-06-12";
      sandbox.goto.calls.setVolume(day, calls);
      sandbox.goto.calls.setVolume(smallDay, smallCalls);
      if (hugeCalls) sandbox.goto.calls.setVolume(hugeDay, hugeCalls);
      const run = (kind: WorkerConfig["kind"], date: string) =>
        worker({
          kind,
          date,
          sandboxUrl: sandbox.url,
          connectionString: azurite.connectionString,
          container: "bench",
          ...GOTO_DEMO_CLIENT,
          refreshToken: sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId),
        });
      const baseline = await run("naive", day);
      const ours = await run("pipeline", day);
      const small = await run("pipeline", smallDay);
      const huge = hugeCalls ? await run("pipeline", hugeDay) : undefined;
      if (ours.rows !== calls || baseline.rows !== calls || small.rows !== smallCalls || (huge && huge.rows !== hugeCalls)) {
        throw new Error(`rows written: pipeline ${ours.rows}, naive ${baseline.rows}, small day ${small.rows}, large day ${huge?.rows}; expected ${calls}, ${smallCalls} and ${hugeCalls}`);
      }
      const growth = (r: WorkerResult) => r.peak_rss_mb - (r.idle_rss_mb ?? 0);
      return {
        rows: ours.rows,
        seconds: round(ours.seconds),
        peak_rss_mb: ours.peak_rss_mb,
        baseline_seconds: round(baseline.seconds),
        baseline_peak_rss_mb: baseline.peak_rss_mb,
        peak_rss_mb_10k: small.peak_rss_mb,
        rows_10k: small.rows,
        idle_rss_mb: ours.idle_rss_mb ?? 0,
        // Peak minus idle: what the day itself costs the process.
        growth_mb: growth(ours),
        growth_mb_10k: growth(small),
        ...(huge
          ? { rows_1m: huge.rows, seconds_1m: round(huge.seconds), peak_rss_mb_1m: huge.peak_rss_mb, idle_rss_mb_1m: huge.idle_rss_mb ?? 0, growth_mb_1m: growth(huge) }
          : {}),
        seconds_ratio: round(ours.seconds / baseline.seconds),
        csv_bytes: ours.bytes,
        baseline_csv_bytes: baseline.bytes,
        page_size: DEFAULT_PAGE_SIZE,
        // Other work on the machine slows both sides, not always alike: the load says how quiet it was.
        load_average_1m: round(os.loadavg()[0]!),
        notes:
          "One day of calls from the sandbox's Call Reports API (every user, then each user's calls, page by page) to one CSV blob in Azurite (in memory). " +
          "seconds and peak_rss_mb: goto-call-logs → blob-csv-writer in a Node-RED 4 runtime (no editor), from the message into goto-call-logs to the writer's report; " +
          "peak_rss_mb is that whole process, Node-RED included (idle_rss_mb: the same process with the flow deployed, before the run; growth_mb: peak minus idle). " +
          "The _1m figures are the pipeline on a day of 1,000,000 calls (left out of a quick run). " +
          "baseline: the original export's way in Node, in a process of its own: the same pages in a plain loop, every row and the whole CSV in memory, one upload with @azure/storage-blob. " +
          "Rate limits are off on both sides (GoTo's 10 requests per second would add the same time to both). The pipeline's CSV is larger by the formula neutralisation it adds.",
      };
    } finally {
      await azurite.stop();
      await sandbox.close();
    }
  },
};

function worker(config: WorkerConfig): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, "workers", "call-logs-worker.js")], {
      env: { ...process.env, GW_BENCH_WORKER: JSON.stringify(config) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.once("error", reject);
    child.once("exit", (code) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code === 0 && line.startsWith("{")) resolve(JSON.parse(line) as WorkerResult);
      else reject(new Error(`the ${config.kind} run exited with ${code}: ${out.slice(-500)}`));
    });
  });
}

function round(n: number): number {
  return Number(n.toFixed(3));
}

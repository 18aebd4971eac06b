import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import type { WorkerConfig, WorkerReport } from "../fixtures/token-worker";

const WORKER = path.join(__dirname, "..", "fixtures", "token-worker.js");

export interface RunningWorker {
  child: ChildProcess;
  ready: Promise<void>;
  report: Promise<WorkerReport>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  go(): void;
}

/** Starts a token worker process; call `go()` once every worker is ready. */
export function startWorker(config: WorkerConfig): RunningWorker {
  const child = fork(WORKER, [], { env: { ...process.env, GW_WORKER: JSON.stringify(config) }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let onReady: () => void;
  let onReport: (r: WorkerReport) => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const report = new Promise<WorkerReport>((r) => (onReport = r));
  child.on("message", (m: { type: string; report?: WorkerReport }) => {
    if (m.type === "ready") onReady();
    if (m.type === "report") onReport(m.report!);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return { child, ready, report, exit, go: () => child.send({ type: "go" }) };
}

/** Refreshes that came sooner after the previous one than half a token's life: a token refreshed twice. */
export function duplicateRefreshes(times: number[], lifetimeMs: number): number {
  let duplicates = 0;
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! < lifetimeMs / 2) duplicates++;
  return duplicates;
}

/** The most events in any window of `windowMs` among sorted times. */
export function busiestWindow(times: readonly number[], windowMs: number): number {
  let best = 0;
  let left = 0;
  for (let right = 0; right < times.length; right++) {
    while (times[right]! - times[left]! >= windowMs) left++;
    best = Math.max(best, right - left + 1);
  }
  return best;
}

import { spawn } from "node:child_process";
import { promises as fs, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { FaultRow } from "../test/faults/harness";
import type { Benchmark } from "./support";

/**
 * Every neighbour's faults injected into the six pipelines, each in a real Node-RED process: the
 * fault tests of test/faults run (a quick run only their connection resets) and each writes its
 * figures. One row per pipeline and fault: whether Node-RED exited, how long the pipeline took to
 * be back to normal with its outcome complete, and what was lost or done twice.
 */
export const benchmark: Benchmark = {
  name: "faults",
  async run({ quick }) {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-faults-bench-")), "rows.jsonl");
    await fs.writeFile(file, "");
    const specs = path.join(__dirname, "..", "test", "faults");
    // A quick run (CI, under 3 minutes): three pipelines, which between them reach every kind of neighbour.
    const quickFiles = ["call-logs.spec.js", "mail-relay.spec.js", "board.spec.js"];
    const files = (await fs.readdir(specs)).filter((f) => f.endsWith(".spec.js") && (!quick || quickFiles.includes(f))).map((f) => path.join(specs, f));
    const args = [require.resolve("mocha/bin/mocha.js"), "--no-config", "--require", path.join(__dirname, "..", "test", "support", "hooks.js"), "--timeout", "180000", "--reporter", "dot", "--exit"];
    // and one fault each: the connection reset (GoTo's for the call logs, the database's for the others).
    if (quick) args.push("--grep", "(GoTo|PostgreSQL) resets every connection");
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [...args, ...files], { env: { ...process.env, GW_FAULTS_RESULTS: file }, stdio: ["ignore", "inherit", "inherit"] });
      child.once("error", reject);
      // Failing tests are rows too: the figures say what failed.
      child.once("exit", () => resolve());
    });
    const rows = (await fs.readFile(file, "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as FaultRow);
    await fs.rm(path.dirname(file), { recursive: true, force: true });
    if (rows.length === 0) throw new Error("the fault tests recorded no figures");
    const total = (key: "node_red_exits" | "lost" | "duplicated") => rows.reduce((n, r) => n + (r[key] ?? 0), 0);
    return {
      tests: rows.length,
      passed: rows.filter((r) => r.passed).length,
      node_red_exits: total("node_red_exits"),
      lost: total("lost"),
      duplicated: total("duplicated"),
      recovery_seconds_max: Math.max(0, ...rows.map((r) => r.recovery_seconds ?? 0)),
      seconds: Math.round((Date.now() - started) / 1000),
      // One row per pipeline and fault.
      faults: rows as unknown as Record<string, unknown>,
      notes:
        "Each row is one test of test/faults: the shipped flow of a pipeline in a Node-RED process, every neighbour (PostgreSQL server, embedded PostgreSQL, Azurite, smtp-server, the sandbox's GoTo, Teamleader and Microsoft) behind a TCP proxy; " +
        "the fault (reset: every connection ended with RST; stall: nothing forwarded; black-hole: every byte read and dropped; slow: 4 KiB/s; terminate: pg_terminate_backend of every session; restart: connections refused, then every live one reset; the embedded server killed, stopped, its folder deleted) lasts 3 s while the pipeline runs. " +
        "recovery_seconds: from the end of the fault to the pipeline back to normal (its status, its outcome complete); null when it did not recover. lost and duplicated: rows, files, mails, users or changes against what the neighbour holds. " +
        "passed: the test's own verdict, which also requires recovery within 30 s.",
    };
  },
};

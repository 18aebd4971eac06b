/**
 * `npm test`: every spec, in two mocha processes side by side. Most tests spend their time waiting
 * (a server's deadline, a cycle's interval, a process's start), so two runs share two cores well
 * and the whole suite takes a little more than half as long. The specs are isolated from each
 * other already (a fresh user directory and database each), so the split changes nothing they see.
 *
 * The first group prints as it runs; the second prints when it ends. Each group runs its files in
 * one process, in order, as a plain `mocha` would. `npm test -- --serial` runs everything in one
 * process; other arguments (`--grep …`) go to mocha.
 */
import { spawn } from "node:child_process";
import { createWriteStream, readFileSync, readdirSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(__dirname, "..", "..", "..");
const specRoot = path.join(root, "dist", "test");

/** Directories of dist/test whose specs form the second group: the suites that run several Node-RED processes each. Measured on a busy machine, the two groups took 20 and 34 minutes with the browser suites in the second; they are in the first now. */
const SECOND = ["faults", "lifecycle", "replicas", "security"];

function specs(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) return specs(full);
      return name.endsWith(".spec.js") ? [full] : [];
    });
}

function mochaArgs(files: string[], extra: string[]): string[] {
  const config = JSON.parse(readFileSync(path.join(root, ".mocharc.json"), "utf8")) as { timeout?: number; slow?: number; require?: string[] };
  return [
    path.join(root, "node_modules", "mocha", "bin", "mocha.js"),
    "--no-config",
    "--exit",
    ...(config.require ?? []).flatMap((r) => ["--require", r]),
    "--timeout",
    String(config.timeout ?? 60_000),
    "--slow",
    String(config.slow ?? 5_000),
    ...extra,
    ...files.map((f) => path.relative(root, f)),
  ];
}

function run(name: string, files: string[], extra: string[], live: boolean): Promise<{ name: string; code: number; log?: string; seconds: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, mochaArgs(files, extra), { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: process.env });
  let log: string | undefined;
  if (live) {
    child.stdout.pipe(process.stdout);
    child.stderr.pipe(process.stderr);
  } else {
    log = path.join(os.tmpdir(), `gluework-test-${name}-${process.pid}.log`);
    const out = createWriteStream(log);
    child.stdout.pipe(out);
    child.stderr.pipe(out);
  }
  return new Promise((resolve) => {
    child.on("error", (err) => {
      process.stderr.write(`could not start mocha for ${name}: ${err.message}\n`);
      resolve({ name, code: 1, log, seconds: 0 });
    });
    child.on("close", (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), log, seconds: Math.round((Date.now() - started) / 1000) }));
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const serial = args.includes("--serial");
  const extra = args.filter((a) => a !== "--serial");
  const all = specs(specRoot);
  const inSecond = (f: string) => SECOND.some((d) => path.relative(specRoot, f).split(path.sep)[0] === d);
  if (serial) {
    const result = await run("all", all, extra, true);
    process.exitCode = result.code;
    return;
  }
  const groups = [
    { name: "units-nodes-and-browser", files: all.filter((f) => !inSecond(f)) },
    { name: "processes", files: all.filter(inSecond) },
  ];
  process.stdout.write(`running ${all.length} spec files in two mocha processes: ${groups.map((g) => `${g.name} (${g.files.length})`).join(", ")}; the second prints when it ends\n`);
  const results = await Promise.all(groups.map((g, i) => run(g.name, g.files, extra, i === 0)));
  for (const r of results.filter((x) => x.log)) {
    process.stdout.write(`\n===== ${r.name} =====\n`);
    process.stdout.write(readFileSync(r.log!, "utf8"));
  }
  process.stdout.write(`\n${results.map((r) => `${r.name}: ${r.code === 0 ? "passed" : `failed (exit ${r.code})`} in ${r.seconds} s`).join("; ")}\n`);
  process.exitCode = results.some((r) => r.code !== 0) ? 1 : 0;
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});

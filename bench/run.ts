// `npm run bench [-- --quick] [-- name …]`: runs the benchmarks and writes their figures to
// bench/results/<name>.json (a quick run writes to the system's temporary folder instead).
import { readdirSync } from "node:fs";
import path from "node:path";
import { stopAllEmbedded } from "../src/core/db/embedded";
import { Benchmark, writeResults } from "./support";

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick") || process.env.BENCH_QUICK === "1";
  const only = args.filter((a) => !a.startsWith("--"));
  const benchmarks: Benchmark[] = readdirSync(__dirname)
    .filter((f) => f.endsWith(".js") && !["run.js", "support.js"].includes(f))
    .map((f) => (require(path.join(__dirname, f)) as { benchmark?: Benchmark }).benchmark)
    .filter((b): b is Benchmark => !!b && (only.length === 0 || only.includes(b.name)));
  for (const bench of benchmarks) {
    process.stdout.write(`${bench.name}${quick ? " (quick)" : ""}…\n`);
    const figures = await bench.run({ quick });
    const file = await writeResults(bench.name, figures, { quick });
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n→ ${file}\n`);
  }
  await stopAllEmbedded();
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});

import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface BenchOptions {
  /** A short run that only proves the benchmark works (CI). */
  quick: boolean;
}

export type Figures = Record<string, number | string | boolean | Record<string, unknown>>;

export interface Benchmark {
  name: string;
  run(options: BenchOptions): Promise<Figures>;
}

/** Writes a benchmark's figures, with the machine they were measured on. */
export async function writeResults(name: string, figures: Figures, options: BenchOptions): Promise<string> {
  const dir = options.quick ? path.join(os.tmpdir(), "gluework-bench-quick") : path.join(__dirname, "..", "..", "bench", "results");
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  const record = {
    ...figures,
    measured_at: new Date().toISOString(),
    quick: options.quick,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.arch()}` },
  };
  await fs.writeFile(file, `${JSON.stringify(record, null, 2)}\n`);
  return file;
}

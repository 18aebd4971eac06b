import { ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../src/sandbox/azurite";
import { controls, untilAnswering } from "../support/node-red-process";

const run = promisify(execFile);
export const repoRoot = path.join(__dirname, "..", "..", "..");
export const packageJson = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
  name: string;
  "node-red": { nodes: Record<string, string> };
};

/** Node-RED's own folder: the project's (4.x) unless NODE_RED_PATH names another (5.x in CI). */
export function nodeRedDir(): string {
  return process.env.NODE_RED_PATH ?? path.dirname(require.resolve("node-red/package.json"));
}

/**
 * The package as a user gets it: `npm pack` of this working copy (already built), installed with
 * its production dependencies only into a fresh Node-RED user directory.
 */
export async function installPackedPackage(): Promise<{ userDir: string; tarball: string }> {
  const work = mkdtempSync(path.join(os.tmpdir(), "gw-editor-"));
  // Open to pass through, as a home directory is: under root the embedded server runs as its own user.
  chmodSync(work, 0o755);
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", work], { cwd: repoRoot });
  const tarball = path.join(work, stdout.trim().split("\n").at(-1)!);
  const userDir = path.join(work, "user");
  await run("mkdir", ["-p", userDir]);
  writeFileSync(path.join(userDir, "package.json"), JSON.stringify({ name: "node-red-project", private: true }));
  await run("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline", tarball], { cwd: userDir, maxBuffer: 16 * 1024 * 1024 });
  return { userDir, tarball };
}

export interface EditorNodeRed {
  url: string;
  userDir: string;
  child: ChildProcess;
  /** Everything Node-RED printed, from the start. */
  log(): string;
  deploy(flows: unknown[]): Promise<void>;
  stop(): Promise<void>;
}

/** Node-RED on that user directory, as `node-red -u <dir>` starts it, with settings a user would write. */
export async function startEditorNodeRed(userDir: string): Promise<EditorNodeRed> {
  const port = await freePort();
  const settings = path.join(userDir, "settings.js");
  writeFileSync(
    settings,
    `module.exports = ${JSON.stringify({
      uiHost: "127.0.0.1",
      uiPort: port,
      flowFile: "flows.json",
      credentialSecret: "editor-test-secret",
      logging: { console: { level: "info", metrics: false, audit: false } },
      telemetry: { enabled: false, updateNotification: false },
      diagnostics: { enabled: false, ui: false },
      editorTheme: { tours: false, palette: { editable: false } },
    })};\n`,
  );
  let output = "";
  const child = spawn(process.execPath, [path.join(nodeRedDir(), "red.js"), "--userDir", userDir, "--settings", settings], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const url = `http://127.0.0.1:${port}`;
  await untilAnswering(child, url, 90_000, () => output);
  return { url, userDir, child, log: () => output, ...controls(child, url) };
}

/** The examples as the package ships them: file name (without .json) → nodes. */
export function shippedExamples(): Map<string, Array<Record<string, unknown>>> {
  const dir = path.join(repoRoot, "flows");
  const examples = new Map<string, Array<Record<string, unknown>>>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    examples.set(file.replace(/\.json$/, ""), JSON.parse(readFileSync(path.join(dir, file), "utf8")));
  }
  return examples;
}

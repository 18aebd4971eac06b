import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FlowLibraryStandIn, repoRoot, standInEnv, startFlowLibraryStandIn } from "../support/flow-library";

// The checks the Node-RED Flow Library makes of a package, run offline: `node-red-dev validate`
// (its registry and catalogue look-ups answered by a local stand-in) and nrlint on the examples.

interface Pkg {
  dependencies: Record<string, string>;
}
interface LockEntry {
  version?: string;
  dev?: boolean;
  hasInstallScript?: boolean;
  os?: string[];
  cpu?: string[];
}

const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as Pkg;
const lock = JSON.parse(readFileSync(path.join(repoRoot, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry & { dependencies?: Record<string, string> }> };
const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
const recorded = (JSON.parse(readFileSync(path.join(repoRoot, "test", "fixtures", "flow-library", "registry.json"), "utf8")) as {
  packages: Record<string, { latest: { version: string; engines?: { node?: string } } }>;
}).packages;

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The README's dependency list: each bullet's package name and text. */
function readmeDependencies(): Map<string, string> {
  const section = readme.slice(readme.indexOf("\n## Dependencies\n"), readme.indexOf("\n## ", readme.indexOf("\n## Dependencies\n") + 5));
  const bullets = new Map<string, string>();
  for (const m of section.matchAll(/^- `([^`]+)`: ([\s\S]*?)(?=^- |^\s*$)/gm)) bullets.set(m[1]!, m[2]!.replace(/\s+/g, " "));
  return bullets;
}

/** `version` satisfies the caret range `range` (^x.y.z, pre-releases of x.y.z included). */
function satisfiesCaret(version: string, range: string): boolean {
  const parse = (v: string) => {
    const [core, pre] = v.split("-", 2) as [string, string | undefined];
    return { nums: core.split(".").map(Number), pre };
  };
  const want = parse(range.slice(1));
  const have = parse(version);
  const significant = want.nums[0]! > 0 ? 0 : want.nums[1]! > 0 ? 1 : 2;
  for (let i = 0; i <= significant; i++) if (have.nums[i] !== want.nums[i]) return false;
  for (let i = 0; i < 3; i++) if (have.nums[i] !== want.nums[i]) return have.nums[i]! > want.nums[i]! && !have.pre;
  if (!have.pre) return true;
  if (!want.pre) return false;
  return have.pre.localeCompare(want.pre, "en", { numeric: true }) >= 0;
}

describe("the Flow Library's checks, offline", function () {
  this.timeout(60_000);
  let standIn: FlowLibraryStandIn;
  const work = mkdtempSync(path.join(os.tmpdir(), "gw-flow-library-"));

  before(async () => {
    standIn = await startFlowLibraryStandIn();
  });
  after(async () => {
    await standIn?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("package.json gives each dependency as a caret range, and package-lock.json pins a release in it", () => {
    const root = lock.packages[""] as { dependencies?: Record<string, string> };
    assert.deepEqual(root.dependencies, pkg.dependencies, "the lock file was made from this package.json");
    for (const [name, range] of Object.entries(pkg.dependencies)) {
      assert.match(range, /^\^\d+\.\d+\.\d+(-[\w.]+)?$/, `${name}: ${range} is not a ^x.y.z range`);
      const locked = lock.packages[`node_modules/${name}`]?.version;
      assert.ok(locked && satisfiesCaret(locked, range), `${name}: the lock's ${locked} is outside ${range}`);
    }
  });

  it("the README says what each dependency is for, and names no other", () => {
    assert.deepEqual([...readmeDependencies().keys()].sort(), Object.keys(pkg.dependencies).sort());
  });

  it("node-red-dev validate warns of the number of dependencies and of the D03 cases the README explains, and of nothing else", async () => {
    const scorecard = path.join(work, "scorecard.json");
    const validate = path.join(repoRoot, "node_modules", "node-red-dev", "bin", "run");
    const { code, stdout, stderr } = await run([validate, "validate", "-p", repoRoot, "-o", scorecard], standInEnv(standIn));
    const printed = `${stdout}\n${stderr}`;
    assert.equal(code, 0, printed);
    assert.match(stdout, /Complete/);
    assert.doesNotMatch(printed, /Unable to parse|could not load|could not find|Error/, "every node file parsed and every look-up answered");
    assert.deepEqual(standIn.unanswered, [], "every look-up was answered locally");
    for (const asked of ["catalogue.nodered.org/catalogue.json", "registry.npmjs.org/node-red", ...Object.keys(pkg.dependencies).map((n) => `/${n}`)]) {
      assert.ok(standIn.answered.some((a) => a.endsWith(asked)), `validate looked up ${asked}`);
    }

    const card = JSON.parse(readFileSync(scorecard, "utf8")) as Record<string, { test: boolean; total?: number; packages?: string[] }>;
    const failed = Object.entries(card).filter(([k, v]) => k !== "package" && !v.test).map(([k]) => k);
    assert.deepEqual(failed.sort(), ["D01", "D03"], printed);
    assert.equal(card.D01!.total, Object.keys(pkg.dependencies).length);
    const warned = [...stderr.matchAll(/Warning: (\w+)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(warned)].sort(), ["D01", "D03"], stderr);

    // Each D03 is one the README explains, for a reason that holds: no release newer than the
    // locked one runs on Node 20, or the package publishes no release that is not a pre-release.
    const explained = [...readmeDependencies()].filter(([, text]) => /\bD03\b/.test(text)).map(([name]) => name);
    assert.deepEqual([...card.D03!.packages!].sort(), explained.sort());
    for (const name of explained) {
      const latest = recorded[name]!.latest;
      const needs = Number(/>=\s*(\d+)/.exec(latest.engines?.node ?? "")?.[1] ?? 0);
      assert.ok(needs > 20 || latest.version.includes("-"), `${name} ${latest.version} (node ${latest.engines?.node}) would run here`);
    }
  });

  it("nrlint finds nothing in the examples but the dashboard pages' loops through their ui-templates", async () => {
    const nrlint = path.join(repoRoot, "node_modules", "nrlint", "bin", "nrlint.js");
    // Every rule nrlint has, as its --init writes them.
    const init = await run([nrlint, "--init"]);
    const config = path.join(work, ".nrlintrc.js");
    writeFileSync(config, init.stdout);
    const flows = readdirSync(path.join(repoRoot, "flows")).filter((f) => f.endsWith(".json")).sort();
    assert.deepEqual(readdirSync(path.join(repoRoot, "examples")).filter((f) => f.endsWith(".json")).sort(), flows, "the build copied every flow to examples/");
    const found: Record<string, Array<{ rule: string; location: string[] }>> = {};
    for (const file of flows) {
      const example = path.join(repoRoot, "examples", file);
      assert.equal(readFileSync(example, "utf8"), readFileSync(path.join(repoRoot, "flows", file), "utf8"), `examples/${file} is flows/${file}`);
      const { stdout } = await run([nrlint, "-c", config, "-f", "json", example]);
      found[file] = (JSON.parse(stdout) as Array<{ rule: string; location: string[] }>).map(({ rule, location }) => ({ rule, location: [...location].sort() }));
    }
    // A dashboard page that asks and is answered: the board's ui-template and its node, the health
    // page's ui-template, the function that fans out its reads and the pipeline-runs node answering them.
    const loops: Record<string, string[]> = { "support-board.json": ["connection-board", "ui-template"], "operations.json": ["function", "pipeline-runs", "ui-template"] };
    const loopOf = (file: string) => found[file]![0]?.location ?? [];
    assert.deepEqual(
      found,
      Object.fromEntries(flows.map((f) => [f, loops[f] ? [{ rule: "no-loops", location: loopOf(f) }] : []])),
    );
    for (const [file, types] of Object.entries(loops)) {
      const nodes = JSON.parse(readFileSync(path.join(repoRoot, "flows", file), "utf8")) as Array<{ id: string; type: string }>;
      assert.deepEqual(loopOf(file).map((id) => nodes.find((n) => n.id === id)?.type).sort(), types, file);
    }
  });

  it("no example's debug node prints a whole message or error object to the console", () => {
    for (const file of readdirSync(path.join(repoRoot, "flows")).filter((f) => f.endsWith(".json"))) {
      const nodes = JSON.parse(readFileSync(path.join(repoRoot, "flows", file), "utf8")) as Array<{ id: string; type: string; console?: boolean | string; complete?: string }>;
      for (const debug of nodes.filter((n) => n.type === "debug" && String(n.console) === "true")) {
        assert.ok(!["true", "error", "req", "res"].includes(String(debug.complete)), `${file} ${debug.id} prints msg.${debug.complete} to the console`);
      }
    }
  });

  it("the README's allowScripts names each dependency with an install script that a user's npm lists", () => {
    // The lock's production packages with install scripts, as npm installs them on linux-x64 (the README's example).
    const onLinuxX64 = (e: LockEntry) => (!e.os || e.os.includes("linux")) && (!e.cpu || e.cpu.includes("x64"));
    const withScripts = Object.entries(lock.packages)
      .filter(([where, e]) => where && e.hasInstallScript && !e.dev && onLinuxX64(e))
      .map(([where]) => where.slice(where.lastIndexOf("node_modules/") + "node_modules/".length));
    const snippet = /```json\n("allowScripts"[\s\S]*?)\n```/.exec(readme);
    assert.ok(snippet, "the README shows what to add to allowScripts");
    const allow = (JSON.parse(`{${snippet[1]}}`) as { allowScripts: Record<string, boolean> }).allowScripts;
    assert.deepEqual(Object.keys(allow).sort(), [...new Set(withScripts)].sort());
    assert.match(readme, new RegExp(`${withScripts.length} packages have install scripts not yet covered by allowScripts`));
  });
});

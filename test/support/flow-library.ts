// A local stand-in for what the Flow Library's tools look up on the network: the npm registry
// (node-red-dev's dependency checks and Node-RED's dist-tags) and the Node-RED catalogue
// (flows.nodered.org's list of modules and their node types). The tools reach it as a proxy
// (axios, for its https:// addresses) and as the npm registry (npm_config_registry).
//
// What it answers: packuments made from package-lock.json (every version this project installs,
// with its dependencies), with the dist-tags and latest version of this package's dependencies as
// the registry had them when test/fixtures/flow-library/registry.json was recorded
// (`node dist/test/support/flow-library.js record` refreshes it); and a catalogue of the Node-RED
// modules installed here (node_modules), with the node types their editor files register.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export const repoRoot = path.resolve(__dirname, "..", "..", "..");
const fixture = path.join(repoRoot, "test", "fixtures", "flow-library", "registry.json");

/** One package as the registry had it: its dist-tags and its latest version's manifest. */
interface RecordedPackage {
  "dist-tags": Record<string, string>;
  latest: { version: string; engines?: Record<string, string>; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
}

type Manifest = { name: string; version: string; engines?: unknown; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };

/** The names the registry fixture records: this package's dependencies, and Node-RED itself. */
function recordedNames(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  return [...Object.keys(pkg.dependencies), "node-red"].sort();
}

/** Asks the registry (through npm) for each recorded name and writes the fixture. */
export function recordRegistry(): void {
  const recorded: Record<string, RecordedPackage> = {};
  for (const name of recordedNames()) {
    const view = JSON.parse(
      execFileSync("npm", ["view", `${name}@latest`, "--json", "version", "dist-tags", "engines", "dependencies", "optionalDependencies"], { encoding: "utf8" }),
    ) as { version: string; "dist-tags": Record<string, string>; engines?: Record<string, string>; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    const { "dist-tags": tags, ...latest } = view;
    recorded[name] = { "dist-tags": tags, latest };
  }
  writeFileSync(fixture, `${JSON.stringify({ recorded: new Date().toISOString().slice(0, 10), packages: recorded }, null, 2)}\n`);
}

/** Every version of every package in package-lock.json, by name. */
function lockedVersions(): Map<string, Map<string, Manifest>> {
  const lock = JSON.parse(readFileSync(path.join(repoRoot, "package-lock.json"), "utf8")) as { packages: Record<string, Omit<Manifest, "name"> & { name?: string }> };
  const byName = new Map<string, Map<string, Manifest>>();
  for (const [where, entry] of Object.entries(lock.packages)) {
    const at = where.lastIndexOf("node_modules/");
    if (at < 0 || !entry.version) continue;
    const name = entry.name ?? where.slice(at + "node_modules/".length);
    const versions = byName.get(name) ?? new Map<string, Manifest>();
    versions.set(entry.version, { name, version: entry.version, engines: entry.engines, dependencies: entry.dependencies, optionalDependencies: entry.optionalDependencies });
    byName.set(name, versions);
  }
  return byName;
}

/** The registry's document for one package, from the lock file and the fixture; undefined if neither knows it. */
function packument(name: string, locked: Map<string, Map<string, Manifest>>, recorded: Record<string, RecordedPackage>): object | undefined {
  const versions = new Map(locked.get(name) ?? []);
  const known = recorded[name];
  if (!versions.size && !known) return undefined;
  if (known && !versions.has(known.latest.version)) versions.set(known.latest.version, { name, ...known.latest });
  const highest = [...versions.keys()].sort(compareVersions).at(-1)!;
  return { name, "dist-tags": known?.["dist-tags"] ?? { latest: highest }, versions: Object.fromEntries(versions) };
}

function compareVersions(a: string, b: string): number {
  const parse = (v: string) => v.split(/[.+-]/).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  const [pa, pb] = [parse(a), parse(b)];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const [x, y] = [pa[i], pb[i]];
    if (x === y) continue;
    if (x === undefined) return 1; // 1.0.0 after 1.0.0-beta
    if (y === undefined) return -1;
    if (typeof x === "number" && typeof y === "number") return x - y;
    return String(x).localeCompare(String(y));
  }
  return 0;
}

/** The Node-RED modules installed in node_modules, as the catalogue lists them: id and node types. */
export function installedCatalogue(): { modules: Array<{ id: string; version: string; types: string[] }> } {
  const root = path.join(repoRoot, "node_modules");
  const dirs = readdirSync(root).flatMap((d) => (d.startsWith("@") ? readdirSync(path.join(root, d)).map((s) => path.join(d, s)) : [d]));
  const modules = [];
  for (const dir of dirs) {
    const file = path.join(root, dir, "package.json");
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, "utf8")) as { name: string; version: string; "node-red"?: { nodes?: Record<string, string> } };
    const nodes = pkg["node-red"]?.nodes;
    if (!nodes) continue;
    const types = new Set<string>();
    for (const js of Object.values(nodes)) {
      const html = path.join(root, dir, js.replace(/\.js$/, ".html"));
      if (!existsSync(html)) continue;
      for (const m of readFileSync(html, "utf8").matchAll(/registerType\(\s*["']([^"']+)["']/g)) types.add(m[1]!);
    }
    modules.push({ id: pkg.name, version: pkg.version, types: [...types].sort() });
  }
  return { modules };
}

export interface FlowLibraryStandIn {
  url: string;
  /** Every request answered, as `GET <address>`. */
  answered: string[];
  /** Every request the stand-in had nothing for. */
  unanswered: string[];
  close(): Promise<void>;
}

/** Starts the stand-in on a free loopback port. */
export async function startFlowLibraryStandIn(): Promise<FlowLibraryStandIn> {
  const recorded = (JSON.parse(readFileSync(fixture, "utf8")) as { packages: Record<string, RecordedPackage> }).packages;
  const locked = lockedVersions();
  const catalogue = installedCatalogue();
  const answered: string[] = [];
  const unanswered: string[] = [];
  const server = http.createServer((req, res) => {
    // A proxied request names the whole address; a registry request only its path.
    const address = new URL(req.url ?? "/", "http://registry.stand-in");
    const send = (status: number, body: unknown) => {
      (status === 200 ? answered : unanswered).push(`${req.method} ${address.host}${decodeURIComponent(address.pathname)}`);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (address.host === "catalogue.nodered.org" && address.pathname === "/catalogue.json") return send(200, catalogue);
    if (address.host === "registry.npmjs.org" || address.host === "registry.stand-in") {
      const doc = packument(decodeURIComponent(address.pathname.slice(1)), locked, recorded);
      return doc ? send(200, doc) : send(404, { error: "Not found" });
    }
    return send(404, { error: "Not found" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    answered,
    unanswered,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The environment that sends a tool's look-ups to the stand-in, and nowhere else. */
export function standInEnv(standIn: FlowLibraryStandIn): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (/^(https?_proxy|no_proxy|all_proxy|npm_(config_)?registry)$/i.test(key)) delete env[key];
  // npm_registry is how `rc` (registry-url, used by npm-check and npm-remote-ls) reads npm's registry.
  return { ...env, https_proxy: standIn.url, HTTPS_PROXY: standIn.url, npm_config_registry: `${standIn.url}/`, npm_registry: `${standIn.url}/` };
}

if (require.main === module && process.argv[2] === "record") recordRegistry();

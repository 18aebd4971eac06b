import { promises as fs, readdirSync } from "node:fs";
import path from "node:path";
import type { Sandbox } from "../sandbox";

/** Everything `npm start` runs locally, which the demo fills into config nodes. */
export interface DemoEnvironment {
  stateDir: string;
  sandbox: Sandbox;
  azurite: { blobUrl: string; connectionString: string; accountName: string; accountKey: string };
  smtp: { host: string; port: number; dir: string };
  /** This Node-RED, as the flows reach it (its stand-ins, such as the out-of-office mediator, live there). */
  nodeRedUrl: string;
  /** A PostgreSQL server to use instead of the embedded database (from DATABASE_URL). */
  databaseUrl?: string;
  /** A value made once and kept in the state folder (a seeded refresh token, a signing key). */
  secret(name: string, create: () => string | Promise<string>): Promise<string>;
}

/** A node of a flow file, as Node-RED exports it. */
export interface FlowNode {
  id: string;
  type: string;
  [key: string]: unknown;
}

/**
 * What the demo changes in one config node: endpoint fields that are empty for production and
 * point at the local stand-ins here, and the credentials for those stand-ins.
 */
export interface DemoSettings {
  config?: Record<string, unknown>;
  credentials?: Record<string, string>;
}

export type DemoProfile = (node: FlowNode, env: DemoEnvironment) => DemoSettings | Promise<DemoSettings>;

/** The demo profiles, one module per config node type in ./profiles (`export const type`, `export const profile`). */
export function loadProfiles(dir = path.join(__dirname, "profiles")): Map<string, DemoProfile> {
  const profiles = new Map<string, DemoProfile>();
  for (const file of readdirSync(dir)) {
    if (!file.endsWith(".js")) continue;
    const mod = require(path.join(dir, file)) as { type?: string; profile?: DemoProfile };
    if (mod.type && mod.profile) profiles.set(mod.type, mod.profile);
  }
  return profiles;
}

/**
 * The flows of `flows/` as `npm start` deploys them: every file's nodes, with each config node
 * that has a demo profile pointed at the local stand-ins. The files themselves stay as a user
 * imports them (they are the package's examples too).
 */
export async function demoFlows(flowsDir: string, env: DemoEnvironment, profiles = loadProfiles()): Promise<FlowNode[]> {
  const files = (await fs.readdir(flowsDir)).filter((f) => f.endsWith(".json")).sort();
  const nodes: FlowNode[] = [];
  for (const file of files) {
    const flow = JSON.parse(await fs.readFile(path.join(flowsDir, file), "utf8")) as FlowNode[];
    if (!Array.isArray(flow)) throw new Error(`${file} is not a Node-RED flow export (an array of nodes)`);
    nodes.push(...flow);
  }
  const seen = new Set<string>();
  const result: FlowNode[] = [];
  for (const shipped of nodes) {
    const node = { ...onThisNodeRed(shipped, env.nodeRedUrl), ...DEMO_ONLY[shipped.id] };
    // Flows may share a config node (one database for several pipelines): keep it once.
    if (seen.has(node.id)) continue;
    seen.add(node.id);
    const profile = profiles.get(node.type);
    if (!profile) {
      result.push(node);
      continue;
    }
    const settings = await profile(node, env);
    result.push({ ...node, ...settings.config, ...(settings.credentials ? { credentials: settings.credentials } : {}) });
  }
  return oneDashboard(result);
}

/**
 * Dashboard 2.0 serves one ui-base: as the editor does when two flows bring one each, the first
 * is kept and every page and widget of the others moves onto it.
 */
function oneDashboard(nodes: FlowNode[]): FlowNode[] {
  const bases = nodes.filter((n) => n.type === "ui-base");
  if (bases.length < 2) return nodes;
  const kept = bases[0]!.id;
  const dropped = new Set(bases.slice(1).map((n) => n.id));
  return nodes.filter((n) => !dropped.has(n.id)).map((n) => (typeof n.ui === "string" && dropped.has(n.ui) ? { ...n, ui: kept } : n));
}

/**
 * Flow nodes the demo sets otherwise than the examples: the demo is configured, so its Teamleader
 * sync runs once at deploy; an imported example, not configured yet, waits for its schedule.
 */
const DEMO_ONLY: Record<string, Record<string, unknown>> = {
  "tl-every-15": { once: true },
};

/** The examples' own address: Node-RED's default, which `npm start` may move (NODE_RED_PORT, HOST). */
const DEFAULT_NODE_RED_URL = "http://127.0.0.1:1880";

/** A node whose settings point at this Node-RED by its default address, pointed at where it runs. */
function onThisNodeRed(node: FlowNode, nodeRedUrl: string): FlowNode {
  const base = nodeRedUrl.replace(/\/$/, "");
  if (base === DEFAULT_NODE_RED_URL) return node;
  const moved = Object.entries(node).map(([k, v]) => [k, typeof v === "string" && v.startsWith(`${DEFAULT_NODE_RED_URL}/`) ? base + v.slice(DEFAULT_NODE_RED_URL.length) : v]);
  return Object.fromEntries(moved) as FlowNode;
}

/** Secrets made once per state folder and kept there, so a restart keeps the same ones. */
export function secretKeeper(file: string): DemoEnvironment["secret"] {
  return async (name, create) => {
    let all: Record<string, string> = {};
    try {
      all = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, string>;
    } catch {
      // none yet
    }
    if (all[name] === undefined) {
      all[name] = await create();
      await fs.writeFile(file, JSON.stringify(all, null, 2), { mode: 0o600 });
    }
    return all[name]!;
  };
}

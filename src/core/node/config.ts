import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError } from "../errors";
import type { Database } from "../db/database";
import type { NodeAPI } from "./types";

/** What a `postgres-database` config node offers the nodes that use it. */
export interface DatabaseProvider {
  readonly type: "postgres-database";
  /** The shared pool, opened on first use and closed with the config node. */
  database(): Promise<Database>;
}

/** The config node a node's setting points at, or a ConfigError that says which one is missing. */
export function configNode<T>(RED: NodeAPI, id: unknown, type: string, what: string): T {
  const node = typeof id === "string" && id ? (RED.nodes.getNode(id) as (T & { type?: string }) | null) : null;
  if (!node) throw new ConfigError(`no ${what} is selected: choose a ${type} config node in this node's settings`, { status: `missing ${what}` });
  if (node.type && node.type !== type) throw new ConfigError(`the selected ${what} is a ${node.type}, not a ${type}`);
  return node;
}

/** Where this package keeps its state in the Node-RED user directory. */
export function stateDir(RED: NodeAPI, ...parts: string[]): string {
  const userDir = RED.settings.userDir || path.join(os.homedir(), ".node-red");
  return path.join(userDir, "gluework", ...parts);
}

/**
 * The secret the runtime's own keys derive from (the file token store, the sealed user hashes):
 * Node-RED's own credentialSecret when there is one, else a random key kept in a file of its own
 * (mode 0600) in the user directory, so it outlives a restart. Synchronous: read once at start.
 */
export function runtimeSecret(RED: NodeAPI): string {
  const configured = RED.settings.credentialSecret;
  if (typeof configured === "string" && configured) return configured;
  try {
    const generated = typeof RED.settings.get === "function" ? RED.settings.get("_credentialSecret") : undefined;
    if (typeof generated === "string" && generated) return generated;
  } catch {
    // settings not loaded (test runtime): fall through to the key file
  }
  const file = stateDir(RED, "token-store.key");
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, randomBytes(32).toString("base64"), { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return readFileSync(file, "utf8").trim();
}

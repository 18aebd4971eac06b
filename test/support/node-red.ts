import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import helper from "node-red-node-test-helper";

/**
 * The Node-RED runtime the node tests run in: the project's own (4.x) by default, another one
 * (5.x under Node 22 in CI) when NODE_RED_PATH names it.
 */
export function nodeRedPath(): string {
  return process.env.NODE_RED_PATH ? require.resolve(process.env.NODE_RED_PATH) : require.resolve("node-red");
}

let initialised = false;

/** The test helper, bound to the chosen runtime and a throwaway user directory. */
export function nodeRed(): typeof helper {
  if (!initialised) {
    const userDir = mkdtempSync(path.join(os.tmpdir(), "gw-nr-"));
    helper.init(nodeRedPath(), { userDir });
    initialised = true;
  }
  return helper;
}

/** Polls `check` until it returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

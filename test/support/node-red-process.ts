import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import WebSocket from "ws";
import { freePort } from "../../src/sandbox/azurite";

export type DeploymentType = "full" | "flows" | "nodes";

export interface NodeRedProcess {
  url: string;
  port: number;
  userDir: string;
  child: ChildProcess;
  /** Deploys through the admin API; `type` is the editor's Node-RED-Deployment-Type (full, flows, nodes). */
  deploy(flows: unknown[], type?: DeploymentType): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real Node-RED process, as a user runs it (the demo's settings: loopback, this package loaded
 * from the working copy, the dashboard found in node_modules), for tests that need a browser or
 * several instances. Flows are deployed through the admin API, credentials included.
 */
export async function startNodeRed(options: { userDir?: string; port?: number; env?: NodeJS.ProcessEnv } = {}): Promise<NodeRedProcess> {
  const port = options.port ?? (await freePort());
  const userDir = options.userDir ?? mkdtempSync(path.join(os.tmpdir(), "gw-nodered-"));
  const red = path.join(path.dirname(require.resolve("node-red/package.json")), "red.js");
  const settings = path.join(__dirname, "..", "..", "src", "demo", "settings.js");
  const child = spawn(process.execPath, [red, "--userDir", userDir, "--settings", settings], {
    env: { ...process.env, NODE_RED_PORT: String(port), NODE_RED_CREDENTIAL_SECRET: "test-credential-secret", NODE_RED_LOG_LEVEL: "warn", ...options.env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  // A Node-RED that never answered is ended: left running, it would keep mocha from exiting.
  await untilAnswering(child, url, 60_000).catch((err) => {
    child.kill("SIGKILL");
    throw err;
  });
  return { url, port, userDir, child, ...controls(child, url) };
}

/** Waits until the Node-RED in `child` answers at `url`; `output` adds what it printed to a failure. */
export async function untilAnswering(child: ChildProcess, url: string, timeoutMs: number, output: () => string = () => ""): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const printed = () => (output() ? `:\n${output()}` : "");
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Node-RED exited (${child.exitCode}) while starting${printed()}`);
    try {
      const res = await request(`${url}/settings`);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not yet listening
    }
    if (Date.now() > deadline) throw new Error(`Node-RED did not start within ${timeoutMs / 1000} s${printed()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Deploying to and stopping the Node-RED in `child`, at `url`. */
export function controls(child: ChildProcess, url: string): Pick<NodeRedProcess, "deploy" | "stop"> {
  return {
    async deploy(flows, type = "full") {
      // Node-RED answers a deploy before it starts the new nodes: until then, a message to a
      // redeployed node from one left running (an http in) is dropped. Wait for the start.
      const started = deployStarted(url);
      try {
        // The same flows again have the same revision: only a notification after the last one counts.
        await started.subscribed();
        const res = await request(`${url}/flows`, {
          method: "POST",
          headers: { "content-type": "application/json", "node-red-deployment-type": type, "node-red-api-version": "v2" },
          body: JSON.stringify({ flows }),
        });
        const text = await res.body.text();
        if (res.statusCode >= 300) throw new Error(`deploy refused (${res.statusCode}): ${text}`);
        await started.until((JSON.parse(text) as { rev: string }).rev);
      } finally {
        started.close();
      }
    },
    stop() {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => child.kill("SIGKILL"), 15_000);
        child.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        child.kill("SIGINT");
      });
    },
  };
}

/**
 * The revisions Node-RED reports started (its `runtime-deploy` notification, sent once a deploy's
 * nodes have started). The last one before is retained and sent on subscribing: it is skipped.
 */
function deployStarted(url: string): { subscribed(timeoutMs?: number): Promise<void>; until(revision: string, timeoutMs?: number): Promise<void>; close(): void } {
  const notices: string[] = [];
  const waiters: Array<() => void> = [];
  const socket = new WebSocket(`${url.replace(/^http/, "ws")}/comms`);
  socket.on("error", () => undefined); // a failed socket shows as a deadline below
  socket.on("open", () => socket.send(JSON.stringify({ subscribe: "notification/runtime-deploy" })));
  socket.on("message", (data) => {
    try {
      const messages = JSON.parse(String(data)) as Array<{ topic?: string; data?: { revision?: string } }>;
      for (const m of [messages].flat()) if (m.topic === "notification/runtime-deploy" && m.data?.revision) notices.push(m.data.revision);
    } catch {
      // not a notification
    }
    for (const wake of waiters.splice(0)) wake();
  });
  const until = async (done: () => boolean, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Node-RED did not report ${what} within ${timeoutMs / 1000} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  return {
    subscribed: (timeoutMs = 15_000) => until(() => notices.length > 0, timeoutMs, "its last deploy"),
    until: (revision, timeoutMs = 30_000) => until(() => notices.slice(1).includes(revision), timeoutMs, `the deployed flows (revision ${revision}) started`),
    close: () => socket.terminate(),
  };
}

import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { PipelineError } from "../errors";

/**
 * The embedded default runs PGlite in a child process behind pglite-socket, so `pg` speaks to it
 * exactly as to a server (one code path), PGlite's WebAssembly work never blocks Node-RED's event
 * loop, and its memory is its own. One child per data directory per process, shared by every
 * config node that uses it, and kept a little while after the last one lets go so a redeploy
 * does not restart it.
 */
export interface EmbeddedHandle {
  port: number;
  maxConnections: number;
  pid: number;
  release(): Promise<void>;
}

interface Entry {
  refs: number;
  ready: Promise<{ child: ChildProcess; port: number; maxConnections: number }>;
  stopTimer?: NodeJS.Timeout;
  stopping?: Promise<void>;
}

const entries = new Map<string, Entry>();
const MAX_CONNECTIONS = 16;

export async function acquireEmbedded(
  dataDir: string,
  options: { keepAliveMs?: number; log?: { warn(message: string): void } } = {},
): Promise<EmbeddedHandle> {
  const key = path.resolve(dataDir);
  let entry = entries.get(key);
  if (entry?.stopping) {
    await entry.stopping;
    entry = entries.get(key);
  }
  if (!entry) {
    entry = { refs: 0, ready: start(key, options.log) };
    entries.set(key, entry);
    entry.ready.catch(() => entries.delete(key));
  }
  entry.refs++;
  if (entry.stopTimer) {
    clearTimeout(entry.stopTimer);
    entry.stopTimer = undefined;
  }
  const current = entry;
  let server;
  try {
    server = await current.ready;
  } catch (err) {
    current.refs--;
    throw err;
  }
  let released = false;
  return {
    port: server.port,
    maxConnections: server.maxConnections,
    pid: server.child.pid ?? 0,
    release: async () => {
      if (released) return;
      released = true;
      current.refs--;
      if (current.refs > 0) return;
      const keepAlive = options.keepAliveMs ?? 10_000;
      if (keepAlive <= 0) return stopEntry(key, current);
      current.stopTimer = setTimeout(() => void stopEntry(key, current), keepAlive);
      current.stopTimer.unref();
    },
  };
}

/** Stops every embedded database this process started (for tests and shutdown). */
export async function stopAllEmbedded(): Promise<void> {
  await Promise.all([...entries.entries()].map(([key, entry]) => stopEntry(key, entry)));
}

function stopEntry(key: string, entry: Entry): Promise<void> {
  if (entry.stopping) return entry.stopping;
  if (entry.stopTimer) clearTimeout(entry.stopTimer);
  entry.stopping = (async () => {
    try {
      const { child } = await entry.ready;
      await stopChild(child);
    } catch {
      // it never started: nothing to stop
    } finally {
      if (entries.get(key) === entry) entries.delete(key);
    }
  })();
  return entry.stopping;
}

function start(dataDir: string, log?: { warn(message: string): void }): Promise<{ child: ChildProcess; port: number; maxConnections: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, "embedded-server.js"), [dataDir, String(MAX_CONNECTIONS)], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      // Small heaps would make PGlite's WebAssembly memory fail under load.
      execArgv: [],
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const fail = (reason: string) =>
      reject(new PipelineError(`the embedded database did not start: ${reason}`, { code: "GW_DB_EMBEDDED", status: "database error" }));
    child.once("error", (err) => fail(err.message));
    child.once("exit", (code, signal) => fail(`it exited (${signal ?? code})${stderr ? `: ${stderr.trim().split("\n").slice(-3).join(" ")}` : ""}`));
    child.on("message", (message: { type?: string; port?: number; error?: string }) => {
      if (message?.type === "ready" && message.port) {
        child.removeAllListeners("exit");
        child.once("exit", (code, signal) => {
          if (code !== 0) log?.warn(`the embedded database stopped unexpectedly (${signal ?? code})`);
          const entry = entries.get(dataDir);
          if (entry && !entry.stopping) entries.delete(dataDir);
        });
        resolve({ child, port: message.port, maxConnections: MAX_CONNECTIONS });
      } else if (message?.type === "error") {
        fail(message.error ?? "unknown error");
      }
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    if (child.connected) child.send({ type: "stop" });
    else child.kill("SIGTERM");
  });
}

// The child process behind the embedded default: PGlite on a data directory, served over the
// PostgreSQL wire protocol on a loopback port. It tells its parent the port over IPC and stops
// (flushing PGlite to disk) when asked, when its parent goes away, or on SIGTERM.
import { promises as fs } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import lockfile from "proper-lockfile";

async function main(): Promise<void> {
  const [dataDir, maxConnectionsArg] = process.argv.slice(2);
  if (!dataDir) throw new Error("usage: embedded-server <data directory> [max connections]");
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dataDir, { stale: 30_000, update: 10_000, onCompromised: () => undefined });
  } catch {
    throw new Error(`${dataDir} is in use by another process; for several Node-RED instances use a PostgreSQL server`);
  }
  const db = await PGlite.create(dataDir);
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: Number(maxConnectionsArg) || 16 });
  server.addEventListener("error", () => undefined);
  await server.start();
  const port = Number(server.getServerConn().split(":").pop());

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.stop().catch(() => undefined);
    await db.close().catch(() => undefined);
    await release().catch(() => undefined);
    process.exit(0);
  };
  process.on("message", (message: { type?: string }) => {
    if (message?.type === "stop") void stop();
  });
  process.on("disconnect", () => void stop());
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  process.send?.({ type: "ready", port });
}

main().catch((err: Error) => {
  process.send?.({ type: "error", error: err.message });
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { freePort } from "../../src/sandbox/azurite";
import { eventually } from "../support/node-red";

const packageName = require("../../../package.json").name as string;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe("npm start", function () {
  this.timeout(180_000);

  it("serves Node-RED with this package in the palette within 60 s, and Ctrl-C stops every process it started", async () => {
    const ports = { NODE_RED_PORT: await freePort(), SANDBOX_PORT: await freePort(), AZURITE_PORT: await freePort(), SMTP_PORT: await freePort() };
    const env: NodeJS.ProcessEnv = { ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])), GW_STATE_DIR: mkdtempSync(path.join(os.tmpdir(), "gw-start-")), NODE_RED_LOG_LEVEL: "warn" };
    delete env.DATABASE_URL;
    const launcher = spawn(process.execPath, [path.join(__dirname, "..", "..", "src", "demo", "start.js")], { env, stdio: ["ignore", "pipe", "inherit"] });
    let output = "";
    launcher.stdout.on("data", (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => launcher.once("exit", (code) => resolve(code)));
    try {
      const started = Date.now();
      const modules = await eventually(
        async () => {
          const res = await request(`http://127.0.0.1:${ports.NODE_RED_PORT}/nodes`, { headers: { accept: "application/json" } });
          if (res.statusCode !== 200) return res.body.dump().then(() => undefined);
          const list = (await res.body.json()) as Array<{ module: string; types: string[] }>;
          return list.filter((n) => n.module === packageName);
        },
        60_000,
        "GET /nodes to list the package",
      );
      assert.ok(Date.now() - started < 60_000);
      assert.ok(modules.length > 0 && modules.some((m) => m.types.includes("postgres-database")));
      await eventually(() => output.includes("Ctrl-C stops everything"), 60_000, "the flows to be deployed");
    } finally {
      launcher.kill("SIGINT");
    }
    assert.equal(await exited, 0);
    for (const port of Object.values(ports)) assert.ok(await portIsFree(port), `port ${port} is still taken`);
  });
});

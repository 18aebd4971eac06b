import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
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

/** `npm start` as a user runs it, on free ports and a fresh state folder; the suite drives its flows. */
describe("npm start", function () {
  this.timeout(180_000);
  let launcher: ChildProcess;
  let exited: Promise<number | null>;
  let output = "";
  let ports: Record<string, number>;
  let base: string;
  let started: number;
  let stateDir: string;

  before(async () => {
    started = Date.now();
    ports = { NODE_RED_PORT: await freePort(), SANDBOX_PORT: await freePort(), AZURITE_PORT: await freePort(), SMTP_PORT: await freePort() };
    base = `http://127.0.0.1:${ports.NODE_RED_PORT}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      GW_STATE_DIR: (stateDir = mkdtempSync(path.join(os.tmpdir(), "gw-start-"))),
      NODE_RED_LOG_LEVEL: "warn",
    };
    delete env.DATABASE_URL;
    launcher = spawn(process.execPath, [path.join(__dirname, "..", "..", "src", "demo", "start.js")], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    // Node-RED's log is on stdout (info and warn) and stderr: the quiet-start test reads both.
    launcher.stderr!.on("data", (c: Buffer) => {
      output += c.toString();
      process.stderr.write(c);
    });
    launcher.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    exited = new Promise((resolve) => launcher.once("exit", (code) => resolve(code)));
  });

  after(() => {
    if (launcher.exitCode === null) launcher.kill("SIGKILL");
  });

  async function post(pathname: string, body: unknown, token?: string) {
    const headers: Record<string, string> = { "content-type": "application/json", ...(token ? { "x-access-tokens": token } : {}) };
    const res = await request(`${base}${pathname}`, { method: "POST", headers, body: JSON.stringify(body) });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  }

  /** The demo user's token, as the README shows: the password from the state folder, then a login. */
  async function demoToken(): Promise<string> {
    const secrets = JSON.parse(readFileSync(path.join(stateDir, "demo-secrets.json"), "utf8")) as Record<string, string>;
    const basic = Buffer.from(`demo:${secrets["demo-user-password"]}`).toString("base64");
    const res = await request(`${base}/api/loginUser`, { method: "POST", headers: { authorization: `Basic ${basic}` } });
    return ((await res.body.json()) as { token: string }).token;
  }

  it("serves Node-RED with this package in the palette within 60 s", async () => {
    const modules = await eventually(
      async () => {
        const res = await request(`${base}/nodes`, { headers: { accept: "application/json" } });
        if (res.statusCode !== 200) return res.body.dump().then(() => undefined);
        const list = (await res.body.json()) as Array<{ module: string; types: string[] }>;
        return list.filter((n) => n.module === packageName);
      },
      60_000,
      "GET /nodes to list the package",
    );
    assert.ok(Date.now() - started < 60_000);
    assert.ok(modules.some((m) => m.types.includes("postgres-database")));
    await eventually(() => output.includes("Ctrl-C stops everything"), 60_000, "the flows to be deployed");
  });

  it("runs the out-of-office monitor: POST /monitor, behind a token, watches a user and refuses an unknown one", async () => {
    assert.equal((await post("/monitor", { email: "adele.vance@contoso.test", status: "True" })).status, 401);
    const token = await demoToken();
    const watched = await post("/monitor", { email: "adele.vance@contoso.test", status: "True" }, token);
    assert.equal(watched.status, 200);
    assert.equal(watched.body.displayName, "Adele Vance");
    const unknown = await post("/monitor", { email: "nobody@contoso.test", status: "True" }, token);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, "not-found");
  });

  it("serves the support board's dashboard, and keeps its reports behind the sign-in page", async () => {
    const board = await request(`${base}/dashboard/board`);
    assert.equal(board.statusCode, 200);
    assert.match(await board.body.text(), /<html/i);
    const reports = await request(`${base}/reports`);
    assert.equal(reports.statusCode, 303);
    assert.equal(reports.headers.location, "reports/login");
    await reports.body.dump();
  });

  it("runs the GoTo provisioning: POST /provision with a token creates the user in the sandbox, then finds it unchanged", async () => {
    const token = await demoToken();
    const provision = async () => {
      const res = await request(`${base}/provision`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-access-tokens": token },
        body: JSON.stringify({ email: "start.check@example.com", firstName: "Start", lastName: "Check", licenseKeys: ["7288486601101397002"] }),
      });
      return { status: res.statusCode, body: (await res.body.json()) as any };
    };
    const created = await provision();
    assert.equal(created.status, 200);
    assert.equal(created.body.result, "created");
    assert.match(created.body.userKey, /^\d{19}$/);
    assert.equal((await provision()).body.result, "unchanged");
    const refused = await post("/provision", { email: "start.check@example.com" });
    assert.equal(refused.status, 401);
  });

  it("stops every process it started on Ctrl-C", async () => {
    // Ctrl-C in a terminal signals the whole foreground process group, not only the launcher.
    process.kill(-launcher.pid!, "SIGINT");
    assert.equal(await exited, 0);
    for (const port of Object.values(ports)) assert.ok(await portIsFree(port), `port ${port} is still taken`);
  });

  it("started and stopped quietly: no error, no outbox warning, no lost database connection", () => {
    const noisy = output.split("\n").filter((l) => /\[error\]|could not be opened|database connection lost|ECONNREFUSED/.test(l));
    assert.deepEqual(noisy, []);
  });
});

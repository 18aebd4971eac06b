import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { hashPassword } from "../../src/auth/users";
import { spawn } from "node:child_process";
import { freePort } from "../../src/sandbox/azurite";
import { NodeRedProcess, controls } from "../support/node-red-process";

const TOKEN = "scrape-token-4f1c9e7a2b6d8035";

/** Node-RED with the demo's settings plus `extra` (a settings.js of its own in a fresh user directory). */
async function startWith(extra: string, env: NodeJS.ProcessEnv = {}): Promise<NodeRedProcess> {
  const userDir = mkdtempSync(path.join(os.tmpdir(), "gw-metrics-auth-"));
  const demo = path.join(__dirname, "..", "..", "src", "demo", "settings.js");
  const settings = path.join(userDir, "settings.js");
  writeFileSync(settings, `module.exports = Object.assign({}, require(${JSON.stringify(demo)}), ${extra});`);
  const port = await freePort();
  const red = path.join(path.dirname(require.resolve("node-red/package.json")), "red.js");
  const child = spawn(process.execPath, [red, "--userDir", userDir, "--settings", settings], {
    env: { ...process.env, NODE_RED_PORT: String(port), NODE_RED_CREDENTIAL_SECRET: "test-credential-secret", NODE_RED_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  // /auth/login answers with or without adminAuth (/settings would not, to a stranger).
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await request(`${url}/auth/login`).then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("Node-RED did not start");
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, port, userDir, child, ...controls(child, url) };
}

async function scrape(url: string, bearer?: string): Promise<{ status: number; text: string }> {
  const res = await request(`${url}/gluework/metrics`, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });
  return { status: res.statusCode, text: await res.body.text() };
}

describe("who may scrape the metrics", function () {
  this.timeout(90_000);
  let guarded: NodeRedProcess;
  let tokenOnly: NodeRedProcess;

  before(async () => {
    const hash = await hashPassword("password-123");
    [guarded, tokenOnly] = await Promise.all([
      startWith(
        `{ adminAuth: { type: "credentials", users: [{ username: "reader", password: ${JSON.stringify(hash)}, permissions: "read" }] }, gluework: { metricsToken: ${JSON.stringify(TOKEN)} } }`,
      ),
      // No adminAuth: the token from the environment is then required.
      startWith("{}", { GLUEWORK_METRICS_TOKEN: TOKEN }),
    ]);
  });
  after(async () => {
    await Promise.all([guarded?.stop(), tokenOnly?.stop()]);
  });

  it("refuses a scrape without credentials when adminAuth is set", async () => {
    assert.equal((await scrape(guarded.url)).status, 401);
  });

  it("serves Prometheus text to the bearer token from the settings", async () => {
    const res = await scrape(guarded.url, TOKEN);
    assert.equal(res.status, 200);
    assert.match(res.text, /^# TYPE gluework_pipeline_runs_total counter$/m);
    assert.match(res.text, /^gluework_instance_info\{replica=".+ pid \d+"\} 1$/m);
  });

  it("refuses a wrong token, and one that differs only in its last character", async () => {
    assert.equal((await scrape(guarded.url, "not-the-token")).status, 401);
    assert.equal((await scrape(guarded.url, `${TOKEN.slice(0, -1)}x`)).status, 401);
    assert.equal((await scrape(guarded.url, `${TOKEN}${TOKEN}`)).status, 401);
  });

  it("serves an editor login that may read the flows", async () => {
    const res = await request(`${guarded.url}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_id: "node-red-editor", grant_type: "password", scope: "read", username: "reader", password: "password-123" }),
    });
    const { access_token } = (await res.body.json()) as { access_token: string };
    const answer = await scrape(guarded.url, access_token);
    assert.equal(answer.status, 200, answer.text);
  });

  it("requires the token set in the environment when there is no adminAuth", async () => {
    assert.equal((await scrape(tokenOnly.url)).status, 401);
    assert.equal((await scrape(tokenOnly.url, "wrong")).status, 401);
    assert.equal((await scrape(tokenOnly.url, TOKEN)).status, 200);
  });
});

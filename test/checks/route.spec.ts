import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { freePort } from "../../src/sandbox/azurite";

/** A Node-RED process with adminAuth: a reader, and an editor who may change flows. */
describe("connection test route with adminAuth", function () {
  this.timeout(90_000);
  let child: ChildProcess;
  let url: string;

  before(async () => {
    const port = await freePort();
    const userDir = mkdtempSync(path.join(os.tmpdir(), "gw-auth-"));
    const hash = await hashPassword("password-123");
    const settings = path.join(userDir, "settings.js");
    const demo = path.join(__dirname, "..", "..", "src", "demo", "settings.js");
    writeFileSync(
      settings,
      `module.exports = Object.assign({}, require(${JSON.stringify(demo)}), { adminAuth: { type: "credentials", users: [` +
        `{ username: "reader", password: ${JSON.stringify(hash)}, permissions: "read" },` +
        `{ username: "editor", password: ${JSON.stringify(hash)}, permissions: "*" }] } });`,
    );
    const red = path.join(path.dirname(require.resolve("node-red/package.json")), "red.js");
    child = spawn(process.execPath, [red, "--userDir", userDir, "--settings", settings], {
      env: { ...process.env, NODE_RED_PORT: String(port), NODE_RED_CREDENTIAL_SECRET: "test-credential-secret", NODE_RED_LOG_LEVEL: "warn" },
      stdio: ["ignore", "inherit", "inherit"],
    });
    url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await request(`${url}/auth/login`).then(async (r) => (await r.body.dump(), r.statusCode === 200), () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error("Node-RED did not start");
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  after(() => {
    child?.kill("SIGKILL");
  });

  async function token(username: string): Promise<string> {
    const res = await request(`${url}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_id: "node-red-editor", grant_type: "password", scope: "*", username, password: "password-123" }),
    });
    const body = (await res.body.json()) as { access_token: string };
    return body.access_token;
  }

  async function press(bearer?: string): Promise<number> {
    const res = await request(`${url}/gluework/connection-test/jwt-auth-key`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify({ id: "k1", config: { algorithm: "HS256" }, credentials: { secret: generateSecret() } }),
    });
    await res.body.dump();
    return res.statusCode;
  }

  it("refuses a request without a token", async () => {
    assert.equal(await press(), 401);
  });

  it("refuses a user who may only read", async () => {
    assert.equal(await press(await token("reader")), 401);
  });

  it("answers a user who may change the node", async () => {
    assert.equal(await press(await token("editor")), 200);
  });
});

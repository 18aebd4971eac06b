import assert from "node:assert/strict";
import { request } from "undici";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";

const AUTH_HOST = "http://127.0.0.1:9/goto-auth";
const REDIRECT = "http://127.0.0.1:1880/gluework/oauth/callback";

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(url, { method: (init.method ?? "GET") as "GET", headers: init.headers, body: init.body, headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

describe("security: the package's routes answer every request and keep Node-RED up", function () {
  this.timeout(120_000);
  let red: NodeRedProcess;
  const secret = generateSecret();
  let flow: Array<Record<string, unknown>>;

  before(async () => {
    red = await startNodeRed({ env: { NODE_RED_LOG_LEVEL: process.env.GW_LOG ?? "warn" } });
    flow = [
      { id: "tab", type: "tab", label: "routes" },
      { id: "goto", type: "goto-credentials", name: "Main", authHost: AUTH_HOST, redirectUri: REDIRECT, store: "file", credentials: { clientId: "goto-client", clientSecret: "goto-secret-0123456789" } },
      { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30", credentials: { secret, users: `promon:${await hashPassword("correct horse battery", 4)}` } },
      { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/test", method: "get", wires: [["verify"]] },
      { id: "verify", type: "jwt-auth", z: "tab", x: 300, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["ok"], ["res"]] },
      { id: "ok", type: "change", z: "tab", x: 500, y: 100, rules: [{ t: "set", p: "payload", pt: "msg", to: "Authorized", tot: "str" }], wires: [["res"]] },
      { id: "res", type: "http response", z: "tab", x: 700, y: 100, wires: [] },
      { id: "in-login", type: "http in", z: "tab", x: 100, y: 200, url: "/api/login", method: "post", wires: [["login"]] },
      { id: "login", type: "jwt-auth", z: "tab", x: 300, y: 200, key: "key", mode: "login", wires: [["res"], ["res"]] },
    ];
    await red.deploy(flow);
    // The deploy answers before the flows have started.
    await eventually(async () => (await call(`${red.url}/api/test`)).status === 401, 20_000, "the flows to start");
  });
  after(() => red?.stop());

  async function alive(): Promise<void> {
    assert.equal(red.child.exitCode, null, "Node-RED is still running");
    assert.equal((await call(`${red.url}/settings`)).status, 200, "Node-RED still answers");
  }

  async function startAuthorization(): Promise<{ state: string; authorizeUrl: string }> {
    // The request also names another auth host and redirect URI: they must be ignored.
    const res = await call(`${red.url}/gluework/oauth/goto-credentials/start`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ nodeId: "goto", clientId: "goto-client", clientSecret: "goto-secret-0123456789", authHost: "http://127.0.0.1:9/attacker", redirectUri: "http://127.0.0.1:9/steal" }),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  }

  it("answers an OAuth callback whose fields are arrays or objects with 400, and Node-RED keeps running", async () => {
    const attacks = ["error[a]=1", "error[]=x&error[]=y", "code[a]=1", "code[]=1&code[]=2", "state[]=x", "error[a][b][c]=1", "error=%00%0d%0a<script>"];
    for (const attack of attacks) {
      const { state } = await startAuthorization();
      const res = await call(`${red.url}/gluework/oauth/callback?state=${encodeURIComponent(state)}&${attack}`);
      assert.ok(res.status >= 400 && res.status < 500, `${attack}: ${res.status}`);
      assert.doesNotMatch(res.text, /<script>/);
      await alive();
    }
    const arrayState = await call(`${red.url}/gluework/oauth/callback?state[]=a&state[]=b&code=x`);
    assert.equal(arrayState.status, 400);
    await alive();
  });

  it("starts an authorization with the deployed node's auth host and redirect URI, not the request's", async () => {
    const { authorizeUrl } = await startAuthorization();
    const url = new URL(authorizeUrl);
    assert.equal(`${url.origin}${url.pathname}`, `${AUTH_HOST}/oauth/authorize`);
    assert.equal(url.searchParams.get("redirect_uri"), REDIRECT);
  });

  it("answers 200 tokens whose header holds CR/LF with 401, naming neither their algorithm nor the key's", async () => {
    const header = (alg: string) => Buffer.from(JSON.stringify({ alg, typ: "JWT" })).toString("base64url");
    const body = Buffer.from(JSON.stringify({ sub: "promon", iss: "node-red", aud: "api", exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url");
    const algs = ["HS256\r\nX-Injected: 1", "none\r\n", "RS256\n", "\r\n\r\nHTTP/1.1 200 OK", "HS512"];
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => call(`${red.url}/api/test`, { headers: { "x-access-tokens": `${header(algs[i % algs.length]!)}.${body}.c2ln` } })),
    );
    for (const res of answers) {
      assert.equal(res.status, 401);
      assert.doesNotMatch(res.text, /HS256|HS512|RS256|none|Injected/);
      assert.doesNotMatch(String(res.headers["www-authenticate"]), /HS256|HS512|RS256|none|Injected|[\r\n]/);
      assert.equal(res.headers["x-injected"], undefined);
    }
    await alive();
  });

  it("lists a key node's users by name, without their hashes, and keeps an unchanged password through the dialog", async () => {
    const res = await call(`${red.url}/gluework/jwt-auth-key/key/users`);
    assert.equal(res.status, 200);
    assert.doesNotMatch(res.text, /\$2[aby]\$/, "a bcrypt hash was sent");
    const users = JSON.parse(res.text).users as Array<{ name: string; kept: string }>;
    assert.deepEqual(users.map((u) => u.name), ["promon"]);
    // What the dialog saves for a user whose password did not change: the sealed value as given.
    await red.deploy(flow.map((n) => (n.id === "key" ? { ...n, credentials: { secret, users: `promon:${users[0]!.kept}` } } : n)));
    await eventually(async () => {
      const login = await call(`${red.url}/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "promon", password: "correct horse battery" }) });
      return login.status === 200;
    }, 20_000, "a login with the kept password");
  });

  it("keeps an unchanged password through a restart of a Node-RED without a credential secret", async () => {
    const env = { NODE_RED_CREDENTIAL_SECRET: "false", NODE_RED_LOG_LEVEL: process.env.GW_LOG ?? "warn" };
    let plain = await startNodeRed({ env });
    const login = async () => {
      const res = await call(`${plain.url}/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "promon", password: "correct horse battery" }) });
      return res.status === 200;
    };
    try {
      await plain.deploy(flow);
      await eventually(login, 20_000, "a login with the typed password");
      const users = JSON.parse((await call(`${plain.url}/gluework/jwt-auth-key/key/users`)).text).users as Array<{ name: string; kept: string }>;
      await plain.deploy(flow.map((n) => (n.id === "key" ? { ...n, credentials: { secret, users: `promon:${users[0]!.kept}` } } : n)));
      await eventually(login, 20_000, "a login with the kept password");
      await plain.stop();
      plain = await startNodeRed({ env, userDir: plain.userDir });
      await eventually(login, 20_000, "a login with the kept password after the restart");
    } finally {
      await plain.stop();
    }
  });
});

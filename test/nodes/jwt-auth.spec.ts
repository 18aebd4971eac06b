import { promises as fs } from "node:fs";
import path from "node:path";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import bcrypt from "bcryptjs";
import jwt from "jsonwebtoken";
import { request } from "undici";
import jwtAuth from "../../src/nodes/jwt-auth";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import { generateSecret, hmacSecret } from "../../src/auth/keys";
import { eventually, nodeRed } from "../support/node-red";
import { HttpNodeServer, coreNode } from "../support/http-nodes";

const helper = nodeRed();

describe("jwt-auth node", () => {
  const http = new HttpNodeServer();
  const secret = generateSecret();
  const key = hmacSecret(secret);
  const credentials = { key: { secret, users: `promon:${bcrypt.hashSync("correct horse battery", 4)}` } };
  const nodes = [jwtAuth, jwtAuthKey, coreNode("network/21-httpin.js"), coreNode("function/15-change.js"), http.capture];
  const authorized = (id: string, z = "tab") => ({ id, type: "change", z, x: 500, y: 100, rules: [{ t: "set", p: "payload", pt: "msg", to: "Authorized", tot: "str" }], wires: [["res"]] });
  const flow = [
    { id: "tab", type: "tab", label: "auth" },
    { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30" },
    { id: "in-login", type: "http in", z: "tab", x: 100, y: 100, url: "/api/loginUser", method: "post", wires: [["login"]] },
    { id: "login", type: "jwt-auth", z: "tab", x: 300, y: 100, key: "key", mode: "login", lifetime: "7d", wires: [["res"], ["res"]] },
    { id: "in-test", type: "http in", z: "tab", x: 100, y: 200, url: "/api/test", method: "get", wires: [["verify"]] },
    { id: "verify", type: "jwt-auth", z: "tab", x: 300, y: 200, key: "key", mode: "verify", fromHeader: true, fromBearer: true, fromCookie: false, wires: [["ok"], ["res"]] },
    authorized("ok"),
    { id: "in-form", type: "http in", z: "tab", x: 100, y: 300, url: "/reports/login", method: "post", wires: [["form-login"]] },
    { id: "form-login", type: "jwt-auth", z: "tab", x: 300, y: 300, key: "key", mode: "login", audience: "reports", lifetime: "12h", setCookie: true, cookieName: "session", sameSite: "strict", cookieSecure: false, wires: [["res"], ["res"]] },
    { id: "in-reports", type: "http in", z: "tab", x: 100, y: 400, url: "/reports", method: "get", wires: [["cookie-verify"]] },
    { id: "cookie-verify", type: "jwt-auth", z: "tab", x: 300, y: 400, key: "key", mode: "verify", audience: "reports", fromHeader: false, fromBearer: false, fromCookie: true, cookieName: "session", wires: [["reports-ok"], ["res"]] },
    authorized("reports-ok"),
    { id: "res", type: "http response", z: "tab", x: 700, y: 100, wires: [] },
    { id: "catch", type: "catch", z: "tab", x: 100, y: 600, scope: null, uncaught: false, wires: [["caught"]] },
    { id: "caught", type: "helper", z: "tab", x: 300, y: 600, wires: [] },
  ];
  let caught: any[];

  before(() => http.listen());
  after(() => http.close());
  beforeEach(async () => {
    // Failed logins are counted in the user directory across loads: each test starts with none.
    await fs.rm(path.join(String((helper as any)._settings.userDir), "gluework", "login-throttle.json"), { force: true });
    await helper.load(nodes, flow, credentials);
    caught = [];
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
  });
  afterEach(() => helper.unload());

  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
  async function call(method: "GET" | "POST", path: string, headers: Record<string, string> = {}, body?: unknown) {
    const res = await request(`${http.url}${path}`, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, text, json };
  }
  async function token(): Promise<string> {
    const res = await call("POST", "/api/loginUser", { authorization: basic("promon", "correct horse battery") });
    assert.equal(res.status, 200, res.text);
    return res.json.token;
  }

  it("logs in with HTTP Basic and answers { token, expiresIn }; the token opens /api/test from x-access-tokens or Bearer", async () => {
    const res = await call("POST", "/api/loginUser", { authorization: basic("promon", "correct horse battery") });
    assert.equal(res.status, 200);
    assert.equal(res.json.expiresIn, 7 * 86_400);
    const claims = jwt.verify(res.json.token, key, { algorithms: ["HS256"] }) as jwt.JwtPayload;
    assert.deepEqual([claims.sub, claims.iss, claims.aud, claims.exp! - claims.iat!], ["promon", "node-red", "api", 604_800]);
    for (const headers of [{ "x-access-tokens": res.json.token as string }, { authorization: `Bearer ${res.json.token}` }] as Array<Record<string, string>>) {
      const test = await call("GET", "/api/test", headers);
      assert.equal(test.status, 200);
      assert.equal(test.text, "Authorized");
    }
  });

  it("logs in from a JSON body too", async () => {
    const res = await call("POST", "/api/loginUser", {}, { username: "promon", password: "correct horse battery" });
    assert.equal(res.status, 200);
    assert.ok(res.json.token);
  });

  it("refuses a wrong password with 401 and a Basic challenge, then slows that user down with 429 and Retry-After", async () => {
    const wrong = await call("POST", "/api/loginUser", { authorization: basic("promon", "12345") });
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.json, { message: "wrong username or password" });
    assert.match(String(wrong.headers["www-authenticate"]), /^Basic realm=/);
    const unknown = await call("POST", "/api/loginUser", { authorization: basic("nobody", "12345") });
    assert.equal(unknown.status, 401, "an unknown user gets the same answer, not a 500");
    assert.deepEqual(unknown.json, { message: "wrong username or password" });
    for (let i = 0; i < 3; i++) await call("POST", "/api/loginUser", { authorization: basic("promon", "12345") });
    const slowed = await call("POST", "/api/loginUser", { authorization: basic("promon", "correct horse battery") });
    assert.equal(slowed.status, 429);
    assert.equal(slowed.headers["retry-after"], "1");
    assert.match(slowed.json.message, /^too many failed logins: try again in 1 s$/);
    assert.equal(caught.length, 0);
  });

  describe("refuses a bad token on /api/test with 401 and a short reason, and the flow goes on", () => {
    const now = () => Math.floor(Date.now() / 1000);
    const sign = (claims: object, options: jwt.SignOptions = {}, k: jwt.Secret = key) =>
      jwt.sign({ sub: "promon", iat: now(), ...claims }, k, { algorithm: "HS256", issuer: "node-red", audience: "api", ...options });
    const cases: Array<[string, () => Record<string, string>, string]> = [
      ["a missing header", () => ({}), "token missing"],
      [
        "alg: none",
        () => ({ "x-access-tokens": `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(JSON.stringify({ sub: "promon", iss: "node-red", aud: "api", exp: now() + 600 })).toString("base64url")}.` }),
        "invalid signature",
      ],
      ["an expired token", () => ({ "x-access-tokens": sign({ exp: now() - 120 }) }), "token expired"],
      ["a wrong signature", () => ({ "x-access-tokens": sign({ exp: now() + 600 }, {}, randomBytes(32)) }), "invalid signature"],
      ["a wrong audience", () => ({ authorization: `Bearer ${sign({ exp: now() + 600 }, { audience: "reports" })}` }), "wrong audience"],
      ["a token without exp", () => ({ "x-access-tokens": sign({}) }), "token has no expiry (exp)"],
    ];
    for (const [what, headers, reason] of cases) {
      it(what, async () => {
        const res = await call("GET", "/api/test", headers());
        assert.equal(res.status, 401);
        assert.deepEqual(res.json, { message: reason });
        assert.match(String(res.headers["www-authenticate"]), /^Bearer/);
        assert.equal((await call("GET", "/api/test", { "x-access-tokens": await token() })).text, "Authorized", "a good token still works");
        assert.equal(caught.length, 0, "nothing reached the Catch node");
      });
    }
  });

  it("logs a browser in with an HttpOnly SameSite cookie that the reports page verifies, and keeps API and browser tokens apart", async () => {
    const login = await call("POST", "/reports/login", {}, { username: "promon", password: "correct horse battery" });
    assert.equal(login.status, 200);
    const cookie = String(login.headers["set-cookie"]);
    assert.match(cookie, /^session=[\w-]+\.[\w-]+\.[\w-]+; Max-Age=43200; Path=\/; Expires=.+; HttpOnly; SameSite=Strict$/);
    const session = cookie.split(";")[0]!;
    const page = await call("GET", "/reports", { cookie: session });
    assert.equal(page.status, 200);
    assert.equal(page.text, "Authorized");
    const apiToken = await token();
    assert.deepEqual((await call("GET", "/reports", { cookie: `session=${apiToken}` })).json, { message: "wrong audience" });
    assert.deepEqual((await call("GET", "/api/test", { "x-access-tokens": session.split("=")[1]! })).json, { message: "wrong audience" });
    assert.deepEqual((await call("GET", "/reports", { "x-access-tokens": apiToken })).json, { message: "token missing" }, "the reports page reads only its cookie");
  });

  it("makes the cookie Secure when the login came over HTTPS through a proxy, though the node does not ask for it", async () => {
    const login = await call("POST", "/reports/login", { "x-forwarded-proto": "https" }, { username: "promon", password: "correct horse battery" });
    assert.equal(login.status, 200);
    assert.match(String(login.headers["set-cookie"]), /; Secure/);
    const plain = await call("POST", "/reports/login", {}, { username: "promon", password: "correct horse battery" });
    assert.doesNotMatch(String(plain.headers["set-cookie"]), /Secure/);
  });

  it("puts msg.user on the authorized message", async () => {
    const t = await token();
    const verify = helper.getNode("verify");
    const out = new Promise<any>((resolve) => helper.getNode("ok").on("input", resolve));
    verify.receive({ req: { headers: { "x-access-tokens": t } }, payload: {} });
    const msg = await out;
    assert.equal(msg.user.username, "promon");
    assert.ok(Date.parse(msg.user.expiresAt) > Date.now());
  });

  it("refuses a weak secret with a message that says why, and its requests reach the Catch node", async () => {
    await helper.unload();
    await helper.load(nodes, flow, { key: { secret: "secret", users: credentials.key.users } });
    caught = [];
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
    const keyNode = helper.getNode("key");
    assert.ok(keyNode.error.calledWithMatch(/the secret is 4 bytes; HS256 needs at least 32 random bytes/));
    helper.getNode("verify").receive({ req: { headers: {} }, payload: {} });
    await eventually(() => caught.length === 1, 5000, "the Catch node");
    assert.match(caught[0].error.message, /at least 32 random bytes/);
  });
});

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { request } from "undici";
import { generateSecret, hmacSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";

// Far below the 200 s a caller waited before: an answer that takes longer counts as none.
const PROMPT_MS = 10_000;

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
  const res = await request(url, { method: (init.method ?? "GET") as "GET", headers: init.headers, body: init.body, headersTimeout: PROMPT_MS, bodyTimeout: PROMPT_MS });
  return { status: res.statusCode, text: await res.body.text() };
}

/**
 * The shipped flows' HTTP routes as an imported example has them (no key secret yet): each route,
 * its jwt-auth node and what answers the caller, without the pipelines behind them.
 */
function shippedRoutes(): { flow: Array<Record<string, any>>; routes: Array<{ method: string; url: string; mode: string }> } {
  const keep = new Set(["tab", "http in", "http response", "jwt-auth", "jwt-auth-key", "change", "template", "switch"]);
  const dir = path.join(__dirname, "..", "..", "..", "flows");
  const all = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Array<Record<string, any>>);
  const flow = all.filter((n) => keep.has(n.type)).map((n) => ({ ...n }));
  const ids = new Set(flow.map((n) => n.id));
  for (const n of flow) {
    if (n.wires) n.wires = n.wires.map((out: string[]) => out.filter((id) => ids.has(id)));
    if (n.type === "jwt-auth-key") delete n.database;
  }
  const byId = new Map(flow.map((n) => [n.id, n]));
  const routes = flow
    .filter((n) => n.type === "http in")
    .flatMap((n) => guards(n).map((t: any) => ({ method: n.method.toUpperCase(), url: n.url, mode: t.mode })));
  return { flow, routes };

  /** The jwt-auth nodes a route reaches, through the change nodes some routes pass first (the request id from Idempotency-Key). */
  function guards(n: Record<string, any>, depth = 0): Array<Record<string, any>> {
    const next = (n.wires ?? []).flat().map((id: string) => byId.get(id)).filter(Boolean) as Array<Record<string, any>>;
    return next.flatMap((t) => (t.type === "jwt-auth" ? [t] : t.type === "change" && depth < 3 ? guards(t, depth + 1) : []));
  }
}

describe("security: every request to a JWT-protected route gets a prompt answer", function () {
  this.timeout(180_000);
  let red: NodeRedProcess;

  before(async () => {
    red = await startNodeRed({ env: { NODE_RED_LOG_LEVEL: process.env.GW_LOG ?? "warn" } });
  });
  after(() => red?.stop());

  async function alive(): Promise<void> {
    assert.equal(red.child.exitCode, null, "Node-RED is still running");
    assert.equal((await call(`${red.url}/settings`)).status, 200, "Node-RED still answers");
  }

  it("answers every shipped route at once with 503 and the reason while its key node has no secret", async () => {
    const { flow, routes } = shippedRoutes();
    assert.ok(routes.length >= 9, `found ${routes.length} protected routes`);
    for (const url of ["/api/test", "/api/placeMessage", "/api/loginUser", "/provision", "/monitor", "/reports", "/reports/file"]) {
      assert.ok(routes.some((r) => r.url === url), `the shipped flows protect ${url}`);
    }
    await red.deploy(flow);
    await eventually(async () => (await call(`${red.url}/api/test`).catch(() => ({ status: 0 }))).status === 503, 30_000, "the flows to start");
    const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    for (const { method, url, mode } of routes) {
      const asks: Array<Record<string, string>> = [{}, { authorization: `Bearer ${token}` }, { "x-access-tokens": token }, { cookie: `reports_token=${token}` }];
      for (const headers of asks) {
        const body = method === "GET" ? undefined : JSON.stringify({ username: "demo", password: "long enough password", message: "hi" });
        const res = await call(`${red.url}${url}`, { method, headers: { ...headers, ...(body ? { "content-type": "application/json" } : {}) }, body });
        if (url === "/reports") {
          // The shipped reports page sends every refused visitor to its sign-in page.
          assert.equal(res.status, 303, `${method} ${url}`);
          continue;
        }
        assert.equal(res.status, 503, `${method} ${url} (${mode}) ${JSON.stringify(headers)}: ${res.text}`);
        // JSON from the API routes, the sign-in page (HTML) for the reports.
        assert.match(res.text, /the jwt-auth key node (\\"|&quot;)[^"&\\]+(\\"|&quot;) has no secret: set it and deploy/, `${method} ${url}: ${res.text}`);
      }
    }
    await alive();
  });

  describe("with a key that has a secret", () => {
    const secret = generateSecret();
    const sign = (payload: unknown, header: unknown = { alg: "HS256", typ: "JWT" }) => {
      const part = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
      const unsigned = `${part(header)}.${part(payload)}`;
      return `${unsigned}.${createHmac("sha256", hmacSecret(secret)).update(unsigned).digest("base64url")}`;
    };
    const now = () => Math.floor(Date.now() / 1000);

    before(async () => {
      await red.deploy([
        { id: "tab", type: "tab", label: "answers" },
        { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30", credentials: { secret, users: `promon:${await hashPassword("correct horse battery", 4)}` } },
        { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/test", method: "get", wires: [["verify"]] },
        { id: "verify", type: "jwt-auth", z: "tab", x: 100, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["ok"], ["res"]] },
        { id: "ok", type: "change", z: "tab", x: 100, y: 100, rules: [{ t: "set", p: "payload", pt: "msg", to: "user", tot: "msg" }], wires: [["res"]] },
        { id: "res", type: "http response", z: "tab", x: 100, y: 100, wires: [] },
        { id: "in-login", type: "http in", z: "tab", x: 100, y: 100, url: "/api/login", method: "post", wires: [["login"]] },
        { id: "login", type: "jwt-auth", z: "tab", x: 100, y: 100, key: "key", mode: "login", wires: [["res"], ["res"]] },
      ]);
      await eventually(async () => (await call(`${red.url}/api/test`).catch(() => ({ status: 0 }))).status === 401, 30_000, "the flows to start");
    });

    it("accepts a well-formed token (the baseline the refusals are measured against)", async () => {
      const res = await call(`${red.url}/api/test`, { headers: { authorization: `Bearer ${sign({ sub: "promon", iss: "node-red", aud: "api", iat: now(), exp: now() + 600 })}` } });
      assert.equal(res.status, 200, res.text);
      assert.equal(JSON.parse(res.text).username, "promon");
    });

    const odd: Array<[string, Record<string, unknown>]> = [
      ["exp 1e300", { exp: 1e300 }],
      ["exp 1e16", { exp: 1e16 }],
      ["exp -1e300", { exp: -1e300 }],
      ["exp as a string", { exp: "1e300" }],
      ["exp true", { exp: true }],
      ["nbf 1e300", { nbf: 1e300 }],
      ["nbf -1e300", { nbf: -1e300 }],
      ["nbf as a string", { nbf: "soon" }],
      ["iat 1e300", { iat: 1e300 }],
      ["iat -1e300", { iat: -1e300 }],
      ["iat as an object", { iat: { a: 1 } }],
      ["sub as an object", { sub: { a: 1 } }],
      ["aud as an object", { aud: { a: 1 } }],
      ["iss as a number", { iss: 1e300 }],
    ];
    for (const [what, claims] of odd) {
      it(`answers a rightly signed token with ${what} with 401 at once`, async () => {
        const token = sign({ sub: "promon", iss: "node-red", aud: "api", iat: now(), exp: now() + 600, ...claims });
        for (let i = 0; i < 2; i++) {
          // Twice: the second answer comes from the cache of verified tokens, when there is one.
          const res = await call(`${red.url}/api/test`, { headers: { authorization: `Bearer ${token}` } });
          assert.equal(res.status, 401, `${what}: ${res.status} ${res.text}`);
        }
        await alive();
      });
    }

    const logins: Array<[string, Record<string, string>, string]> = [
      ["JSON that does not parse", { "content-type": "application/json" }, "{"],
      ["JSON null", { "content-type": "application/json" }, "null"],
      ["a JSON number", { "content-type": "application/json" }, "1e300"],
      ["a JSON array", { "content-type": "application/json" }, "[1,2]"],
      ["fields that are objects", { "content-type": "application/json" }, JSON.stringify({ username: { a: 1 }, password: ["x"] })],
      ["a form with array fields", { "content-type": "application/x-www-form-urlencoded" }, "username[]=a&username[]=b&password[x]=y"],
      ["XML", { "content-type": "application/xml" }, "<a/>"],
      ["an unknown type", { "content-type": "application/x-odd" }, "\u0000\u0001"],
      ["plain text", { "content-type": "text/plain" }, "demo:password"],
      ["Basic with no colon", { authorization: `Basic ${Buffer.from("nocolon").toString("base64")}` }, ""],
      ["Basic that is not base64", { authorization: "Basic ***" }, ""],
    ];
    for (const [what, headers, body] of logins) {
      it(`answers a login with ${what} with a 4xx at once`, async () => {
        const res = await call(`${red.url}/api/login`, { method: "POST", headers, body });
        assert.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} ${res.text}`);
        await alive();
      });
    }
  });
});

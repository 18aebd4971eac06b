import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

/** What a stranger may send: every JSON shape, huge and deep ones included. */
function fuzzBodies(): Array<[string, string]> {
  const deep = (n: number, open: string, close: string, inner = "1") => open.repeat(n) + inner + close.repeat(n);
  return [
    ["null", "null"],
    ["a number", "42"],
    ["a negative float", "-1.5e308"],
    ["an empty string", '""'],
    ["a string", '"connections"'],
    ["a 100 kB string", JSON.stringify("x".repeat(100_000))],
    ["true", "true"],
    ["an empty array", "[]"],
    ["an array of mixed things", JSON.stringify([null, 5, "x", {}, [], true])],
    ["a 100,000-item array", JSON.stringify(Array.from({ length: 100_000 }, (_, i) => i))],
    ["an empty object", "{}"],
    ["an object of wrong types", JSON.stringify({ action: 5, main: [], sub: {}, user: null, message: [1], status: {}, alerts: "x", to: ["a", 1], username: [], password: {}, rows: 5, date: {}, name: ["../x"] })],
    ["5,000-deep arrays", deep(5000, "[", "]")],
    ["5,000-deep objects", deep(5000, '{"a":', "}")],
  ];
}

const TOPICS = [undefined, "connections", "users", "reload", "outbox:list", "outbox:delete", "outbox:retry", "outbox:status", "outbox:explode", "sync", "", "x".repeat(10_000)];

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<number> {
  const res = await request(url, { method: (init.method ?? "GET") as "GET", headers: init.headers, body: init.body, headersTimeout: 15_000, bodyTimeout: 15_000 });
  await res.body.dump();
  return res.statusCode;
}

describe("security: fuzzing every node and every route of the package", function () {
  this.timeout(600_000);
  let db: TestDatabase;
  let red: NodeRedProcess;
  // A flow node of each type: reached by POST /fuzz/<type> (the body, JSON-parsed, is msg.payload;
  // ?topic= is msg.topic). Its outputs, a Catch and a Complete node on it all answer the request.
  const targets: Array<Record<string, unknown>> = [
    // The nodes a shipped flow puts between a stranger and an HTTP answer must answer everything
    // (the relay's outbox:* commands come from the flow's own inject nodes, not from a request).
    { type: "connection-board", database: "db", board: "fuzz", policy: "takeover", connections: "a;b", boardUsers: "Burt", outputs: 3, topics: true },
    { type: "mail-relay", smtp: "smtp", database: "db", to: "ops@example.com", allowed: "@example.com", maxKiB: "256", retries: "0", outputs: 3, answers: true, topics: true },
    { type: "jwt-auth", key: "key", mode: "login", outputs: 2, answers: true },
    { type: "jwt-auth", key: "key", mode: "verify", fromHeader: true, fromBearer: true, outputs: 2, name: "verify", answers: true },
    // The others talk to servers that are not there here; they must not stop Node-RED.
    { type: "blob-csv-writer", target: "folder", folder: "", path: "fuzz/{yyyy}.csv", mode: "append", columns: "a,b", outputs: 1 },
    { type: "blob-csv-reader", target: "folder", folder: "", prefix: "fuzz/", action: "read", maxSize: "1", outputs: 2 },
    { type: "goto-call-logs", goto: "goto", outputs: 1 },
    { type: "goto-provision-user", goto: "goto", action: "item", outputs: 2 },
    { type: "graph-ooo-status", app: "graph", database: "db", users: "", interval: "60", outputs: 2 },
    { type: "teamleader-oauth", connection: "tl", outputs: 2 },
    { type: "teamleader-query", connection: "tl", mode: "call", endpoint: "users.me", outputs: 1 },
  ];

  before(async () => {
    db = await createTestDatabase();
    const folder = mkdtempSync(path.join(os.tmpdir(), "gw-fuzz-"));
    red = await startNodeRed();
    const secret = generateSecret();
    const flow: Array<Record<string, unknown>> = [
      { id: "tab", type: "tab", label: "fuzz" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: db.name, ssl: "disable", poolSize: "4", credentials: { url: db.url } },
      { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30", database: "db", credentials: { secret, users: `promon:${await hashPassword("correct horse battery", 4)}` } },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: "9", security: "none", auth: "none", sender: "relay@example.com", poolSize: "1" },
      { id: "goto", type: "goto-credentials", authHost: "http://127.0.0.1:9", apiHost: "http://127.0.0.1:9", redirectUri: "http://127.0.0.1:1880/gluework/oauth/callback", store: "file", credentials: { clientId: "c", clientSecret: "s" } },
      { id: "graph", type: "graph-app", tenantId: "t", clientId: "c", authType: "secret", authorityHost: "http://127.0.0.1:9", graphUrl: "http://127.0.0.1:9", credentials: { clientSecret: "s" } },
      { id: "tl", type: "teamleader-connection", authHost: "http://127.0.0.1:9", apiHost: "http://127.0.0.1:9", redirectUri: "http://127.0.0.1:1880/tl/callback", store: "file", credentials: { clientId: "c", clientSecret: "s" } },
    ];
    targets.forEach((t, i) => {
      const { outputs, answers: _answers, topics: _topics, ...settings } = t;
      const id = `target${i}`;
      const y = 100 * (i + 1);
      const folderSetting = settings.target === "folder" ? { folder } : {};
      flow.push(
        { id: `in${i}`, type: "http in", z: "tab", x: 100, y, url: `/fuzz/${i}`, method: "post", wires: [[`json${i}`]] },
        { id: `json${i}`, type: "json", z: "tab", x: 200, y, property: "payload", action: "obj", pretty: false, wires: [[`topic${i}`]] },
        { id: `topic${i}`, type: "change", z: "tab", x: 300, y, rules: [{ t: "set", p: "topic", pt: "msg", to: "req.query.topic", tot: "msg" }], wires: [[id]] },
        { id, type: t.type, z: "tab", x: 400, y, ...settings, ...folderSetting, wires: Array.from({ length: Number(outputs) }, () => [`answer${i}`]) },
        { id: `catch${i}`, type: "catch", z: "tab", x: 400, y: y + 40, scope: [id, `json${i}`, `topic${i}`], uncaught: false, wires: [[`answer${i}`]] },
        { id: `complete${i}`, type: "complete", z: "tab", x: 400, y: y + 60, scope: [id], uncaught: false, wires: [[`answer${i}`]] },
        // Whatever came out, as text: the http response node cannot send every payload (true, say).
        { id: `answer${i}`, type: "change", z: "tab", x: 500, y, rules: [{ t: "set", p: "payload", pt: "msg", to: "answered", tot: "str" }], wires: [[`res${i}`]] },
        { id: `res${i}`, type: "http response", z: "tab", x: 600, y, wires: [] },
      );
    });
    await red.deploy(flow);
    await eventually(async () => (await call(`${red.url}/fuzz/0`, { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" })) !== 404, 30_000, "the flows to start");
  });
  after(async () => {
    await red?.stop();
    await db?.drop();
  });

  async function alive(): Promise<void> {
    assert.equal(red.child.exitCode, null, "Node-RED is still running");
    assert.equal(await call(`${red.url}/settings`), 200, "Node-RED still answers");
  }

  it("answers every body and topic sent to every node, and Node-RED stays up", async () => {
    const unanswered: string[] = [];
    for (const [index, target] of targets.entries()) {
      const topics = target.topics ? TOPICS : [undefined];
      await Promise.all(
        topics.flatMap((topic) =>
          fuzzBodies().map(async ([what, body]) => {
            const query = topic === undefined ? "" : `?topic=${encodeURIComponent(topic)}`;
            try {
              await call(`${red.url}/fuzz/${index}${query}`, { method: "POST", headers: { "content-type": "text/plain" }, body });
            } catch (err) {
              const command = typeof topic === "string" && topic.startsWith("outbox:");
              if (target.answers && !command) unanswered.push(`${String(target.type)} ${String(target.mode ?? "")} topic ${String(topic).slice(0, 20)}: ${what} (${(err as Error).message})`);
            }
          }),
        ),
      );
      await alive();
    }
    assert.deepEqual(unanswered, []);
  });

  it("answers every request to every route the package registers, below 500, and Node-RED stays up", async () => {
    const routes: Array<{ method: "GET" | "POST"; path: string }> = [
      { method: "POST", path: "/gluework/oauth/goto-credentials/start" },
      { method: "GET", path: "/gluework/oauth/goto-credentials/result/x" },
      { method: "GET", path: "/gluework/oauth/callback" },
      { method: "POST", path: "/gluework/teamleader-connection/tl/authorize" },
      { method: "POST", path: "/gluework/teamleader-connection/nothing/authorize" },
      { method: "POST", path: "/gluework/jwt-auth-key/hash" },
      { method: "GET", path: "/gluework/jwt-auth-key/key/users" },
      { method: "GET", path: "/gluework/jwt-auth-key/nothing/users" },
    ];
    const queries = ["", "?state=x&error[a]=1", "?state[]=a&state[]=b", "?code[a][b]=1&state=x", "?error=%00%0d%0a", `?state=${"x".repeat(5000)}`, "?nodeId[]=goto", "?__proto__[x]=1"];
    const failures: string[] = [];
    for (const route of routes) {
      const attempts =
        route.method === "GET"
          ? queries.map((q) => call(`${red.url}${route.path}${q}`))
          : fuzzBodies().flatMap(([, body]) => [
              call(`${red.url}${route.path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ nodeId: JSON.parse(body.length < 1000 ? body : "null"), password: body.slice(0, 2000), authHost: body.slice(0, 50) }) }),
              call(`${red.url}${route.path}`, { method: "POST", headers: { "content-type": "application/json" }, body }),
            ]);
      const results = await Promise.allSettled(attempts);
      results.forEach((r, i) => {
        if (r.status === "rejected") failures.push(`${route.method} ${route.path} #${i}: no answer (${(r.reason as Error).message})`);
        else if (r.value >= 500 && !(route.method === "POST" && r.value === 500 && i % 2 === 1)) failures.push(`${route.method} ${route.path} #${i}: ${r.value}`);
      });
      await alive();
    }
    assert.deepEqual(failures, []);
  });
});

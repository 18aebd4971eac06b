import assert from "node:assert/strict";
import bcrypt from "bcryptjs";
import { simpleParser } from "mailparser";
import { request } from "undici";
import jwtAuth from "../../src/nodes/jwt-auth";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import mailRelay from "../../src/nodes/mail-relay";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import { generateSecret } from "../../src/auth/keys";
import { SmtpSink } from "../../src/sandbox/smtp-sink";
import { HttpNodeServer, coreNode } from "../support/http-nodes";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

const helper = nodeRed();

function nested(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

describe("security: every relay body gets 202, 400 or 413 with a short reason", function () {
  this.timeout(120_000);
  const http = new HttpNodeServer();
  const secret = generateSecret();
  const nodes = [jwtAuth, jwtAuthKey, mailRelay, smtpConnection, postgresDatabase, coreNode("network/21-httpin.js"), http.capture];
  let testDb: TestDatabase;
  let sink: SmtpSink;
  let token: string;

  before(async () => {
    testDb = await createTestDatabase();
    await http.listen();
    sink = new SmtpSink({});
    await sink.listen(0);
    const flow = [
      { id: "tab", type: "tab", label: "relay" },
      { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30" },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(sink.port), security: "none", auth: "none", sender: "monitoring@example.com", poolSize: "2" },
      { id: "gw-database", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4" },
      { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/placeMessage", method: "post", wires: [["verify"]] },
      { id: "verify", type: "jwt-auth", z: "tab", x: 200, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["relay"], ["res"]] },
      { id: "relay", type: "mail-relay", z: "tab", x: 300, y: 100, smtp: "smtp", database: "gw-database", to: "ops@example.com", allowed: "@example.com", subject: "Monitoring message", maxKiB: "256", retries: "1", retryDelay: "1", wires: [["res"], ["res"], []] },
      { id: "res", type: "http response", z: "tab", x: 400, y: 100, wires: [] },
    ];
    await helper.load(nodes, flow, { key: { secret, users: `alertmanager:${bcrypt.hashSync("long and random", 4)}` }, "gw-database": { user: String(testDb.connection.user) } });
    token = helper.getNode("key").authority().issue("alertmanager", { lifetimeS: 3600 }).token;
  });
  after(async () => {
    await helper.unload();
    await sink.close();
    await http.close();
    await testDb.drop();
  });

  async function place(body: string, contentType = "application/json"): Promise<{ status: number; json: any }> {
    const res = await request(`${http.url}/api/placeMessage`, {
      method: "POST",
      headers: { "content-type": contentType, authorization: `Bearer ${token}` },
      body,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const text = await res.body.text();
    try {
      return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
    } catch {
      return { status: res.statusCode, json: { message: text } };
    }
  }

  const bodies: Array<[string, string, number[]]> = [
    ["alerts that are not objects", JSON.stringify({ status: "firing", receiver: "r", alerts: [null, 5, "x"] }), [400]],
    ["JSON nested 5,000 levels deep", nested(5000), [400]],
    ["an object nested 5,000 levels deep", '{"a":'.repeat(5000) + "1" + "}".repeat(5000), [400]],
    ["a message with a NUL character", JSON.stringify({ message: "a\u0000b" }), [202]],
    ["a text body with a NUL character", "a\u0000b", [202]],
    // A lone UTF-16 surrogate (JSON's "\ud800") cannot be stored as it is: a 5xx would be retried
    // for ever by Alertmanager, so it is taken with U+FFFD in its place.
    ["a message with a lone UTF-16 surrogate", JSON.stringify({ message: "a\ud800b" }), [202]],
    ["a subject with a lone low surrogate", JSON.stringify({ message: "m", subject: "s\udfff" }), [202]],
    ["an Alertmanager alert with lone surrogates", JSON.stringify({ status: "firing", receiver: "r\ud83d", alerts: [{ status: "firing", labels: { alertname: "x\udc00" }, annotations: { summary: "\ud83d" } }] }), [202]],
    ["a JSON body that is a lone surrogate", JSON.stringify({ note: "\udbff" }), [202]],
    // A top-level null or number is refused by Node-RED's own JSON parser in the http in node,
    // which answers 500 before the relay sees it; as text, the relay takes it.
    ["null as text", "null", [202]],
    ["a number as text", "5", [202]],
    ["an empty array", "[]", [202, 400]],
    ["100,000 items", JSON.stringify(Array.from({ length: 100_000 }, () => 0)), [202, 413]],
    ["alerts with odd fields", JSON.stringify({ status: 5, receiver: {}, alerts: [{ status: [], labels: "x", annotations: { summary: 7 }, startsAt: {}, endsAt: 1 }] }), [202, 400]],
    ["a body over the limit", JSON.stringify({ message: "x".repeat(300 * 1024) }), [413]],
  ];
  for (const [what, body, expected] of bodies) {
    it(`answers ${what} with ${expected.join(" or ")}`, async () => {
      const res = await place(body, body.startsWith("[") || body.startsWith("{") ? "application/json" : "text/plain");
      assert.ok(expected.includes(res.status), `got ${res.status}: ${JSON.stringify(res.json)}`);
      assert.equal(typeof res.json.message, "string");
      assert.ok(res.json.message.length < 200, "a short reason");
    });
  }

  it("keeps CR and LF in Alertmanager labels and names from forging lines of the mail", async () => {
    const forged = {
      status: "firing",
      receiver: "r\nFIRING Forged",
      alerts: [{ status: "firing", labels: { alertname: "Real\r\nRESOLVED Everything", instance: "web-1\nFIRING Fake (since now)" }, annotations: { summary: "ok\u2028FAKE" }, startsAt: "2026-11-22T10:00:00Z" }],
    };
    const res = await place(JSON.stringify(forged));
    assert.equal(res.status, 202);
    await eventually(() => sink.received.some((m) => m.raw.includes(res.json.id)), 20_000, "the mail");
    const mail = await simpleParser(sink.received.find((m) => m.raw.includes(res.json.id))!.raw);
    const lines = mail.text!.split("\n");
    assert.equal(lines.filter((l) => /^== /.test(l)).length, 1, mail.text);
    assert.ok(!lines.some((l) => /^(FIRING Forged|RESOLVED Everything|FIRING Fake|FAKE)/.test(l)), mail.text);
  });

  it("sends a message with a lone surrogate, with U+FFFD in its place", async () => {
    const res = await place(JSON.stringify({ message: "before \ud800 after", subject: "alert \udc00" }));
    assert.equal(res.status, 202, JSON.stringify(res.json));
    await eventually(() => sink.received.some((m) => m.raw.includes(res.json.id)), 20_000, "the mail");
    const mail = await simpleParser(sink.received.find((m) => m.raw.includes(res.json.id))!.raw);
    assert.equal(mail.subject, "alert \uFFFD");
    assert.match(mail.text!, /before \uFFFD after/);
  });
});

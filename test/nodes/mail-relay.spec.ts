import assert from "node:assert/strict";
import bcrypt from "bcryptjs";
import { ParsedMail, simpleParser } from "mailparser";
import { composeMail } from "../../src/mail/compose";
import { request } from "undici";
import jwtAuth from "../../src/nodes/jwt-auth";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import mailRelay from "../../src/nodes/mail-relay";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import { generateSecret } from "../../src/auth/keys";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { ReceivedMail, SmtpSink, SmtpSinkOptions, mailHeader } from "../../src/sandbox/smtp-sink";
import { WEBHOOKS, alertmanagerFiring, grafanaFiring, uptimeKumaDown, webhook } from "../fixtures/monitoring";
import { htmlSections, textSections } from "../support/alert-mail";
import { HttpNodeServer, coreNode } from "../support/http-nodes";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { DATABASE_KINDS, databaseNode, kindLabel } from "../support/databases";
import { selfSignedCertificate } from "../support/tls";

const helper = nodeRed();
const SMTP_USER = { user: "relay@example.com", pass: "sink-password-0123" };

for (const kind of DATABASE_KINDS) describe(`mail-relay node (${kindLabel(kind)})`, function () {
  this.timeout(120_000);
  const http = new HttpNodeServer();
  const secret = generateSecret();
  const nodes = [jwtAuth, jwtAuthKey, mailRelay, smtpConnection, postgresDatabase, coreNode("network/21-httpin.js"), http.capture];
  let testDb: TestDatabase;
  let sink: SmtpSink;
  let token: string;
  let caught: any[] = [];

  function startSink(options: SmtpSinkOptions = {}, port = 0): Promise<number> {
    sink = new SmtpSink({ tls: selfSignedCertificate(), auth: { user: SMTP_USER.user, pass: SMTP_USER.pass }, ...options });
    return sink.listen(port);
  }

  function flow(smtp: Record<string, unknown> = {}, relay: Record<string, unknown> = {}, database: Record<string, unknown> = {}) {
    return [
      { id: "tab", type: "tab", label: "relay" },
      { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30" },
      { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(sink.port), security: "starttls", verifyCertificate: false, auth: "password", sender: "monitoring@example.com", poolSize: "5", ...smtp },
      { id: "gw-database", ...databaseNode(kind, testDb, { poolSize: "4", ...database }) },
      { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/placeMessage", method: "post", wires: [["verify"]] },
      { id: "verify", type: "jwt-auth", z: "tab", x: 300, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["relay"], ["res"]] },
      { id: "relay", type: "mail-relay", z: "tab", x: 500, y: 100, smtp: "smtp", database: "gw-database", to: "ops@example.com", allowed: "@example.com", subject: "Monitoring message", maxKiB: "64", retries: "5", retryDelay: "10", ...relay, wires: [["res"], ["res"], ["failed"]] },
      { id: "res", type: "http response", z: "tab", x: 700, y: 100, wires: [] },
      { id: "failed", type: "helper", z: "tab", x: 700, y: 200, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 300, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 300, wires: [] },
    ];
  }
  const credentials = (smtp: Record<string, string> = { user: SMTP_USER.user, password: SMTP_USER.pass }) => ({
    key: { secret, users: `alertmanager:${bcrypt.hashSync("long and random", 4)}` },
    smtp,
    "gw-database": { user: String(testDb.connection.user) },
  });

  async function place(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
    const res = await request(`${http.url}/api/placeMessage`, {
      method: "POST",
      headers: { "content-type": typeof body === "string" ? "text/plain" : "application/json", authorization: `Bearer ${token}`, ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.statusCode, json: await res.body.json() };
  }

  async function outboxRows(): Promise<number> {
    const db = await helper.getNode("gw-database").database();
    const { rows } = await db.query("SELECT count(*)::int AS n FROM gluework_mail_outbox");
    return rows[0].n;
  }

  before(async () => {
    testDb = await createTestDatabase();
    await http.listen();
  });
  after(async () => {
    await http.close();
    await testDb.drop();
  });
  afterEach(async () => {
    // Each test starts with an empty outbox (the embedded one lives as long as the user directory).
    await helper.getNode("gw-database")?.database().then((db: any) => db.query("DELETE FROM gluework_mail_outbox"), () => undefined).catch(() => undefined);
    await helper.unload();
    await sink?.close();
  });

  async function load(f = flow(), creds = credentials()) {
    await helper.load(nodes, f, creds);
    token = helper.getNode("key").authority().issue("alertmanager", { lifetimeS: 3600 }).token;
    caught = [];
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
  }

  it("turns each kind of body into the mail described, sent with STARTTLS and AUTH, with the Message-ID of its 202", async () => {
    await startSink();
    await load();
    const bodies = [{ message: "hello" }, alertmanagerFiring, grafanaFiring, uptimeKumaDown, { host: "db-1", value: 93 }];
    const ids: string[] = [];
    for (const body of bodies) {
      const res = await place(body);
      assert.equal(res.status, 202);
      assert.equal(res.json.message, "monitoring message queued");
      ids.push(res.json.id);
    }
    await eventually(() => sink.received.length === bodies.length, 20_000, "every mail");
    const mails = await Promise.all(ids.map((id) => simpleParser(sink.received.find((m) => mailHeader(m.raw, "Message-ID") === `<${id}@example.com>`)!.raw)));
    assert.deepEqual(
      mails.map((m) => m.subject),
      ["Monitoring message", "[FIRING:2] HighLatency, DiskFull", "[FIRING:1] HighCPU", "[DOWN] Website", "Monitoring message"],
    );
    assert.equal(mails[0]!.text, "hello\n");
    assert.match(mails[1]!.text!, /\n== FIRING · HighLatency · critical ==\n(.*\n)*Summary: p99 latency above 1 s\n/);
    assert.match(mails[2]!.text!, /\n== FIRING · HighCPU ==\n(.*\n)*Values: A=97\.5, C=1\n/);
    assert.match(mails[3]!.text!, /\nMonitor: Website\nType: http\nAddress: https:\/\/www\.example\.com\n/);
    assert.equal(mails[0]!.html, false, "a plain message stays plain text");
    assert.equal(mails[4]!.text, '{\n    "host": "db-1",\n    "value": 93\n}\n');
    for (const mail of mails) {
      assert.equal(mail.from?.text, "monitoring@example.com");
      assert.equal((mail.to as { text: string }).text, "ops@example.com");
    }
    assert.equal(sink.stats.connections <= 5, true, "the pool reuses its connections");
    await eventually(async () => (await outboxRows()) === 0, 5000, "an empty outbox");
  });

  it("delivers every monitoring webhook with its text and an HTML table per alert, times in the node's zone", async () => {
    await startSink();
    await load(flow({}, { timeZone: "Europe/Brussels" }));
    const ids = new Map<string, string>();
    for (const name of WEBHOOKS) {
      const res = await place(webhook(name));
      assert.equal(res.status, 202, name);
      ids.set(name, res.json.id);
    }
    await eventually(() => sink.received.length === WEBHOOKS.length, 30_000, "every mail");
    const mails = new Map<string, ParsedMail>();
    for (const [name, id] of ids) mails.set(name, await simpleParser(sink.received.find((m) => mailHeader(m.raw, "Message-ID") === `<${id}@example.com>`)!.raw));
    for (const name of WEBHOOKS) {
      const mail = mails.get(name)!;
      const expected = composeMail(webhook(name), "Monitoring message", { timeZone: "Europe/Brussels" });
      assert.equal(mail.subject, expected.subject, name);
      assert.equal(mail.text, expected.text, name);
      assert.equal(typeof mail.html, "string", `${name} has an HTML part`);
      const blocks = name.startsWith("uptime-kuma") ? 1 : webhook(name).alerts.length + (name.startsWith("grafana") ? 1 : 0);
      assert.equal(htmlSections(mail.html as string).sections.length, 1 + blocks, name);
    }

    const firing = mails.get("alertmanager-firing")!;
    const text = textSections(firing.text!);
    const alert = Object.fromEntries(text.sections[1]!.rows);
    assert.equal(alert.Description.split("\n").length, 3, "the description keeps its lines");
    assert.equal(alert.Runbook, "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemspacefillingup");
    assert.equal(alert.Started, "2026-11-22 10:58:30 +01:00 (Europe/Brussels)");
    const html = Object.fromEntries(htmlSections(firing.html as string).sections[1]!.rows);
    assert.match(html.Runbook, /^<a href="https:\/\/runbooks\.prometheus-operator\.dev\/runbooks\/node\/nodefilesystemspacefillingup"/);
    assert.match(html.Description, /filling up fast\.<br>\nThe WAL archive/);

    const crash = Object.fromEntries(textSections(mails.get("alertmanager-kube-pod-crashlooping")!.text!).sections[1]!.rows);
    assert.equal(crash.Message, "Pod payments/payments-api-7d9c5b8f4-x2x9q (api) is restarting 1.03 times / 5 minutes.");

    const grafana = Object.fromEntries(htmlSections(mails.get("grafana-firing")!.html as string).sections[1]!.rows);
    for (const key of ["Silence", "Dashboard", "Panel", "Image"]) assert.match(grafana[key], /^<a href="https:\/\/play\.grafana\.org\//, key);
    assert.equal(Object.fromEntries(textSections(mails.get("grafana-firing")!.text!).sections[0]!.rows).State, "alerting");

    for (const [name, address] of [
      ["uptime-kuma-ping-down", "10.20.0.1"],
      ["uptime-kuma-port-up", "db-1.internal.example.com:5432"],
      ["uptime-kuma-dns-down", "example.org"],
      ["uptime-kuma-http-up", "https://www.example.com/health"],
    ]) {
      const rows = Object.fromEntries(textSections(mails.get(name!)!.text!).sections[1]!.rows);
      assert.equal(rows.Address, address, name);
    }
    const ping = Object.fromEntries(textSections(mails.get("uptime-kuma-ping-down")!.text!).sections[1]!.rows);
    assert.equal(ping.Time, "2026-11-22 13:01:02 +01:00 (Europe/Brussels)");
    assert.equal(ping.Detail.split("\n").length, 4);
    assert.equal(caught.length, 0, "nothing reached the Catch node");
  });

  it("keeps a line break in a monitor name out of the mail's header and lines", async () => {
    await startSink();
    await load();
    const body = webhook("uptime-kuma-port-down");
    body.monitor.name = "DB\r\nBcc: attacker@example.net\r\n\r\nforged body";
    body.msg = `[${body.monitor.name}] [🔴 Down] connect ECONNREFUSED`;
    const res = await place(body);
    assert.equal(res.status, 202);
    await eventually(() => sink.received.length === 1, 20_000, "the mail");
    const received = sink.received[0]!;
    assert.deepEqual(received.to, ["ops@example.com"], "no recipient added");
    assert.equal(mailHeader(received.raw, "Bcc"), undefined);
    const mail = await simpleParser(received.raw);
    assert.equal(mail.subject, "[DOWN] DB Bcc: attacker@example.net forged body");
    assert.ok(!mail.text!.split("\n").some((l) => /^(Bcc:|forged body)/.test(l)), mail.text);
    assert.equal(Object.fromEntries(textSections(mail.text!).sections[1]!.rows).Monitor, "DB Bcc: attacker@example.net forged body");
  });

  it("sends to msg.to only within the allowed list, and refuses a body over the size limit with 413, without harm to the flow", async () => {
    await startSink();
    await load(flow({}, { allowed: "@example.com" }));
    const relay = helper.getNode("relay");
    const refusals: any[] = [];
    relay.on("call:send", (call: any) => {
      const m = call.args[0]?.[1];
      if (m) refusals.push(m);
    });
    relay.receive({ payload: { message: "to the team" }, to: "team@example.com" });
    relay.receive({ payload: { message: "to outside" }, to: ["team@example.com", "someone@elsewhere.org"] });
    await eventually(() => sink.received.length === 1 && refusals.length === 1, 10_000, "one mail and one refusal");
    assert.deepEqual(sink.received[0]!.to, ["team@example.com"]);
    assert.equal(refusals[0].statusCode, 400);
    assert.match(refusals[0].payload.message, /not allowed: someone@elsewhere\.org/);
    const big = await place({ message: "x".repeat(70 * 1024) });
    assert.equal(big.status, 413);
    assert.equal(big.json.message, "the message is 71 KiB; this relay takes at most 64 KiB");
    const noToken = await place({ message: "hi" }, { authorization: "" });
    assert.equal(noToken.status, 401);
    assert.equal((await place({ message: "still fine" })).status, 202);
    await eventually(() => sink.received.length === 2, 10_000, "the last mail");
    assert.equal(caught.length, 0, "nothing reached the Catch node");
  });

  it("loses nothing and sends nothing twice when the SMTP server is stopped for 30 s while 500 messages are relayed", async () => {
    const port = await startSink();
    await load();
    await place({ message: "warm-up" });
    await eventually(() => sink.received.length === 1, 10_000, "the warm-up mail");
    const first = sink;
    await first.close();
    const stoppedAt = Date.now();
    const relay = helper.getNode("relay");
    const statuses: string[] = [];
    relay.on("call:status", (call: any) => statuses.push(String(call.args[0]?.text ?? "")));
    const ids = new Set<string>();
    for (let batch = 0; batch < 25; batch++) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => place({ message: `outage message ${batch * 20 + i}` })));
      for (const a of answers) {
        assert.equal(a.status, 202);
        ids.add(a.json.id);
      }
    }
    assert.equal(ids.size, 500);
    await eventually(() => statuses.some((s) => /^SMTP down · \d+ queued$/.test(s)), 10_000, "the status to show the queue while SMTP is down");
    assert.equal(await outboxRows(), 500, "every message waits in the outbox");
    await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - stoppedAt))));
    await startSink({}, port);
    await eventually(() => sink.received.length >= 500, 60_000, "all 500 mails after the restart");
    await new Promise((r) => setTimeout(r, 2000)); // anything sent twice would arrive by now
    const messageIds = sink.received.map((m) => mailHeader(m.raw, "Message-ID")!);
    assert.equal(sink.received.length, 500, "exactly 500 mails");
    assert.deepEqual(new Set(messageIds), new Set([...ids].map((id) => `<${id}@example.com>`)));
    assert.equal(await outboxRows(), 0);
    await eventually(() => statuses.at(-1) === "0 queued", 5000, "the status to show an empty queue");
    assert.equal(first.received.length, 1);
  });

  it("marks a mail the server keeps refusing as failed after its retries, sends it out on the error output, and keeps it until deleted", async () => {
    const refusing: SmtpSinkOptions["serverOptions"] = {
      onRcptTo(address, _session, callback) {
        if (address.address === "busy@example.com") return callback(Object.assign(new Error("mailbox busy, try later"), { responseCode: 450 }));
        if (address.address === "nobody@example.com") return callback(Object.assign(new Error("no such user"), { responseCode: 550 }));
        callback();
      },
    };
    await startSink({ serverOptions: refusing });
    await load(flow({}, { retries: "2", retryDelay: "0.1" }));
    const relay = helper.getNode("relay");
    const failed: any[] = [];
    helper.getNode("failed").on("input", (m: any) => failed.push(m));
    relay.receive({ payload: { message: "later" }, to: "busy@example.com" });
    relay.receive({ payload: { message: "never" }, to: "nobody@example.com" });
    await eventually(() => failed.length === 2, 20_000, "two failed mails");
    const busy = failed.find((m) => m.payload.to[0] === "busy@example.com");
    const nobody = failed.find((m) => m.payload.to[0] === "nobody@example.com");
    assert.equal(busy.topic, "failed");
    assert.equal(busy.payload.attempts, 3, "the first try and 2 retries");
    assert.match(busy.payload.error, /450/);
    assert.equal(nobody.payload.attempts, 1, "a permanent refusal is not retried");
    assert.match(nobody.payload.error, /550/);
    assert.equal(await outboxRows(), 2);

    const answer = (topic: string, payload?: unknown) =>
      new Promise<any>((resolve) => {
        helper.getNode("failed").once("input", resolve);
        relay.receive({ topic, payload });
      });
    assert.deepEqual((await answer("outbox:list")).payload.map((m: any) => m.id).sort(), [busy.payload.id, nobody.payload.id].sort());
    assert.deepEqual((await answer("outbox:delete", nobody.payload.id)).payload, { deleted: [nobody.payload.id] });
    assert.deepEqual((await answer("outbox:status")).payload, { queued: 0, failed: 1, serverDown: undefined });
    assert.equal(await outboxRows(), 1, "the other failed mail stays");
    assert.deepEqual((await answer("outbox:delete", "all")).payload, { deleted: [busy.payload.id] });
    assert.equal(await outboxRows(), 0);
  });

  it("sends the messages stored before a Node-RED restart after it", async () => {
    const port = await startSink();
    await sink.close(); // the server is down while the messages come in
    await load();
    for (let i = 0; i < 20; i++) assert.equal((await place({ message: `before restart ${i}` })).status, 202);
    assert.equal(await outboxRows(), 20);
    await helper.unload();
    await startSink({}, port);
    await load();
    await eventually(() => sink.received.length === 20, 30_000, "the 20 stored mails");
    assert.equal(new Set(sink.received.map((m: ReceivedMail) => mailHeader(m.raw, "Message-ID"))).size, 20);
  });

  it("keeps the outbox in the embedded database by default, across a restart", async () => {
    const port = await startSink();
    await sink.close();
    const embedded = flow({}, {}, { mode: "embedded" });
    await load(embedded);
    for (let i = 0; i < 5; i++) assert.equal((await place({ message: `embedded ${i}` })).status, 202);
    assert.equal(await outboxRows(), 5);
    await helper.unload();
    await startSink({}, port);
    await load(embedded);
    await eventually(() => sink.received.length === 5, 60_000, "the 5 stored mails");
    await eventually(async () => (await outboxRows()) === 0, 10_000, "an empty outbox");
  });

  it("logs in to Office 365 the OAuth2 way (XOAUTH2 with a client-credentials token)", async () => {
    const sandbox = new Sandbox();
    await sandbox.listen();
    try {
      await startSink({ auth: undefined, oauth: (user, accessToken) => user === "relay@example.com" && sandbox.microsoft.authenticate({ headers: { authorization: `Bearer ${accessToken}` } } as any) === MICROSOFT_DEMO_APP.clientId });
      const smtp = { auth: "oauth2", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, loginHost: sandbox.url };
      await load(flow(smtp), credentials({ user: "relay@example.com", clientSecret: MICROSOFT_DEMO_APP.clientSecret }));
      assert.equal((await place({ message: "via XOAUTH2" })).status, 202);
      await eventually(() => sink.received.length === 1, 20_000, "the mail");
      assert.equal(sandbox.server.counter("microsoft token issued"), 1);
    } finally {
      await sandbox.close();
    }
  });
});

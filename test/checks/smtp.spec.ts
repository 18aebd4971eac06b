import assert from "node:assert/strict";
import mailRelay from "../../src/nodes/mail-relay";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { SmtpSink, SmtpSinkOptions } from "../../src/sandbox/smtp-sink";
import { nodeRed } from "../support/node-red";
import { selfSignedCertificate } from "../support/tls";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();
const LOGIN = { user: "relay", pass: "relay-password-123" };

describe("smtp-connection connection test", () => {
  let sink: SmtpSink;
  const sandbox = new Sandbox();
  before(() => sandbox.listen());
  after(() => sandbox.close());
  afterEach(async () => {
    await helper.unload();
    await sink?.close();
  });

  async function startSink(options: SmtpSinkOptions = {}): Promise<number> {
    sink = new SmtpSink({
      tls: selfSignedCertificate(),
      auth: LOGIN,
      serverOptions: {
        onMailFrom: (address, _session, callback) =>
          address.address.endsWith("@example.com") ? callback() : callback(Object.assign(new Error("Sender not allowed"), { responseCode: 553 })),
      },
      ...options,
    });
    return sink.listen();
  }
  const config = (port: number, extra: Record<string, unknown> = {}) => ({ host: "127.0.0.1", port: String(port), security: "starttls", verifyCertificate: false, auth: "password", sender: "desk@example.com", ...extra });

  it("connects with STARTTLS, logs in and has the sender accepted, sending nothing", async () => {
    const port = await startSink();
    await helper.load(smtpConnection, []);
    const report = await testConnection("smtp-connection", { id: "m1", config: config(port), credentials: { user: LOGIN.user, password: LOGIN.pass } });
    expectLine(report, "connect with STARTTLS", "passed", /encrypted/);
    expectLine(report, "log in", "passed", /as relay/);
    expectLine(report, "sender address", "passed", /desk@example.com accepted/);
    assert.equal(report.ok, true);
    assert.equal(sink.received.length, 0, "a test sends no mail");
  });

  it("fails the login for a wrong password, with the server's answer and the fix", async () => {
    const port = await startSink();
    await helper.load(smtpConnection, []);
    const report = await testConnection("smtp-connection", { id: "m1", config: config(port), credentials: { user: LOGIN.user, password: "wrong-password-456" } });
    expectLine(report, "log in", "failed", /Invalid login|535[\s\S]*check the user and password/);
    expectLine(report, "sender address", "skipped");
    assert.ok(!JSON.stringify(report).includes("wrong-password-456"));
  });

  it("fails the sender address the server refuses", async () => {
    const port = await startSink();
    await helper.load(smtpConnection, []);
    const report = await testConnection("smtp-connection", { id: "m1", config: config(port, { sender: "desk@elsewhere.test" }), credentials: { user: LOGIN.user, password: LOGIN.pass } });
    expectLine(report, "sender address", "failed", /refused desk@elsewhere.test as the sender: 553/);
  });

  it("fails the connection with TLS against a STARTTLS port, and says which port TLS uses", async () => {
    const port = await startSink();
    await helper.load(smtpConnection, []);
    const report = await testConnection("smtp-connection", { id: "m1", config: config(port, { security: "tls" }), credentials: { user: LOGIN.user, password: LOGIN.pass } });
    expectLine(report, "connect with TLS", "failed", /465 for TLS/);
    expectLine(report, "log in", "skipped");
  });

  it("logs in with XOAUTH2 with a token from Microsoft identity", async () => {
    const port = await startSink({ auth: undefined, oauth: (user, accessToken) => user === "desk@example.com" && sandbox.microsoft.authenticate({ headers: { authorization: `Bearer ${accessToken}` } } as never) === MICROSOFT_DEMO_APP.clientId });
    await helper.load(smtpConnection, []);
    const oauth = { auth: "oauth2", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, loginHost: sandbox.url };
    const report = await testConnection("smtp-connection", { id: "m1", config: config(port, oauth), credentials: { clientSecret: MICROSOFT_DEMO_APP.clientSecret } });
    expectLine(report, "log in with XOAUTH2", "passed", /as desk@example.com/);
    expectLine(report, "sender address", "passed");
  });

  it("answers a test message on a mail-relay node with the report of each config node it uses", async () => {
    const port = await startSink();
    const flow = [
      { id: "m1", type: "smtp-connection", ...config(port) },
      { id: "relay", type: "mail-relay", smtp: "m1", wires: [["out"]] },
      { id: "out", type: "helper" },
    ];
    await helper.load([smtpConnection, mailRelay, postgresDatabase, jwtAuthKey], flow, { m1: { user: LOGIN.user, password: "wrong-password-456" } });
    const got = new Promise<any>((resolve) => helper.getNode("out").on("input", resolve));
    helper.getNode("relay").receive({ topic: "test" } as never);
    const msg = await got;
    assert.equal(msg.payload.ok, false);
    expectLine(msg.payload.reports.find((r: any) => r.type === "smtp-connection"), "log in", "failed");
  });
});

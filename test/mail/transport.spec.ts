import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { classify } from "../../src/mail/relay";
import { OutgoingMail, SmtpSettings, SmtpTransport, stopSmtpThread } from "../../src/mail/transport";
import { SmtpSink, mailHeader } from "../../src/sandbox/smtp-sink";
import { eventually } from "../support/node-red";
import { selfSignedCertificate } from "../support/tls";

const AUTH = { user: "relay@example.com", pass: "sink-password-0123" };

describe("SMTP transport in the process's SMTP thread", function () {
  this.timeout(30_000);
  let sink: SmtpSink;
  const transports: SmtpTransport[] = [];

  function transport(settings: Partial<SmtpSettings> = {}): SmtpTransport {
    const t = new SmtpTransport({
      host: "127.0.0.1",
      port: sink.port,
      security: "starttls",
      verifyCertificate: false,
      auth: "password",
      user: AUTH.user,
      password: AUTH.pass,
      sender: "monitoring@example.com",
      poolSize: 2,
      ...settings,
    });
    transports.push(t);
    return t;
  }

  const mail = (n: number): OutgoingMail => ({
    messageId: `<mail-${n}@example.com>`,
    date: new Date("2026-11-23T10:00:00Z"),
    to: ["ops@example.com"],
    subject: `Mail ${n}`,
    text: `Body ${n}`,
  });

  beforeEach(async () => {
    sink = new SmtpSink({ tls: selfSignedCertificate(), auth: AUTH });
    await sink.listen();
  });
  afterEach(async () => {
    await Promise.all(transports.splice(0).map((t) => t.close()));
    await sink.close();
  });

  it("sends each mail with the Message-ID and Date it was queued with, through one pool per transport", async () => {
    const a = transport();
    const b = transport({ sender: "other@example.com" });
    await Promise.all([...Array.from({ length: 20 }, (_, i) => a.send(mail(i))), b.send(mail(100))]);
    assert.equal(sink.received.length, 21);
    const first = sink.received.find((m) => mailHeader(m.raw, "Message-ID") === "<mail-0@example.com>")!;
    assert.equal(mailHeader(first.raw, "Date"), "Mon, 23 Nov 2026 10:00:00 +0000");
    assert.equal(mailHeader(first.raw, "Subject"), "Mail 0");
    assert.equal(sink.received.find((m) => mailHeader(m.raw, "Message-ID") === "<mail-100@example.com>")!.from, "other@example.com");
  });

  it("brings the server's refusal back with its code, so the relay knows whom to blame", async () => {
    const wrong = transport({ password: "not-the-password" });
    const err = await wrong.send(mail(1)).then(
      () => assert.fail("a wrong password must not send"),
      (e: { code?: string; message: string }) => e,
    );
    assert.equal(err.code, "EAUTH");
    assert.equal(classify(err), "server");
    assert.doesNotMatch(err.message, /not-the-password/);
  });

  it("fails the mails in a thread that ends as a broken connection, and starts a new thread for the next", async () => {
    const t = transport();
    await t.send(mail(1));
    // A new connection waits 100 ms for the server's greeting: these are in the thread when it ends.
    const pending = Promise.allSettled([t.send(mail(2)), transport().send(mail(3))]);
    await stopSmtpThread();
    const outcomes = await pending;
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      assert.equal(classify((o as PromiseRejectedResult).reason), "server");
    }
    await t.send(mail(4));
    await eventually(() => sink.received.some((m) => mailHeader(m.raw, "Message-ID") === "<mail-4@example.com>"), 5000, "the mail after the restart");
  });

  it("does not keep a process alive that has sent mail and has nothing else to do", async () => {
    const script = `
      const { SmtpTransport } = require(${JSON.stringify(path.join(__dirname, "..", "..", "src", "mail", "transport"))});
      const t = new SmtpTransport({ host: "127.0.0.1", port: ${sink.port}, security: "starttls", verifyCertificate: false, auth: "password",
        user: ${JSON.stringify(AUTH.user)}, password: ${JSON.stringify(AUTH.pass)}, sender: "monitoring@example.com", poolSize: 1 });
      t.send({ messageId: "<exit@example.com>", date: new Date(), to: ["ops@example.com"], subject: "s", text: "t" })
        .then(() => console.log("sent"), (e) => { console.error(e.message); process.exitCode = 3; });`;
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve("still running after 10 s");
      }, 10_000);
      child.on("exit", (c) => {
        clearTimeout(timer);
        resolve(c ?? -1);
      });
    });
    assert.equal(code, 0);
    assert.equal(out.trim(), "sent");
  });

  it("refuses a mail after close without reaching the server", async () => {
    const t = transport();
    await t.send(mail(1));
    await t.close();
    await assert.rejects(t.send(mail(2)), { code: "ECONNECTION" });
    assert.equal(sink.received.length, 1);
  });
});

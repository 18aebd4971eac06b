import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { Outbox } from "../../src/mail/outbox";
import { MailRelay } from "../../src/mail/relay";
import { SmtpTransport } from "../../src/mail/transport";
import { SmtpSink } from "../../src/sandbox/smtp-sink";
import { eventually } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

describe("security: a mail with the SMTP server keeps its short lease, so no other instance sends it again", function () {
  this.timeout(60_000);
  let testDb: TestDatabase;
  let db: Database;
  let sink: SmtpSink;

  before(async () => {
    testDb = await createTestDatabase();
    db = await Database.open({ kind: "server", connection: { connectionString: testDb.url, max: 4 } }, { warn: () => undefined });
    // A server that takes 4 s to accept each mail: far longer than the 1 s lease.
    sink = new SmtpSink({
      serverOptions: {
        onData(stream, _session, callback) {
          stream.resume();
          stream.on("end", () => setTimeout(() => callback(), 4000));
        },
      },
    });
    await sink.listen(0);
  });
  after(async () => {
    await sink.close();
    await db.close();
    await testDb.drop();
  });

  it("renews the lease while the server holds the mail, and lets it go at once when the server has it", async () => {
    const sending = new Outbox(db, "lease-test", 1000);
    const relay = new MailRelay({
      outbox: sending,
      transport: new SmtpTransport({ host: "127.0.0.1", port: sink.port, security: "none", verifyCertificate: false, auth: "none", sender: "relay@example.com", poolSize: 1 }),
      messageIdDomain: "example.com",
    });
    await relay.start();
    try {
      await relay.accept({ kind: "text", subject: "slow", text: "slow\n" }, ["ops@example.com"]);
      // Another instance on the same queue looks while the server still holds the mail.
      const other = new Outbox(db, "lease-test", 1000);
      await new Promise((r) => setTimeout(r, 2500));
      assert.deepEqual(await other.claim(10), [], "the mail in flight was claimed by another instance");
      await eventually(async () => (await db.query("SELECT count(*)::int AS n FROM gluework_mail_outbox WHERE queue = 'lease-test'")).rows[0].n === 0, 10_000, "the sent mail to leave");
    } finally {
      await relay.close();
    }
  });
});

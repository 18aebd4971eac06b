import assert from "node:assert/strict";
import { request } from "undici";
import { SmtpSink, mailHeader } from "../../src/sandbox/smtp-sink";
import { eventually } from "../support/node-red";
import { DeploymentType, NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import pg from "pg";

const POOL = 5;

/** A server that answers each mail only after `answerDelayMs`, and keeps it then. */
function slowSink(answerDelayMs: number): SmtpSink {
  return new SmtpSink({ answerDelayMs });
}

function relayFlow(testDb: TestDatabase, smtpPort: number, dbName = "outbox"): unknown[] {
  return [
    { id: "tab", type: "tab", label: "relay" },
    { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(smtpPort), security: "none", auth: "none", sender: "relay@example.com", poolSize: String(POOL) },
    { id: "db", type: "postgres-database", name: dbName, mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "5", credentials: { user: String(testDb.connection.user) } },
    { id: "in", type: "http in", z: "tab", url: "/alert", method: "post", wires: [["relay"]] },
    { id: "relay", type: "mail-relay", z: "tab", smtp: "smtp", database: "db", to: "ops@example.com", allowed: "@example.com", subject: "deploy test", maxKiB: "256", retries: "5", retryDelay: "1", wires: [["res"], ["res"], []] },
    { id: "res", type: "http response", z: "tab", wires: [] },
  ];
}

/** Posts `count` alerts; resolves with how many the relay accepted (202). */
async function postAlerts(red: NodeRedProcess, count: number, from = 0): Promise<number> {
  let accepted = 0;
  for (let start = 0; start < count; start += 20) {
    const codes = await Promise.all(
      Array.from({ length: Math.min(20, count - start) }, async (_, i) => {
        // A 404 is the route not there yet (a deploy answers before its flows have started): nothing was stored.
        return eventually(async () => {
          const res = await request(`${red.url}/alert`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ message: `alert ${from + start + i}` }) });
          await res.body.dump();
          return res.statusCode === 404 ? undefined : res.statusCode;
        }, 30_000, "the relay's route");
      }),
    );
    accepted += codes.filter((c) => c === 202).length;
  }
  return accepted;
}

async function outboxRows(testDb: TestDatabase): Promise<number> {
  const client = new pg.Client(testDb.connection);
  await client.connect();
  try {
    const { rows } = await client.query("SELECT count(*)::int AS n FROM gluework_mail_outbox");
    return rows[0].n;
  } catch {
    return -1; // not created yet
  } finally {
    await client.end();
  }
}

function inbox(sink: SmtpSink): { total: number; distinct: number } {
  const ids = sink.received.map((m) => mailHeader(m.raw, "Message-ID"));
  return { total: ids.length, distinct: new Set(ids).size };
}

/** Waits until the outbox is empty and `accepted` distinct mails arrived. */
async function allDelivered(sink: SmtpSink, testDb: TestDatabase, accepted: number): Promise<{ total: number; distinct: number }> {
  await eventually(async () => inbox(sink).distinct >= accepted && (await outboxRows(testDb)) === 0, 90_000, `${accepted} mails delivered and the outbox empty`);
  return inbox(sink);
}

describe("lifecycle: the mail relay sends each mail once through deploys, restarts and a crash", function () {
  this.timeout(240_000);
  let testDb: TestDatabase;
  let red: NodeRedProcess | undefined;
  let sink: SmtpSink;

  beforeEach(async () => {
    testDb = await createTestDatabase("gw_life");
    sink = slowSink(100);
    await sink.listen(0);
  });
  afterEach(async () => {
    await red?.stop();
    red = undefined;
    await sink.close();
    await testDb.drop();
  });

  for (const kind of (process.env.KINDS?.split(",") ?? ["full", "flows", "nodes"]) as DeploymentType[]) {
    it(`a ${kind} deploy while the relay sends to a slow server delivers every accepted mail exactly once`, async () => {
      red = await startNodeRed();
      await red.deploy(relayFlow(testDb, sink.port));
      const accepted = await postAlerts(red, 200);
      assert.equal(accepted, 200);
      await eventually(() => sink.received.length >= 20, 60_000, "the relay to be sending");
      // A full deploy restarts everything; the other kinds what changed: here the database node, and with it its users.
      const d0 = Date.now();
      await red.deploy(relayFlow(testDb, sink.port, kind === "full" ? "outbox" : "outbox (renamed)"), kind);
      if (process.env.COUNTS) console.log(`deploy took ${Date.now() - d0} ms, ${sink.received.length} received`);
      const t0 = Date.now();
      const got = await allDelivered(sink, testDb, accepted);
      if (process.env.COUNTS) console.log(`${kind}: ${got.total} arrived (${got.distinct} distinct) for ${accepted} accepted, ${Date.now() - t0} ms`);
      assert.equal(got.distinct, accepted, "every accepted mail arrived");
      assert.equal(got.total, accepted, `${got.total} mails arrived for ${accepted} accepted: ${got.total - got.distinct} twice`);
    });
  }

  it("after kill -9 and a restart (with a deploy at start), only the mails with the server at the kill may arrive twice", async () => {
    red = await startNodeRed();
    const userDir = red.userDir;
    await red.deploy(relayFlow(testDb, sink.port));
    const accepted = await postAlerts(red, 300);
    assert.equal(accepted, 300);
    await eventually(() => sink.received.length >= 40, 60_000, "the relay to be sending");
    const killedAt = Date.now();
    red.child.kill("SIGKILL");
    // With the server at the kill: mails waiting for its answer, and mails answered so shortly before that their removal may not be written yet.
    const withServer = sink.stats.answering + sink.received.filter((m) => m.receivedAt > killedAt - 250).length;
    await new Promise<void>((resolve) => (red!.child.exitCode !== null || red!.child.signalCode !== null ? resolve() : red!.child.once("exit", () => resolve())));
    red = await startNodeRed({ userDir });
    await eventually(() => sink.stats.answering > 0, 60_000, "the restarted relay to be sending");
    // As `npm start` does: a deploy right after the start, while the relay sends what the crash left.
    await red.deploy(relayFlow(testDb, sink.port));
    const got = await allDelivered(sink, testDb, accepted);
    if (process.env.COUNTS) console.log(`kill -9: ${got.total} arrived (${got.distinct} distinct) for ${accepted} accepted; ${withServer} with the server at the kill`);
    assert.equal(got.distinct, accepted, "every accepted mail arrived");
    assert.ok(got.total - accepted <= withServer, `${got.total} mails arrived for ${accepted}: ${got.total - accepted} twice, while ${withServer} were with the server at the kill`);
  });
});

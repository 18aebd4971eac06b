import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import postgresDatabase from "../../src/nodes/postgres-database";
import { nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase, serverConnection } from "../support/pg";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

async function admin<T>(work: (c: pg.Client) => Promise<T>, database?: string): Promise<T> {
  const client = new pg.Client(serverConnection(database));
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

describe("postgres-database connection test", () => {
  let db: TestDatabase;
  const role = `gw_nocreate_${randomBytes(3).toString("hex")}`;
  const password = `pw-${randomBytes(8).toString("hex")}`;
  before(async () => {
    db = await createTestDatabase();
    // A user who may connect but not create tables (PostgreSQL 15 no longer lets everyone create in public).
    await admin((c) => c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`));
    await admin((c) => c.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`), db.name);
  });
  after(async () => {
    await db?.drop();
    await admin((c) => c.query(`DROP ROLE IF EXISTS ${role}`));
  });
  afterEach(() => helper.unload());

  const server = (extra: Record<string, unknown> = {}) => ({ mode: "server", host: "127.0.0.1", port: "5432", database: db.name, ssl: "disable", ...extra });

  it("connects and finds the rights to create tables, LISTEN/NOTIFY and advisory locks", async () => {
    await helper.load(postgresDatabase, []);
    const report = await testConnection("postgres-database", { id: "db1", config: server(), credentials: { user: "postgres" } });
    expectLine(report, "connect", "passed", /as postgres, PostgreSQL \d+/);
    expectLine(report, "create tables", "passed");
    expectLine(report, "LISTEN/NOTIFY", "passed");
    expectLine(report, "advisory locks", "passed");
    assert.equal(report.ok, true);
  });

  it("fails 'create tables' for a user without CREATE, with the GRANT that fixes it", async () => {
    await helper.load(postgresDatabase, []);
    const report = await testConnection("postgres-database", { id: "db1", config: server(), credentials: { user: role, password } });
    expectLine(report, "connect", "passed", new RegExp(`as ${role}`));
    expectLine(report, "create tables", "failed", new RegExp(`GRANT CREATE ON SCHEMA public TO ${role}`));
    expectLine(report, "advisory locks", "passed");
    assert.equal(report.ok, false);
  });

  it("fails 'connect' for a database that does not exist and skips the rest", async () => {
    // (The test server trusts 127.0.0.1, so a wrong password cannot be shown here.)
    await helper.load(postgresDatabase, []);
    const report = await testConnection("postgres-database", { id: "db1", config: server({ database: `${db.name}_missing` }), credentials: { user: role, password } });
    expectLine(report, "connect", "failed", /does not exist[\s\S]*check the host, port, database name, user and password/);
    expectLine(report, "create tables", "skipped");
    assert.ok(!JSON.stringify(report).includes(password));
  });

  it("uses the deployed password for the editor's placeholder", async () => {
    const flow = [{ id: "db1", type: "postgres-database", ...server() }];
    await helper.load(postgresDatabase, flow, { db1: { user: role, password } });
    const report = await testConnection("postgres-database", { id: "db1", config: server(), credentials: { user: role, password: "__PWRD__" } });
    expectLine(report, "connect", "passed");
  });

  it("never sends the deployed password to another host than the deployed node's", async () => {
    // A listener that records whatever a client sends it: it must not get the stored password.
    const received: Buffer[] = [];
    const trap = net.createServer((socket) => {
      socket.on("data", (d) => {
        received.push(d);
        // Ask for a clear-text password, as a hostile server would.
        socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      });
      socket.on("error", () => undefined);
    });
    await new Promise<void>((r) => trap.listen(0, "127.0.0.1", r));
    const port = String((trap.address() as net.AddressInfo).port);
    try {
      const flow = [{ id: "db1", type: "postgres-database", ...server() }];
      await helper.load(postgresDatabase, flow, { db1: { user: role, password } });
      const report = await testConnection("postgres-database", { id: "db1", config: server({ port }), credentials: { user: role, password: "__PWRD__" } });
      expectLine(report, "stored secrets", "skipped", /port differ/);
      expectLine(report, "connect", "failed");
      assert.ok(!Buffer.concat(received).toString("latin1").includes(password), "the stored password reached the other host");
    } finally {
      trap.close();
    }
  });

  it("starts the embedded server and reports its path and memory", async function () {
    this.timeout(120_000);
    await helper.load(postgresDatabase, []);
    const input = { id: "db1", config: { mode: "embedded" }, credentials: {} };
    // A first cluster's initdb can outlast a test's 15 s beside other work; the server it started
    // goes on starting, and the next test finds it.
    let report = await testConnection("postgres-database", input);
    if (report.checks.find((c) => c.check === "start the embedded server")?.outcome !== "passed") report = await testConnection("postgres-database", input);
    const started = expectLine(report, "start the embedded server", "passed", /running, data in .*postgres/);
    if (process.platform === "linux") assert.match(started.detail!, /\d+ MB of memory/);
    expectLine(report, "connect", "passed");
    expectLine(report, "create tables", "passed");
    expectLine(report, "LISTEN/NOTIFY", "passed");
    expectLine(report, "advisory locks", "passed");
  });
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import postgresDatabase from "../../src/nodes/postgres-database";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { stopAllEmbedded } from "../../src/core/db/embedded";
import { eventually, nodeRed } from "../support/node-red";
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
      expectLine(report, "stored secrets", "skipped", /not used: the port differs from the deployed node/);
      expectLine(report, "connect", "failed");
      assert.ok(!Buffer.concat(received).toString("latin1").includes(password), "the stored password reached the other host");
    } finally {
      trap.close();
    }
  });

  describe("embedded server faults", function () {
    this.timeout(120_000);
    const userDir = () => (helper as unknown as { _settings: { userDir: string } })._settings.userDir;
    const dir = () => path.join(userDir(), "gluework", "postgres");
    const holder = path.join(__dirname, "..", "fixtures", "embedded-holder.js");

    it("names another Node-RED holding the directory, with its pid, and says to stop it", async () => {
      await helper.load(postgresDatabase, []);
      await stopAllEmbedded(); // this process lets go of the directory: the other one takes it
      const child = spawn(process.execPath, [holder, dir(), "0"], { stdio: ["ignore", "pipe", "inherit"] });
      child.on("error", () => undefined);
      try {
        let out = "";
        child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
        await eventually(() => out.includes("\n"), 60_000, "the other Node-RED to hold the database");
        assert.equal(JSON.parse(out.split("\n")[0]!).ready, true, out);
        const report = await testConnection("postgres-database", { id: "db1", config: { mode: "embedded" }, credentials: {} });
        const l = expectLine(report, "start the embedded server", "failed");
        assert.equal(l.detail, `the embedded database in ${dir()} is in use by another Node-RED process (pid ${child.pid})`);
        assert.equal(l.fix, "stop the other Node-RED, or give each its own user directory; Node-RED instances that share data need a PostgreSQL server (set its URL in the postgres-database node)");
        expectLine(report, "connect", "skipped");
      } finally {
        child.kill("SIGTERM");
        await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
      }
    });

    it("names a lost data folder and says how to restore it or start empty", async () => {
      await helper.load(postgresDatabase, []);
      const first = await testConnection("postgres-database", { id: "db1", config: { mode: "embedded" }, credentials: {} });
      expectLine(first, "connect", "passed");
      await stopAllEmbedded();
      rmSync(path.join(dir(), "data"), { recursive: true, force: true });
      try {
        const report = await testConnection("postgres-database", { id: "db1", config: { mode: "embedded" }, credentials: {} });
        const l = expectLine(report, "start the embedded server", "failed");
        assert.equal(l.detail, `the embedded database's data folder ${path.join(dir(), "data")} is gone (deleted or moved while Node-RED used it), so its tables are lost`);
        assert.equal(l.fix, `restore the folder from a backup and deploy again, or delete ${path.join(dir(), "cluster")} to start with an empty database`);
        assert.doesNotMatch(l.fix!, /disk space|memory/);
      } finally {
        // As the fix says: the suites after this one share the directory and start afresh.
        await stopAllEmbedded();
        rmSync(path.join(dir(), "cluster"), { force: true });
      }
    });
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

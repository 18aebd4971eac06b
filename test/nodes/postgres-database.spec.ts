import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import connectionBoard from "../../src/nodes/connection-board";
import postgresDatabase from "../../src/nodes/postgres-database";
import type { Database } from "../../src/core/db/database";
import { alive, embeddedServerInfo, stopAllEmbedded } from "../../src/core/db/embedded";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually, nodeRed } from "../support/node-red";
import { startNodeRed } from "../support/node-red-process";

const helper = nodeRed();

describe("postgres-database config node", () => {
  let testDb: TestDatabase;
  before(async () => {
    testDb = await createTestDatabase();
  });
  after(() => testDb.drop());
  afterEach(() => helper.unload());

  async function connectionsFromNodeRed(): Promise<number> {
    const admin = new pg.Client(testDb.connection);
    await admin.connect();
    try {
      const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'node-red-gluework'", [testDb.name]);
      return rows[0].n;
    } finally {
      await admin.end();
    }
  }

  it("opens a pool on a server from its fields and credentials, and ends it on redeploy", async () => {
    const flow = [{ id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "3" }];
    await helper.load(postgresDatabase, flow, { db: { user: String(testDb.connection.user) } });
    const db: Database = await helper.getNode("db").database();
    await Promise.all([db.query("SELECT pg_sleep(0.05)"), db.query("SELECT pg_sleep(0.05)")]);
    assert.ok((await connectionsFromNodeRed()) >= 1);
    await helper.unload();
    assert.equal(await connectionsFromNodeRed(), 0, "no connection outlives the config node");
  });

  it("accepts a connection string kept as a credential", async () => {
    await helper.load(postgresDatabase, [{ id: "db", type: "postgres-database", mode: "server", poolSize: "2" }], { db: { url: testDb.url } });
    const db: Database = await helper.getNode("db").database();
    assert.equal((await db.query("SELECT current_database() AS name")).rows[0].name, testDb.name);
  });

  it("says plainly when the server cannot be reached, and tries again on the next use", async () => {
    await helper.load(postgresDatabase, [{ id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "1", database: "x", poolSize: "1" }]);
    const node = helper.getNode("db");
    await assert.rejects(node.database(), (err: Error & { status?: string }) => {
      assert.match(err.message, /^database unreachable: /);
      assert.equal(err.status, "database unreachable");
      return true;
    });
    await assert.rejects(node.database(), /database unreachable/);
  });

  describe("embedded", function () {
    this.timeout(120_000);

    it("starts no server until a flow uses the database, then one in the user directory shared by every node", async () => {
      // A user directory of its own: other suites' flows use the shared one's server.
      const original = String((helper as any)._settings.userDir);
      const userDir = mkdtempSync(path.join(os.tmpdir(), "gw-nr-first-"));
      (helper as any).settings({ userDir });
      after(() => (helper as any).settings({ userDir: original }));
      const dir = path.join(userDir, "gluework", "postgres");
      await helper.load(postgresDatabase, [
        { id: "db1", type: "postgres-database", mode: "embedded" },
        { id: "db2", type: "postgres-database", mode: "embedded", poolSize: "3" },
      ]);
      assert.deepEqual(embeddedServerInfo(dir), [], "no server before the first use");
      const [a, b]: Database[] = await Promise.all([helper.getNode("db1").database(), helper.getNode("db2").database()]);
      const servers = embeddedServerInfo(dir);
      assert.equal(servers.length, 1, "one server for both nodes");
      assert.equal(servers[0]!.dataDir, path.join(dir, "data"));
      assert.equal((b.pool as unknown as { options: pg.PoolConfig }).options.max, 3);
      await a.query("CREATE TABLE IF NOT EXISTS shared_here (n integer)");
      await b.query("INSERT INTO shared_here VALUES (1)");
      assert.equal((await a.query("SELECT count(*)::int AS n FROM shared_here")).rows[0].n >= 1, true);
    });

    it("tells a flow's status and its Catch node when the disk is full", async function () {
      if (process.getuid?.() !== 0) this.skip(); // mounting a small file system takes root
      const original = String((helper as any)._settings.userDir);
      const mount = mkdtempSync(path.join(os.tmpdir(), "gw-full-nr-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mount]);
      try {
        (helper as any).settings({ userDir: mount });
        const flow = [
          { id: "tab", type: "tab" },
          { id: "db", type: "postgres-database", mode: "embedded" },
          { id: "board", type: "connection-board", z: "tab", x: 100, y: 100, database: "db", board: "full", policy: "exclusive", connections: "a;b", users: "Burt", wires: [[], [], []] },
          { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
          { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
        ];
        await helper.load([postgresDatabase, connectionBoard], flow);
        const statuses: any[] = [];
        helper.getNode("board").on("call:status", (call: any) => statuses.push(call.args[0]));
        const caught: any[] = [];
        helper.getNode("caught").on("input", (m: any) => caught.push(m));
        await eventually(() => caught.length > 0, 30_000, "the Catch message");
        assert.match(caught[0].error.message, /the embedded database did not start: the disk is full/);
        await eventually(() => statuses.some((st) => st.text === "disk full" && st.fill === "red"), 5000, "a red 'disk full' status");
      } finally {
        await helper.unload();
        (helper as any).settings({ userDir: original });
        execFileSync("umount", [mount]);
      }
    });

    it("writes the fault that keeps it from starting to the Node-RED log, once, on one line", async function () {
      this.timeout(120_000);
      await stopAllEmbedded(); // the other Node-RED below takes this user directory's database
      const dir = path.join(String((helper as any)._settings.userDir), "gluework", "postgres");
      const holder = spawn(process.execPath, [path.join(__dirname, "..", "fixtures", "embedded-holder.js"), dir, "0"], { stdio: ["ignore", "pipe", "inherit"] });
      holder.on("error", () => undefined);
      try {
        let out = "";
        holder.stdout!.on("data", (c: Buffer) => (out += c.toString()));
        await eventually(() => out.includes("\n"), 60_000, "the other Node-RED to hold the database");
        const flow = [
          { id: "tab", type: "tab" },
          { id: "db", type: "postgres-database", mode: "embedded" },
          { id: "board", type: "connection-board", z: "tab", x: 100, y: 100, database: "db", board: "held", policy: "exclusive", connections: "a;b", users: "Burt", wires: [[], [], []] },
          { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
          { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
        ];
        await helper.load([postgresDatabase, connectionBoard], flow);
        const caught: any[] = [];
        helper.getNode("caught").on("input", (m: any) => caught.push(m));
        await eventually(() => caught.length > 0, 30_000, "the Catch message");
        const lines = () => helper.log().args.map((a: any[]) => a[0]).filter((e: any) => e.type === "postgres-database" && /could not start/.test(String(e.msg)));
        await eventually(() => lines().length > 0, 10_000, "the line in the Node-RED log");
        const [line] = lines();
        assert.equal(line.level, helper.log().WARN);
        assert.equal(line.msg, `the embedded database could not start: the embedded database in ${dir} is in use by another Node-RED process (pid ${holder.pid}); stop the other Node-RED, or give each its own user directory; Node-RED instances that share data need a PostgreSQL server (set its URL in the postgres-database node)`);
        // A second flow asking again does not repeat it.
        await assert.rejects((helper.getNode("db") as any).database());
        assert.equal(lines().length, 1);
      } finally {
        holder.kill("SIGTERM");
        await new Promise((r) => (holder.exitCode !== null ? r(undefined) : holder.once("exit", r)));
      }
    });

    it("stops its server when Node-RED stops", async () => {
      const red = await startNodeRed();
      let postmaster = 0;
      try {
        await red.deploy([
          { id: "tab", type: "tab" },
          { id: "db", type: "postgres-database", mode: "embedded" },
          { id: "board", type: "connection-board", z: "tab", x: 100, y: 100, database: "db", board: "stop", policy: "exclusive", connections: "a;b", users: "Burt", wires: [[], [], []] },
        ]);
        const pidFile = path.join(red.userDir, "gluework", "postgres", "data", "postmaster.pid");
        await eventually(() => existsSync(pidFile), 30_000, "the embedded server to start");
        postmaster = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
        assert.ok(alive(postmaster));
      } finally {
        await red.stop();
      }
      await eventually(() => !alive(postmaster), 10_000, "the server to stop with Node-RED");
      assert.equal(existsSync(path.join(red.userDir, "gluework", "postgres", "data", "postmaster.pid")), false, "a clean shutdown");
    });
  });
});

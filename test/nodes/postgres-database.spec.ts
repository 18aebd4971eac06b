import assert from "node:assert/strict";
import pg from "pg";
import postgresDatabase from "../../src/nodes/postgres-database";
import type { Database } from "../../src/core/db/database";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { nodeRed } from "../support/node-red";

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
});

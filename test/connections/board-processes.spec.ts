import assert from "node:assert/strict";
import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import pg from "pg";
import { ConnectionBoard } from "../../src/connections/board";
import { Database } from "../../src/core/db/database";
import { eventually } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

describe("Connection board across processes", function () {
  this.timeout(60_000);
  let testDb: TestDatabase;
  let db: Database;
  let child: ChildProcess | undefined;

  before(async () => {
    testDb = await createTestDatabase("gw_boardp");
    db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  });
  after(async () => {
    child?.kill();
    await db.close();
    await testDb.drop();
  });

  it("an instance whose LISTEN connection was lost re-reads the board once it listens again, so a change made meanwhile shows", async () => {
    const key = "reconnect";
    const board = new ConnectionBoard(db, { board: key, policy: "takeover", maxPerRow: 2 });
    const row = { main: "vpn main 1", sub: "vpn sub 1" };
    await board.setConnections([row]);
    await board.setUsers(["Burt", "Jimmy"]);

    child = fork(path.join(__dirname, "..", "fixtures", "board-listener.js"), [], { env: { ...process.env, GW_BOARD_LISTENER: JSON.stringify({ connection: testDb.connection, board: key }) }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const seen: string[][] = [];
    let ready: { poolPid: number } | undefined;
    child.on("message", (m: any) => {
      if (m.type === "seen") seen.push(m.occupants);
      if (m.type === "ready") ready = m;
    });
    await eventually(() => ready !== undefined, 20_000, "the listening instance to start");
    await board.act(row, { action: "connect", user: "Burt" });
    await eventually(() => seen.some((o) => o.includes("Burt")), 10_000, "the other instance to hear of Burt");

    // Its LISTEN connection drops, and it cannot connect again until the change below is made.
    const admin = new pg.Client({ ...testDb.connection, database: "postgres" });
    await admin.connect();
    try {
      await db.query("SELECT 1"); // this instance keeps a connection to make the change on
      await admin.query(`ALTER DATABASE ${pg.escapeIdentifier(testDb.name)} WITH ALLOW_CONNECTIONS false`);
      const { rows } = await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'", [testDb.name]);
      assert.equal(rows.length, 1, "one listening connection");
      await admin.query("SELECT pg_terminate_backend($1)", [rows[0].pid]);
      await new Promise((r) => setTimeout(r, 300));
      const before = seen.length;
      await board.act(row, { action: "takeover", user: "Jimmy" });
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(seen.length, before, "nothing was heard while the listener was away");
    } finally {
      await admin.query(`ALTER DATABASE ${pg.escapeIdentifier(testDb.name)} WITH ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    await eventually(() => seen.at(-1)?.join() === "Jimmy", 20_000, "the instance to re-read the board after it listens again");
    child.send({ type: "stop" });
  });
});

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { Database, Migration } from "../../src/core/db/database";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually } from "../support/node-red";

const MIGRATIONS: Migration[] = [
  { id: 1, description: "widgets", sql: "CREATE TABLE widgets (id text PRIMARY KEY, n integer NOT NULL)" },
  { id: 2, description: "widget colour", sql: "ALTER TABLE widgets ADD COLUMN colour text" },
];

describe("database", () => {
  describe("on a PostgreSQL server", () => {
    let testDb: TestDatabase;
    before(async () => {
      testDb = await createTestDatabase();
    });
    after(() => testDb.drop());

    it("applies each migration exactly once when two processes' pools migrate at the same moment", async () => {
      const a = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      const b = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      try {
        const [ranA, ranB] = await Promise.all([a.migrate("widgets", MIGRATIONS), b.migrate("widgets", MIGRATIONS)]);
        assert.deepEqual([...ranA, ...ranB].sort(), [1, 2]);
        assert.deepEqual(await a.migrate("widgets", MIGRATIONS), []);
        const { rows } = await a.query("SELECT id FROM gluework_migrations WHERE component = 'widgets' ORDER BY id");
        assert.deepEqual(rows.map((r) => r.id), [1, 2]);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("rolls a failed migration back whole and says which one failed", async () => {
      const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      try {
        const broken: Migration[] = [
          { id: 1, description: "good", sql: "CREATE TABLE gadgets (id text PRIMARY KEY)" },
          { id: 2, description: "bad", sql: "ALTER TABLE nowhere ADD COLUMN x text" },
        ];
        await assert.rejects(db.migrate("gadgets", broken), /migration gadgets #2 \(bad\) failed: .*nowhere/);
        const { rows } = await db.query("SELECT to_regclass('gadgets') AS t");
        assert.equal(rows[0].t, null, "the first migration of the failed run was rolled back too");
      } finally {
        await db.close();
      }
    });

    it("survives its server ending a connection: the pool's error is logged, not thrown", async () => {
      const warnings: string[] = [];
      const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: (m) => warnings.push(m) });
      try {
        const client = await db.connect();
        const { rows } = await client.query("SELECT pg_backend_pid() AS pid");
        client.release(); // back to the pool, idle
        const admin = new pg.Client(testDb.connection);
        await admin.connect();
        await admin.query("SELECT pg_terminate_backend($1)", [rows[0].pid]);
        await admin.end();
        await eventually(() => warnings.length > 0, 5000, "the pool's warning");
        assert.match(warnings[0]!, /database connection lost/);
        assert.equal((await db.query("SELECT 1 AS one")).rows[0].one, 1, "the pool goes on with a new connection");
      } finally {
        await db.close();
      }
    });

    it("refuses a query still waiting for a connection when the database closes, and lets running ones finish", async () => {
      const db = await Database.open({ kind: "server", connection: { ...testDb.connection, max: 1 } }, { warn: () => undefined });
      const running = db.query("SELECT pg_sleep(0.3) AS slept");
      const waiting = db.query("SELECT 1").then(() => undefined, (err: Error & { code?: string }) => err); // the pool's one connection is busy
      await new Promise((r) => setTimeout(r, 50));
      await db.close();
      assert.equal((await running).rowCount, 1);
      const refused = await waiting;
      assert.equal(refused?.code, "GW_DB_CLOSED");
      assert.match(refused.message, /the database connection was closed/);
      await assert.rejects(db.query("SELECT 1"), /the database connection was closed/);
    });

    it("carries notifications between two pools (two Node-RED processes) over LISTEN/NOTIFY", async () => {
      const a = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      const b = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      try {
        const received: string[] = [];
        await b.subscribe("board_changed", (p) => received.push(p));
        await a.notify("board_changed", "row 7");
        await eventually(() => received.length === 1, 5000, "the notification");
        assert.deepEqual(received, ["row 7"]);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe("embedded (PGlite in a child process)", function () {
    this.timeout(120_000);
    const dataDir = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-pglite-")), "db");

    it("serves pg through one code path: migrations, transactions, and data kept across a restart", async () => {
      const first = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        assert.equal(first.kind, "embedded");
        await first.migrate("widgets", MIGRATIONS);
        await first.transaction(async (c) => {
          await c.query("INSERT INTO widgets (id, n) VALUES ('a', 1), ('b', 2)");
        });
        await assert.rejects(
          first.transaction(async (c) => {
            await c.query("INSERT INTO widgets (id, n) VALUES ('c', 3)");
            throw new Error("changed my mind");
          }),
          /changed my mind/,
        );
      } finally {
        await first.close();
      }
      const second = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        const { rows } = await second.query("SELECT id FROM widgets ORDER BY id");
        assert.deepEqual(rows.map((r) => r.id), ["a", "b"]);
        assert.deepEqual(await second.migrate("widgets", MIGRATIONS), []);
      } finally {
        await second.close();
      }
    });

    it("serialises two connections' row locks, so a second transaction sees the first one's commit", async () => {
      const db = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        await db.query("CREATE TABLE IF NOT EXISTS counters (id text PRIMARY KEY, n integer NOT NULL)");
        await db.query("INSERT INTO counters VALUES ('x', 0) ON CONFLICT (id) DO UPDATE SET n = 0");
        const bump = () =>
          db.transaction(async (c) => {
            const { rows } = await c.query("SELECT n FROM counters WHERE id = 'x' FOR UPDATE");
            await new Promise((r) => setTimeout(r, 20));
            await c.query("UPDATE counters SET n = $1 WHERE id = 'x'", [rows[0].n + 1]);
          });
        await Promise.all([bump(), bump(), bump(), bump()]);
        assert.equal((await db.query("SELECT n FROM counters WHERE id = 'x'")).rows[0].n, 4);
      } finally {
        await db.close();
      }
    });

    it("keeps concurrent queries apart: each gets its own statement's answer", async () => {
      const db = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        // Different statements at once, some with parameters too large for one TCP packet (a
        // batch of synced records is): on one backend their protocol messages must not interleave,
        // or one query's parameters meet another's statement.
        const asked = Array.from({ length: 60 }, (_, i) =>
          i % 3 === 0
            ? db.query<{ n: number }>("SELECT length($1::text) - $2::int AS n", ["x".repeat(400_000 + i), 400_000]).then((r) => r.rows[0]!.n)
            : db.query<{ n: number }>("SELECT $1::int AS n", [i]).then((r) => r.rows[0]!.n),
        );
        const answers = await Promise.allSettled(asked);
        assert.deepEqual(answers.map((a) => (a.status === "fulfilled" ? a.value : (a.reason as Error).message)), Array.from({ length: 60 }, (_, i) => i));
      } finally {
        await db.close();
      }
    });

    it("refuses a second process on the same data directory with a message that says what to do", async () => {
      const { fork } = await import("node:child_process");
      const db = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        const child = fork(path.join(__dirname, "..", "..", "src", "core", "db", "embedded-server.js"), [dataDir], { stdio: ["ignore", "ignore", "pipe", "ipc"] });
        const message = await new Promise<{ type: string; error?: string }>((resolve) => child.once("message", resolve));
        assert.equal(message.type, "error");
        assert.match(message.error ?? "", /in use by another process; for several Node-RED instances use a PostgreSQL server/);
      } finally {
        await db.close();
      }
    });
  });
});

import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { embeddedServerInfo } from "../../src/core/db/embedded";
import { DATABASE_KINDS, kindLabel, openDatabase } from "../support/databases";
import { eventually } from "../support/node-red";

/**
 * What a neighbour does to a live pool: a backend killed mid-query, the notification connection
 * killed, the embedded server gone or moved. None of it may raise an unheard 'error' (which would
 * end the whole Node-RED process), and the pool carries on by itself once the server is back.
 */
for (const kind of DATABASE_KINDS) {
  describe(`database faults (${kindLabel(kind)})`, function () {
    this.timeout(120_000);
    let opened: Awaited<ReturnType<typeof openDatabase>>;
    let warnings: string[];
    let db: Database;

    before(async () => {
      opened = await openDatabase(kind, "gw_faults");
      await opened.db.query("CREATE TABLE occupants (id integer PRIMARY KEY, who text)");
      await opened.db.query("INSERT INTO occupants VALUES (1, 'nobody')");
    });
    after(() => opened.drop());
    beforeEach(async () => {
      warnings = [];
      db = await reopen(opened, (m) => warnings.push(m));
    });
    afterEach(() => db.close());

    /** Runs `sql` as the superuser of the same database, on a connection of its own. */
    async function admin<R extends pg.QueryResultRow = any>(sql: string, params: unknown[] = []): Promise<R[]> {
      const client = new pg.Client(adminConnection(opened));
      client.on("error", () => undefined);
      await client.connect();
      try {
        return (await client.query<R>(sql, params)).rows;
      } finally {
        await client.end();
      }
    }

    it("fails a transaction whose session is terminated while it waits for a lock, and goes on with the next", async () => {
      const locker = new pg.Client(adminConnection(opened));
      locker.on("error", () => undefined);
      await locker.connect();
      try {
        await locker.query("BEGIN");
        await locker.query("LOCK TABLE occupants");
        const waiting = db.transaction(async (client) => {
          await client.query("UPDATE occupants SET who = 'ann' WHERE id = 1");
        });
        const outcome = waiting.then(() => undefined, (err: Error) => err);
        const [victim] = await eventually(
          () => admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE occupants%'").then((r) => (r.length ? r : undefined)),
          20_000,
          "the transaction to wait for the lock",
        );
        await admin("SELECT pg_terminate_backend($1)", [victim!.pid]);
        const err = await outcome;
        assert.ok(err, "the transaction failed");
        assert.match(err.message, /database (unreachable|error): .*terminat/i);
        await locker.query("ROLLBACK");
        await db.transaction(async (client) => {
          await client.query("UPDATE occupants SET who = 'bob' WHERE id = 1");
        });
        assert.equal((await db.query("SELECT who FROM occupants WHERE id = 1")).rows[0].who, "bob");
      } finally {
        await locker.end().catch(() => undefined);
      }
    });

    it("survives every backend of its pool terminated mid-query, as an admin killing sessions does", async () => {
      const running = Array.from({ length: 6 }, () => db.query("SELECT pg_sleep(30)").then(() => "finished", (err: Error) => err.message));
      await eventually(
        () => admin("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").then((r) => r.length === 6),
        20_000,
        "six sleeping queries",
      );
      await admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
      for (const outcome of await Promise.all(running)) assert.match(outcome, /terminat/i);
      assert.equal((await db.query("SELECT count(*)::int AS n FROM occupants")).rows[0].n, 1, "the pool goes on");
      assert.equal(warnings.filter((w) => /database connection lost/.test(w)).length, 1, `one line for one fault: ${warnings.join("; ")}`);
    });

    it("keeps one notification connection however often it is killed, and delivers each notification once", async () => {
      const received: string[] = [];
      let reconnects = 0;
      await db.subscribe("board_changed", (p) => received.push(p), () => reconnects++);
      const listeners = () => admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()");
      for (let round = 1; round <= 3; round++) {
        const [listener] = await eventually(() => listeners().then((r) => r.length === 1 && r), 20_000, "one LISTEN connection");
        await admin("SELECT pg_terminate_backend($1)", [listener!.pid]);
        await eventually(() => reconnects >= round, 30_000, `reconnect ${round}`);
      }
      // Give a duplicate reconnect every chance to show: a second LISTEN connection would appear now.
      await db.notify("board_changed", "settled");
      await eventually(() => received.includes("settled"), 10_000, "a notification after the reconnects");
      assert.equal((await listeners()).length, 1, "exactly one LISTEN connection");
      assert.equal(reconnects, 3);
      await db.notify("board_changed", "once");
      await eventually(() => received.includes("once"), 10_000, "the notification");
      await db.query("SELECT pg_sleep(0.2)"); // a second copy would arrive within this
      assert.deepEqual(received.filter((p) => p === "once"), ["once"], "delivered once");
      assert.equal(warnings.filter((w) => /database connection lost/.test(w)).length, 3, `one warning per loss: ${warnings.join("; ")}`);
      assert.equal(warnings.filter((w) => /answers again/.test(w)).length, 3, `one line when back: ${warnings.join("; ")}`);
    });

    it("leaves no LISTEN connection open after it closes, even while reconnecting", async () => {
      await db.subscribe("board_changed", () => undefined);
      const [listener] = await admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()");
      await admin("SELECT pg_terminate_backend($1)", [listener!.pid]);
      await db.close();
      await eventually(
        () => admin("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()").then((r) => r.length === 0),
        10_000,
        "no LISTEN connection",
      );
    });

    if (kind === "embedded") {
      it("follows its server to another port when the old one was taken while it was down", async () => {
        const [before] = embeddedServerInfo(opened.dataDir!);
        const squatter = net.createServer((socket) => socket.destroy());
        try {
          process.kill(before!.pids[0]!, "SIGKILL");
          // Another program takes the port the moment the server lets go of it.
          await eventually(
            () =>
              new Promise<boolean>((resolve) => {
                squatter.once("error", () => resolve(false));
                squatter.listen(before!.port, "127.0.0.1", () => resolve(true));
              }),
            20_000,
            "the old port to be free",
          );
          const after = await eventually(() => embeddedServerInfo(opened.dataDir!).find((s) => s.pids[0] !== before!.pids[0]), 30_000, "the server back");
          assert.notEqual(after.port, before!.port);
          const one = await eventually(async () => (await db.query("SELECT 1 AS one").catch(() => undefined))?.rows[0].one, 30_000, "the pool to reach the new port");
          assert.equal(one, 1);
          const received: string[] = [];
          await db.subscribe("moved", (p) => received.push(p));
          await db.notify("moved", "here");
          await eventually(() => received.length === 1, 10_000, "a notification on the new port");
        } finally {
          squatter.close();
        }
      });

      it("refuses to put an empty cluster in place of a data folder deleted under load, and says so", async () => {
        const load = (async () => {
          const outcomes: string[] = [];
          for (let i = 0; i < 200; i++) outcomes.push(await db.query("INSERT INTO occupants VALUES ($1, 'load') ON CONFLICT (id) DO NOTHING", [i + 100]).then(() => "ok", (err: Error) => err.message));
          return outcomes;
        })();
        await eventually(async () => (await db.query("SELECT count(*)::int AS n FROM occupants")).rows[0].n > 20, 20_000, "rows being written");
        rmSync(path.join(opened.dataDir!, "data"), { recursive: true, force: true });
        const [info] = embeddedServerInfo(opened.dataDir!);
        if (info) for (const pid of info.pids) signal(pid, "SIGKILL"); // as the PANIC that follows would, sooner
        await load;
        const err = await eventually(() => db.query("SELECT 1").then(() => undefined, (e: Error & { code?: string }) => e.code === "GW_DB_EMBEDDED_DATA_GONE" && e), 60_000, "the data-gone error");
        assert.match(err.message, /data folder .* is gone.*restore the folder from a backup.*delete .*cluster/);
        await assert.rejects(
          Database.open({ kind: "embedded", dataDir: opened.dataDir!, keepAliveMs: 0 }, { warn: () => undefined }),
          (e: Error & { code?: string }) => e.code === "GW_DB_EMBEDDED_DATA_GONE",
        );
      });
    }
  });
}

function adminConnection(opened: Awaited<ReturnType<typeof openDatabase>>): pg.ClientConfig {
  if (opened.testDb) return opened.testDb.connection;
  const [info] = embeddedServerInfo(opened.dataDir!);
  const password = readFileSync(path.join(opened.dataDir!, "password"), "utf8").trim();
  return { host: "127.0.0.1", port: info!.port, user: "postgres", password, database: "postgres" };
}

async function reopen(opened: Awaited<ReturnType<typeof openDatabase>>, warn: (m: string) => void): Promise<Database> {
  return opened.testDb
    ? Database.open({ kind: "server", connection: opened.testDb.connection }, { warn })
    : Database.open({ kind: "embedded", dataDir: opened.dataDir!, keepAliveMs: 0 }, { warn });
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone
  }
}

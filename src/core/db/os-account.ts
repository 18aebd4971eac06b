import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { EmbeddedFault } from "./fault";

/** A system user: the embedded server's processes and files belong to it. */
export interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** The account the embedded server runs as under root: its own, so no other server can read its files. */
export const SERVER_ACCOUNT = "gluework-postgres";

/** Accounts that other PostgreSQL installations run as (Debian, Alpine, RHEL, BSD, macOS). */
const FOREIGN_ACCOUNTS = ["postgres", "pgsql", "_postgres"];

/**
 * As root, the account the embedded server runs as (PostgreSQL refuses root): `gluework-postgres`,
 * created when missing as a system account with no login shell and no home. Never an account
 * another PostgreSQL runs as: a server of that account, trusting its local users, would read the
 * embedded cluster's files for them. Not root: none, the server runs as this user.
 */
export async function serverAccount(): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  let found = await lookup(SERVER_ACCOUNT);
  if (!found) {
    // Debian and RHEL have useradd, Alpine's busybox adduser; a racing process may create it first.
    const made = await command("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVER_ACCOUNT]);
    if (made.code !== 0 && !(await lookup(SERVER_ACCOUNT))) {
      await command("addgroup", ["-S", SERVER_ACCOUNT]);
      await command("adduser", ["-S", "-D", "-H", "-h", "/nonexistent", "-s", "/sbin/nologin", "-G", SERVER_ACCOUNT, SERVER_ACCOUNT]);
    }
    found = await lookup(SERVER_ACCOUNT);
    if (!found) {
      throw new EmbeddedFault(
        `PostgreSQL refuses to run as root, and the system user "${SERVER_ACCOUNT}" to run the embedded database as could not be created (${lastLine(made.output)})`,
        `create it (useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${SERVER_ACCOUNT}), run Node-RED as another user, or set a PostgreSQL server URL`,
        "GW_DB_EMBEDDED_USER",
        "database user missing",
      );
    }
  }
  for (const name of FOREIGN_ACCOUNTS) {
    const other = await lookup(name);
    if (found.uid === 0 || found.uid === other?.uid) {
      throw new EmbeddedFault(
        `the system user "${SERVER_ACCOUNT}" has the user id ${found.uid}, which ${found.uid === 0 ? "is root's" : `the system's own PostgreSQL user "${name}" has`}; the embedded database needs an account of its own`,
        `give "${SERVER_ACCOUNT}" its own user id`,
        "GW_DB_EMBEDDED_USER",
        "database user shared",
      );
    }
  }
  return found;
}

/**
 * Makes the cluster in `dataDir` belong to `account` alone (mode 0700), once: a cluster made
 * when the server ran as another account (the system's `postgres`) is handed over and logged.
 * Its contents go first and the directory itself last, so a start cut short does it again.
 */
export async function claimCluster(dataDir: string, account: Account, log?: { warn(message: string): void }): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(dataDir);
  } catch {
    return; // none yet: initdb makes it as the account
  }
  if (stat.uid === account.uid && (stat.mode & 0o777) === 0o700) return;
  if (stat.uid !== account.uid) {
    await chownTree(dataDir, account);
    await fs.lchown(dataDir, account.uid, account.gid);
  }
  await fs.chmod(dataDir, 0o700);
  if (stat.uid !== account.uid) {
    log?.warn(`the embedded database in ${dataDir} belonged to the system user "${(await nameOf(stat.uid)) ?? stat.uid}"; it now belongs to "${account.name}", an account of its own that no other PostgreSQL server runs as`);
  }
}

/** Whether `dataDir` belongs to `account` already. */
export async function ownsCluster(dataDir: string, account: Account): Promise<boolean> {
  try {
    return (await fs.lstat(dataDir)).uid === account.uid;
  } catch {
    return false;
  }
}

async function chownTree(dir: string, account: Account): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const at = path.join(dir, entry.name);
    // Links (tablespaces) are handed over themselves, never followed.
    if (entry.isDirectory()) await chownTree(at, account);
    await fs.lchown(at, account.uid, account.gid);
  }
}

export async function lookup(name: string): Promise<Account | undefined> {
  const uid = await command("id", ["-u", name]);
  const gid = await command("id", ["-g", name]);
  if (uid.code !== 0 || gid.code !== 0) return undefined;
  return { name, uid: Number(uid.output.trim()), gid: Number(gid.output.trim()) };
}

async function nameOf(uid: number): Promise<string | undefined> {
  const { code, output } = await command("id", ["-nu", String(uid)]);
  return code === 0 ? output.trim() : undefined;
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop() || "no reason given";
}

function command(file: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: { ...process.env, LC_ALL: "C", LANG: "C" }, timeout: 30_000, maxBuffer: 2 ** 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}${err && code === -1 ? err.message : ""}` });
    });
    child.stdin?.on("error", () => undefined);
    child.stdin?.end();
  });
}

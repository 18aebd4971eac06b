import bcrypt from "bcryptjs";
import { ConfigError } from "../core/errors";

const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const USER_NAME = /^[^\s:]{1,128}$/;
/** A hash as the key dialog keeps it for a user whose password did not change: sealed by the runtime. */
export const SEALED = "sealed:";
// Checked when the user is unknown, so that an unknown name costs as long as a wrong password:
// one hash per cost factor, made once and shared by every list.
const standIns = new Map<number, Promise<string>>([[10, Promise.resolve(bcrypt.hashSync("no such user", 10))]]);
function standInHash(cost: number): Promise<string> {
  let hash = standIns.get(cost);
  if (!hash) standIns.set(cost, (hash = bcrypt.hash("no such user", cost)));
  return hash;
}

/**
 * The people who may log in: one `name:bcrypt-hash` per line, the shape of an htpasswd file
 * (hashes as `node-red admin hash-pw` or the key dialog make them). Blank lines and lines
 * starting with # are skipped.
 */
export class UserList {
  private readonly hashes = new Map<string, string>();
  /** The cost factor of the list's slowest hash: an unknown name is checked at that cost. */
  private readonly standInCost: number;

  /** `unseal` reads a hash the dialog kept as the runtime sealed it (`sealed:…`), or gives undefined. */
  constructor(text: string | undefined, unseal?: (sealed: string, name: string) => string | undefined) {
    const lines = (text ?? "").split(/\r?\n/);
    lines.forEach((raw, index) => {
      const line = raw.trim();
      if (!line || line.startsWith("#")) return;
      const colon = line.indexOf(":");
      const name = colon > 0 ? line.slice(0, colon) : "";
      const given = colon > 0 ? line.slice(colon + 1) : "";
      const hash = given.startsWith(SEALED) ? (unseal?.(given.slice(SEALED.length), name) ?? "") : given;
      if (!USER_NAME.test(name)) throw new ConfigError(`user line ${index + 1} has no valid name: write name:bcrypt-hash`);
      if (!BCRYPT_HASH.test(hash)) throw new ConfigError(`the password of user "${name}" is not a bcrypt hash: set it again in the jwt-auth key dialog`);
      if (this.hashes.has(name)) throw new ConfigError(`user "${name}" is listed twice`);
      this.hashes.set(name, hash);
    });
    this.standInCost = this.hashes.size ? Math.max(...[...this.hashes.values()].map((hash) => Number(hash.slice(4, 6)))) : 10;
    standInHash(this.standInCost).catch(() => undefined); // made now, so the first unknown name is not slower
  }

  get names(): string[] {
    return [...this.hashes.keys()];
  }

  /** The user's bcrypt hash, for the runtime only (never sent to the editor). */
  hashOf(name: string): string | undefined {
    return this.hashes.get(name);
  }

  has(name: string): boolean {
    return this.hashes.has(name);
  }

  /** True when `password` is the user's; always as slow as one bcrypt check. */
  async check(name: string, password: string): Promise<boolean> {
    const hash = this.hashes.get(name);
    const matches = await bcrypt.compare(password, hash ?? (await standInHash(this.standInCost)));
    return matches && hash !== undefined;
  }

  /** The users as a credential's text. */
  static format(users: ReadonlyArray<{ name: string; hash: string }>): string {
    return users.map((u) => `${u.name}:${u.hash}`).join("\n");
  }
}

/** A bcrypt hash of `password`, as kept in the users credential. */
export function hashPassword(password: string, rounds = 10): Promise<string> {
  return bcrypt.hash(password, rounds);
}

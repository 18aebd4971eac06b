import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { PipelineError } from "../errors";
import { TokenCipher } from "./cipher";
import { StoredTokens, TokenStore, TokenUpdate } from "./types";

/**
 * Tokens in encrypted files under the Node-RED user directory, one file per connection, for users
 * without a database. Each write goes to a temporary file that is synced and renamed over the old
 * one, so a crash leaves either the old record or the new one. A lock file keeps other processes
 * on the same host out while one of them refreshes.
 */
export class FileTokenStore implements TokenStore {
  readonly kind = "file" as const;

  constructor(
    private readonly dir: string,
    private readonly cipher: TokenCipher,
    private readonly lockStaleMs = 20_000,
  ) {}

  async read(key: string): Promise<StoredTokens | null> {
    const file = this.fileFor(key);
    let raw: string;
    try {
      raw = await fs.readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new PipelineError(`the token file ${file} cannot be read: ${(err as Error).message}`, { cause: err, code: "GW_TOKEN_STORE" });
    }
    const parsed = JSON.parse(raw) as { key: string; sealed: string };
    return JSON.parse(this.cipher.open(parsed.sealed, key)) as StoredTokens;
  }

  peek(key: string): Promise<StoredTokens | null> {
    return this.read(key);
  }

  async update<T>(key: string, change: (current: StoredTokens | null) => Promise<TokenUpdate<T>>): Promise<T> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileFor(key);
    let compromised: Error | undefined;
    const release = await lockfile.lock(file, {
      realpath: false,
      stale: this.lockStaleMs,
      update: Math.floor(this.lockStaleMs / 4),
      retries: { retries: 400, factor: 1.3, minTimeout: 5, maxTimeout: 200, randomize: true },
      // The default throws from a timer, which would end Node-RED; remember it instead.
      onCompromised: (err) => {
        compromised = err;
      },
    });
    try {
      const { next, result } = await change(await this.read(key));
      if (compromised) throw new PipelineError(`the lock on ${file} was lost while refreshing`, { cause: compromised, code: "GW_TOKEN_STORE_LOCK" });
      if (next) await this.writeAtomically(file, key, next);
      return result;
    } finally {
      await release().catch(() => undefined);
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.fileFor(key), { force: true });
  }

  async close(): Promise<void> {}

  fileFor(key: string): string {
    return path.join(this.dir, `${key.replace(/[^A-Za-z0-9._-]/g, "_")}.token.json`);
  }

  private async writeAtomically(file: string, key: string, record: StoredTokens): Promise<void> {
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const content = JSON.stringify({ v: 1, key, sealed: this.cipher.seal(JSON.stringify(record), key) });
    const handle = await fs.open(tmp, "w", 0o600);
    try {
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    const dir = await fs.open(this.dir, "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

import { Database, Migration } from "../db/database";
import { TokenCipher } from "./cipher";
import { StoredTokens, TokenStore, TokenUpdate } from "./types";

export const TOKEN_STORE_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "oauth token table",
    sql: `CREATE TABLE IF NOT EXISTS gluework_oauth_tokens (
      token_key text PRIMARY KEY,
      sealed text,
      state text NOT NULL DEFAULT 'authorized',
      expires_at timestamptz,
      version bigint NOT NULL DEFAULT 0,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`,
  },
];

/**
 * Tokens in PostgreSQL, so any number of Node-RED processes on one database share one refresh
 * token chain. `update` runs in a transaction that holds the token's row lock for the whole
 * refresh: a second process waits, then finds the fresh token instead of spending the refresh
 * token again. The record is sealed with a key derived from the client secret, which every
 * instance of the same integration has, so a database dump alone reveals no token.
 */
export class PostgresTokenStore implements TokenStore {
  readonly kind = "postgres" as const;
  private ready?: Promise<unknown>;

  constructor(
    private readonly db: Database,
    private readonly cipher: TokenCipher,
    private readonly lockTimeoutMs = 60_000,
  ) {}

  async read(key: string): Promise<StoredTokens | null> {
    await this.migrated();
    const { rows } = await this.db.query<{ sealed: string | null }>("SELECT sealed FROM gluework_oauth_tokens WHERE token_key = $1", [key]);
    return rows[0]?.sealed ? this.open(rows[0].sealed, key) : null;
  }

  async peek(key: string): Promise<StoredTokens | null> {
    try {
      const { rows } = await this.db.query<{ sealed: string | null }>("SELECT sealed FROM gluework_oauth_tokens WHERE token_key = $1", [key]);
      return rows[0]?.sealed ? this.open(rows[0].sealed, key) : null;
    } catch (err) {
      if ((err as { code?: string }).code === "42P01") return null; // no table yet: nothing stored
      throw err;
    }
  }

  async update<T>(key: string, change: (current: StoredTokens | null) => Promise<TokenUpdate<T>>): Promise<T> {
    await this.migrated();
    return this.db.transaction(async (client) => {
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.floor(this.lockTimeoutMs))}`);
      await client.query("INSERT INTO gluework_oauth_tokens (token_key) VALUES ($1) ON CONFLICT (token_key) DO NOTHING", [key]);
      const { rows } = await client.query<{ sealed: string | null }>(
        "SELECT sealed FROM gluework_oauth_tokens WHERE token_key = $1 FOR UPDATE",
        [key],
      );
      const current = rows[0]?.sealed ? this.open(rows[0].sealed, key) : null;
      const { next, result } = await change(current);
      if (next) {
        await client.query(
          `UPDATE gluework_oauth_tokens SET sealed = $2, state = $3, expires_at = $4, version = $5, updated_at = now() WHERE token_key = $1`,
          [key, this.cipher.seal(JSON.stringify(next), key), next.state, next.expiresAt ? new Date(next.expiresAt) : null, next.version],
        );
      }
      return result;
    });
  }

  async delete(key: string): Promise<void> {
    await this.migrated();
    await this.db.query("DELETE FROM gluework_oauth_tokens WHERE token_key = $1", [key]);
  }

  async close(): Promise<void> {}

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("token-store", TOKEN_STORE_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private open(sealed: string, key: string): StoredTokens {
    return JSON.parse(this.cipher.open(sealed, key)) as StoredTokens;
  }
}
